//! The one ingest pipeline every message goes through, whichever way it arrived (SMTP,
//! IMAP pull, files): parse, unwrap a journal report, collect recipients, classify, judge
//! junk, derive the stable id, and hand the result to the archive.
//!
//! [`analyze`] is pure (no I/O); [`Ingestor`] adds the archive.

pub mod bulk;
pub mod journal;
pub mod junk;
pub mod recipients;

use std::sync::Arc;

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use crate::address::{self, OrgDomains};
use crate::archive::{
    self, Archive, Committer, Counter, Flag, Meta, NewMessage, Party, PutOutcome, StableId,
};
use crate::classify::{self, Direction};
use crate::config::{JunkAction, JunkSettings, Settings};
use recipients::{RecipientSource, Recipients};

/// Why a message was refused. Nothing is refused for being malformed: only for being no
/// message at all, or too large to accept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the message is empty")]
    Empty,
    #[error("the message is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("storing the message failed: {0}")]
    Archive(#[from] Arc<archive::Error>),
}

impl Error {
    /// Whether the same message may succeed later (SMTP 4xx rather than 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Empty | Error::TooLarge { .. } => false,
            Error::Archive(e) => e.is_transient(),
        }
    }

    /// Whether the archive's file system is full (SMTP 452 4.3.1).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Archive(e) if e.is_disk_full())
    }
}

impl From<archive::Error> for Error {
    fn from(e: archive::Error) -> Self {
        Error::Archive(Arc::new(e))
    }
}

/// What the transport knows about a message besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// The SMTP `MAIL FROM` (or the mbox `From ` line's sender), if any.
    pub mail_from: Option<String>,
    /// When it arrived (Unix seconds).
    pub received_at: i64,
}

/// The rules the pipeline applies, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub org: OrgDomains,
    pub junk: JunkSettings,
    pub max_message_size: u64,
    /// Addresses that are never recipients of record: the journal mailbox itself, which MTAs
    /// name in `Delivered-To:`/`X-Original-To:` when they hand it the copy.
    pub ignore_recipients: Vec<String>,
    /// How new messages are compressed.
    pub codec: archive::Codec,
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            org: settings.org.clone(),
            junk: settings.junk.clone(),
            max_message_size: settings.ingest.max_message_size,
            ignore_recipients: settings.smtp.journal_addresses.clone(),
            codec: settings.compression,
        }
    }

    pub fn classify(&self, sender: Option<&str>, recipients: &Recipients) -> Direction {
        classify::classify(&self.org, sender, recipients.addresses())
    }
}

/// The result of [`analyze`].
#[derive(Debug)]
pub enum Analyzed {
    /// Store this (junk to quarantine included: its meta says so).
    Store(Box<NewMessage>),
    /// Junk under `action = "drop"`: count it, keep nothing.
    DropJunk { reason: String },
}

