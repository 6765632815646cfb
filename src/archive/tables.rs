//! The redb tables and their key layouts. Nothing outside `archive/` sees these.

use redb::{MultimapTableDefinition, TableDefinition};

/// uid → record (versioned JSON).
pub const MESSAGES: TableDefinition<u32, &[u8]> = TableDefinition::new("messages");
/// stable id → uid.
pub const IDS: TableDefinition<&str, u32> = TableDefinition::new("ids");
/// Message-ID → uids (several when bodies differ).
pub const MESSAGE_IDS: MultimapTableDefinition<&str, u32> =
    MultimapTableDefinition::new("message_ids");
/// direction code → uids (junk is not indexed here: it is not logged).
pub const DIRECTIONS: MultimapTableDefinition<u8, u32> = MultimapTableDefinition::new("directions");
/// (date, uid) → ().
pub const DATES: TableDefinition<(i64, u32), ()> = TableDefinition::new("dates");
/// normalized address (sender, From, every recipient) → uids.
pub const ADDRESSES: MultimapTableDefinition<&str, u32> = MultimapTableDefinition::new("addresses");
/// thread root Message-ID → uids.
pub const THREADS: MultimapTableDefinition<&str, u32> = MultimapTableDefinition::new("threads");
/// Message-IDs this message refers to (In-Reply-To, References) → uids.
pub const REFERENCES: MultimapTableDefinition<&str, u32> =
    MultimapTableDefinition::new("references");
/// uid → () for quarantined junk.
pub const JUNK: TableDefinition<u32, ()> = TableDefinition::new("junk");
/// Archive-wide values (uidvalidity, next uid, format, byte totals).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Ingest counters (duplicates, junk dropped, ...).
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub const META_FORMAT: &str = "format";
pub const META_UIDVALIDITY: &str = "uidvalidity";
pub const META_NEXT_UID: &str = "next_uid";
pub const META_CREATED: &str = "created";
pub const META_RAW_BYTES: &str = "raw_bytes";
pub const META_STORED_BYTES: &str = "stored_bytes";
/// The current pack file and its committed length.
pub const META_PACK: &str = "pack";
pub const META_PACK_LEN: &str = "pack_len";
/// Where in the log later copies are kept from (set when a format 2 archive is upgraded;
/// before it, the log may name copies whose bytes were never kept).
pub const META_COPIES_PACK: &str = "copies_pack";
pub const META_COPIES_LEN: &str = "copies_pack_len";

/// The on-disk format this version reads and writes. 2: a record may say
/// `"compression": "none"` (stored as is). 3: later copies of a message are kept (the
/// `copies` table, and log frames that hold a copy's header block against the first copy's
/// body). 4: the transparency log (`tlog_*` tables); an older archive gets the leaves of
/// what it holds when it is opened. Older archives are upgraded on open, and an older
/// version refuses a newer archive (one that would store messages without their copies
/// or leaves).
pub const FORMAT: u64 = 4;
/// (uid, copy number ≥ 2) → that copy of the message (JSON `copies::CopyRow`); copy 1 is
/// the record itself.
pub const COPIES: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("copies");
/// account name → account (JSON: password hash, roles). Kept apart from the messages.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// month (year × 100 + month, of the message's date, UTC) → logged messages in it.
pub const MONTHS: TableDefinition<u32, u64> = TableDefinition::new("months");
/// (account, uid) → that account's flags on the message (bit 0 \Seen, bit 1 \Flagged).
/// Kept apart from the records: reading mail never changes the archive.
pub const USER_FLAGS: TableDefinition<(&str, u32), u8> = TableDefinition::new("user_flags");
/// salesperson code → salesperson (JSON).
pub const SALESPEOPLE: TableDefinition<&str, &[u8]> = TableDefinition::new("salespeople");
/// contact number → contact (JSON).
pub const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
/// entry number → interaction log entry (JSON).
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// (uid, salesperson, contact) → entry number: one entry per pair and message, ever.
pub const ENTRY_PAIRS: TableDefinition<(u32, &str, &str), u64> =
    TableDefinition::new("entry_pairs");
/// contact number → entry numbers.
pub const ENTRIES_BY_CONTACT: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("entries_by_contact");
/// salesperson code → entry numbers.
pub const ENTRIES_BY_SALESPERSON: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("entries_by_salesperson");
/// opportunity number → opportunity (JSON).
pub const OPPORTUNITIES: TableDefinition<u64, &[u8]> = TableDefinition::new("opportunities");
/// contact number → opportunity numbers.
pub const OPPORTUNITIES_BY_CONTACT: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("opportunities_by_contact");
/// folder path (a person's folder segments joined with `/`: `Contacts/Fabrikam/Marta Buyer`)
/// → the person (JSON `PersonId`) whose folder it is or last was. Every path that was ever
/// current is kept, so that a folder once shown keeps opening after the directory renamed it.
pub const FOLDER_PATHS: TableDefinition<&str, &[u8]> = TableDefinition::new("folder_paths");
pub const META_NEXT_ENTRY: &str = "next_entry";
pub const META_NEXT_OPPORTUNITY: &str = "next_opportunity";
/// The transparency log: leaf number → leaf bytes (see `crate::tlog::Leaf`).
pub const TLOG_LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("tlog_leaves");
/// (level, index) → SHA-256 of the complete subtree of leaves `index << level ..` (32 bytes).
pub const TLOG_NODES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tlog_nodes");
/// uid → the number of the leaf of the message's first stored copy.
pub const TLOG_UIDS: TableDefinition<u32, u64> = TableDefinition::new("tlog_uids");
/// How many leaves the transparency log has.
pub const META_TLOG_SIZE: &str = "tlog_size";
/// uid → what engagement keeps of an exchange (JSON `engagement::Exchange`).
pub const ENG_MESSAGES: TableDefinition<u32, &[u8]> = TableDefinition::new("engagement_messages");
/// (normalized subject, date, uid) → (): exchanges by subject, for threading replies that
/// name no Message-ID.
pub const ENG_SUBJECTS: TableDefinition<(&str, i64, u32), ()> =
    TableDefinition::new("engagement_subjects");
/// (scope code, key, day since 1970 UTC) → that key's counts of that day (JSON
/// `engagement::Counts`).
pub const ENG_COUNTS: TableDefinition<(u8, &str, i64), &[u8]> =
    TableDefinition::new("engagement_counts");
/// (0 inbound awaiting us / 1 outbound awaiting them, date, uid) → its pairs (JSON):
/// exchanges nobody answered yet.
pub const ENG_OPEN: TableDefinition<(u8, i64, u32), &[u8]> =
    TableDefinition::new("engagement_open");
