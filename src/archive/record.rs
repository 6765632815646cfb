//! What the archive keeps about each message. Records are versioned JSON so the format can
//! grow: new fields get serde defaults, and `v` says which writer made a record.

use serde::{Deserialize, Serialize};

use crate::classify::Direction;
use crate::ingest::recipients::Recipients;

/// The record format written by this version.
pub const RECORD_VERSION: u16 = 1;

/// Something worth knowing about how a message arrived or how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flag {
    /// The MIME parser could not make sense of it at all; archived byte for byte.
    Unparsed,
    /// It does not start with a header block.
    NoHeaderBlock,
    /// A multipart body with no boundary, a boundary that never occurs, no closing
    /// delimiter, or a part whose transfer encoding could not be decoded.
    BrokenMime,
    /// It contains NUL bytes.
    NulBytes,
    /// Its header block has 8-bit bytes that are not UTF-8.
    #[serde(rename = "raw-8bit-headers")]
    Raw8bitHeaders,
    /// It uses bare LF line endings rather than CRLF.
    BareLf,
    /// It has no Message-ID, so only identical bytes deduplicate.
    NoMessageId,
    /// It was unwrapped from an Exchange journal report.
    JournalReport,
    /// It says it is a journal report but could not be unwrapped; the report itself is kept.
    JournalUnwrapFailed,
    /// A spam filter flagged it; quarantined, never logged.
    Junk,
}

impl Flag {
    /// Whether the flag marks a message the parser could not fully understand.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Flag::Unparsed
                | Flag::NoHeaderBlock
                | Flag::BrokenMime
                | Flag::NulBytes
                | Flag::Raw8bitHeaders
                | Flag::JournalUnwrapFailed
        )
    }
}

/// A name and address (the address normalized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Everything ingest learned about a message: the part of a record that comes from content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// When the gateway received it (Unix seconds): IMAP's INTERNALDATE.
    pub received_at: i64,
    /// Its `Date:` (Unix seconds), or `received_at` when missing or unreadable.
    pub date: i64,
    pub direction: Direction,
    /// The `From:` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Party>,
    /// Who sent it for classification: the journal report's envelope sender, the `From:`
    /// address, or the SMTP envelope sender, in that order of preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub recipients: Recipients,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Without angle brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_reply_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// The Message-ID of the first message of its thread (the first of References, else
    /// In-Reply-To, else its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(default)]
    pub attachments: u32,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Why it is junk (e.g. `X-Spam-Flag`), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junk: Option<String>,
    /// Its size with every bare LF as CRLF, as IMAP serves it (see `crate::crlf`); only for
    /// messages with bare LFs. Records written before this field have none: for those with
    /// the `bare-lf` flag the size is counted from the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crlf_size: Option<u64>,
    /// Made by a machine rather than a person (auto-reply, bounce, bulk), as ingest judged
    /// from its headers; `None` for a person's message and for records written before this
    /// field (`engagement rebuild` judges those from their bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<crate::engagement::Auto>,
    /// For a bounce: the Message-ID (without brackets) of the message that could not be
    /// delivered, from the report's attached message or headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounced: Option<String>,
}

impl Meta {
    /// What is known of a message before its content is read: when it arrived.
    pub fn arrived(received_at: i64) -> Self {
        Self {
            received_at,
            date: received_at,
            direction: Direction::External,
            from: None,
            sender: None,
            recipients: Recipients::new(),
            subject: None,
            message_id: None,
            in_reply_to: Vec::new(),
            references: Vec::new(),
            thread: None,
            attachments: 0,
            flags: Vec::new(),
            junk: None,
            crlf_size: None,
            auto: None,
            bounced: None,
        }
    }
}

/// How the raw bytes are encoded in their pack or file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// One zstd frame (every record written before format 2).
    #[default]
    Zstd,
    /// One LZ4 block.
    Lz4,
    /// The raw bytes as they are: zstd would have saved too little to be worth decoding on
    /// every read (see `blobs::MIN_SAVING_PERCENT`).
    None,
}

/// Where the stored bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Storage {
    /// `stored_size` bytes at `offset` in `packs/pack-<pack>.dat`.
    Pack { pack: u32, offset: u64 },
    /// Its own file, `objects/<2 hex>/<62 hex>`.
    File,
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format version of this record.
    pub v: u16,
    /// Global ingest sequence number: the message's IMAP UID in every folder.
    pub uid: u32,
    /// Stable id (permalink).
    pub id: String,
    /// BLAKE3 (hex) of the raw bytes.
    pub blob: String,
    pub storage: Storage,
    /// How the stored bytes are encoded.
    #[serde(default)]
    pub compression: Compression,
    /// Raw size in bytes.
    pub size: u64,
    /// Stored (compressed, or not) size in bytes.
    pub stored_size: u64,
    /// How many copies of it arrived (duplicates merged into this record), byte-identical
    /// ones included; the distinct ones are kept (see `copies`).
    #[serde(default = "one")]
    pub copies: u32,
    #[serde(flatten)]
    pub meta: Meta,
}

