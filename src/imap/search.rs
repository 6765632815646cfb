//! SEARCH: evaluating search keys against one message, and resolving sequence sets against
//! a folder's UID list. Pure functions; no I/O.
//!
//! # What the keys mean here
//!
//! The archive view is read-only, so some keys have a fixed answer:
//!
//! * Nothing is `\Answered`, `\Deleted`, `\Draft` or `\Recent`, and there are no keywords:
//!   ANSWERED, DELETED, DRAFT, RECENT, NEW and KEYWORD never match; UNANSWERED, UNDELETED,
//!   UNDRAFT, OLD and UNKEYWORD always do. SEEN and FLAGGED come from [`SearchSource`].
//! * BCC and SUBJECT read the record, not the bytes; FROM, TO and CC read the record first
//!   and the header when the record does not match. FROM is `meta.from`; TO is the
//!   recipients seen in a `To:` header or a journal report's `To:` line, CC likewise with
//!   `Cc:`, BCC with `Bcc:` (journal reports name Bcc recipients, so they are searchable).
//!   An address key matches the address, the display name, or `name <address>`; an
//!   internationalized domain matches in its IDNA ASCII form and in Unicode. The record
//!   keeps only the first `From:` mailbox and no group names, so FROM, TO and CC also match
//!   every mailbox of the message's `From:`, `To:` or `Cc:` header, and a group's name
//!   (`To: team: a@b, c@d;` is found by `TO team`), as Dovecot does.
//! * HEADER, BODY and TEXT read the message bytes (see [`needs_raw`]). HEADER looks at the
//!   top-level header fields (name compared case-insensitively) and matches a field's
//!   unfolded value either with RFC 2047 encoded words decoded or as written; an empty
//!   string matches every message having the field. BODY looks at every text part
//!   (`text/plain`, `text/html` as text, other `text/*`) after transfer and charset
//!   decoding, including those of attached messages, whose header fields count as body
//!   text too. TEXT is HEADER of any field (as `name: value`) or BODY. A message the MIME
//!   parser cannot read at all matches none of the three (so `NOT BODY x` matches it).
//! * SINCE, BEFORE and ON compare INTERNALDATE (`meta.received_at`) by calendar day in UTC
//!   (the server's time zone for RFC 3501's purposes). SENTSINCE, SENTBEFORE and SENTON
//!   compare the day of the `Date:` header as written, its time and zone disregarded (RFC
//!   3501 § 6.4.4): a message sent `Sun, 25 Mar 2007 00:30:00 +0100` was sent on 25 March.
//!   The record keeps the date as an instant only, so these read the header; a message
//!   without a readable `Date:` counts by its record's date (UTC).
//! * LARGER and SMALLER compare RFC822.SIZE (the size served, bare LFs counted as CRLF).
//! * Keys of IMAP extensions this server does not build in (WITHIN's OLDER/YOUNGER,
//!   CONDSTORE's MODSEQ; none is compiled into imap-types today) match nothing, so the
//!   capabilities must not be advertised.
//!
//! Strings match as substrings, case-insensitively by Unicode rules (lower case plus a few
//! full case folds: `ß` matches `ss`, `ς` matches `σ`; no normalization form is applied).
//! Needles are taken as UTF-8; the session answers `NO [BADCHARSET (UTF-8 US-ASCII)]` to
//! any other `CHARSET` before getting here.

use std::cell::OnceCell;

use imap_next::imap_types::core::AString;
use imap_next::imap_types::datetime::NaiveDate;
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};

use super::fetch;
use crate::archive::Record;
use crate::ingest::recipients::RecipientSource;

/// One message as SEARCH sees it.
pub struct SearchSource<'a> {
    /// Its sequence number in the selected folder (from 1).
    pub seq: u32,
    pub uid: u32,
    pub record: &'a Record,
    /// The exact original bytes; `None` when [`needs_raw`] said they are not needed.
    pub raw: Option<&'a [u8]>,
    pub seen: bool,
    pub flagged: bool,
}

/// The selected folder's dimensions, for `*` in sequence sets.
#[derive(Debug, Clone, Copy)]
pub struct Folder {
    /// Number of messages (the largest sequence number).
    pub exists: u32,
    /// The largest UID in the folder (0 when empty).
    pub max_uid: u32,
}

impl Folder {
    /// The dimensions of a folder holding `uids` (sorted ascending).
    pub fn of(uids: &[u32]) -> Self {
        Self {
            exists: u32::try_from(uids.len()).unwrap_or(u32::MAX),
            max_uid: uids.last().copied().unwrap_or(0),
        }
    }
}

/// Whether evaluating `key` needs the message bytes: true iff it contains BODY, TEXT or
/// HEADER anywhere. For a command's list of criteria, ask of any of them.
pub fn needs_raw(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) | SearchKey::Header(..) => true,
        // The record answers most of these; the header is read when it does not.
        SearchKey::From(_) | SearchKey::To(_) | SearchKey::Cc(_) => true,
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_raw),
        SearchKey::Or(a, b) => needs_raw(a) || needs_raw(b),
        SearchKey::Not(key) => needs_raw(key),
        _ => false,
    }
}

/// Whether the message matches `key`. When the key needs the bytes and `src.raw` is `None`,
/// the message does not match.
pub fn matches(key: &SearchKey<'_>, src: &SearchSource<'_>, folder: Folder) -> bool {
    Eval::new(src, folder).eval(key) == Some(true)
}