/// Runs the pure part of the pipeline on one message.
pub fn analyze(raw: &[u8], envelope: &Envelope, policy: &Policy) -> Result<Analyzed, Error> {
    if raw.is_empty() {
        return Err(Error::Empty);
    }
    let size = raw.len() as u64;
    if size > policy.max_message_size {
        return Err(Error::TooLarge {
            size,
            max: policy.max_message_size,
        });
    }
    let parser = MessageParser::default();
    let outer = parser.parse(raw);
    let mut flags = Vec::new();
    let mut recipients = Recipients::new();
    let mut journal_sender = None;
    let mut junk = None;

    // An Exchange journal report: archive the original it carries, with its envelope.
    let mut original: Option<std::borrow::Cow<'_, [u8]>> = None;
    if let Some(outer) = &outer {
        junk = junk::verdict(outer, &policy.junk.rules);
        match journal::unwrap(raw, outer) {
            Ok(None) => {}
            Ok(Some(report)) => {
                flags.push(Flag::JournalReport);
                recipients.merge(&report.recipients);
                journal_sender = report.sender;
                original = Some(report.original);
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal report kept as it is");
                flags.push(Flag::JournalUnwrapFailed);
            }
        }
    }
    let bytes: &[u8] = original.as_deref().unwrap_or(raw);
    let reparsed = match original {
        Some(_) => parser.parse(bytes),
        None => None,
    };
    let message = if original.is_some() {
        reparsed.as_ref()
    } else {
        outer.as_ref()
    };

    flags.extend(byte_flags(bytes));
    let mut meta = Meta::arrived(envelope.received_at);
    meta.crlf_size = crate::crlf::converted_size(bytes);
    let mut body_offset = None;
    let mut header_fields: Vec<(String, &[u8])> = Vec::new();
    match message {
        None => flags.push(Flag::Unparsed),
        Some(m) => {
            if junk.is_none() {
                junk = junk::verdict(m, &policy.junk.rules);
            }
            if m.parts.first().is_none_or(|p| p.headers.is_empty()) {
                flags.push(Flag::NoHeaderBlock);
            }
            if has_broken_mime(m, bytes) {
                flags.push(Flag::BrokenMime);
            }
            header_recipients(m, &mut recipients);
            meta.from = m.from().and_then(|a| a.first()).and_then(|a| {
                Some(Party {
                    address: address::normalize(a.address()?)?,
                    name: a.name().map(str::to_owned).filter(|n| !n.trim().is_empty()),
                })
            });
            meta.subject = if flags.contains(&Flag::Raw8bitHeaders) {
                raw_header_text(m, bytes, "Subject")
            } else {
                m.subject().map(str::to_owned)
            };
            meta.message_id = m.message_id().map(clean_id).filter(|s| !s.is_empty());
            meta.in_reply_to = id_list(m.in_reply_to());
            meta.references = id_list(m.references());
            meta.thread = meta
                .references
                .first()
                .or(meta.in_reply_to.first())
                .or(meta.message_id.as_ref())
                .cloned();
            if let Some(date) = m.date().filter(|d| d.is_valid()) {
                meta.date = date.to_timestamp();
            }
            meta.attachments = u32::try_from(m.attachment_count()).unwrap_or(u32::MAX);
            body_offset = m.parts.first().map(|p| p.offset_body as usize);
            header_fields = m.parts.first().map_or_else(Vec::new, |p| {
                p.headers
                    .iter()
                    .filter_map(|h| {
                        let value = bytes.get(h.offset_start as usize..h.offset_end as usize)?;
                        Some((h.name.as_str().to_owned(), value))
                    })
                    .collect()
            });
        }
    }
    for ignored in &policy.ignore_recipients {
        recipients.remove(ignored);
    }
    meta.sender = journal_sender
        .or_else(|| meta.from.as_ref().map(|f| f.address.clone()))
        .or_else(|| envelope.mail_from.as_deref().and_then(address::normalize));
    meta.direction = policy.classify(meta.sender.as_deref(), &recipients);
    meta.recipients = recipients;
    if let Some(m) = message {
        meta.auto = auto_of(m, &meta, envelope.mail_from.as_deref());
        if meta.auto == Some(crate::engagement::Auto::Bounce) {
            meta.bounced = bounced_id(m);
        }
    }
    if meta.message_id.is_none() {
        flags.push(Flag::NoMessageId);
    }

    if let Some(verdict) = junk {
        if policy.junk.action == JunkAction::Drop {
            return Ok(Analyzed::DropJunk {
                reason: describe(&verdict),
            });
        }
        flags.push(Flag::Junk);
        meta.junk = Some(describe(&verdict));
    }
    flags.sort_unstable();
    flags.dedup();
    meta.flags = flags;

    // The parse trees hold decoded copies of every part: free them before compressing.
    drop(reparsed);
    drop(outer);
    let blob = archive::BlobHash::of(bytes);
    let id = match (&meta.message_id, body_offset) {
        (Some(mid), Some(offset)) if offset <= bytes.len() => StableId::from_message(
            mid,
            header_fields.iter().map(|(n, v)| (n.as_str(), *v)),
            &bytes[offset..],
        ),
        _ => StableId::from_content(&blob),
    };
    Ok(Analyzed::Store(Box::new(NewMessage::prepare(
        bytes,
        blob,
        id,
        meta,
        policy.codec,
    )?)))
}

