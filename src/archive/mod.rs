//! The archive: raw messages content-addressed (BLAKE3, zstd), metadata and indexes in redb.
//! This is the only module that knows the storage engine.
//!
//! Durability: a batch of messages is first written to the write-ahead log ([`Archive::stage`]:
//! large blobs as fsynced files, then one frame per message appended to the current pack,
//! which is fsynced), then filed in one redb transaction ([`Archive::commit_staged`]), which
//! may skip redb's fsync: [`Archive::recover`] files again whatever a crash took from the
//! database. Once both steps return `Ok`, the whole batch is visible and survives a crash or
//! power loss; when staging fails, nothing of it is kept (an already written blob file is an
//! orphan that `verify --repair` removes, and a retry reuses it).
//!
//! Copies: a later copy of an archived message (same stable id, other bytes) is logged and
//! filed like a message, in [`Writer::file_copy`] (see `copies`), and read back with
//! [`Archive::copies`] and [`Archive::copy_raw`].

mod blobs;
mod committer;
pub mod copies;
pub mod engagement;
pub mod folders;
pub mod id;
pub mod log;
pub mod record;
mod tables;
pub mod tlog;
pub mod users;
mod wal;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, MultimapTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, WriteTransaction,
};
use serde::Serialize;

pub use blobs::Codec;
pub use committer::{Arrival, Committer, Pending};
pub use copies::{CopyInfo, Kept};
pub use folders::{FLAG_FLAGGED, FLAG_SEEN, FolderQuery};
pub use id::{BlobHash, StableId};
pub use log::{Entry, EntryFilter, ImportCounts, Opportunity};
pub use record::{Compression, Flag, Location, Meta, Party, Record, Storage};
pub use users::{Account, Role};

use crate::classify::Direction;
use crate::ingest::recipients::Recipients;
use blobs::BlobStore;
use tables::*;

/// Compressed blobs up to this size go into the current pack file, whose one fsync per group
/// commit covers them all; larger ones get a file (and an fsync) of their own. 64 KiB covers
/// nearly all text mail; see `scripts/bench-ingest`.
pub const PACK_MAX: usize = 64 * 1024;

/// redb's page cache. Small on purpose: peak memory must not grow with the archive.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the archive in {0} is in use by another mailjournal process")]
    Locked(PathBuf),
    #[error("the archive in {dir} has format {found}, newer than this version reads ({FORMAT})")]
    TooNew { dir: PathBuf, found: u64 },
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("record {uid} is unreadable: {reason}")]
    Corrupt { uid: u32, reason: String },
    #[error("the archive is full: no UIDs left")]
    UidsExhausted,
    #[error("the committer has stopped")]
    CommitterGone,
}

impl Error {
    /// Whether the database failed at the storage level (an I/O error, such as a full
    /// disk): redb then refuses every later transaction until the database is opened again.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            Error::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }

    /// Whether a write failed because the file system is full (ENOSPC, or EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            Error::Io { source, .. } => source,
            Error::Db(redb::Error::Io(source)) => source,
            _ => return false,
        };
        matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    }

    /// Whether retrying later may succeed (a full disk, an I/O hiccup, a busy lock) as
    /// opposed to a problem that needs an administrator. SMTP answers 4xx for transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Db(_) | Error::Io { .. } | Error::Locked(_) | Error::CommitterGone
        )
    }
}

/// Beside the index, so that a rebuilt index keeps the archive's UIDVALIDITY.
const UIDVALIDITY_FILE: &str = "uidvalidity";

/// The UIDVALIDITY kept in `dir`, if the file is there.
fn kept_uidvalidity(dir: &Path) -> Result<Option<u32>, Error> {
    let path = dir.join(UIDVALIDITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(v) if v > 0 => Ok(Some(v)),
            _ => Err(Error::Corrupt {
                uid: 0,
                reason: format!("{} does not hold a UIDVALIDITY", path.display()),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes `uidvalidity` to its file durably (a new file renamed into place).
fn keep_uidvalidity(dir: &Path, uidvalidity: u32) -> Result<(), Error> {
    use std::io::Write;
    let path = dir.join(UIDVALIDITY_FILE);
    let temp = dir.join(format!("{UIDVALIDITY_FILE}.new"));
    let what = format!("writing {}", path.display());
    let mut file = blobs::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io(what.clone()))?;
    writeln!(file, "{uidvalidity}").map_err(io(what.clone()))?;
    file.sync_all().map_err(io(what.clone()))?;
    std::fs::rename(&temp, &path).map_err(io(what.clone()))?;
    blobs::sync_dir(dir).map_err(io(what))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// `?` for every redb error type.
trait Db<T> {
    fn db(self) -> Result<T, Error>;
}

impl<T, E: Into<redb::Error>> Db<T> for Result<T, E> {
    fn db(self) -> Result<T, Error> {
        self.map_err(|e| Error::Db(e.into()))
    }
}

/// Ingest counters kept with the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// New messages stored (including quarantined junk).
    Stored,
    /// Copies merged into an existing record.
    Duplicates,
    /// Junk stored in quarantine.
    JunkQuarantined,
    /// Junk counted and discarded.
    JunkDropped,
    /// Messages stored with a malformed flag.
    Malformed,
    /// Messages unwrapped from journal reports.
    JournalReports,
    /// Logged messages that match no salesperson–contact pair.
    Unmatched,
}

impl Counter {
    pub const ALL: [Counter; 7] = [
        Counter::Stored,
        Counter::Duplicates,
        Counter::JunkQuarantined,
        Counter::JunkDropped,
        Counter::Malformed,
        Counter::JournalReports,
        Counter::Unmatched,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Counter::Stored => "stored",
            Counter::Duplicates => "duplicates",
            Counter::JunkQuarantined => "junk_quarantined",
            Counter::JunkDropped => "junk_dropped",
            Counter::Malformed => "malformed",
            Counter::JournalReports => "journal_reports",
            Counter::Unmatched => "unmatched",
        }
    }
}

/// A message ready to store: its identity, metadata and stored (usually compressed) bytes.
/// Built by [`NewMessage::prepare`] off the commit path, so compression runs in parallel.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: StableId,
    pub blob: BlobHash,
    pub size: u64,
    stored: Vec<u8>,
    compression: record::Compression,
    pub meta: Meta,
    /// Its header block and the hash of its body, to keep it as a header block against the
    /// first copy's body should it turn out to be a later copy.
    split: Option<copies::Split>,
    head: Vec<u8>,
}

impl NewMessage {
    /// `blob` must be [`BlobHash::of`]`(raw)` (the caller has usually computed it already).
    pub fn prepare(
        raw: &[u8],
        blob: BlobHash,
        id: StableId,
        meta: Meta,
        codec: Codec,
    ) -> Result<Self, Error> {
        let (stored, compression) =
            blobs::encode(raw, codec).map_err(io("compressing a message"))?;
        let split = copies::Split::of(raw);
        let head = match &split {
            Some(s) => raw[..s.body_at as usize].to_vec(),
            None => Vec::new(),
        };
        Ok(Self {
            id,
            blob,
            size: raw.len() as u64,
            stored,
            compression,
            meta,
            split,
            head,
        })
    }

    /// The bytes it takes on disk.
    pub fn stored_size(&self) -> usize {
        self.stored.len()
    }

    /// The message's bytes, decoded from the form it would be stored in.
    pub fn decoded(&self) -> Result<Vec<u8>, Error> {
        blobs::decode(self.stored.clone(), self.compression, self.size)
            .map_err(io("decoding a message"))
    }
}

/// A message as a commit files it: everything but its bytes, which are durable already.
#[derive(Debug, Clone)]
struct StagedMessage {
    id: StableId,
    blob: BlobHash,
    size: u64,
    stored_size: u64,
    compression: record::Compression,
    meta: Meta,
    /// A later copy kept as its header block: the body is that of the copy with this
    /// blob, from this offset on.
    body: Option<(BlobHash, u64)>,
}

impl StagedMessage {
    fn header(&self, placed: wal::Placed) -> wal::Header {
        wal::Header {
            id: self.id.as_str().to_owned(),
            blob: self.blob.to_hex(),
            size: self.size,
            stored_size: self.stored_size,
            compression: self.compression,
            placed,
            meta: self.meta.clone(),
            body_at: self.body.map(|(_, at)| at),
            body_of: self.body.map(|(of, _)| of.to_hex()),
        }
    }

    fn from_header(h: wal::Header) -> Result<Self, String> {
        let body = match (h.body_at, &h.body_of) {
            (None, None) => None,
            (Some(at), Some(of)) => Some((
                BlobHash::from_hex(of).ok_or_else(|| format!("body of {of:?}"))?,
                at,
            )),
            _ => return Err("a copy's body reference is half there".into()),
        };
        Ok(Self {
            body,
            id: h.id.parse().map_err(|_| format!("id {:?}", h.id))?,
            blob: BlobHash::from_hex(&h.blob).ok_or_else(|| format!("blob {:?}", h.blob))?,
            size: h.size,
            stored_size: h.stored_size,
            compression: h.compression,
            meta: h.meta,
        })
    }
}

/// What staging keeps of a message's bytes.
enum Keep {
    /// Nothing: they are kept already.
    Nothing,
    /// All of them (a new message, or a copy whose body differs in its bytes).
    Whole,
    /// This header block (compressed), against an earlier copy's body.
    Head(Vec<u8>),
}

/// A stable id met while staging a batch.
struct SeenId {
    /// The blobs of its copies kept (in the archive, and earlier in the batch).
    kept: std::collections::HashSet<BlobHash>,
    /// The copy a later copy's body is compared with, and its split, once known.
    first: Option<(BlobHash, Option<copies::Split>)>,
    /// Where that copy's bytes are, when it is archived (read only when needed).
    first_at: Option<Location>,
}

impl SeenId {
    fn of_archived(txn: &ReadTransaction, uid: u32) -> Result<Self, Error> {
        let messages = txn.open_table(MESSAGES).db()?;
        let Some(record) = messages.get(uid).db()? else {
            return Err(Error::Corrupt {
                uid,
                reason: "id index points at a missing record".into(),
            });
        };
        let location: Location = decode_as(uid, record.value())?;
        let mut kept = std::collections::HashSet::new();
        kept.insert(blob_of(uid, &location.blob)?);
        for (_, row) in copy_rows(&txn.open_table(COPIES).db()?, uid)? {
            kept.insert(blob_of(uid, &row.blob)?);
        }
        Ok(Self {
            kept,
            first: None,
            first_at: Some(location),
        })
    }
}

fn blob_of(uid: u32, hex: &str) -> Result<BlobHash, Error> {
    BlobHash::from_hex(hex).ok_or_else(|| Error::Corrupt {
        uid,
        reason: format!("blob name {hex:?} is not a hash"),
    })
}

/// The later copies of message `uid`, by number.
fn copy_rows(
    t: &impl ReadableTable<(u32, u32), &'static [u8]>,
    uid: u32,
) -> Result<Vec<(u32, copies::CopyRow)>, Error> {
    let mut rows = Vec::new();
    for entry in t.range((uid, 0)..=(uid, u32::MAX)).db()? {
        let (k, v) = entry.db()?;
        rows.push((k.value().1, decode_as(uid, v.value())?));
    }
    Ok(rows)
}

/// A batch that is durable in the log (the pack files) and not filed in the database yet.
pub struct Staged {
    items: Vec<(StagedMessage, Option<Storage>)>,
    /// The current pack and its length after this batch.
    pack_end: (u32, u64),
}

impl Staged {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends a batch staged after this one: one commit for both.
    pub fn absorb(&mut self, later: Staged) {
        self.items.extend(later.items);
        self.pack_end = later.pack_end;
    }
}

/// What `put` did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new record.
    Stored { uid: u32, id: StableId },
    /// Merged into the existing record with the same id; `changed` when it added recipients.
    Duplicate {
        uid: u32,
        id: StableId,
        changed: bool,
    },
}