/// Whether the message matches every one of `keys` (a SEARCH command's criteria, which are
/// ANDed). Like [`matches`] on an AND of them, but the message bytes are parsed at most once.
pub fn matches_all(keys: &[SearchKey<'_>], src: &SearchSource<'_>, folder: Folder) -> bool {
    Eval::new(src, folder).all(keys) == Some(true)
}

/// Decides `keys` (ANDed, as [`matches_all`]) without the message bytes when the answer
/// does not depend on them: `Some(answer)`, or `None` when the bytes must be loaded and
/// [`matches_all`] asked. `src.raw` is ignored. Lets the session skip loading the bytes of
/// messages that cheap keys already rule out (`SINCE 1-Jan-2025 BODY invoice`).
pub fn decide_without_raw(
    keys: &[SearchKey<'_>],
    src: &SearchSource<'_>,
    folder: Folder,
) -> Option<bool> {
    let src = SearchSource { raw: None, ..*src };
    Eval::new(&src, folder).all(keys)
}

/// The positions (0-based indexes into `uids`) that `set` names, in ascending order, each
/// once. `uids` is the folder's sorted UID list; with `by_uid` the set holds UIDs, else
/// sequence numbers. Costs O(ranges × log n + matches), never O(range width): `1:4294967295`
/// is as cheap as `1:*`.
///
/// `*` is the largest number in use, so `n:*` names the last message even when `n` is
/// beyond it (`UID 100:*` with UIDs up to 50 names UID 50); in an empty folder nothing
/// matches. Ranges may be written backwards (`5:2` is `2:5`).
pub fn resolve(set: &SequenceSet, uids: &[u32], by_uid: bool) -> Vec<usize> {
    let Some(&last_uid) = uids.last() else {
        return Vec::new();
    };
    let len = uids.len();
    let star = if by_uid {
        last_uid
    } else {
        u32::try_from(len).unwrap_or(u32::MAX)
    };
    // Each sequence becomes a half-open span of indexes.
    let mut spans: Vec<(usize, usize)> = set
        .0
        .as_ref()
        .iter()
        .filter_map(|sequence| {
            let (low, high) = bounds(sequence, star);
            let span = if by_uid {
                (
                    uids.partition_point(|&uid| uid < low),
                    uids.partition_point(|&uid| uid <= high),
                )
            } else {
                // Sequence number n is index n - 1; `low` is at least 1 here.
                (index(low).saturating_sub(1), index(high).min(len))
            };
            (span.0 < span.1).then_some(span)
        })
        .collect();
    spans.sort_unstable();
    let mut out = Vec::new();
    let mut next = 0; // the first index not yet emitted
    for (start, end) in spans {
        let start = start.max(next);
        if start < end {
            out.extend(start..end);
            next = end;
        }
    }
    out
}

/// A `u32` as an index (lossless on every platform this builds for).
fn index(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The inclusive bounds of `sequence`, with `*` standing for `star`.
fn bounds(sequence: &Sequence, star: u32) -> (u32, u32) {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    match sequence {
        Sequence::Single(v) => (value(v), value(v)),
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b), a.max(b))
        }
    }
}

/// Whether `set` names `n`, with `*` standing for `star` (as [`resolve`] does).
fn names(set: &SequenceSet, n: u32, star: u32) -> bool {
    set.0.as_ref().iter().any(|sequence| {
        let (low, high) = bounds(sequence, star);
        low <= n && n <= high
    })
}

/// Folds `text` for case-insensitive comparison: Unicode lower case, character by
/// character (so `Σ` is always `σ`), plus the full case folds that lower-casing misses
/// (`ß`/`ẞ` is `ss`, final `ς` is `σ`, `ſ` is `s`, `İ` is `i`). No normalization form is
/// applied: a precomposed `é` does not match `e` with a combining accent.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            _ if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            'ß' | 'ẞ' => out.push_str("ss"),
            'ς' => out.push('σ'),
            'ſ' => out.push('s'),
            'İ' => out.push('i'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// A search string, folded.
fn needle(s: &AString<'_>) -> String {
    fold(&String::from_utf8_lossy(s.as_ref()))
}

const DAY: i64 = 86_400;

/// The UTC day number (days since 1970-01-01) of Unix seconds.
fn day_of(secs: i64) -> i64 {
    secs.div_euclid(DAY)
}

/// The day number of a SEARCH date.
fn day_number(date: &NaiveDate) -> Option<i64> {
    let midnight = date.as_ref().and_hms_opt(0, 0, 0)?;
    Some(day_of(midnight.and_utc().timestamp()))
}

/// How `secs` compares with `date`, by day.
fn compare_day(secs: i64, date: &NaiveDate) -> Option<std::cmp::Ordering> {
    day_number(date).map(|day| day_of(secs).cmp(&day))
}

/// Whether a party (normalized address and display name) contains `needle` (folded).
fn party_matches(address: &str, name: Option<&str>, needle: &str) -> bool {
    let address = fold(address);
    if address.contains(needle) {
        return true;
    }
    let unicode = unicode_address(&address);
    if unicode.as_deref().is_some_and(|a| a.contains(needle)) {
        return true;
    }
    let Some(name) = name else {
        return false;
    };
    let name = fold(name);
    name.contains(needle)
        || format!("{name} <{}>", unicode.as_deref().unwrap_or(&address)).contains(needle)
        || format!("{name} <{address}>").contains(needle)
}

/// The address with an IDNA ASCII domain in Unicode, when it has one.
fn unicode_address(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    if !domain.contains("xn--") {
        return None;
    }
    let (unicode, result) = idna::domain_to_unicode(domain);
    result.ok()?;
    Some(format!("{local}@{}", fold(&unicode)))
}

/// One top-level header field, folded.
struct Field {
    /// The field name, lower case.
    name: String,
    /// The value unfolded, with encoded words decoded.
    decoded: String,
    /// The value unfolded, as written.
    written: String,
}

impl Field {
    fn contains(&self, needle: &str) -> bool {
        self.decoded.contains(needle) || self.written.contains(needle)
    }

    /// As TEXT sees it: `name: value`.
    fn line_contains(&self, needle: &str) -> bool {
        self.contains(needle)
            || format!("{}: {}", self.name, self.decoded).contains(needle)
            || format!("{}: {}", self.name, self.written).contains(needle)
    }
}

/// Only the MIME header fields are parsed into structures (enough to decode bodies); every
/// field is decoded from its bytes by [`fields`].
fn parser() -> MessageParser {
    MessageParser::new().with_mime_headers()
}

/// The top-level header fields of a parsed message.
fn fields(message: &Message<'_>) -> Vec<Field> {
    let Some(root) = message.parts.first() else {
        return Vec::new();
    };
    let raw: &[u8] = message.raw_message.as_ref();
    root.headers
        .iter()
        .map(|header| {
            let start = usize::try_from(header.offset_start).unwrap_or(usize::MAX);
            let end = usize::try_from(header.offset_end).unwrap_or(usize::MAX);
            let bytes = raw.get(start..end).unwrap_or_default();
            let (decoded, written) = field_value(bytes);
            Field {
                name: header.name.as_str().to_ascii_lowercase(),
                decoded: fold(&decoded),
                written: fold(&written),
            }
        })
        .collect()
}

/// A field value's bytes (after the colon, to the end of its last line) unfolded: with
/// encoded words decoded, and as written.
fn field_value(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes);
    let written = text
        .chars()
        .filter(|&c| c != '\r' && c != '\n')
        .collect::<String>()
        .trim()
        .to_owned();
    // The unstructured parser ends a value at a line end; without one it drops the value.
    let mut line = bytes.to_vec();
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    let decoded = match MessageStream::new(&line).parse_unstructured() {
        HeaderValue::Text(text) => text.trim().to_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        HeaderValue::Empty => String::new(),
        _ => written.clone(),
    };
    (decoded, written)
}