fn one() -> u32 {
    1
}

/// Where a message's bytes are, and what FETCH needs besides them: the part of a record that
/// serving a message reads. Decoded from the same stored record, skipping everything else,
/// so sending a message never costs decoding its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Location {
    pub uid: u32,
    /// BLAKE3 (hex) of the raw bytes.
    pub blob: String,
    pub storage: Storage,
    /// How the stored bytes are encoded.
    #[serde(default)]
    pub compression: Compression,
    /// Raw size in bytes.
    pub size: u64,
    /// Stored (compressed, or not) size in bytes.
    pub stored_size: u64,
    /// When the gateway received it (Unix seconds): IMAP's INTERNALDATE.
    pub received_at: i64,
    /// See [`Meta::crlf_size`].
    #[serde(default)]
    pub crlf_size: Option<u64>,
    /// Only whether it has bare LFs matters here.
    #[serde(default)]
    pub flags: Vec<Flag>,
}

impl Location {
    /// The size IMAP serves (bare LFs as CRLF); `None` when only the bytes can tell (a
    /// bare-LF message recorded before sizes were kept).
    pub fn served_size(&self) -> Option<u64> {
        match self.crlf_size {
            Some(n) => Some(n),
            None if self.flags.contains(&Flag::BareLf) => None,
            None => Some(self.size),
        }
    }
}

impl Record {
    /// The size IMAP serves (see [`Location::served_size`]); the archived size when only
    /// the bytes could tell.
    pub fn served_size(&self) -> u64 {
        self.meta.crlf_size.unwrap_or(self.size)
    }

    pub fn location(&self) -> Location {
        Location {
            uid: self.uid,
            blob: self.blob.clone(),
            storage: self.storage,
            compression: self.compression,
            size: self.size,
            stored_size: self.stored_size,
            received_at: self.meta.received_at,
            crlf_size: self.meta.crlf_size,
            flags: self.meta.flags.clone(),
        }
    }
}

impl Record {
    pub fn has_flag(&self, flag: Flag) -> bool {
        self.meta.flags.contains(&flag)
    }

    pub fn is_junk(&self) -> bool {
        self.meta.junk.is_some()
    }
}

/// The public JSON view of a record (`list --json`, and the HTTP API later).
#[derive(Debug, Serialize)]
pub struct View<'a> {
    pub id: &'a str,
    pub uid: u32,
    /// RFC 3339, UTC.
    pub date: String,
    pub direction: Direction,
    pub from: Option<&'a Party>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<&'a str>,
    pub recipients: &'a Recipients,
    pub subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<&'a str>,
    pub size: u64,
    pub attachments: u32,
    pub flags: &'a [Flag],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub junk: Option<&'a str>,
    pub copies: Copies<'a>,
}

/// A message's copies, as `list --json` shows them.
#[derive(Debug, Serialize)]
pub struct Copies<'a> {
    /// How many distinct copies are kept (each retrievable byte for byte).
    pub count: usize,
    /// How many copies arrived, byte-identical resends included.
    pub received: u32,
    /// Each kept copy, by number.
    pub list: &'a [super::CopyInfo],
}

impl Record {
    /// The public view, with the copies [`super::Archive::copies`] gives.
    pub fn view<'a>(&'a self, copies: &'a [super::CopyInfo]) -> View<'a> {
        let m = &self.meta;
        View {
            id: &self.id,
            uid: self.uid,
            date: crate::clock::rfc3339(m.date),
            direction: m.direction,
            from: m.from.as_ref(),
            sender: m
                .sender
                .as_deref()
                .filter(|s| m.from.as_ref().is_none_or(|f| f.address != *s)),
            recipients: &m.recipients,
            subject: m.subject.as_deref(),
            message_id: m.message_id.as_deref(),
            thread: m
                .thread
                .as_deref()
                .filter(|t| m.message_id.as_deref() != Some(*t)),
            size: self.size,
            attachments: m.attachments,
            flags: &m.flags,
            junk: m.junk.as_deref(),
            copies: Copies {
                count: copies.len(),
                received: self.copies,
                list: copies,
            },
        }
    }
}