/// Whether a person wrote the parsed message `m` (see [`crate::engagement::auto`]), from
/// its headers, its `From:` and sender (in `meta`) and the envelope sender.
fn auto_of(
    m: &Message<'_>,
    meta: &Meta,
    mail_from: Option<&str>,
) -> Option<crate::engagement::Auto> {
    let report_type = m.content_type().and_then(|ct| {
        let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"));
        is_report.then(|| ct.attribute("report-type").unwrap_or(""))
    });
    let mail_from = mail_from.and_then(address::normalize);
    let senders = meta
        .from
        .iter()
        .map(|f| f.address.as_str())
        .chain(meta.sender.as_deref())
        .chain(mail_from.as_deref())
        .collect();
    crate::engagement::detect(&crate::engagement::Signals {
        headers: m.headers_raw().collect(),
        report_type,
        senders,
        subject: meta.subject.as_deref(),
    })
}

/// The Message-ID of the message a bounce reports on: that of the attached message
/// (`message/rfc822`) or headers (`text/rfc822-headers`).
fn bounced_id(m: &Message<'_>) -> Option<String> {
    for part in m.parts.iter().skip(1) {
        let id = match &part.body {
            PartType::Message(inner) => inner.message_id().map(clean_id),
            PartType::Text(_) | PartType::Binary(_) | PartType::InlineBinary(_) => {
                let headers = part.content_type().is_some_and(|ct| {
                    ct.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
                });
                if !headers {
                    continue;
                }
                MessageParser::default()
                    .parse_headers(part.contents())
                    .and_then(|h| h.message_id().map(clean_id))
            }
            _ => None,
        };
        if let Some(id) = id.filter(|i| !i.is_empty()) {
            return Some(id);
        }
    }
    None
}

/// Judges an archived message's bytes as ingest does (for records written before ingest
/// kept the judgement): auto-reply, bounce, bulk, or a person's; and for a bounce, the
/// Message-ID it reports on.
pub fn auto_of_raw(raw: &[u8], meta: &Meta) -> (Option<crate::engagement::Auto>, Option<String>) {
    let Some(message) = MessageParser::default().parse(raw) else {
        return (None, None);
    };
    let auto = auto_of(&message, meta, None);
    let bounced = match auto {
        Some(crate::engagement::Auto::Bounce) => bounced_id(&message),
        _ => None,
    };
    (auto, bounced)
}

fn describe(verdict: &junk::JunkVerdict) -> String {
    match verdict {
        junk::JunkVerdict::SpamFlag => "X-Spam-Flag: YES".to_owned(),
        junk::JunkVerdict::SpamStatus => "X-Spam-Status: Yes".to_owned(),
        junk::JunkVerdict::Scl(n) => format!("SCL {n}"),
    }
}

/// Message-IDs as mail-parser gives them, without brackets or white space.
fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<String> = match value {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    };
    ids.into_iter().filter(|s| !s.is_empty()).collect()
}

fn header_recipients(m: &Message<'_>, out: &mut Recipients) {
    let lists = [
        (m.to(), RecipientSource::HeaderTo),
        (m.cc(), RecipientSource::HeaderCc),
        (m.bcc(), RecipientSource::HeaderBcc),
    ];
    for (list, source) in lists {
        for a in list.into_iter().flat_map(|l| l.iter()) {
            if let Some(addr) = a.address() {
                out.add(addr, a.name(), source);
            }
        }
    }
    for (name, value) in m.headers_raw() {
        let source = if name.eq_ignore_ascii_case("X-Original-To") {
            RecipientSource::XOriginalTo
        } else if name.eq_ignore_ascii_case("X-Envelope-To") {
            RecipientSource::XEnvelopeTo
        } else if name.eq_ignore_ascii_case("Delivered-To") {
            RecipientSource::DeliveredTo
        } else {
            continue;
        };
        for item in value.split(',') {
            let item = item.trim();
            // `Name <a@b>` or a bare address.
            let addr = match (item.rfind('<'), item.rfind('>')) {
                (Some(start), Some(end)) if start < end => &item[start + 1..end],
                _ => item,
            };
            out.add(addr, None, source);
        }
    }
}