impl PutOutcome {
    pub fn uid(&self) -> u32 {
        match self {
            PutOutcome::Stored { uid, .. } | PutOutcome::Duplicate { uid, .. } => *uid,
        }
    }

    pub fn id(&self) -> &StableId {
        match self {
            PutOutcome::Stored { id, .. } | PutOutcome::Duplicate { id, .. } => id,
        }
    }
}

/// What the archive asks of the pipeline while it commits.
pub trait Hooks: Send + Sync {
    /// A message's direction, re-derived when a duplicate adds recipients.
    fn classify(&self, sender: Option<&str>, recipients: &Recipients) -> Direction;
    /// The (salesperson code, contact number) pairs of a message for the interaction log.
    fn pairs(&self, sender: Option<&str>, recipients: &Recipients) -> Vec<(String, String)>;
}

/// Which records `list` returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub direction: Option<Direction>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// A normalized address that must be a party.
    pub address: Option<String>,
    /// List quarantined junk instead of logged mail.
    pub junk: bool,
    pub limit: Option<usize>,
}

/// Figures about the archive.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub messages: u64,
    /// Later copies kept (distinct bytes of a message archived already; see `copies`).
    pub later_copies: u64,
    pub inbound: u64,
    pub outbound: u64,
    pub internal: u64,
    pub external: u64,
    pub junk_quarantined_now: u64,
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub disk_bytes: u64,
    pub counters: std::collections::BTreeMap<&'static str, u64>,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub blobs_checked: u64,
    /// Later copies of messages checked (each against its hash).
    pub copies_checked: u64,
    /// Frames of the write-ahead log (the pack files) checked against the records.
    pub frames_checked: u64,
    /// Each a sentence naming the record or file and what is wrong.
    pub problems: Vec<String>,
    /// Blob files no record refers to, and stray files (harmless; `--repair` removes them).
    pub orphans: Vec<PathBuf>,
}

pub struct Archive {
    dir: PathBuf,
    db: Database,
    blobs: BlobStore,
    /// Writers append here (one at a time); readers only need `packs_dir`.
    packs: std::sync::Mutex<blobs::Packs>,
    packs_dir: PathBuf,
    uidvalidity: u32,
    /// The next UID after the latest commit, for whoever waits for new mail (IMAP IDLE).
    committed: tokio::sync::watch::Sender<u32>,
    /// Read handles of pack files.
    open_packs: std::sync::Mutex<std::collections::HashMap<u32, Arc<std::fs::File>>>,
    /// Whether the log has a tail past what the database filed durably: set when the
    /// archive opens after an unclean stop, cleared by [`Archive::recover`].
    needs_recovery: std::sync::atomic::AtomicBool,
    /// Cancelled once a write failed in a way this process cannot recover from (redb
    /// refuses every transaction after an I/O error, a full disk included): the gateway
    /// says it is unhealthy and stops, so that its supervisor starts it afresh.
    failed: tokio_util::sync::CancellationToken,
    /// The transparency log's signing key, and the lock that keeps checkpoints in order.
    signing: std::sync::Mutex<tlog::Signing>,
    /// `engagement.subject_window` in seconds (see [`Archive::set_engagement`]).
    subject_window: std::sync::atomic::AtomicI64,
    /// `engagement.awaiting_after` in seconds.
    awaiting_after: std::sync::atomic::AtomicI64,
}