/// The day number of the first `Date:` field of the message `raw` as written, in the time
/// zone it names (`Thu, 15 Feb 2007 01:02:03 +0200` is 15 February).
fn written_day(raw: &[u8]) -> Option<i64> {
    let message = parser().parse_headers(raw)?;
    let root = message.parts.first()?;
    let header = root
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("date"))?;
    let start = usize::try_from(header.offset_start).ok()?;
    let end = usize::try_from(header.offset_end).ok()?;
    let mut line = message.raw_message.as_ref().get(start..end)?.to_vec();
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    match MessageStream::new(&line).parse_date() {
        HeaderValue::DateTime(dt) => civil_day(i64::from(dt.year), dt.month, dt.day),
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`);
/// `None` for a month or day out of range.
fn civil_day(year: i64, month: u8, day: u8) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// How deep attached messages are searched.
const MAX_NESTING: usize = 16;

/// The text of every text part of `message`, and of attached messages with their header
/// fields, folded.
fn body_texts(message: &Message<'_>, depth: usize, out: &mut Vec<String>) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(text) => out.push(fold(text)),
            PartType::Html(html) => out.push(fold(&html_to_text(html))),
            PartType::Message(inner) if depth < MAX_NESTING => {
                for field in fields(inner) {
                    out.push(format!("{}: {}", field.name, field.decoded));
                    out.push(format!("{}: {}", field.name, field.written));
                }
                body_texts(inner, depth + 1, out);
            }
            _ => {}
        }
    }
}

/// Evaluates keys against one message in three-valued logic: `None` is "unknown without
/// the bytes". Parses the bytes at most once for headers and once for bodies.
struct Eval<'e, 'a> {
    src: &'e SearchSource<'a>,
    folder: Folder,
    /// The top-level header fields; `None` inside when the bytes do not parse.
    fields: OnceCell<Option<Vec<Field>>>,
    /// The folded body texts; `None` inside when the bytes do not parse.
    bodies: OnceCell<Option<Vec<String>>>,
    /// The day of the `Date:` header as written; `None` inside without a readable one.
    sent: OnceCell<Option<i64>>,
}

impl<'e, 'a> Eval<'e, 'a> {
    fn new(src: &'e SearchSource<'a>, folder: Folder) -> Self {
        Self {
            src,
            folder,
            fields: OnceCell::new(),
            bodies: OnceCell::new(),
            sent: OnceCell::new(),
        }
    }

    fn eval(&self, key: &SearchKey<'_>) -> Option<bool> {
        let src = self.src;
        let record = src.record;
        let meta = &record.meta;
        use std::cmp::Ordering::{Equal, Greater, Less};
        let answer = match key {
            SearchKey::And(keys) => return self.all(keys.as_ref()),
            SearchKey::Or(a, b) => return self.any(a, b),
            SearchKey::Not(key) => return self.eval(key).map(|b| !b),
            SearchKey::All => true,
            SearchKey::SequenceSet(set) => names(set, src.seq, self.folder.exists),
            SearchKey::Uid(set) => names(set, src.uid, self.folder.max_uid),
            SearchKey::Answered
            | SearchKey::Deleted
            | SearchKey::Draft
            | SearchKey::Recent
            | SearchKey::New
            | SearchKey::Keyword(_) => false,
            SearchKey::Unanswered
            | SearchKey::Undeleted
            | SearchKey::Undraft
            | SearchKey::Old
            | SearchKey::Unkeyword(_) => true,
            SearchKey::Seen => src.seen,
            SearchKey::Unseen => !src.seen,
            SearchKey::Flagged => src.flagged,
            SearchKey::Unflagged => !src.flagged,
            SearchKey::From(s) => {
                let needle = needle(s);
                let first = meta.from.as_ref();
                if first.is_some_and(|p| party_matches(&p.address, p.name.as_deref(), &needle)) {
                    return Some(true);
                }
                return self.header_addresses("from", &needle);
            }
            SearchKey::To(s) => {
                if self.recipient(s, &[RecipientSource::HeaderTo, RecipientSource::JournalTo]) {
                    return Some(true);
                }
                return self.header_addresses("to", &needle(s));
            }
            SearchKey::Cc(s) => {
                if self.recipient(s, &[RecipientSource::HeaderCc, RecipientSource::JournalCc]) {
                    return Some(true);
                }
                return self.header_addresses("cc", &needle(s));
            }
            SearchKey::Bcc(s) => self.recipient(
                s,
                &[RecipientSource::HeaderBcc, RecipientSource::JournalBcc],
            ),
            SearchKey::Subject(s) => {
                let needle = needle(s);
                meta.subject
                    .as_deref()
                    .is_some_and(|subject| fold(subject).contains(&needle))
            }
            SearchKey::Header(name, value) => {
                let name = name.as_ref();
                let needle = needle(value);
                return self.with_fields(|fields| {
                    fields.iter().any(|f| {
                        f.name.as_bytes().eq_ignore_ascii_case(name)
                            && (needle.is_empty() || f.contains(&needle))
                    })
                });
            }
            SearchKey::Body(s) => {
                let needle = needle(s);
                return self.with_bodies(|bodies| bodies.iter().any(|b| b.contains(&needle)));
            }
            SearchKey::Text(s) => {
                let needle = needle(s);
                let in_header =
                    self.with_fields(|fields| fields.iter().any(|f| f.line_contains(&needle)));
                if in_header != Some(false) {
                    return in_header;
                }
                return self.with_bodies(|bodies| bodies.iter().any(|b| b.contains(&needle)));
            }
            SearchKey::Since(d) => {
                matches!(compare_day(meta.received_at, d), Some(Equal | Greater))
            }
            SearchKey::Before(d) => compare_day(meta.received_at, d) == Some(Less),
            SearchKey::On(d) => compare_day(meta.received_at, d) == Some(Equal),
            SearchKey::SentSince(d) => {
                return self.sent_day(d, |o| matches!(o, Some(Equal | Greater)));
            }
            SearchKey::SentBefore(d) => return self.sent_day(d, |o| o == Some(Less)),
            SearchKey::SentOn(d) => return self.sent_day(d, |o| o == Some(Equal)),
            SearchKey::Larger(n) => record.served_size() > u64::from(*n),
            SearchKey::Smaller(n) => record.served_size() < u64::from(*n),
            // Keys of extensions not compiled in today (see the module documentation).
            #[allow(unreachable_patterns)]
            _ => false,
        };
        Some(answer)
    }

    /// AND: false as soon as one is false. Keys answerable without the bytes go first, so
    /// the bytes are not parsed for messages they already rule out.
    fn all(&self, keys: &[SearchKey<'_>]) -> Option<bool> {
        let cheap = keys.iter().filter(|k| !needs_raw(k));
        let costly = keys.iter().filter(|k| needs_raw(k));
        let mut known = true;
        for key in cheap.chain(costly) {
            match self.eval(key) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => known = false,
            }
        }
        known.then_some(true)
    }

    /// OR: true as soon as one is true; the one answerable without the bytes first.
    fn any(&self, a: &SearchKey<'_>, b: &SearchKey<'_>) -> Option<bool> {
        let (first, second) = if needs_raw(a) && !needs_raw(b) {
            (b, a)
        } else {
            (a, b)
        };
        let first = self.eval(first);
        if first == Some(true) {
            return first;
        }
        match (first, self.eval(second)) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }
    }

    fn recipient(&self, s: &AString<'_>, sources: &[RecipientSource]) -> bool {
        let needle = needle(s);
        self.src
            .record
            .meta
            .recipients
            .iter()
            .filter(|r| r.sources.iter().any(|source| sources.contains(source)))
            .any(|r| party_matches(&r.address, r.name.as_deref(), &needle))
    }

    /// Whether an address header `name` (lower case) of the message holds `needle` in one
    /// of its mailboxes or group names ([`fetch::address_search_texts`]): the record keeps
    /// only the first From and no group names.
    fn header_addresses(&self, name: &str, needle: &str) -> Option<bool> {
        self.with_fields(|fields| {
            fields.iter().filter(|f| f.name == name).any(|f| {
                fetch::address_search_texts(f.written.as_bytes())
                    .iter()
                    .any(|text| String::from_utf8_lossy(text).contains(needle))
            })
        })
    }

    /// How the day of the `Date:` header as written (its own time zone disregarded, RFC
    /// 3501 § 6.4.4) compares with `date`, tested by `test`. Without a readable `Date:` the
    /// record's date (UTC) counts; `None` without the bytes.
    fn sent_day(
        &self,
        date: &NaiveDate,
        test: impl FnOnce(Option<std::cmp::Ordering>) -> bool,
    ) -> Option<bool> {
        let raw = self.src.raw?;
        let written = self.sent.get_or_init(|| written_day(raw));
        let ordering = match (written, day_number(date)) {
            (Some(day), Some(wanted)) => Some(day.cmp(&wanted)),
            _ => compare_day(self.src.record.meta.date, date),
        };
        Some(test(ordering))
    }

    /// `test` of the header fields; `None` without the bytes, false when they do not parse.
    fn with_fields(&self, test: impl FnOnce(&[Field]) -> bool) -> Option<bool> {
        let raw = self.src.raw?;
        let fields = self
            .fields
            .get_or_init(|| parser().parse_headers(raw).map(|m| fields(&m)));
        Some(fields.as_deref().is_some_and(test))
    }

    /// `test` of the body texts; `None` without the bytes, false when they do not parse.
    fn with_bodies(&self, test: impl FnOnce(&[String]) -> bool) -> Option<bool> {
        let raw = self.src.raw?;
        let bodies = self.bodies.get_or_init(|| {
            parser().parse(raw).map(|m| {
                let mut out = Vec::new();
                body_texts(&m, 0, &mut out);
                out
            })
        });
        Some(bodies.as_deref().is_some_and(test))
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_next::imap_types::command::CommandBody;

    use super::*;
    use crate::archive::{Meta, Party, Storage};
    use crate::classify::Direction;
    use crate::clock::parse_date;
    use crate::ingest::recipients::Recipients;

    // ---- resolve ----------------------------------------------------------------------

    fn set(text: &str) -> SequenceSet {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} is not a sequence set: {e:?}"))
    }

    #[test]
    fn resolve_table() {
        let uids = [3, 5, 8, 13, 21];
        let cases: &[(&str, bool, &[usize])] = &[
            // Sequence numbers: n is index n - 1.
            ("1", false, &[0]),
            ("2:4", false, &[1, 2, 3]),
            ("4:2", false, &[1, 2, 3]),
            ("*", false, &[4]),
            ("4:*", false, &[3, 4]),
            ("*:4", false, &[3, 4]),
            ("9:*", false, &[4]),
            ("9", false, &[]),
            ("6:9", false, &[]),
            ("1:4294967295", false, &[0, 1, 2, 3, 4]),
            ("4294967295", false, &[]),
            ("2,1,2:3", false, &[0, 1, 2]),
            ("5:*,1", false, &[0, 4]),
            ("1:3,2:5", false, &[0, 1, 2, 3, 4]),
            // UIDs: ranges cover the UIDs inside them.
            ("5", true, &[1]),
            ("4", true, &[]),
            ("5:13", true, &[1, 2, 3]),
            ("13:5", true, &[1, 2, 3]),
            ("4:12", true, &[1, 2]),
            ("*", true, &[4]),
            ("21:*", true, &[4]),
            ("100:*", true, &[4]),
            ("*:100", true, &[4]),
            ("6:7", true, &[]),
            ("22:4294967295", true, &[]),
            ("1:4294967295", true, &[0, 1, 2, 3, 4]),
            ("9:*,1:5", true, &[0, 1, 3, 4]),
            ("21,3,8,3", true, &[0, 2, 4]),
        ];
        for &(text, by_uid, expected) in cases {
            assert_eq!(
                resolve(&set(text), &uids, by_uid),
                expected,
                "{text} (by_uid: {by_uid})"
            );
        }
    }

    #[test]
    fn resolve_empty_folder() {
        for text in ["1", "*", "1:*", "*:5", "1:4294967295"] {
            for by_uid in [false, true] {
                assert_eq!(resolve(&set(text), &[], by_uid), Vec::<usize>::new());
            }
        }
    }

    #[test]
    fn resolve_wide_ranges_on_a_large_folder() {
        // UIDs 2, 4, ..., 200_000. Were ranges walked number by number, these would take
        // billions of steps each.
        let uids: Vec<u32> = (1..=100_000).map(|i| i * 2).collect();
        let all: Vec<usize> = (0..uids.len()).collect();
        for by_uid in [false, true] {
            assert_eq!(resolve(&set("1:4294967295"), &uids, by_uid), all);
            assert_eq!(resolve(&set("4294967295:1"), &uids, by_uid), all);
            assert_eq!(resolve(&set("1:*"), &uids, by_uid), all);
        }
        assert_eq!(
            resolve(&set("100001:4294967295"), &uids, true),
            (50_000..100_000).collect::<Vec<_>>()
        );
        assert_eq!(
            resolve(&set("99999:4294967295"), &uids, false),
            [99_998, 99_999]
        );
        // Many overlapping wide ranges still yield each index once.
        let many = vec!["1:4294967295"; 500].join(",");
        assert_eq!(resolve(&set(&many), &uids, true), all);
    }

    // ---- matches ----------------------------------------------------------------------

    fn t(text: &str) -> i64 {
        parse_date(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn recipients(list: &[(&str, Option<&str>, RecipientSource)]) -> Recipients {
        let mut r = Recipients::new();
        for &(address, name, source) in list {
            assert!(r.add(address, name, source), "{address}");
        }
        r
    }

    fn record(uid: u32, size: u64, received: &str, sent: &str) -> Record {
        Record {
            v: 1,
            uid,
            id: format!("id-{uid}"),
            blob: String::new(),
            storage: Storage::File,
            compression: Default::default(),
            size,
            stored_size: size / 2,
            copies: 1,
            meta: Meta {
                date: t(sent),
                direction: Direction::Inbound,
                ..Meta::arrived(t(received))
            },
        }
    }

    fn party(address: &str, name: Option<&str>) -> Option<Party> {
        Some(Party {
            address: crate::address::normalize(address).unwrap_or_else(|| panic!("{address}")),
            name: name.map(str::to_owned),
        })
    }

    /// A multipart message: quoted-printable text, base64 HTML, an attached message and a
    /// base64 binary attachment.
    fn multipart() -> Vec<u8> {
        let html = data_encoding::BASE64
            .encode(b"<html><head><title>T</title></head><body><p>Fish &amp; <b>Chips</b></p></body></html>");
        let binary = data_encoding::BASE64.encode(b"hidden binary words");
        format!(
            "From: Alice Example <alice@example.com>\r\n\
             To: Bob <bob@example.com>\r\n\
             Cc: carol@example.com\r\n\
             Subject: =?utf-8?q?Quarterly_r=C3=A9port?=\r\n\
             X-Custom: first part\r\n \
             folded second part\r\n\
             Date: Thu, 1 Feb 2024 00:30:00 +0100\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
             \r\n\
             --outer\r\n\
             Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
             \r\n\
             --alt\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             Caf=C3=A9 numbers are up; soft=\r\n\
             break here.\r\n\
             --alt\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {html}\r\n\
             --alt--\r\n\
             --outer\r\n\
             Content-Type: message/rfc822\r\n\
             \r\n\
             From: Inner <inner@example.net>\r\n\
             Subject: Inner subject\r\n\
             \r\n\
             The nested secret.\r\n\
             --outer\r\n\
             Content-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {binary}\r\n\
             --outer--\r\n"
        )
        .into_bytes()
    }

    struct Fixture {
        records: Vec<Record>,
        raws: Vec<Vec<u8>>,
        seen: Vec<bool>,
        flagged: Vec<bool>,
    }

    impl Fixture {
        fn new() -> Self {
            let mut m10 = record(10, 5000, "2024-02-01T10:00:00Z", "2024-01-31T23:30:00Z");
            m10.meta.from = party("alice@example.com", Some("Alice Example"));
            m10.meta.subject = Some("Quarterly réport".into());
            m10.meta.recipients = recipients(&[
                ("bob@example.com", Some("Bob"), RecipientSource::HeaderTo),
                ("carol@example.com", None, RecipientSource::HeaderCc),
                ("dave@example.com", None, RecipientSource::JournalBcc),
            ]);

            let mut m20 = record(20, 300, "2024-02-02T00:00:00Z", "2024-02-02T08:00:00Z");
            m20.meta.from = party("juergen@bücher.example", Some("Jürgen Groß"));
            m20.meta.subject = Some("ÉTÉ Straße".into());
            m20.meta.recipients = recipients(&[
                ("erin@example.com", None, RecipientSource::JournalTo),
                ("frank@example.com", None, RecipientSource::JournalCc),
                ("gina@example.com", None, RecipientSource::JournalRecipient),
                ("harry@example.com", None, RecipientSource::XOriginalTo),
            ]);
            let raw20 = "From: =?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <juergen@bücher.example>\r\n\
                         Subject: ÉTÉ Straße\r\n\
                         Content-Type: text/plain; charset=utf-8\r\n\
                         Content-Transfer-Encoding: 8bit\r\n\
                         \r\n\
                         Grüße aus München. ΟΔΟΣ\r\n";

            // Bytes the MIME parser cannot read at all; nothing in the record.
            let m30 = record(30, 0, "2024-02-02T23:59:59Z", "2024-02-02T23:59:59Z");
            let raw30 = Vec::new();

            let mut m40 = record(40, 1000, "2024-03-01T00:00:01Z", "2024-02-29T12:00:00Z");
            m40.meta.from = party("zed@example.org", None);
            m40.meta.subject = Some("plain".into());
            m40.meta.recipients =
                recipients(&[("ivan@example.com", None, RecipientSource::HeaderBcc)]);
            let raw40 = "Subject: plain\r\n\r\nplain body\r\n";

            Self {
                records: vec![m10, m20, m30, m40],
                raws: vec![
                    multipart(),
                    raw20.as_bytes().to_vec(),
                    raw30,
                    raw40.as_bytes().to_vec(),
                ],
                seen: vec![true, false, true, false],
                flagged: vec![false, false, true, false],
            }
        }

        fn uids(&self) -> Vec<u32> {
            self.records.iter().map(|r| r.uid).collect()
        }

        fn source(&self, i: usize, with_raw: bool) -> SearchSource<'_> {
            SearchSource {
                seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                uid: self.records[i].uid,
                record: &self.records[i],
                raw: with_raw.then(|| self.raws[i].as_slice()),
                seen: self.seen[i],
                flagged: self.flagged[i],
            }
        }

        /// The UIDs matching a list of criteria.
        fn hits_all(&self, keys: &[SearchKey<'_>]) -> Vec<u32> {
            let folder = Folder::of(&self.uids());
            let raw = keys.iter().any(needs_raw);
            (0..self.records.len())
                .filter(|&i| matches_all(keys, &self.source(i, raw), folder))
                .map(|i| self.records[i].uid)
                .collect()
        }

        fn hits(&self, key: &SearchKey<'_>) -> Vec<u32> {
            let folder = Folder::of(&self.uids());
            let raw = needs_raw(key);
            (0..self.records.len())
                .filter(|&i| matches(key, &self.source(i, raw), folder))
                .map(|i| self.records[i].uid)
                .collect()
        }
    }

    /// Parses SEARCH criteria as a client would send them and hands them to `f`.
    fn with_criteria<R>(criteria: &str, f: impl FnOnce(&[SearchKey<'_>]) -> R) -> R {
        let line = format!("a SEARCH {criteria}\r\n");
        let (_, command) = CommandCodec::new()
            .decode(line.as_bytes())
            .unwrap_or_else(|e| panic!("{criteria:?} does not parse: {e:?}"));
        let CommandBody::Search { criteria: keys, .. } = command.body else {
            panic!("{criteria:?} is not a SEARCH");
        };
        f(keys.as_ref())
    }

    const ALL: &[u32] = &[10, 20, 30, 40];

    #[test]
    fn keys_table() {
        let fx = Fixture::new();
        let cases: &[(&str, &[u32])] = &[
            ("ALL", ALL),
            // Sequence sets.
            ("1", &[10]),
            ("2:3", &[20, 30]),
            ("3:2", &[20, 30]),
            ("*", &[40]),
            ("3:*", &[30, 40]),
            ("7:*", &[40]),
            ("7", &[]),
            ("1,3", &[10, 30]),
            ("1:4294967295", ALL),
            // UID sets.
            ("UID 20", &[20]),
            ("UID 15:35", &[20, 30]),
            ("UID 35:15", &[20, 30]),
            ("UID *", &[40]),
            ("UID 100:*", &[40]),
            ("UID 41:4294967295", &[]),
            ("UID 1:4294967295", ALL),
            ("UID 5", &[]),
            // Flags: a read-only archive has no \Answered, \Deleted, \Draft, \Recent or
            // keywords.
            ("ANSWERED", &[]),
            ("UNANSWERED", ALL),
            ("DELETED", &[]),
            ("UNDELETED", ALL),
            ("DRAFT", &[]),
            ("UNDRAFT", ALL),
            ("RECENT", &[]),
            ("NEW", &[]),
            ("OLD", ALL),
            ("SEEN", &[10, 30]),
            ("UNSEEN", &[20, 40]),
            ("FLAGGED", &[30]),
            ("UNFLAGGED", &[10, 20, 40]),
            ("KEYWORD $Forwarded", &[]),
            ("UNKEYWORD $Forwarded", ALL),
            // Addresses: address, display name, or both; case-insensitive.
            ("FROM alice", &[10]),
            ("FROM \"ALICE EXAMPLE\"", &[10]),
            ("FROM \"Example <alice@\"", &[10]),
            ("FROM example", &[10, 20, 40]),
            ("FROM EXAMPLE.COM", &[10]),
            ("FROM xn--bcher", &[20]),
            ("FROM nobody", &[]),
            ("FROM \"\"", &[10, 20, 40]),
            ("TO bob", &[10]),
            ("TO erin", &[20]),
            ("TO carol", &[]),
            ("TO gina", &[]),
            ("TO harry", &[]),
            ("CC carol", &[10]),
            ("CC frank", &[20]),
            ("CC bob", &[]),
            ("BCC dave", &[10]),
            ("BCC ivan", &[40]),
            ("BCC bob", &[]),
            // Subject (decoded, from the record).
            ("SUBJECT quarterly", &[10]),
            ("SUBJECT STRASSE", &[20]),
            ("SUBJECT \"\"", &[10, 20, 40]),
            // HEADER: any field, unfolded; encoded words decoded or as written.
            ("HEADER X-Custom \"\"", &[10]),
            ("HEADER x-custom \"first part folded second\"", &[10]),
            ("HEADER X-CUSTOM SECOND", &[10]),
            ("HEADER X-Custom absent", &[]),
            ("HEADER Subject Quarterly_r", &[10]),
            ("HEADER Subject \"quarterly r\"", &[10]),
            ("HEADER Subject plain", &[40]),
            ("HEADER Subject \"\"", &[10, 20, 40]),
            ("HEADER Content-Type multipart/mixed", &[10]),
            ("HEADER From juergen", &[20]),
            ("HEADER Nope \"\"", &[]),
            // BODY: decoded text parts only.
            ("BODY numbers", &[10]),
            ("BODY \"soft break\"", &[]),
            ("BODY softbreak", &[10]),
            ("BODY \"fish & chips\"", &[10]),
            ("BODY <b>", &[]),
            ("BODY title", &[]),
            ("BODY \"nested secret\"", &[10]),
            ("BODY \"inner subject\"", &[10]),
            ("BODY hidden", &[]),
            ("BODY quarterly", &[]),
            ("BODY \"plain body\"", &[40]),
            ("BODY \"\"", &[10, 20, 40]),
            ("NOT BODY \"\"", &[30]),
            // TEXT: header fields (as `name: value`) or body.
            ("TEXT quarterly", &[10]),
            ("TEXT \"x-custom: first part\"", &[10]),
            ("TEXT \"SUBJECT: PLAIN\"", &[40]),
            ("TEXT numbers", &[10]),
            ("TEXT plain", &[20, 40]), // 20 is text/plain
            ("TEXT \"plain body\"", &[40]),
            ("TEXT \"\"", &[10, 20, 40]),
            // A message the parser cannot read matches no content key, so NOT matches it.
            ("NOT BODY numbers", &[20, 30, 40]),
            ("NOT HEADER Subject \"\"", &[30]),
            // Dates, by UTC day.
            ("ON 2-Feb-2024", &[20, 30]),
            ("SINCE 2-Feb-2024", &[20, 30, 40]),
            ("BEFORE 2-Feb-2024", &[10]),
            ("BEFORE 1-Feb-2024", &[]),
            ("SINCE 2-Mar-2024", &[]),
            // Message 10 is dated `Thu, 1 Feb 2024 00:30:00 +0100` (31 January in UTC): the
            // day as written counts.
            ("SENTON 31-Jan-2024", &[]),
            ("SENTON 1-Feb-2024", &[10]),
            ("SENTBEFORE 1-Feb-2024", &[]),
            ("SENTSINCE 1-Feb-2024", &[10, 20, 30, 40]),
            ("SENTBEFORE 29-Feb-2024", &[10, 20, 30]),
            ("SENTON 29-Feb-2024", &[40]),
            // Sizes.
            ("LARGER 1000", &[10]),
            ("LARGER 999", &[10, 40]),
            ("SMALLER 1000", &[20, 30]),
            ("SMALLER 1", &[30]),
            ("SMALLER 0", &[]),
            // Nesting.
            ("FROM alice SINCE 1-Feb-2024", &[10]),
            ("FROM alice SINCE 2-Feb-2024", &[]),
            ("OR FROM alice FLAGGED", &[10, 30]),
            ("NOT (OR SEEN FLAGGED)", &[20, 40]),
            ("NOT NOT SEEN", &[10, 30]),
            ("(SEEN FLAGGED)", &[30]),
            ("OR (FROM alice NOT SEEN) OR BCC ivan UID 20", &[20, 40]),
            ("NOT OR BODY numbers HEADER Subject plain", &[20, 30]),
            ("OR NOT BODY numbers NOT SEEN", &[20, 30, 40]),
            ("UNSEEN OR BODY \"plain body\" TEXT zzz", &[40]),
            ("SEEN NOT (1 OR BODY x TEXT y)", &[30]),
        ];
        let mut failures = Vec::new();
        for &(criteria, expected) in cases {
            let got = with_criteria(criteria, |keys| fx.hits_all(keys));
            if got != expected {
                failures.push(format!("{criteria}: got {got:?}, expected {expected:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    fn s(text: &str) -> AString<'_> {
        AString::try_from(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    #[test]
    fn non_ascii_is_case_insensitive() {
        let fx = Fixture::new();
        let cases: &[(SearchKey<'_>, &[u32])] = &[
            (SearchKey::Subject(s("été")), &[20]),
            (SearchKey::Subject(s("ÉTÉ")), &[20]),
            (SearchKey::Subject(s("Été straße")), &[20]),
            (SearchKey::Subject(s("STRASSE")), &[20]),
            (SearchKey::Subject(s("RÉPORT")), &[10]),
            (SearchKey::Subject(s("report")), &[]),
            (SearchKey::From(s("JÜRGEN")), &[20]),
            (SearchKey::From(s("gross")), &[20]),
            (SearchKey::From(s("@BÜCHER.example")), &[20]),
            (SearchKey::Body(s("GRÜSSE")), &[20]),
            (SearchKey::Body(s("οδος")), &[20]),
            (SearchKey::Body(s("café")), &[10]),
            (SearchKey::Text(s("münchen")), &[20]),
            (SearchKey::Header(s("Subject"), s("RÉPORT")), &[10]),
            (SearchKey::Header(s("From"), s("Jürgen Groß")), &[20]),
            (SearchKey::Header(s("subject"), s("étÉ")), &[20]),
        ];
        for (key, expected) in cases {
            assert_eq!(fx.hits(key), *expected, "{key:?}");
        }
    }

    #[test]
    fn civil_days() {
        type Date = (i64, u8, u8);
        let cases: &[(Date, Option<i64>)] = &[
            ((1970, 1, 1), Some(0)),
            ((1969, 12, 31), Some(-1)),
            ((2000, 3, 1), Some(11_017)),
            ((2024, 2, 29), Some(19_782)),
            ((2007, 3, 25), Some(13_597)),
            ((2007, 13, 1), None),
            ((2007, 0, 1), None),
            ((2007, 1, 0), None),
        ];
        for &((y, m, d), want) in cases {
            assert_eq!(civil_day(y, m, d), want, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn the_date_header_counts_as_written() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (
                b"Date: Sun, 25 Mar 2007 00:30:00 +0100\r\n\r\nx",
                civil_day(2007, 3, 25),
            ),
            (
                b"Date: Sat, 24 Mar 2007 23:30:00 -0500\r\n\r\nx",
                civil_day(2007, 3, 24),
            ),
            (
                b"Subject: x\r\nDate: 26 Mar 2007 01:00 +1400\r\n\r\n",
                civil_day(2007, 3, 26),
            ),
            (b"Subject: no date\r\n\r\nx", None),
            (b"Date: garbage\r\n\r\nx", None),
        ];
        for &(raw, want) in cases {
            assert_eq!(written_day(raw), want, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn address_headers_match_every_mailbox_and_group_names() {
        let raw = b"From: one@example.org, Two <two@example.org>\r\n\
            To: team: a@example.org, b@example.org;, empty:;\r\n\
            Cc: (comment) c@example.org\r\n\r\nbody";
        let record = record(1, 100, "2024-02-01T10:00:00Z", "2024-02-01T10:00:00Z");
        let folder = Folder::of(&[1]);
        let cases: &[(&str, bool)] = &[
            ("FROM two@example.org", true),
            ("FROM \"two <two@\"", true),
            ("FROM one", true),
            ("TO team", true),
            ("TO empty", true),
            ("TO b@example", true),
            ("CC c@example.org", true),
            ("TO nobody", false),
            ("CC team", false),
            ("NOT TO team", false),
        ];
        for &(criteria, want) in cases {
            with_criteria(criteria, |keys| {
                let src = SearchSource {
                    seq: 1,
                    uid: 1,
                    record: &record,
                    raw: Some(raw),
                    seen: false,
                    flagged: false,
                };
                assert_eq!(decide_without_raw(keys, &src, folder), None, "{criteria}");
                assert_eq!(matches_all(keys, &src, folder), want, "{criteria}");
            });
        }
    }

    #[test]
    fn needs_raw_only_for_content_keys() {
        let cases: &[(&str, bool)] = &[
            ("ALL", false),
            ("BCC d SUBJECT e", false),
            ("FROM a", true),
            ("OR TO b CC c", true),
            ("SENTON 1-Feb-2024", true),
            ("NOT SENTBEFORE 1-Feb-2024", true),
            ("SINCE 1-Feb-2024 LARGER 5 UID 1:* 1:*", false),
            ("OR SEEN NOT FLAGGED", false),
            ("BODY x", true),
            ("TEXT x", true),
            ("HEADER Subject x", true),
            ("NOT (SEEN OR FLAGGED BODY x)", true),
            ("OR SEEN NOT HEADER X-Y \"\"", true),
        ];
        for &(criteria, expected) in cases {
            let got = with_criteria(criteria, |keys| keys.iter().any(needs_raw));
            assert_eq!(got, expected, "{criteria}");
        }
    }

    #[test]
    fn without_the_bytes_content_keys_do_not_match() {
        let fx = Fixture::new();
        let folder = Folder::of(&fx.uids());
        with_criteria("BODY numbers", |keys| {
            assert!(matches(&keys[0], &fx.source(0, true), folder));
            assert!(!matches(&keys[0], &fx.source(0, false), folder));
        });
        with_criteria("NOT BODY numbers", |keys| {
            assert!(!matches(&keys[0], &fx.source(1, false), folder));
        });
    }

    #[test]
    fn decides_without_the_bytes_when_it_can() {
        let fx = Fixture::new();
        let folder = Folder::of(&fx.uids());
        let cases: &[(&str, [Option<bool>; 4])] = &[
            ("SEEN", [Some(true), Some(false), Some(true), Some(false)]),
            (
                "SINCE 1-Mar-2024 BODY x",
                [Some(false), Some(false), Some(false), None],
            ),
            (
                "SEEN OR FLAGGED BODY x",
                [None, Some(false), Some(true), Some(false)],
            ),
            ("NOT (UNSEEN TEXT x)", [Some(true), None, Some(true), None]),
            ("BODY x", [None; 4]),
        ];
        for (criteria, expected) in cases {
            with_criteria(criteria, |keys| {
                for (i, want) in expected.iter().enumerate() {
                    // The bytes are ignored even when given.
                    let got = decide_without_raw(keys, &fx.source(i, true), folder);
                    assert_eq!(got, *want, "{criteria} on message {i}");
                }
            });
        }
    }

    #[test]
    fn malformed_bytes_never_panic() {
        let fx = Fixture::new();
        let folder = Folder::of(&fx.uids());
        let whole = multipart();
        let mut inputs: Vec<Vec<u8>> = (0..whole.len()).map(|n| whole[..n].to_vec()).collect();
        inputs.push(whole.iter().copied().filter(|&b| b != b'\r').collect());
        inputs.push(
            String::from_utf8_lossy(&whole)
                .replace("--outer", "")
                .into_bytes(),
        );
        inputs.push(
            String::from_utf8_lossy(&whole)
                .replace("boundary", "x")
                .into_bytes(),
        );
        inputs.push(vec![0xff; 64]);
        inputs.push(b"Subject: =?utf-8?b?////?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b".to_vec());
        with_criteria(
            "OR BODY zzz OR TEXT zzz OR HEADER Subject zzz HEADER X-Custom zzz",
            |keys| {
                for raw in &inputs {
                    let src = SearchSource {
                        raw: Some(raw),
                        ..fx.source(0, false)
                    };
                    assert!(!matches_all(keys, &src, folder));
                }
            },
        );
    }

    #[test]
    fn folding() {
        assert_eq!(fold("ÉTÉ Straße"), "été strasse");
        assert_eq!(fold("ΟΔΟΣ"), "οδοσ");
        assert_eq!(fold("İSTANBUL"), "istanbul");
        assert_eq!(fold("MiXeD"), "mixed");
    }
}