/// Flags that depend only on the bytes.
fn byte_flags(bytes: &[u8]) -> Vec<Flag> {
    let mut flags = Vec::new();
    if !starts_with_header(bytes) {
        flags.push(Flag::NoHeaderBlock);
    }
    if memchr::memchr(0, bytes).is_some() {
        flags.push(Flag::NulBytes);
    }
    if memchr::memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r') {
        flags.push(Flag::BareLf);
    }
    let header_end = memchr::memmem::find(bytes, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(bytes, b"\n\n"))
        .unwrap_or(bytes.len());
    let header = &bytes[..header_end];
    if !header.is_ascii() && std::str::from_utf8(header).is_err() {
        flags.push(Flag::Raw8bitHeaders);
    }
    flags
}

/// A header's text from its raw bytes, for headers with raw 8-bit bytes: UTF-8 where it is,
/// else Latin-1 (what such headers almost always are), unfolded, with RFC 2047 words left
/// as they are. Better than the replacement characters a strict decoder gives.
fn raw_header_text(m: &Message<'_>, bytes: &[u8], name: &str) -> Option<String> {
    let header = m
        .parts
        .first()?
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let start = (header.offset_start as usize).min(bytes.len());
    let end = (header.offset_end as usize).clamp(start, bytes.len());
    let raw = &bytes[start..end];
    let text = match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => raw.iter().map(|&b| char::from(b)).collect(),
    };
    let unfolded: Vec<&str> = text.split_whitespace().collect();
    Some(unfolded.join(" "))
}

/// Whether the first line is a header field (`Name: value`) or a Unix `From ` line.
fn starts_with_header(bytes: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    match memchr::memchr(b':', line) {
        Some(colon) => colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b)),
        None => false,
    }
}

/// A multipart without a boundary, whose boundary never occurs or is never closed, or a part
/// whose transfer encoding could not be decoded.
fn has_broken_mime(m: &Message<'_>, bytes: &[u8]) -> bool {
    m.parts.iter().any(|part| {
        // (mail-parser also sets this on a header-less root: that is no-header-block.)
        if part.is_encoding_problem && !part.headers.is_empty() {
            return true;
        }
        let Some(ct) = part.content_type() else {
            return false;
        };
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            return false;
        }
        let Some(boundary) = ct.attribute("boundary").filter(|b| !b.is_empty()) else {
            return true;
        };
        let start = (part.offset_body as usize).min(bytes.len());
        let end = (part.offset_end as usize).clamp(start, bytes.len());
        let body = &bytes[start..end];
        let open = format!("--{boundary}");
        let close = format!("--{boundary}--");
        memchr::memmem::find(body, open.as_bytes()).is_none()
            || memchr::memmem::find(body, close.as_bytes()).is_none()
            || !matches!(part.body, PartType::Multipart(ref ids) if !ids.is_empty())
    })
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new record; `malformed` when it carries a malformed flag (see [`Flag::is_malformed`]).
    Stored {
        uid: u32,
        id: StableId,
        malformed: bool,
    },
    Duplicate {
        uid: u32,
        id: StableId,
    },
    /// Stored in quarantine.
    Junk {
        uid: u32,
        id: StableId,
    },
    /// Junk, counted and discarded.
    JunkDropped,
}

/// The pipeline with its archive: analysis on the caller's thread, storage through the
/// group-commit thread.
#[derive(Clone)]
pub struct Ingestor {
    policy: Arc<Policy>,
    committer: Committer,
    matcher: Matcher,
}

/// Finds the (salesperson code, contact number) pairs of a message.
pub type PairFn = dyn Fn(Option<&str>, &Recipients) -> Vec<(String, String)> + Send + Sync;

/// The interaction-log matcher of a running pipeline, replaceable while it runs (a directory
/// import swaps in a new one; the next commit uses it).
#[derive(Clone)]
pub struct Matcher(Arc<std::sync::RwLock<Arc<PairFn>>>);

impl Default for Matcher {
    fn default() -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(|_, _| {
            Vec::new()
        }))))
    }
}

impl Matcher {
    pub fn set(&self, pairs: Arc<PairFn>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = pairs;
    }

    pub fn get(&self) -> Arc<PairFn> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What the commit path asks of the pipeline.
struct CommitHooks {
    policy: Arc<Policy>,
    matcher: Matcher,
}

impl archive::Hooks for CommitHooks {
    fn classify(&self, sender: Option<&str>, recipients: &Recipients) -> Direction {
        self.policy.classify(sender, recipients)
    }