impl Archive {
    /// Opens the archive in `dir`, creating it (with a new UIDVALIDITY) if it does not exist.
    /// Only one process may hold it open.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("archive.redb");
        blobs::prepare_private(dir, &path).map_err(io(format!("creating {}", dir.display())))?;
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        let db = match builder.create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::Locked(dir.to_path_buf()));
            }
            Err(e) => return Err(Error::Db(e.into())),
        };
        let blobs = BlobStore::new(dir);
        let txn = db.begin_write().db()?;
        let uidvalidity = {
            let mut meta = txn.open_table(META).db()?;
            let format = get_u64(&meta, META_FORMAT)?;
            match format {
                Some(found) if found > FORMAT => {
                    return Err(Error::TooNew {
                        dir: dir.to_path_buf(),
                        found,
                    });
                }
                Some(found) if found < FORMAT => {
                    // Format 2 added records stored without compression, format 3 the
                    // copies table (created below, empty: earlier versions kept no later
                    // copies' bytes), format 4 the transparency log (its leaves are made
                    // for what the archive holds, below); older versions must not open an
                    // archive that may hold any of them.
                    tracing::info!(from = found, to = FORMAT, "upgrading the archive format");
                    if found < 3 {
                        // Where the log starts keeping later copies: frames before it may
                        // name copies whose bytes this archive never kept.
                        let pack = get_u64(&meta, META_PACK)?.unwrap_or(1);
                        let len = get_u64(&meta, META_PACK_LEN)?.unwrap_or(0);
                        meta.insert(META_COPIES_PACK, pack).db()?;
                        meta.insert(META_COPIES_LEN, len).db()?;
                    }
                    meta.insert(META_FORMAT, FORMAT).db()?;
                }
                Some(_) => {}
                None => {
                    let now = jiff::Timestamp::now().as_second();
                    // UIDVALIDITY is fixed at creation, as IMAP servers do: the creation time.
                    // An index rebuilt from the packs (archive.redb deleted or lost) keeps
                    // the archive's, so clients and imap:// links need no resync.
                    let uidvalidity = match kept_uidvalidity(dir)? {
                        Some(kept) => {
                            tracing::info!(
                                uidvalidity = kept,
                                "rebuilding the index: UIDVALIDITY kept"
                            );
                            kept
                        }
                        None => u32::try_from(now).unwrap_or(1).max(1),
                    };
                    meta.insert(META_FORMAT, FORMAT).db()?;
                    meta.insert(META_UIDVALIDITY, u64::from(uidvalidity)).db()?;
                    meta.insert(META_NEXT_UID, 1).db()?;
                    meta.insert(META_CREATED, now.max(0) as u64).db()?;
                    meta.insert(META_TLOG_SIZE, 0).db()?;
                }
            }
            let v = get_u64(&meta, META_UIDVALIDITY)?.unwrap_or(1);
            u32::try_from(v).map_err(|_| Error::Corrupt {
                uid: 0,
                reason: format!("uidvalidity {v} out of range"),
            })?
        };
        if kept_uidvalidity(dir)? != Some(uidvalidity) {
            keep_uidvalidity(dir, uidvalidity)?;
        }
        // Create every table so read transactions never find one missing.
        txn.open_table(MESSAGES).db()?;
        txn.open_table(IDS).db()?;
        txn.open_multimap_table(MESSAGE_IDS).db()?;
        txn.open_multimap_table(DIRECTIONS).db()?;
        txn.open_table(DATES).db()?;
        txn.open_multimap_table(ADDRESSES).db()?;
        txn.open_multimap_table(THREADS).db()?;
        txn.open_multimap_table(REFERENCES).db()?;
        txn.open_table(JUNK).db()?;
        txn.open_table(COPIES).db()?;
        txn.open_table(COUNTERS).db()?;
        txn.open_table(USERS).db()?;
        txn.open_table(MONTHS).db()?;
        txn.open_table(USER_FLAGS).db()?;
        txn.open_table(SALESPEOPLE).db()?;
        txn.open_table(CONTACTS).db()?;
        txn.open_table(FOLDER_PATHS).db()?;
        txn.open_table(ENTRIES).db()?;
        txn.open_table(ENTRY_PAIRS).db()?;
        txn.open_multimap_table(ENTRIES_BY_CONTACT).db()?;
        txn.open_multimap_table(ENTRIES_BY_SALESPERSON).db()?;
        txn.open_table(OPPORTUNITIES).db()?;
        txn.open_multimap_table(OPPORTUNITIES_BY_CONTACT).db()?;
        txn.open_table(TLOG_LEAVES).db()?;
        txn.open_table(TLOG_NODES).db()?;
        txn.open_table(TLOG_UIDS).db()?;
        txn.open_table(ENG_MESSAGES).db()?;
        txn.open_table(ENG_SUBJECTS).db()?;
        txn.open_table(ENG_COUNTS).db()?;
        txn.open_table(ENG_OPEN).db()?;
        txn.commit().db()?;
        let (pack, pack_len, next_uid) = {
            let txn = db.begin_read().db()?;
            let meta = txn.open_table(META).db()?;
            (
                get_u64(&meta, META_PACK)?.unwrap_or(1),
                get_u64(&meta, META_PACK_LEN)?.unwrap_or(0),
                get_u64(&meta, META_NEXT_UID)?.unwrap_or(1),
            )
        };
        let pack = u32::try_from(pack).map_err(|_| Error::Corrupt {
            uid: 0,
            reason: format!("pack number {pack} out of range"),
        })?;
        let packs = blobs::Packs::open(dir, pack, pack_len).map_err(io("opening the pack file"))?;
        let needs_recovery = packs
            .has_tail()
            .map_err(io(format!("reading pack {pack}")))?
            || packs.has_next();
        let archive = Self {
            dir: dir.to_path_buf(),
            db,
            blobs,
            packs_dir: dir.join("packs"),
            packs: std::sync::Mutex::new(packs),
            uidvalidity,
            open_packs: std::sync::Mutex::default(),
            needs_recovery: std::sync::atomic::AtomicBool::new(needs_recovery),
            failed: tokio_util::sync::CancellationToken::new(),
            signing: std::sync::Mutex::default(),
            subject_window: std::sync::atomic::AtomicI64::new(
                crate::engagement::DEFAULT_SUBJECT_WINDOW,
            ),
            awaiting_after: std::sync::atomic::AtomicI64::new(
                crate::engagement::DEFAULT_AWAITING_AFTER,
            ),
            committed: tokio::sync::watch::Sender::new(u32::try_from(next_uid).unwrap_or(u32::MAX)),
        };
        archive.backfill_tlog()?;
        Ok(archive)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fixed when the archive was created; never changes.
    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// Stores a batch of messages in one durable commit. Idempotent: a message whose stable
    /// id is already archived is merged into its record (union of recipients), not stored
    /// again. Outcomes are in the order of `items`. The same as [`Archive::stage`] followed
    /// by [`Archive::commit_staged`]; the group-commit thread runs the two stages in
    /// parallel, one batch apart.
    pub fn put_batch(
        &self,
        items: Vec<NewMessage>,
        hooks: &dyn Hooks,
    ) -> Result<Vec<PutOutcome>, Error> {
        self.recover(hooks)?;
        let staged = self.stage(items)?;
        self.commit_staged(staged, hooks, true)
    }

    /// First stage of a commit: writes the batch to the log, durably: large blobs as their
    /// own files, then one frame per message appended to the current pack (small blobs in
    /// their frame). From here on the batch survives a crash: if [`Archive::commit_staged`]
    /// does not make it durable, [`Archive::recover`] files it at the next start.
    pub fn stage(&self, items: Vec<NewMessage>) -> Result<Staged, Error> {
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .needs_recovery
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::Corrupt {
                uid: 0,
                reason: "the log has messages to file first (recover before staging)".into(),
            });
        }
        packs
            .rotate_if_full()
            .map_err(io("starting a new pack file"))?;
        let (_, start) = packs.position();
        let result = self.stage_locked(items, &mut packs);
        if result.is_err() {
            packs.rollback(start);
        }
        result
    }

    fn stage_locked(
        &self,
        items: Vec<NewMessage>,
        packs: &mut blobs::Packs,
    ) -> Result<Staged, Error> {
        let txn = self.read()?;
        let ids = txn.open_table(IDS).db()?;
        // Per stable id met in this batch: the copies kept of it (in the archive, and
        // earlier in this batch), and the copy a later one's body is compared with.
        let mut seen: std::collections::HashMap<StableId, SeenId> =
            std::collections::HashMap::new();
        let mut staged = Vec::with_capacity(items.len());
        let mut dirs_to_sync = BTreeSet::new();
        // The batch's frames, appended with one write; (index, offset of bytes in `log`).
        let mut log = Vec::new();
        let mut in_pack = Vec::new();
        for item in items {
            let mut message = StagedMessage {
                id: item.id.clone(),
                blob: item.blob,
                size: item.size,
                stored_size: item.stored.len() as u64,
                compression: item.compression,
                meta: item.meta,
                body: None,
            };
            let known = ids.get(item.id.as_str()).db()?.map(|g| g.value());
            let entry = if seen.contains_key(&item.id) {
                seen.get_mut(&item.id)
            } else if let Some(uid) = known {
                let entry = SeenId::of_archived(&txn, uid)?;
                Some(seen.entry(item.id.clone()).or_insert(entry))
            } else {
                seen.insert(
                    item.id.clone(),
                    SeenId {
                        kept: [item.blob].into(),
                        first: Some((item.blob, item.split.clone())),
                        first_at: None,
                    },
                );
                None
            };
            let keep = match entry {
                // A new message (or one a batch not yet filed stores too: the commit
                // keeps it as a whole copy, or not at all if its bytes are kept already).
                None => Keep::Whole,
                // Byte for byte a copy kept already: counted, not stored again.
                Some(entry) if entry.kept.contains(&item.blob) => Keep::Nothing,
                Some(entry) => match (&item.split, self.first_of(entry)?) {
                    (Some(mine), (first_blob, Some(first))) if mine.body == first.body => {
                        let (head, compression) = blobs::encode(&item.head, Codec::Lz4)
                            .map_err(io("compressing a header block"))?;
                        if head.len() <= PACK_MAX {
                            message.stored_size = head.len() as u64;
                            message.compression = compression;
                            message.body = Some((first_blob, first.body_at));
                            Keep::Head(head)
                        } else {
                            Keep::Whole
                        }
                    }
                    _ => Keep::Whole,
                },
            };
            if let Some(entry) = seen.get_mut(&item.id) {
                entry.kept.insert(item.blob);
            }
            let (placed, bytes): (wal::Placed, &[u8]) = match &keep {
                Keep::Nothing => (wal::Placed::None, &[]),
                Keep::Head(head) => (wal::Placed::Pack, head),
                Keep::Whole if item.stored.len() <= PACK_MAX => (wal::Placed::Pack, &item.stored),
                Keep::Whole => {
                    let dir = self
                        .blobs
                        .write(&item.blob, &item.stored)
                        .map_err(io(format!("writing blob {}", item.blob.to_hex())))?;
                    dirs_to_sync.insert(dir);
                    (wal::Placed::File, &[])
                }
            };
            let (frame, bytes_at) =
                wal::encode(&message.header(placed), bytes).map_err(io("writing a log frame"))?;
            if placed == wal::Placed::Pack {
                in_pack.push((staged.len(), log.len() as u64 + bytes_at));
            }
            log.extend_from_slice(&frame);
            let storage = match placed {
                wal::Placed::File => Some(Storage::File),
                wal::Placed::Pack | wal::Placed::None => None,
            };
            staged.push((message, storage));
        }
        // Large blobs first: a frame that names a file is written once the file is durable.
        for dir in &dirs_to_sync {
            blobs::sync_dir(dir).map_err(io(format!("syncing {}", dir.display())))?;
        }
        let (pack, base) = packs
            .append(&log)
            .map_err(io("appending to the pack file"))?;
        for (index, at) in in_pack {
            staged[index].1 = Some(Storage::Pack {
                pack,
                offset: base + at,
            });
        }
        packs.sync().map_err(io("syncing the pack file"))?;
        Ok(Staged {
            items: staged,
            pack_end: packs.position(),
        })
    }

    /// The copy a later copy of `entry`'s message is compared with, and its split: the first
    /// copy, read from the archive the first time it is needed.
    fn first_of(&self, entry: &mut SeenId) -> Result<(BlobHash, Option<copies::Split>), Error> {
        if let Some(first) = &entry.first {
            return Ok(first.clone());
        }
        let Some(location) = entry.first_at.take() else {
            return Err(Error::Corrupt {
                uid: 0,
                reason: "a staged copy has no first copy".into(),
            });
        };
        let blob = blob_of(location.uid, &location.blob)?;
        let raw = self.raw_at(&location)?;
        let first = (blob, copies::Split::of(&raw));
        entry.first = Some(first.clone());
        Ok(first)
    }

    /// Second stage: one redb commit with every record and index row of a staged batch, and
    /// how far into the log the database has filed. Batches must be committed in the order
    /// they were staged. `durable: false` skips the database's fsync: the batch is durable in
    /// the log already, and recovery files it again if a crash loses the commit; a later
    /// durable commit (or [`Archive::checkpoint`]) makes it and every commit before durable.
    pub fn commit_staged(
        &self,
        staged: Staged,
        hooks: &dyn Hooks,
        durable: bool,
    ) -> Result<Vec<PutOutcome>, Error> {
        let mut txn = self.db.begin_write().db()?;
        if !durable {
            txn.set_durability(redb::Durability::None).db()?;
        }
        let mut outcomes = Vec::with_capacity(staged.items.len());
        {
            let mut w = Writer::open(&txn)?;
            w.engagement.window = self.subject_window();
            for (item, storage) in staged.items {
                let existing = w.ids.get(item.id.as_str()).db()?.map(|g| g.value());
                let outcome = match (existing, storage) {
                    (Some(uid), storage) => w.merge(uid, item, storage, hooks)?,
                    (None, Some(storage)) => w.insert(item, storage, hooks)?,
                    (None, None) => {
                        return Err(Error::Corrupt {
                            uid: 0,
                            reason: format!("message {} was staged without its blob", item.id),
                        });
                    }
                };
                outcomes.push(outcome);
            }
            w.finish()?;
            let (pack, len) = staged.pack_end;
            w.meta.insert(META_PACK, u64::from(pack)).db()?;
            w.meta.insert(META_PACK_LEN, len).db()?;
        }
        txn.commit().db()?;
        if let Ok(next) = self.next_uid() {
            self.committed
                .send_if_modified(|v| std::mem::replace(v, next) != next);
        }
        Ok(outcomes)
    }

    /// Makes every commit so far durable (an empty durable commit).
    pub fn checkpoint(&self) -> Result<(), Error> {
        self.db.begin_write().db()?.commit().db()
    }

    /// Records that a write failed at the storage level (see [`Error::is_storage_failure`]).
    pub fn storage_failed(&self, e: &Error) {
        if e.is_storage_failure() && !self.failed.is_cancelled() {
            tracing::error!(error = %e, "storage failed: the archive must be opened again");
            self.failed.cancel();
        }
    }

    /// Cancelled once storage failed; healthy while not.
    pub fn failure(&self) -> &tokio_util::sync::CancellationToken {
        &self.failed
    }

    /// Whether the log has frames the database has not filed durably (after a crash).
    pub fn needs_recovery(&self) -> bool {
        self.needs_recovery
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Files again, in order and durably, the log's frames past what the database made
    /// durable (what a crash lost of non-durable commits), so every acknowledged message is
    /// back, with the UID it had; then cuts off a frame the crash cut short. Returns how many
    /// frames it filed. Call before staging anything (the committer does when it starts).
    pub fn recover(&self, hooks: &dyn Hooks) -> Result<usize, Error> {
        use std::sync::atomic::Ordering;
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        if !self.needs_recovery.load(Ordering::Acquire) {
            return Ok(0);
        }
        let mut filed = 0;
        loop {
            let (pack, start) = packs.position();
            let tail = packs.tail().map_err(io(format!("reading pack {pack}")))?;
            let (frames, stop) = wal::scan(&tail);
            let mut at = start;
            let mut items = Vec::with_capacity(frames.len());
            for frame in frames {
                let storage = match frame.header.placed {
                    wal::Placed::Pack => Some(Storage::Pack {
                        pack,
                        offset: at + frame.bytes_at,
                    }),
                    wal::Placed::File => Some(Storage::File),
                    wal::Placed::None => None,
                };
                let message =
                    StagedMessage::from_header(frame.header).map_err(|reason| Error::Corrupt {
                        uid: 0,
                        reason: format!("log frame at {at} of pack {pack}: {reason}"),
                    })?;
                at += frame.len;
                items.push((message, storage, at));
            }
            for chunk in items.chunks(committer::MAX_BATCH) {
                // Each commit records the end of its last frame: a crash in between resumes there.
                let end = chunk.last().map_or(start, |(_, _, end)| *end);
                let staged = Staged {
                    items: chunk.iter().map(|(m, s, _)| (m.clone(), *s)).collect(),
                    pack_end: (pack, end),
                };
                filed += chunk.len();
                self.commit_staged(staged, hooks, true)?;
            }
            match stop {
                Some(stop) => {
                    let damaged = matches!(stop, wal::Stop::Damaged(_));
                    tracing::warn!(
                        pack,
                        at,
                        ?stop,
                        "the log ends in a frame that is not whole: cutting it off"
                    );
                    packs
                        .cut(at, damaged)
                        .map_err(io(format!("cutting off the tail of pack {pack}")))?;
                    break;
                }
                None => {
                    packs.cut(at, false).map_err(io(format!("pack {pack}")))?;
                    if !packs.has_next() {
                        break;
                    }
                    packs.advance().map_err(io("opening the next pack"))?;
                }
            }
        }
        // The position the database records: where the next frame goes.
        let (pack, len) = packs.position();
        let txn = self.db.begin_write().db()?;
        {
            let mut meta = txn.open_table(META).db()?;
            meta.insert(META_PACK, u64::from(pack)).db()?;
            meta.insert(META_PACK_LEN, len).db()?;
        }
        txn.commit().db()?;
        if filed > 0 {
            tracing::info!(
                messages = filed,
                "filed the log's tail after an unclean stop"
            );
        }
        self.needs_recovery.store(false, Ordering::Release);
        Ok(filed)
    }

    /// Adds to counters for events that store nothing (junk dropped).
    pub fn add_counters(&self, counts: &[(Counter, u64)]) -> Result<(), Error> {
        if counts.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        let txn = self.db.begin_write().db()?;
        {
            let mut t = txn.open_table(COUNTERS).db()?;
            for (c, n) in counts {
                bump(&mut t, c.key(), *n)?;
            }
        }
        txn.commit().db()?;
        Ok(())
    }

    fn read(&self) -> Result<ReadTransaction, Error> {
        self.db.begin_read().db()
    }

    /// The record with this UID.
    pub fn get(&self, uid: u32) -> Result<Option<Record>, Error> {
        let txn = self.read()?;
        let t = txn.open_table(MESSAGES).db()?;
        t.get(uid).db()?.map(|g| decode(uid, g.value())).transpose()
    }

    /// The record with this stable id.
    pub fn get_by_id(&self, id: &StableId) -> Result<Option<Record>, Error> {
        let txn = self.read()?;
        let uid = txn
            .open_table(IDS)
            .db()?
            .get(id.as_str())
            .db()?
            .map(|g| g.value());
        match uid {
            Some(uid) => self.get(uid),
            None => Ok(None),
        }
    }

    /// Where the messages with these UIDs are (`None` for a UID with no message), read in
    /// one transaction.
    pub fn locations(&self, uids: &[u32]) -> Result<Vec<Option<Location>>, Error> {
        let txn = self.read()?;
        let t = txn.open_table(MESSAGES).db()?;
        uids.iter()
            .map(|&uid| {
                t.get(uid)
                    .db()?
                    .map(|g| decode_as(uid, g.value()))
                    .transpose()
            })
            .collect()
    }

    /// The message's exact original bytes.
    pub fn raw(&self, record: &Record) -> Result<Vec<u8>, Error> {
        self.raw_at(&record.location())
    }

    /// Every copy of message `uid` kept, by number (1: the first copy, the record's own
    /// bytes); empty when there is no such message.
    pub fn copies(&self, uid: u32) -> Result<Vec<CopyInfo>, Error> {
        let txn = self.read()?;
        let Some(record) = txn.open_table(MESSAGES).db()?.get(uid).db()? else {
            return Ok(Vec::new());
        };
        let record = decode(uid, record.value())?;
        let rows = copy_rows(&txn.open_table(COPIES).db()?, uid)?;
        Ok(copy_infos(&record, &rows))
    }

    /// The copies of each record, in one transaction: what `list --json` shows.
    pub fn copies_of(&self, records: &[Record]) -> Result<Vec<Vec<CopyInfo>>, Error> {
        let txn = self.read()?;
        let t = txn.open_table(COPIES).db()?;
        records
            .iter()
            .map(|r| Ok(copy_infos(r, &copy_rows(&t, r.uid)?)))
            .collect()
    }

    /// The exact bytes of copy `n` of message `uid` (1: the first copy, as
    /// [`Archive::raw`] gives it); `None` when there is no such message or copy.
    pub fn copy_raw(&self, uid: u32, n: u32) -> Result<Option<Vec<u8>>, Error> {
        let txn = self.read()?;
        let Some(record) = txn.open_table(MESSAGES).db()?.get(uid).db()? else {
            return Ok(None);
        };
        let record = decode(uid, record.value())?;
        let rows = copy_rows(&txn.open_table(COPIES).db()?, uid)?;
        if n != 1 && !rows.iter().any(|(m, _)| *m == n) {
            return Ok(None);
        }
        self.assemble(&record, &rows, n).map(Some)
    }

    /// Copy `n` of `record`'s message (which must exist) from its stored bytes.
    fn assemble(
        &self,
        record: &Record,
        rows: &[(u32, copies::CopyRow)],
        n: u32,
    ) -> Result<Vec<u8>, Error> {
        let uid = record.uid;
        if n == 1 {
            return self.raw(record);
        }
        let corrupt = |reason: String| Error::Corrupt { uid, reason };
        let Some((_, row)) = rows.iter().find(|(m, _)| *m == n) else {
            return Err(corrupt(format!("copy {n} is not kept")));
        };
        let source = match row.body {
            None => None,
            // A body is always an earlier copy's: reading one ends.
            Some(body) if body.of < n => Some((self.assemble(record, rows, body.of)?, body.at)),
            Some(body) => {
                return Err(corrupt(format!(
                    "copy {n} names copy {} for its body",
                    body.of
                )));
            }
        };
        let body = match &source {
            None => &[][..],
            Some((raw, at)) => usize::try_from(*at)
                .ok()
                .and_then(|at| raw.get(at..))
                .ok_or_else(|| corrupt(format!("copy {n}: its body is past the end")))?,
        };
        let stored_len = row
            .size
            .checked_sub(body.len() as u64)
            .ok_or_else(|| corrupt(format!("copy {n} is shorter than its body")))?;
        let location = Location {
            uid,
            blob: row.blob.clone(),
            storage: row.storage,
            compression: row.compression,
            size: stored_len,
            stored_size: row.stored_size,
            received_at: row.received_at,
            crlf_size: None,
            flags: Vec::new(),
        };
        let mut raw = self.raw_at(&location)?;
        raw.extend_from_slice(body);
        Ok(raw)
    }

    /// The exact original bytes of the message at `loc`.
    pub fn raw_at(&self, loc: &Location) -> Result<Vec<u8>, Error> {
        let hash = BlobHash::from_hex(&loc.blob).ok_or_else(|| Error::Corrupt {
            uid: loc.uid,
            reason: format!("blob name {:?} is not a hash", loc.blob),
        })?;
        let stored = self.stored(loc, &hash)?;
        blobs::decode(stored, loc.compression, loc.size)
            .map_err(io(format!("decoding message {}", loc.uid)))
    }

    fn stored(&self, loc: &Location, hash: &BlobHash) -> Result<Vec<u8>, Error> {
        let uid = loc.uid;
        match loc.storage {
            Storage::File => self.blobs.read(hash, loc.stored_size).map_err(io(format!(
                "reading message {uid} from {}",
                self.blobs.path(hash).display()
            ))),
            Storage::Pack { pack, offset } => self
                .read_pack(pack, offset, loc.stored_size)
                .map_err(io(format!("reading message {uid} from pack {pack}"))),
        }
    }

    /// Reads from a pack through a cached handle (serving many small messages would
    /// otherwise open the pack once per message).
    fn read_pack(&self, pack: u32, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let file = {
            let mut open = self.open_packs.lock().unwrap_or_else(|e| e.into_inner());
            match open.get(&pack) {
                Some(f) => Arc::clone(f),
                None => {
                    let f = Arc::new(blobs::open_pack(&self.packs_dir, pack)?);
                    open.insert(pack, Arc::clone(&f));
                    f
                }
            }
        };
        blobs::read_at(&file, offset, len)
    }

    /// Records matching `filter`, in UID order.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Record>, Error> {
        let txn = self.read()?;
        let uids: Vec<u32> = if filter.junk {
            let t = txn.open_table(JUNK).db()?;
            t.iter()
                .db()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .db()?
        } else if let Some(address) = &filter.address {
            let t = txn.open_multimap_table(ADDRESSES).db()?;
            collect_multimap(t.get(address.as_str()).db()?)?
        } else if let Some(direction) = filter.direction {
            let t = txn.open_multimap_table(DIRECTIONS).db()?;
            collect_multimap(t.get(direction.code()).db()?)?
        } else {
            let t = txn.open_table(DATES).db()?;
            let lo = (filter.since.unwrap_or(i64::MIN), 0u32);
            let hi = (filter.until.unwrap_or(i64::MAX), 0u32);
            let mut uids: Vec<u32> = t
                .range(lo..hi)
                .db()?
                .map(|r| r.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()
                .db()?;
            uids.sort_unstable();
            uids
        };
        let messages = txn.open_table(MESSAGES).db()?;
        let mut out = Vec::new();
        for uid in uids {
            let Some(g) = messages.get(uid).db()? else {
                continue;
            };
            let record = decode(uid, g.value())?;
            let m = &record.meta;
            let keep = filter.junk == record.is_junk()
                && filter.direction.is_none_or(|d| d == m.direction)
                && filter.since.is_none_or(|s| m.date >= s)
                && filter.until.is_none_or(|u| m.date < u)
                && filter
                    .address
                    .as_deref()
                    .is_none_or(|a| is_party(&record, a));
            if keep {
                out.push(record);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let txn = self.read()?;
        let meta = txn.open_table(META).db()?;
        let dirs = txn.open_multimap_table(DIRECTIONS).db()?;
        let count = |d: Direction| -> Result<u64, Error> { Ok(dirs.get(d.code()).db()?.len()) };
        let counters_t = txn.open_table(COUNTERS).db()?;
        let mut counters = std::collections::BTreeMap::new();
        for c in Counter::ALL {
            counters.insert(c.key(), get_u64(&counters_t, c.key())?.unwrap_or(0));
        }
        let file_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut disk_bytes = file_size(&self.dir.join("archive.redb"));
        if let Ok(entries) = std::fs::read_dir(&self.packs_dir) {
            disk_bytes += entries
                .filter_map(|e| e.ok())
                .map(|e| file_size(&e.path()))
                .sum::<u64>();
        }
        if let Ok((hashes, _)) = self.blobs.scan() {
            for h in hashes {
                disk_bytes += std::fs::metadata(self.blobs.path(&h))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        Ok(Stats {
            messages: txn.open_table(MESSAGES).db()?.len().db()?,
            later_copies: txn.open_table(COPIES).db()?.len().db()?,
            inbound: count(Direction::Inbound)?,
            outbound: count(Direction::Outbound)?,
            internal: count(Direction::Internal)?,
            external: count(Direction::External)?,
            junk_quarantined_now: txn.open_table(JUNK).db()?.len().db()?,
            uidvalidity: self.uidvalidity,
            next_uid: get_u64(&meta, META_NEXT_UID)?.unwrap_or(1) as u32,
            raw_bytes: get_u64(&meta, META_RAW_BYTES)?.unwrap_or(0),
            stored_bytes: get_u64(&meta, META_STORED_BYTES)?.unwrap_or(0),
            disk_bytes,
            counters,
        })
    }

    /// Checks that every record decodes, that its blob exists and hashes to its name, and
    /// that the id index points back at it. With `repair`, removes orphan blob files and
    /// stray temporary files (never anything a record refers to).
    pub fn verify(
        &self,
        repair: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, Error> {
        let mut report = VerifyReport::default();
        let txn = self.read()?;
        let messages = txn.open_table(MESSAGES).db()?;
        let ids = txn.open_table(IDS).db()?;
        let total = messages.len().db()?;
        let mut referenced = BTreeSet::new();
        // Where records say their bytes are in the packs: (pack, offset) -> UID.
        let mut in_packs = std::collections::BTreeMap::new();
        for entry in messages.iter().db()? {
            let (k, v) = entry.db()?;
            let uid = k.value();
            report.records += 1;
            progress(report.records, total);
            let record = match decode(uid, v.value()) {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            match ids.get(record.id.as_str()).db()?.map(|g| g.value()) {
                Some(u) if u == uid => {}
                other => report.problems.push(format!(
                    "message {uid} ({}): id index points at {other:?}",
                    record.id
                )),
            }
            let Some(hash) = BlobHash::from_hex(&record.blob) else {
                report.problems.push(format!(
                    "message {uid}: blob name {:?} is not a hash",
                    record.blob
                ));
                continue;
            };
            match record.storage {
                Storage::File => {
                    referenced.insert(hash);
                }
                Storage::Pack { pack, offset } => {
                    in_packs.insert((pack, offset), format!("message {uid}"));
                }
            }
            let raw = self.stored(&record.location(), &hash).and_then(|c| {
                blobs::decode(c, record.compression, record.size)
                    .map_err(io(format!("message {uid}: decoding blob")))
            });
            report.blobs_checked += 1;
            match raw {
                Err(e) => report
                    .problems
                    .push(format!("message {uid} ({}): {e}", record.id)),
                Ok(raw) if BlobHash::of(&raw) != hash => report.problems.push(format!(
                    "message {uid} ({}): blob {} does not hash to its name",
                    record.id, record.blob
                )),
                Ok(raw) if raw.len() as u64 != record.size => report.problems.push(format!(
                    "message {uid} ({}): blob is {} bytes, record says {}",
                    record.id,
                    raw.len(),
                    record.size
                )),
                Ok(_) => {}
            }
        }
        self.verify_copies(&txn, &mut referenced, &mut in_packs, &mut report)?;
        let mut leaves = Vec::new();
        self.verify_log(&txn, &in_packs, &mut report, &mut leaves)?;
        self.verify_tlog(&txn, &leaves, &mut report.problems)?;
        let (files, strays) = self
            .blobs
            .scan()
            .map_err(io(format!("scanning {}", self.blobs.root().display())))?;
        let mut orphans: Vec<PathBuf> = files
            .iter()
            .filter(|h| !referenced.contains(h))
            .map(|h| self.blobs.path(h))
            .collect();
        orphans.extend(strays);
        if repair {
            for path in &orphans {
                std::fs::remove_file(path).map_err(io(format!("removing {}", path.display())))?;
            }
        }
        report.orphans = orphans;
        Ok(report)
    }
}

impl Archive {
    /// Checks every later copy: that its message is there, and that its stored bytes (and
    /// the body it shares) give back bytes of its size that hash to its blob.
    fn verify_copies(
        &self,
        txn: &redb::ReadTransaction,
        referenced: &mut BTreeSet<BlobHash>,
        in_packs: &mut std::collections::BTreeMap<(u32, u64), String>,
        report: &mut VerifyReport,
    ) -> Result<(), Error> {
        let messages = txn.open_table(MESSAGES).db()?;
        let copies = txn.open_table(COPIES).db()?;
        let mut uids = BTreeSet::new();
        for entry in copies.iter().db()? {
            let (k, _) = entry.db()?;
            uids.insert(k.value().0);
        }
        for uid in uids {
            let rows = match copy_rows(&copies, uid) {
                Ok(rows) => rows,
                Err(e) => {
                    report.problems.push(format!("message {uid}'s copies: {e}"));
                    continue;
                }
            };
            let record = match messages.get(uid).db()? {
                Some(v) => match decode(uid, v.value()) {
                    Ok(r) => r,
                    Err(_) => continue, // reported with the records
                },
                None => {
                    report.problems.push(format!(
                        "message {uid}: {} copies kept of a message the index does not have",
                        rows.len()
                    ));
                    continue;
                }
            };
            for (n, row) in &rows {
                let what = format!("copy {n} of message {uid} ({})", record.id);
                report.copies_checked += 1;
                let Some(hash) = BlobHash::from_hex(&row.blob) else {
                    report
                        .problems
                        .push(format!("{what}: blob name {:?} is not a hash", row.blob));
                    continue;
                };
                match row.storage {
                    Storage::File => {
                        referenced.insert(hash);
                    }
                    Storage::Pack { pack, offset } => {
                        in_packs.insert((pack, offset), what.clone());
                    }
                }
                match self.assemble(&record, &rows, *n) {
                    Err(e) => report.problems.push(format!("{what}: {e}")),
                    Ok(raw) if raw.len() as u64 != row.size => report.problems.push(format!(
                        "{what}: {} bytes, its row says {}",
                        raw.len(),
                        row.size
                    )),
                    Ok(raw) if BlobHash::of(&raw) != hash => report
                        .problems
                        .push(format!("{what}: its bytes do not hash to {}", row.blob)),
                    Ok(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Reads every frame of every pack file (the log a rebuild reads) and checks it: its
    /// magic, lengths, header and check; that the records it filed are there and name the
    /// same bytes at the same place; and that every record kept in a pack has its frame.
    /// A bad frame in what the index has filed is a problem; past that (frames a crash left
    /// for the next start to file), only the records are checked.
    fn verify_log(
        &self,
        txn: &redb::ReadTransaction,
        in_packs: &std::collections::BTreeMap<(u32, u64), String>,
        report: &mut VerifyReport,
        leaves: &mut Vec<crate::tlog::Leaf>,
    ) -> Result<(), Error> {
        let mut logged = std::collections::HashSet::new();
        let meta = txn.open_table(META).db()?;
        let filed_pack = get_u64(&meta, META_PACK)?.unwrap_or(1);
        let filed_len = get_u64(&meta, META_PACK_LEN)?.unwrap_or(0);
        let messages = txn.open_table(MESSAGES).db()?;
        let ids = txn.open_table(IDS).db()?;
        let copies = txn.open_table(COPIES).db()?;
        // Archives upgraded from format 2 kept no later copies in the log before then.
        let copies_from = (
            get_u64(&meta, META_COPIES_PACK)?.unwrap_or(1),
            get_u64(&meta, META_COPIES_LEN)?.unwrap_or(0),
        );
        let mut framed = BTreeSet::new();
        for (pack, path) in self.pack_files()? {
            let file =
                std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
            let mut at = 0u64;
            let filed = |at: u64| {
                let pack = u64::from(pack);
                pack < filed_pack || (pack == filed_pack && at < filed_len)
            };
            let keeps_copies = |at: u64| (u64::from(pack), at) >= copies_from;
            loop {
                let next = wal::read_next(&mut reader)
                    .map_err(io(format!("reading {}", path.display())))?;
                let frame = match next {
                    None => break,
                    Some(Ok(frame)) => frame,
                    Some(Err(stop)) => {
                        if filed(at) {
                            report.problems.push(format!(
                                "pack {pack}: no valid log frame at offset {at} ({stop:?}), inside what the index has filed"
                            ));
                        }
                        break;
                    }
                };
                report.frames_checked += 1;
                let h = &frame.header;
                let uid = ids.get(h.id.as_str()).db()?.map(|g| g.value());
                if filed(at) {
                    leaves.push(expected_leaf(&messages, uid, h, &mut logged)?);
                }
                match (uid, filed(at)) {
                    (None, true) => report.problems.push(format!(
                        "pack {pack} offset {at}: a log frame of message {} that the index does not have",
                        h.id
                    )),
                    (None, false) => {}
                    (Some(uid), _) if h.placed != wal::Placed::None => {
                        let record = match messages.get(uid).db()? {
                            Some(v) => decode(uid, v.value())?,
                            None => {
                                report.problems.push(format!(
                                    "message {uid} ({}): indexed but missing",
                                    h.id
                                ));
                                at += frame.len;
                                continue;
                            }
                        };
                        let place =
                            (h.placed == wal::Placed::Pack).then_some((pack, at + frame.bytes_at));
                        // Where the index keeps the bytes this frame names: the record's
                        // own, or one of its later copies'.
                        let kept = if record.blob == h.blob {
                            Some((record.size, record.storage))
                        } else {
                            copy_rows(&copies, uid)?
                                .into_iter()
                                .find(|(_, row)| row.blob == h.blob)
                                .map(|(_, row)| (row.size, row.storage))
                        };
                        match kept {
                            Some((size, _)) if size != h.size => report.problems.push(format!(
                                "pack {pack} offset {at}: the log frame of message {uid} names other bytes than its record"
                            )),
                            Some((_, storage)) => {
                                // Else the same bytes were logged twice (by two batches
                                // before either was filed) and are kept at the first place.
                                if let Some((pack, offset)) = place
                                    && storage == (Storage::Pack { pack, offset })
                                {
                                    framed.insert((pack, offset));
                                }
                            }
                            None if filed(at) && keeps_copies(at) => report.problems.push(format!(
                                "pack {pack} offset {at}: a log frame of a copy of message {uid} that the index does not keep"
                            )),
                            None => {}
                        }
                    }
                    (Some(_), _) => {}
                }
                at += frame.len;
            }
        }
        for (&(pack, offset), what) in in_packs {
            if !framed.contains(&(pack, offset)) {
                report.problems.push(format!(
                    "{what}: no log frame holds its bytes (pack {pack} offset {offset})"
                ));
            }
        }
        Ok(())
    }

    /// The pack files, by number (not the pieces set aside as damaged).
    fn pack_files(&self) -> Result<Vec<(u32, PathBuf)>, Error> {
        let what = format!("listing {}", self.packs_dir.display());
        let mut packs = Vec::new();
        let entries = match std::fs::read_dir(&self.packs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(packs),
            Err(e) => return Err(io(what)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(what.clone()))?;
            let name = entry.file_name();
            let number = name
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.strip_suffix(".dat"))
                .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(n) = number {
                packs.push((n, entry.path()));
            }
        }
        packs.sort();
        Ok(packs)
    }
}

/// What the archive tells about `record`'s copies, given its rows.
fn copy_infos(record: &Record, rows: &[(u32, copies::CopyRow)]) -> Vec<CopyInfo> {
    let first = CopyInfo {
        n: 1,
        size: record.size,
        blob: record.blob.clone(),
        received_at: record.meta.received_at,
        kept: Kept::Whole,
        stored_size: record.stored_size,
    };
    std::iter::once(first)
        .chain(rows.iter().map(|(n, row)| CopyInfo {
            n: *n,
            size: row.size,
            blob: row.blob.clone(),
            received_at: row.received_at,
            kept: if row.body.is_some() {
                Kept::HeaderBlock
            } else {
                Kept::Whole
            },
            stored_size: row.stored_size,
        }))
        .collect()
}

/// The transparency-log leaf a log frame must have made, as a rebuilt index would make it:
/// the first copy of a message as its record says (so an edited record shows), a later
/// copy as its frame says; a frame whose message the index lost gets UID 0 (which no leaf
/// has), so the leaf it made shows as differing.
fn expected_leaf(
    messages: &impl ReadableTable<u32, &'static [u8]>,
    uid: Option<u32>,
    h: &wal::Header,
    logged: &mut std::collections::HashSet<u32>,
) -> Result<crate::tlog::Leaf, Error> {
    let frame_blob = BlobHash::from_hex(&h.blob).map_or([0; 32], |b| b.0);
    let from_frame = |uid| crate::tlog::Leaf::Copy {
        uid,
        arrived: h.meta.received_at,
        blob: frame_blob,
        id: h.id.clone(),
    };
    let Some(uid) = uid else {
        return Ok(from_frame(0));
    };
    if !logged.insert(uid) {
        return Ok(from_frame(uid));
    }
    let record = match messages.get(uid).db()? {
        Some(v) => decode(uid, v.value()).ok(),
        None => None,
    };
    Ok(match record {
        Some(r) => crate::tlog::Leaf::Copy {
            uid,
            arrived: r.meta.received_at,
            blob: BlobHash::from_hex(&r.blob).map_or([0; 32], |b| b.0),
            id: r.id,
        },
        None => from_frame(uid),
    })
}

fn is_party(record: &Record, address: &str) -> bool {
    let m = &record.meta;
    m.sender.as_deref() == Some(address)
        || m.from.as_ref().is_some_and(|f| f.address == address)
        || m.recipients.addresses().any(|a| a == address)
}

fn decode(uid: u32, bytes: &[u8]) -> Result<Record, Error> {
    decode_as(uid, bytes)
}

/// A stored record, or the part of it that `T` names.
fn decode_as<T: serde::de::DeserializeOwned>(uid: u32, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        uid,
        reason: e.to_string(),
    })
}

fn encode(record: &Record) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(record).map_err(|e| Error::Corrupt {
        uid: record.uid,
        reason: e.to_string(),
    })
}

fn get_u64(t: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<Option<u64>, Error> {
    Ok(t.get(key).db()?.map(|g| g.value()))
}

fn bump(t: &mut Table<&'static str, u64>, key: &str, n: u64) -> Result<(), Error> {
    let v = get_u64(t, key)?.unwrap_or(0);
    t.insert(key, v.saturating_add(n)).db()?;
    Ok(())
}

fn collect_multimap(values: redb::MultimapValue<'_, u32>) -> Result<Vec<u32>, Error> {
    values
        .map(|r| r.map(|g| g.value()))
        .collect::<Result<_, _>>()
        .db()
}

/// The tables of one write transaction.
struct Writer<'t> {
    messages: Table<'t, u32, &'static [u8]>,
    ids: Table<'t, &'static str, u32>,
    message_ids: MultimapTable<'t, &'static str, u32>,
    directions: MultimapTable<'t, u8, u32>,
    dates: Table<'t, (i64, u32), ()>,
    addresses: MultimapTable<'t, &'static str, u32>,
    threads: MultimapTable<'t, &'static str, u32>,
    references: MultimapTable<'t, &'static str, u32>,
    junk: Table<'t, u32, ()>,
    copies: Table<'t, (u32, u32), &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    counters: Table<'t, &'static str, u64>,
    months: Table<'t, u32, u64>,
    log: log::LogWriter<'t>,
    tlog: tlog::TlogWriter<'t>,
    engagement: engagement::EngagementWriter<'t>,
    tally: Tally,
}

/// What a batch adds to the archive's sums: kept in memory while its messages are inserted
/// and written once when it commits. Every write to a table rewrites a page, so once per
/// batch rather than half a dozen times per message.
#[derive(Default)]
struct Tally {
    /// The next UID, once read.
    next_uid: Option<u32>,
    meta: std::collections::BTreeMap<&'static str, u64>,
    counters: std::collections::BTreeMap<&'static str, u64>,
    months: std::collections::BTreeMap<u32, u64>,
}

impl Tally {
    fn count(&mut self, counter: Counter) {
        *self.counters.entry(counter.key()).or_default() += 1;
    }
}

impl<'t> Writer<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        Ok(Self {
            messages: txn.open_table(MESSAGES).db()?,
            ids: txn.open_table(IDS).db()?,
            message_ids: txn.open_multimap_table(MESSAGE_IDS).db()?,
            directions: txn.open_multimap_table(DIRECTIONS).db()?,
            dates: txn.open_table(DATES).db()?,
            addresses: txn.open_multimap_table(ADDRESSES).db()?,
            threads: txn.open_multimap_table(THREADS).db()?,
            references: txn.open_multimap_table(REFERENCES).db()?,
            junk: txn.open_table(JUNK).db()?,
            copies: txn.open_table(COPIES).db()?,
            meta: txn.open_table(META).db()?,
            counters: txn.open_table(COUNTERS).db()?,
            months: txn.open_table(MONTHS).db()?,
            log: log::LogWriter::open(txn)?,
            tlog: tlog::TlogWriter::open(txn)?,
            engagement: engagement::EngagementWriter::open(txn)?,
            tally: Tally::default(),
        })
    }

    /// A new message's UID.
    fn next_uid(&mut self) -> Result<u32, Error> {
        let uid = match self.tally.next_uid {
            Some(uid) => uid,
            None => {
                let stored = get_u64(&self.meta, META_NEXT_UID)?.unwrap_or(1);
                u32::try_from(stored).map_err(|_| Error::UidsExhausted)?
            }
        };
        let next = uid.checked_add(1).ok_or(Error::UidsExhausted)?;
        self.tally.next_uid = Some(next);
        Ok(uid)
    }

    /// Writes the batch's sums; call once, after its last message.
    fn finish(&mut self) -> Result<(), Error> {
        self.engagement.finish()?;
        let tally = std::mem::take(&mut self.tally);
        if let Some(next) = tally.next_uid {
            self.meta.insert(META_NEXT_UID, u64::from(next)).db()?;
        }
        for (key, n) in tally.meta {
            bump(&mut self.meta, key, n)?;
        }
        for (key, n) in tally.counters {
            bump(&mut self.counters, key, n)?;
        }
        for (month, n) in tally.months {
            let was = self.months.get(month).db()?.map_or(0, |g| g.value());
            self.months.insert(month, was.saturating_add(n)).db()?;
        }
        self.tlog.finish(&mut self.meta)
    }

    /// The one place where a stored copy of a message becomes a leaf of the transparency
    /// log (`crate::tlog`), in the transaction that files it: called for a new message and
    /// for every copy merged into one. Returns the leaf's number.
    fn log_copy(
        &mut self,
        id: &StableId,
        blob: &BlobHash,
        arrived: i64,
        uid: u32,
    ) -> Result<u64, Error> {
        let leaf = crate::tlog::Leaf::Copy {
            uid,
            arrived,
            blob: blob.0,
            id: id.as_str().to_owned(),
        };
        self.tlog.append(&self.meta, uid, &leaf)
    }

    fn insert(
        &mut self,
        item: StagedMessage,
        storage: Storage,
        hooks: &dyn Hooks,
    ) -> Result<PutOutcome, Error> {
        let uid = self.next_uid()?;
        self.log_copy(&item.id, &item.blob, item.meta.received_at, uid)?;
        *self.tally.meta.entry(META_RAW_BYTES).or_default() += item.size;
        *self.tally.meta.entry(META_STORED_BYTES).or_default() += item.stored_size;

        let record = Record {
            v: record::RECORD_VERSION,
            uid,
            id: item.id.as_str().to_owned(),
            blob: item.blob.to_hex(),
            storage,
            compression: item.compression,
            size: item.size,
            stored_size: item.stored_size,
            copies: 1,
            meta: item.meta,
        };
        let m = &record.meta;
        self.messages
            .insert(uid, encode(&record)?.as_slice())
            .db()?;
        self.ids.insert(record.id.as_str(), uid).db()?;
        if let Some(mid) = &m.message_id {
            self.message_ids.insert(mid.as_str(), uid).db()?;
        }
        if m.junk.is_some() {
            self.junk.insert(uid, ()).db()?;
            self.tally.count(Counter::JunkQuarantined);
        } else {
            self.directions.insert(m.direction.code(), uid).db()?;
            if let Some(month) = folders::month_key(m.date) {
                *self.tally.months.entry(month).or_default() += 1;
            }
        }
        self.dates.insert((m.date, uid), ()).db()?;
        let parties = m
            .sender
            .iter()
            .map(String::as_str)
            .chain(m.from.iter().map(|f| f.address.as_str()))
            .chain(m.recipients.addresses());
        for address in parties {
            self.addresses.insert(address, uid).db()?;
        }
        if let Some(thread) = &m.thread {
            self.threads.insert(thread.as_str(), uid).db()?;
        }
        for r in m.in_reply_to.iter().chain(&m.references) {
            self.references.insert(r.as_str(), uid).db()?;
        }
        self.tally.count(Counter::Stored);
        if m.flags.iter().any(|f| f.is_malformed()) {
            self.tally.count(Counter::Malformed);
        }
        if m.flags.contains(&Flag::JournalReport) {
            self.tally.count(Counter::JournalReports);
        }
        if m.junk.is_none() {
            let pairs = hooks.pairs(m.sender.as_deref(), &m.recipients);
            if pairs.is_empty() {
                self.tally.count(Counter::Unmatched);
            } else {
                self.log.log(&mut self.meta, &record, &pairs)?;
            }
            // Engagement figures, in the same transaction (see `engagement`).
            self.engagement
                .file(&self.message_ids, &self.references, &record, &pairs)?;
        }
        Ok(PutOutcome::Stored { uid, id: item.id })
    }

    /// Merges a copy of an archived message into its record: the union of recipients (with
    /// their sources), one more copy, and the direction re-derived if recipients were added;
    /// and keeps the copy's bytes when they are new (`storage`: where the log put them).
    fn merge(
        &mut self,
        uid: u32,
        item: StagedMessage,
        storage: Option<Storage>,
        hooks: &dyn Hooks,
    ) -> Result<PutOutcome, Error> {
        let Some(bytes) = self.messages.get(uid).db()?.map(|g| g.value().to_vec()) else {
            return Err(Error::Corrupt {
                uid,
                reason: "id index points at a missing record".into(),
            });
        };
        let mut record = decode(uid, &bytes)?;
        self.log_copy(&item.id, &item.blob, item.meta.received_at, uid)?;
        let changed = record.meta.recipients.merge(&item.meta.recipients);
        record.copies = record.copies.saturating_add(1);
        if record.meta.sender.is_none() && item.meta.sender.is_some() {
            record.meta.sender = item.meta.sender.clone();
        }
        if changed {
            for address in item.meta.recipients.addresses() {
                self.addresses.insert(address, uid).db()?;
            }
            if let Some(sender) = &record.meta.sender {
                self.addresses.insert(sender.as_str(), uid).db()?;
            }
            let direction = hooks.classify(record.meta.sender.as_deref(), &record.meta.recipients);
            if direction != record.meta.direction {
                if !record.is_junk() {
                    self.directions
                        .remove(record.meta.direction.code(), uid)
                        .db()?;
                    self.directions.insert(direction.code(), uid).db()?;
                }
                record.meta.direction = direction;
            }
        }
        self.messages
            .insert(uid, encode(&record)?.as_slice())
            .db()?;
        if let Some(storage) = storage {
            self.file_copy(&record, &item, storage)?;
        }
        self.tally.count(Counter::Duplicates);
        Ok(PutOutcome::Duplicate {
            uid,
            id: item.id,
            changed,
        })
    }
}

impl Writer<'_> {
    /// Files a later copy of `record`'s message whose bytes the log holds at `storage`: the
    /// one place a copy is kept. A copy byte for byte the same as one kept already (two
    /// batches logged it before either was filed) adds nothing. Returns the copy's number.
    fn file_copy(
        &mut self,
        record: &Record,
        item: &StagedMessage,
        storage: Storage,
    ) -> Result<Option<u32>, Error> {
        let uid = record.uid;
        let blob = item.blob.to_hex();
        if record.blob == blob {
            return Ok(None);
        }
        let rows = copy_rows(&self.copies, uid)?;
        if rows.iter().any(|(_, row)| row.blob == blob) {
            return Ok(None);
        }
        let body = match item.body {
            None => None,
            Some((of, at)) => {
                let of = of.to_hex();
                let n = if record.blob == of {
                    Some(1)
                } else {
                    rows.iter().find(|(_, row)| row.blob == of).map(|(n, _)| *n)
                };
                let Some(n) = n else {
                    return Err(Error::Corrupt {
                        uid,
                        reason: format!("a copy shares the body of {of}, which is not kept"),
                    });
                };
                Some(copies::BodyRef { of: n, at })
            }
        };
        let n = rows
            .last()
            .map_or(Some(2), |(n, _)| n.checked_add(1))
            .ok_or(Error::Corrupt {
                uid,
                reason: "too many copies".into(),
            })?;
        let row = copies::CopyRow {
            blob,
            size: item.size,
            received_at: item.meta.received_at,
            storage,
            compression: item.compression,
            stored_size: item.stored_size,
            body,
        };
        let json = serde_json::to_vec(&row).map_err(|e| Error::Corrupt {
            uid,
            reason: e.to_string(),
        })?;
        self.copies.insert((uid, n), json.as_slice()).db()?;
        *self.tally.meta.entry(META_RAW_BYTES).or_default() += item.size;
        *self.tally.meta.entry(META_STORED_BYTES).or_default() += item.stored_size;
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_format(dir: &Path, format: u64) {
        let archive = Archive::open(dir).expect("open");
        let txn = archive.db.begin_write().expect("begin");
        txn.open_table(META)
            .expect("meta")
            .insert(META_FORMAT, format)
            .expect("insert");
        txn.commit().expect("commit");
    }

    fn format(dir: &Path) -> Option<u64> {
        let archive = Archive::open(dir).expect("open");
        let txn = archive.read().expect("read");
        get_u64(&txn.open_table(META).expect("meta"), META_FORMAT).expect("get")
    }

    #[test]
    fn an_older_format_is_upgraded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(format(dir.path()), Some(FORMAT));
        set_format(dir.path(), 1);
        assert_eq!(
            format(dir.path()),
            Some(FORMAT),
            "format 1 is upgraded on open"
        );
        // Format 2 (no copies kept): upgraded, and the log position from which copies are
        // kept is recorded, so that `verify` expects no copies of frames before it.
        set_format(dir.path(), 2);
        assert_eq!(format(dir.path()), Some(FORMAT), "format 2 is upgraded");
        {
            let archive = Archive::open(dir.path()).expect("open");
            let txn = archive.read().expect("read");
            let meta = txn.open_table(META).expect("meta");
            assert_eq!(get_u64(&meta, META_COPIES_PACK).expect("get"), Some(1));
            assert_eq!(get_u64(&meta, META_COPIES_LEN).expect("get"), Some(0));
            assert!(txn.open_table(COPIES).is_ok(), "the copies table is there");
        }
        set_format(dir.path(), FORMAT + 1);
        match Archive::open(dir.path()) {
            Err(Error::TooNew { found, .. }) => assert_eq!(found, FORMAT + 1),
            Err(e) => panic!("want TooNew, got {e}"),
            Ok(_) => panic!("a newer format must not open"),
        }
    }
}

/// A pipeline that classifies everything as external and logs nothing: what the archive's
/// unit tests commit with.
#[cfg(test)]
struct NoHooks;

#[cfg(test)]
impl Hooks for NoHooks {
    fn classify(&self, _: Option<&str>, _: &Recipients) -> Direction {
        Direction::External
    }
    fn pairs(&self, _: Option<&str>, _: &Recipients) -> Vec<(String, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    const ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";

    fn item(raw: &[u8]) -> NewMessage {
        let id: StableId = ID.parse().expect("id");
        NewMessage::prepare(
            raw,
            BlobHash::of(raw),
            id,
            Meta::arrived(1_795_219_200),
            Codec::Lz4,
        )
        .expect("prepare")
    }

    fn raws() -> [Vec<u8>; 4] {
        let first = b"From: a@b\r\nMessage-ID: <m@b>\r\n\r\nThe body, shared.\r\n".to_vec();
        let relayed = [b"Received: from hub\r\n".as_slice(), &first].concat();
        let again = [b"Received: from edge\r\n".as_slice(), &relayed].concat();
        // Bare LF line endings: the same message to the stable id, other body bytes.
        let lf = b"From: a@b\nMessage-ID: <m@b>\n\nThe body, shared.\n".to_vec();
        [first, relayed, again, lf]
    }

    /// Two batches staged before either is filed (as the pipelined committer does): the
    /// second cannot know the first's message, so its first copy is kept whole and its
    /// second copy as a header block against that one; a copy whose body bytes differ is
    /// kept whole. Every copy reads back byte-exact, and `verify` agrees.
    #[test]
    fn copies_of_batches_staged_before_either_is_filed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("open");
        let [first, relayed, again, lf] = raws();
        let a = archive.stage(vec![item(&first)]).expect("stage");
        let b = archive
            .stage(vec![
                item(&relayed),
                item(&again),
                item(&first),
                item(&lf),
                item(&again),
            ])
            .expect("stage");
        archive.commit_staged(a, &NoHooks, true).expect("commit");
        let outcomes = archive.commit_staged(b, &NoHooks, true).expect("commit");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, PutOutcome::Duplicate { uid: 1, .. }))
        );
        let copies = archive.copies(1).expect("copies");
        let kept: Vec<_> = copies.iter().map(|c| (c.n, c.kept)).collect();
        assert_eq!(
            kept,
            [
                (1, Kept::Whole),
                (2, Kept::Whole),
                (3, Kept::HeaderBlock),
                (4, Kept::Whole)
            ]
        );
        for (n, want) in [(1, &first), (2, &relayed), (3, &again), (4, &lf)] {
            let raw = archive.copy_raw(1, n).expect("read").expect("kept");
            assert_eq!(&raw, want, "copy {n}");
            assert_eq!(copies[n as usize - 1].blob, BlobHash::of(want).to_hex());
        }
        assert_eq!(archive.get(1).expect("get").expect("record").copies, 6);
        let report = archive.verify(false, |_, _| {}).expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.copies_checked, 3);
    }

    /// In one batch, a later copy is kept as its header block against the batch's first.
    #[test]
    fn a_copy_in_the_same_batch_shares_the_first_copys_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("open");
        let [first, relayed, again, _] = raws();
        archive
            .put_batch(vec![item(&first), item(&relayed), item(&relayed)], &NoHooks)
            .expect("put");
        archive
            .put_batch(vec![item(&again)], &NoHooks)
            .expect("put");
        let kept: Vec<_> = archive
            .copies(1)
            .expect("copies")
            .iter()
            .map(|c| (c.n, c.kept, c.size))
            .collect();
        assert_eq!(
            kept,
            [
                (1, Kept::Whole, first.len() as u64),
                (2, Kept::HeaderBlock, relayed.len() as u64),
                (3, Kept::HeaderBlock, again.len() as u64)
            ]
        );
        for (n, want) in [(1, &first), (2, &relayed), (3, &again)] {
            assert_eq!(&archive.copy_raw(1, n).expect("read").expect("kept"), want);
        }
        assert_eq!(archive.copy_raw(1, 4).expect("read"), None);
    }
}