    fn pairs(&self, sender: Option<&str>, recipients: &Recipients) -> Vec<(String, String)> {
        (self.matcher.get())(sender, recipients)
    }
}

impl Ingestor {
    pub fn start(
        archive: Arc<Archive>,
        policy: Policy,
    ) -> Result<(Self, std::thread::JoinHandle<()>), Error> {
        Self::start_with(archive, policy, Matcher::default())
    }

    /// Starts the pipeline with an interaction-log matcher.
    pub fn start_with(
        archive: Arc<Archive>,
        policy: Policy,
        matcher: Matcher,
    ) -> Result<(Self, std::thread::JoinHandle<()>), Error> {
        let policy = Arc::new(policy);
        let hooks = CommitHooks {
            policy: Arc::clone(&policy),
            matcher: matcher.clone(),
        };
        let (committer, handle) = Committer::start(archive, Box::new(hooks))?;
        Ok((
            Self {
                policy,
                committer,
                matcher,
            },
            handle,
        ))
    }

    /// The matcher the pipeline logs entries with.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn archive(&self) -> &Arc<Archive> {
        self.committer.archive()
    }

    /// Analyzes a message and queues it for the next group commit. The returned
    /// [`PendingIngest`] resolves once it is durable.
    pub fn submit(&self, raw: &[u8], envelope: &Envelope) -> Result<PendingIngest, Error> {
        match analyze(raw, envelope, &self.policy)? {
            Analyzed::DropJunk { reason } => {
                tracing::info!(%reason, "junk dropped");
                self.archive().add_counters(&[(Counter::JunkDropped, 1)])?;
                Ok(PendingIngest::Done(Outcome::JunkDropped))
            }
            Analyzed::Store(item) => {
                let junk = item.meta.junk.is_some();
                let malformed = item.meta.flags.iter().any(|f| f.is_malformed());
                Ok(PendingIngest::Queued {
                    junk,
                    malformed,
                    pending: self.committer.submit(*item)?,
                })
            }
        }
    }

    /// Announces a message whose data is being received, so that concurrent messages can
    /// share a commit; drop the guard once it is submitted or abandoned.
    pub fn arriving(&self) -> archive::Arrival {
        self.committer.arriving()
    }

    /// Ingests one message and waits until it is durable (for callers off an async runtime).
    pub fn ingest_blocking(&self, raw: &[u8], envelope: &Envelope) -> Result<Outcome, Error> {
        self.submit(raw, envelope)?.wait_blocking()
    }
}

/// A message on its way into the archive.
pub enum PendingIngest {
    Done(Outcome),
    Queued {
        junk: bool,
        malformed: bool,
        pending: archive::Pending,
    },
}

impl PendingIngest {
    fn finish(
        junk: bool,
        malformed: bool,
        result: Result<Result<PutOutcome, Arc<archive::Error>>, ()>,
    ) -> Result<Outcome, Error> {
        let outcome = result.map_err(|()| archive::Error::CommitterGone)??;
        Ok(match outcome {
            PutOutcome::Duplicate { uid, id, .. } => Outcome::Duplicate { uid, id },
            PutOutcome::Stored { uid, id } if junk => Outcome::Junk { uid, id },
            PutOutcome::Stored { uid, id } => Outcome::Stored { uid, id, malformed },
        })
    }

    /// Waits on a thread that is not running async tasks.
    pub fn wait_blocking(self) -> Result<Outcome, Error> {
        match self {
            PendingIngest::Done(o) => Ok(o),
            PendingIngest::Queued {
                junk,
                malformed,
                pending,
            } => Self::finish(junk, malformed, pending.blocking_recv().map_err(|_| ())),
        }
    }

    /// Waits from an async task.
    pub async fn wait(self) -> Result<Outcome, Error> {
        match self {
            PendingIngest::Done(o) => Ok(o),
            PendingIngest::Queued {
                junk,
                malformed,
                pending,
            } => Self::finish(junk, malformed, pending.await.map_err(|_| ())),
        }
    }
}
