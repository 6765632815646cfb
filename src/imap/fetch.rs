//! FETCH: the data items of one message, from its record and (when needed) its bytes.
//! Pure functions; no I/O.
//!
//! # What is served, and how
//!
//! The output follows what Dovecot sends for the same message (RFC 3501 §6.4.5 / §7.4.2,
//! RFC 3516 for BINARY), with these conventions:
//!
//! * Message bytes are served as archived except that a bare LF goes out as CRLF (IMAP wants
//!   CRLF; the archive keeps the bytes it accepted, see `crate::crlf`). The session converts
//!   before these functions run, so every size (`RFC822.SIZE`, BODYSTRUCTURE sizes and line
//!   counts, literal lengths, partial offsets) counts the bytes sent, as Dovecot's do.
//! * `BODY[...]`, `RFC822`, `RFC822.HEADER` and `RFC822.TEXT` data is always a literal
//!   (Dovecot: `{n}`), even when empty. NUL bytes are sent as 0x80 so the length is
//!   unchanged (Dovecot does the same). A section that does not exist (`BODY[9]`, or
//!   `BODY[1.HEADER]` on a part that is not message/rfc822) is an empty literal, as in
//!   Dovecot. A partial fetch names its origin (`BODY[]<0>`); an origin past the end gives an
//!   empty literal.
//! * `HEADER.FIELDS` / `HEADER.FIELDS.NOT` return the matching fields exactly as in the
//!   message (folding and line ends kept), in message order, followed by the header's blank
//!   line when the message has one. The response names the fields in upper case, as Dovecot
//!   does.
//! * Part numbers follow Dovecot's (and RFC 3501's) rules: part 1 of a non-multipart entity
//!   is its body; numbers after a message/rfc822 part address the encapsulated message;
//!   `MIME` of a message/rfc822 part is its MIME header.
//! * `BINARY[n]` decodes base64 and quoted-printable leniently (stray characters are
//!   skipped, broken `=` sequences kept), and is a literal8 (`~{n}`) only when the decoded
//!   data holds NUL, like Dovecot. An unknown transfer encoding is [`Error::UnknownCte`].
//!   `BINARY[]` (whole message) is the message as archived. A partial `BINARY[n]<o.c>` is
//!   answered `BINARY[n]<o>` (RFC 3516); imap-types has no field for the origin, so
//!   [`encode_fetch`] writes such responses.
//! * ENVELOPE strings are the header values as they appear (RFC 2047 words not decoded),
//!   unfolded; subjects and display names have their white space collapsed (Dovecot's
//!   "for humans" form). Sender and Reply-To default to From. The last occurrence of a field
//!   wins, as in Dovecot. Groups are `(NIL NIL "name" NIL)` … `(NIL NIL NIL NIL)`; a missing
//!   mailbox or domain is `MISSING_MAILBOX` / `MISSING_DOMAIN` (Dovecot).
//! * BODYSTRUCTURE strings are as written in the message (`"plain"`, `"base64"`, parameter
//!   names and values, RFC 2231 continuations merged as Dovecot does), with Dovecot's
//!   defaults: `"7bit"`, `("charset" "us-ascii")` for text parts without a charset. The
//!   `"TEXT"` and `"MESSAGE" "RFC822"` tokens are upper case because imap-codec writes them
//!   so. Without MIME-Version and Content-Type, a message's Content-* fields are ignored.
//!   A part with no header block (its first line is not a field) is all body: a message
//!   with no header block has an ENVELOPE of NILs and is a text/plain of its whole size.
//!
//! # Deviations from Dovecot
//!
//! * A Content-Type that cannot be parsed is treated as absent (text/plain, as RFC 2045
//!   says) rather than written as `"" ""`.
//! * `BINARY[]` and `BINARY` of a multipart are not re-encoded part by part.
//! * An entity whose first line is neither a header field nor blank has no header (Dovecot
//!   would take its lines up to the first blank line as a broken header).
//! * An empty `boundary=""` counts as no boundary (Dovecot would match every `--` line).
//!
//! The MIME structure is found by a scanner of its own here (boundaries are prefix-matched,
//! the longest open one wins, the CRLF before a delimiter belongs to it), not by
//! mail-parser: mail-parser decodes every body while parsing (a second copy of a large
//! attachment), parses base64-encoded message/rfc822 parts from their decoded bytes (so
//! offsets point into another buffer), and turns a multipart without a boundary into a text
//! leaf; Dovecot-compatible part numbers and sizes need the raw offsets.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::ResponseCodec;
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_next::imap_types::ToStatic;
use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_next::imap_types::core::{
    AString, IString, Literal, LiteralMode, NString, NString8, Quoted, Vec1,
};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::envelope::{Address, Envelope};
use imap_next::imap_types::extensions::binary::Literal8;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName, Section};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::response::{Data, Response};

/// One message as FETCH sees it.
pub struct FetchSource {
    /// Its UID (the archive's ingest sequence number).
    pub uid: u32,
    /// When the gateway received it (Unix seconds): INTERNALDATE.
    pub received_at: i64,
    /// Its size in bytes: RFC822.SIZE.
    pub size: u64,
    /// The exact original bytes; `None` when [`needs_raw`] said they are not needed. Owned,
    /// so that `BODY[]` (the whole message, what every sync client fetches) can become the
    /// literal without a copy.
    pub raw: Option<Vec<u8>>,
    /// The user's flags on it (`\Seen`, `\Flagged`), already decided by the session.
    pub flags: Vec<FlagFetch<'static>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the message bytes are needed but were not loaded")]
    RawMissing,
    /// `BINARY[...]` of a part whose Content-Transfer-Encoding is neither an identity
    /// encoding nor base64 / quoted-printable. RFC 3516: answer the command with
    /// `NO [UNKNOWN-CTE]`.
    #[error("the part has a transfer encoding BINARY cannot decode")]
    UnknownCte,
}

/// Whether any of `items` needs the message bytes (ENVELOPE, BODY[...], BODYSTRUCTURE, ...),
/// as opposed to the record alone (UID, FLAGS, INTERNALDATE, RFC822.SIZE).
pub fn needs_raw(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(item_needs_raw)
}

fn item_needs_raw(item: &MessageDataItemName<'_>) -> bool {
    !matches!(
        item,
        MessageDataItemName::Uid
            | MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
    )
}

/// Whether fetching `items` sets `\Seen` (BODY[...] without PEEK, RFC822, RFC822.TEXT).
pub fn sets_seen(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| match i {
        MessageDataItemName::BodyExt { peek, .. } => !peek,
        MessageDataItemName::Binary { peek, .. } => !peek,
        MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
        _ => false,
    })
}

/// The data items for one message, in the order requested.
///
/// The MIME structure is parsed at most once, and only for items that need it (BODY,
/// BODYSTRUCTURE, numbered sections, BINARY of a part). Each item that carries message data
/// holds one copy of that data.
pub fn fetch_items(
    items: &[MessageDataItemName<'_>],
    mut src: FetchSource,
) -> Result<Vec<MessageDataItem<'static>>, Error> {
    let mut out = Vec::with_capacity(items.len());
    let mut tree: Option<Node> = None;
    // The last item that reads the bytes may take them, when it sends them whole.
    let last_reader = items.iter().rposition(item_needs_raw);
    for (n, item) in items.iter().enumerate() {
        let whole = Some(n) == last_reader;
        let value = match item {
            MessageDataItemName::Uid => {
                MessageDataItem::Uid(NonZeroU32::new(src.uid).unwrap_or(NonZeroU32::MIN))
            }
            MessageDataItemName::Flags => MessageDataItem::Flags(src.flags.clone()),
            MessageDataItemName::InternalDate => {
                let date = internal_date(src.received_at).or_else(|| internal_date(0));
                match date {
                    Some(date) => MessageDataItem::InternalDate(date),
                    None => continue,
                }
            }
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(src.size).unwrap_or(u32::MAX))
            }
            MessageDataItemName::Envelope => {
                let raw = raw_of(&src)?;
                let header_end = Parser::new(raw).scan_header(0).0;
                MessageDataItem::Envelope(envelope(raw, 0, header_end))
            }
            MessageDataItemName::Body => {
                let raw = raw_of(&src)?;
                MessageDataItem::Body(structure(raw, parsed(&mut tree, raw), false))
            }
            MessageDataItemName::BodyStructure => {
                let raw = raw_of(&src)?;
                MessageDataItem::BodyStructure(structure(raw, parsed(&mut tree, raw), true))
            }
            MessageDataItemName::BodyExt {
                section: None,
                partial: None,
                ..
            } if whole => MessageDataItem::BodyExt {
                section: None,
                origin: None,
                data: NString(Some(literal_istring(take_raw(&mut src)?))),
            },
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let raw = raw_of(&src)?;
                let data = section_data(raw, section.as_ref(), &mut tree);
                MessageDataItem::BodyExt {
                    section: section.as_ref().map(response_section),
                    origin: partial.map(|(origin, _)| origin),
                    data: literal(apply_partial(data, *partial)),
                }
            }
            MessageDataItemName::Rfc822 if whole => {
                MessageDataItem::Rfc822(NString(Some(literal_istring(take_raw(&mut src)?))))
            }
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(raw_of(&src)?.into())),
            MessageDataItemName::Rfc822Header => {
                let raw = raw_of(&src)?;
                let header_end = Parser::new(raw).scan_header(0).0;
                MessageDataItem::Rfc822Header(literal(sub(raw, 0, header_end).into()))
            }
            MessageDataItemName::Rfc822Text => {
                let raw = raw_of(&src)?;
                let header_end = Parser::new(raw).scan_header(0).0;
                MessageDataItem::Rfc822Text(literal(sub(raw, header_end, raw.len()).into()))
            }
            MessageDataItemName::Binary {
                section, partial, ..
            } => {
                let raw = raw_of(&src)?;
                let data = binary_data(raw, section, &mut tree)?;
                MessageDataItem::Binary {
                    section: section.clone(),
                    value: binary_value(apply_partial(data, *partial)),
                }
            }
            MessageDataItemName::BinarySize { section } => {
                let raw = raw_of(&src)?;
                let size = binary_size(raw, section, &mut tree)?;
                MessageDataItem::BinarySize {
                    section: section.clone(),
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                }
            }
            // Items this module does not know (e.g. MODSEQ if that feature gets enabled)
            // are left out rather than answered wrongly.
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        out.push(value);
    }
    Ok(out)
}

/// Whether any of `items` is a partial BINARY (`BINARY[1]<0.7>`), whose answer must name its
/// origin (`BINARY[1]<0>`, RFC 3516 § 4.2): imap-types has no field for it, so such a FETCH
/// response is encoded by [`encode_fetch`].
pub fn has_partial_binary(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::Binary {
                partial: Some(_),
                ..
            }
        )
    })
}

/// The untagged FETCH response for `items` (answers to `requested`), as it goes on the wire,
/// with each partial BINARY item written `BINARY[section]<origin>` followed by its data (a
/// literal8 `~{n}` when the data holds NUL). Each item is encoded by imap-codec on its own,
/// so an origin is put after the item's own section, never into message data.
pub fn encode_fetch(
    seq: NonZeroU32,
    items: Vec1<MessageDataItem<'static>>,
    requested: &[MessageDataItemName<'_>],
) -> Vec<u8> {
    // The k-th BINARY answer answers the k-th BINARY item asked for (fetch_items answers
    // every BINARY item in order, or fails the message).
    let mut origins = requested.iter().filter_map(|i| match i {
        MessageDataItemName::Binary { partial, .. } => Some(partial.map(|(origin, _)| origin)),
        _ => None,
    });
    let codec = ResponseCodec::default();
    let head = format!("* {seq} FETCH (").into_bytes();
    let mut out = head.clone();
    for (n, item) in items.into_iter().enumerate() {
        let origin = match item {
            MessageDataItem::Binary { .. } => origins.next().flatten(),
            _ => None,
        };
        let one = Response::Data(Data::Fetch {
            seq,
            items: Vec1::from(item),
        });
        let encoded = codec.encode(&one).dump();
        let body = encoded
            .strip_prefix(head.as_slice())
            .and_then(|b| b.strip_suffix(b")\r\n"))
            .unwrap_or_default();
        if n > 0 {
            out.push(b' ');
        }
        // `BINARY[1.2]`: the section holds no `]`, so the first one closes it.
        match (origin, memchr::memchr(b']', body)) {
            (Some(origin), Some(close)) => {
                let (name, value) = body.split_at(close + 1);
                out.extend_from_slice(name);
                out.extend_from_slice(format!("<{origin}>").as_bytes());
                out.extend_from_slice(value);
            }
            _ => out.extend_from_slice(body),
        }
    }
    out.extend_from_slice(b")\r\n");
    out
}

fn raw_of(src: &FetchSource) -> Result<&[u8], Error> {
    src.raw.as_deref().ok_or(Error::RawMissing)
}

/// The bytes themselves, for the last item that reads them.
fn take_raw(src: &mut FetchSource) -> Result<Vec<u8>, Error> {
    src.raw.take().ok_or(Error::RawMissing)
}

fn parsed<'t>(slot: &'t mut Option<Node>, raw: &[u8]) -> &'t Node {
    slot.get_or_insert_with(|| Parser::new(raw).entity(0, false, false, 0))
}

// ---- byte helpers -------------------------------------------------------------------------

/// `raw[a..b]`, or empty when out of range.
fn sub(raw: &[u8], a: usize, b: usize) -> &[u8] {
    raw.get(a..b).unwrap_or_default()
}

/// Whether a blank line ("\n" or "\r\n") starts at `pos`.
fn is_blank(raw: &[u8], pos: usize) -> bool {
    match raw.get(pos) {
        Some(b'\n') => true,
        Some(b'\r') => raw.get(pos + 1) == Some(&b'\n'),
        _ => false,
    }
}

/// The start of the line after the one at `pos` (within `..end`), or `end`.
fn line_end(raw: &[u8], pos: usize, end: usize) -> usize {
    memchr::memchr(b'\n', sub(raw, pos, end)).map_or(end, |i| pos + i + 1)
}

fn strip_eol(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s.strip_suffix(b"\r").unwrap_or(s)
}

fn trim_start_lws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    s.get(n..).unwrap_or_default()
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    s.get(..s.len() - n).unwrap_or_default()
}

fn count_lines(s: &[u8]) -> u32 {
    u32::try_from(memchr::memchr_iter(b'\n', s).count()).unwrap_or(u32::MAX)
}

fn size_u32(s: &[u8]) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// Whether the line at `pos` looks like a header field: a name of printable characters, then
/// a colon (white space before the colon is tolerated).
fn looks_like_field(raw: &[u8], pos: usize) -> bool {
    let line = sub(raw, pos, line_end(raw, pos, raw.len()));
    match memchr::memchr(b':', line) {
        Some(colon) => {
            let name = trim_end_ws(sub(line, 0, colon));
            !name.is_empty() && name.iter().all(|b| (33..=126).contains(b))
        }
        None => false,
    }
}

// ---- header fields ------------------------------------------------------------------------

/// One header field: its lines `raw[start..end]` (with the final line end), its name and its
/// value (after the colon, leading white space and the final line end removed; folding kept).
struct Field<'a> {
    start: usize,
    end: usize,
    name: &'a [u8],
    value: &'a [u8],
}

/// The fields of the header block `raw[pos..end]`, up to its blank line.
struct Fields<'a> {
    raw: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    fn new(raw: &'a [u8], start: usize, end: usize) -> Self {
        Fields {
            raw,
            pos: start,
            end,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let raw = self.raw;
        if self.pos >= self.end || is_blank(raw, self.pos) {
            return None;
        }
        let start = self.pos;
        let first_end = line_end(raw, start, self.end);
        let mut end = first_end;
        while end < self.end && matches!(raw.get(end), Some(b' ' | b'\t')) {
            end = line_end(raw, end, self.end);
        }
        self.pos = end;
        let first = sub(raw, start, first_end);
        let (name, value) = match memchr::memchr(b':', first) {
            Some(colon) => (
                trim_end_ws(sub(first, 0, colon)),
                trim_start_lws(strip_eol(sub(raw, start + colon + 1, end))),
            ),
            // Not a field (a stray line in the header): kept as a nameless line.
            None => (strip_eol(first), &[][..]),
        };
        Some(Field {
            start,
            end,
            name,
            value,
        })
    }
}

// ---- MIME structure -----------------------------------------------------------------------

/// Deeper nesting (or more parts) than this is not descended into: such a part is an opaque
/// application/octet-stream leaf.
const MAX_DEPTH: usize = 100;
const MAX_PARTS: usize = 10_000;

/// One MIME entity: header `raw[start..body]` (with its blank line), body `raw[body..end]`.
struct Node {
    start: usize,
    body: usize,
    end: usize,
    content: Content,
    kind: Kind,
}

enum Kind {
    Leaf,
    Multipart(Vec<Node>),
    /// message/rfc822: the encapsulated message.
    Message(Box<Node>),
}

impl Node {
    fn header<'r>(&self, raw: &'r [u8]) -> &'r [u8] {
        sub(raw, self.start, self.body)
    }

    fn text<'r>(&self, raw: &'r [u8]) -> &'r [u8] {
        sub(raw, self.body, self.end)
    }
}

type Param = (Vec<u8>, Vec<u8>);

/// What the Content-* fields of an entity say, with the defaults applied to the type.
struct Content {
    ty: Vec<u8>,
    subtype: Vec<u8>,
    params: Vec<Param>,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    cte: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    disposition: Option<(Vec<u8>, Vec<Param>)>,
    language: Vec<Vec<u8>>,
    location: Option<Vec<u8>>,
}

impl Content {
    fn new(digest_parent: bool) -> Self {
        let (ty, subtype): (&[u8], &[u8]) = if digest_parent {
            (b"message", b"rfc822")
        } else {
            (b"text", b"plain")
        };
        Content {
            ty: ty.to_vec(),
            subtype: subtype.to_vec(),
            params: Vec::new(),
            id: None,
            description: None,
            cte: None,
            md5: None,
            disposition: None,
            language: Vec::new(),
            location: None,
        }
    }

    /// From the header `raw[start..end]`. Content-* fields count only in MIME entities:
    /// parts of a multipart, or messages with MIME-Version or Content-Type (Dovecot's
    /// non-strict rule). The first occurrence of each field wins.
    fn parse(raw: &[u8], start: usize, end: usize, in_multipart: bool, digest: bool) -> Self {
        let mut c = Content::new(digest);
        let mut mime = in_multipart;
        let mut seen_type = false;
        let mut ctype = None;
        for f in Fields::new(raw, start, end) {
            if f.name.eq_ignore_ascii_case(b"MIME-Version") {
                mime = true;
                continue;
            }
            let Some(name) = strip_prefix_ci(f.name, b"Content-") else {
                continue;
            };
            let v = f.value;
            if name.eq_ignore_ascii_case(b"Type") {
                mime = true;
                if !seen_type {
                    seen_type = true;
                    if let Some((t, s, params)) = parse_content_type(v) {
                        ctype = Some((t, s));
                        c.params = params;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
                if c.cte.is_none() {
                    c.cte = parse_cte(v);
                }
            } else if name.eq_ignore_ascii_case(b"ID") {
                c.id.get_or_insert_with(|| v.to_vec());
            } else if name.eq_ignore_ascii_case(b"Description") {
                c.description.get_or_insert_with(|| v.to_vec());
            } else if name.eq_ignore_ascii_case(b"MD5") {
                c.md5.get_or_insert_with(|| v.to_vec());
            } else if name.eq_ignore_ascii_case(b"Location") {
                c.location.get_or_insert_with(|| v.to_vec());
            } else if name.eq_ignore_ascii_case(b"Disposition") {
                if c.disposition.is_none() {
                    c.disposition = parse_disposition(v);
                }
            } else if name.eq_ignore_ascii_case(b"Language") && c.language.is_empty() {
                c.language = parse_language(v);
            }
        }
        if !mime {
            return Content::new(digest);
        }
        if let Some((t, s)) = ctype {
            c.ty = t;
            c.subtype = s;
        }
        c
    }

    fn is_multipart(&self) -> bool {
        self.ty.eq_ignore_ascii_case(b"multipart")
    }

    fn is_message(&self) -> bool {
        self.ty.eq_ignore_ascii_case(b"message") && self.subtype.eq_ignore_ascii_case(b"rfc822")
    }

    fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case(b"text")
    }

    fn boundary(&self) -> Option<Vec<u8>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
            .map(|(_, v)| v.clone())
            .filter(|b| !b.is_empty())
    }

    fn make_opaque(&mut self) {
        self.ty = b"application".to_vec();
        self.subtype = b"octet-stream".to_vec();
    }
}

fn strip_prefix_ci<'s>(s: &'s [u8], prefix: &[u8]) -> Option<&'s [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..).unwrap_or_default())
}

/// A boundary delimiter line found in the body.
struct Hit {
    /// Where the delimiter starts: the line end before the `--` line (which belongs to the
    /// delimiter), or the line itself when it is the first line searched.
    nl: usize,
    /// The start of the line after the delimiter line.
    next: usize,
    /// Which open boundary (index into `Parser::bounds`).
    idx: usize,
    close: bool,
}

/// Splits a message into [`Node`]s (Dovecot's model, RFC 2046 §5.1.1).
struct Parser<'a> {
    raw: &'a [u8],
    /// The boundaries of the multiparts being parsed, outermost first.
    bounds: Vec<Vec<u8>>,
    parts: usize,
}

impl<'a> Parser<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Parser {
            raw,
            bounds: Vec::new(),
            parts: 0,
        }
    }

    /// Whether the line at `pos` is a delimiter of an open boundary: the boundary is a prefix
    /// of the rest of the line; the longest (then innermost) open boundary wins.
    fn boundary_at(&self, pos: usize) -> Option<(usize, bool)> {
        let rest = self.raw.get(pos..)?.strip_prefix(b"--")?;
        let mut best: Option<(usize, usize)> = None;
        for (idx, b) in self.bounds.iter().enumerate() {
            if rest.starts_with(b) && best.is_none_or(|(_, len)| b.len() >= len) {
                best = Some((idx, b.len()));
            }
        }
        let (idx, len) = best?;
        Some((idx, rest.get(len..len + 2) == Some(b"--")))
    }

    /// The first delimiter line at or after `from`.
    fn find_boundary(&self, from: usize) -> Option<Hit> {
        if self.bounds.is_empty() {
            return None;
        }
        let raw = self.raw;
        let len = raw.len();
        let at_line_start = from == 0 || raw.get(from.wrapping_sub(1)) == Some(&b'\n');
        if at_line_start && let Some((idx, close)) = self.boundary_at(from) {
            let next = line_end(raw, from, len);
            return Some(Hit {
                nl: from,
                next,
                idx,
                close,
            });
        }
        let finder = memchr::memmem::Finder::new(b"\n--");
        let mut search = from;
        while let Some(i) = finder.find(raw.get(search..)?) {
            let lf = search + i;
            let line = lf + 1;
            if let Some((idx, close)) = self.boundary_at(line) {
                let nl = if lf > from && raw.get(lf - 1) == Some(&b'\r') {
                    lf - 1
                } else {
                    lf
                };
                let next = line_end(raw, line, len);
                return Some(Hit {
                    nl,
                    next,
                    idx,
                    close,
                });
            }
            search = line;
        }
        None
    }

    /// Where the body starting at `from` ends: at the next delimiter of an open boundary, or
    /// at the end of the message.
    fn leaf_end(&self, from: usize) -> usize {
        self.find_boundary(from).map_or(self.raw.len(), |h| h.nl)
    }

    /// The end of the header block starting at `start` (after its blank line), and whether it
    /// was cut short by a delimiter line (then the line end before the delimiter is not part
    /// of it, and the entity has no body). An entity whose first line is neither a field nor
    /// blank has no header block: it is all body.
    fn scan_header(&self, start: usize) -> (usize, bool) {
        let raw = self.raw;
        let len = raw.len();
        if start >= len {
            return (len, false);
        }
        if !self.bounds.is_empty() && self.boundary_at(start).is_some() {
            return (start, true);
        }
        if !is_blank(raw, start) && !looks_like_field(raw, start) {
            return (start, false);
        }
        let mut pos = start;
        loop {
            if pos >= len {
                return (len, false);
            }
            if pos > start && !self.bounds.is_empty() && self.boundary_at(pos).is_some() {
                let nl = if pos >= start + 2 && raw.get(pos - 2) == Some(&b'\r') {
                    pos - 2
                } else {
                    pos - 1
                };
                return (nl, true);
            }
            let next = line_end(raw, pos, len);
            if is_blank(raw, pos) {
                return (next, false);
            }
            pos = next;
        }
    }

    /// The entity starting at `start`, up to the next delimiter of an open boundary (or the
    /// end of the message).
    fn entity(&mut self, start: usize, in_multipart: bool, digest: bool, depth: usize) -> Node {
        self.parts += 1;
        let (body, stopped) = self.scan_header(start);
        let mut content = Content::parse(self.raw, start, body, in_multipart, digest);
        let overflow = depth >= MAX_DEPTH || self.parts >= MAX_PARTS;
        if (content.is_multipart() || content.is_message()) && overflow {
            content.make_opaque();
        }
        let (end, kind) = if content.is_multipart() {
            match content.boundary() {
                Some(boundary) if !stopped => {
                    let is_digest = content.subtype.eq_ignore_ascii_case(b"digest");
                    let (children, end) = self.multipart(boundary, body, is_digest, depth);
                    (end, Kind::Multipart(children))
                }
                _ => {
                    let end = if stopped { body } else { self.leaf_end(body) };
                    (end, Kind::Multipart(Vec::new()))
                }
            }
        } else if content.is_message() {
            let child = if stopped {
                Node {
                    start: body,
                    body,
                    end: body,
                    content: Content::new(false),
                    kind: Kind::Leaf,
                }
            } else {
                self.entity(body, false, false, depth + 1)
            };
            (child.end, Kind::Message(Box::new(child)))
        } else {
            let end = if stopped { body } else { self.leaf_end(body) };
            (end, Kind::Leaf)
        };
        Node {
            start,
            body,
            end,
            content,
            kind,
        }
    }

    /// The parts of a multipart body starting at `from`, and where the body ends (after the
    /// epilogue: at the next delimiter of an enclosing boundary, or the end of the message).
    fn multipart(
        &mut self,
        boundary: Vec<u8>,
        from: usize,
        digest: bool,
        depth: usize,
    ) -> (Vec<Node>, usize) {
        let mine = self.bounds.len();
        self.bounds.push(boundary);
        let mut children = Vec::new();
        let mut pos = from;
        let end = loop {
            match self.find_boundary(pos) {
                None => break self.raw.len(),
                Some(h) if h.idx == mine && !h.close => {
                    if self.parts >= MAX_PARTS {
                        pos = h.next;
                        continue;
                    }
                    let child = self.entity(h.next, true, digest, depth + 1);
                    pos = child.end.max(h.next);
                    children.push(child);
                }
                Some(h) if h.idx == mine => {
                    self.bounds.truncate(mine);
                    break self.leaf_end(h.next);
                }
                // An enclosing boundary ends this multipart too.
                Some(h) => break h.nl,
            }
        };
        self.bounds.truncate(mine);
        (children, end)
    }
}

// ---- MIME field syntax (RFC 2045, RFC 2231) -----------------------------------------------

/// A cursor over a structured header value: tokens, quoted strings, comments.
struct Lex<'a> {
    s: &'a [u8],
    i: usize,
    /// The last comment skipped, for a display name given only as a comment.
    comment: Option<Vec<u8>>,
}

fn is_tspecial(b: u8) -> bool {
    b"()<>@,;:\\\"/[]?=".contains(&b)
}

fn is_token_char(b: u8) -> bool {
    b > b' ' && b != 0x7f && !is_tspecial(b)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

impl<'a> Lex<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lex {
            s,
            i: 0,
            comment: None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips white space (line ends included) and comments; whether anything was skipped.
    fn skip_cfws(&mut self) -> bool {
        let start = self.i;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => self.skip_comment(),
                _ => break,
            }
        }
        self.i > start
    }

    fn skip_comment(&mut self) {
        let mut depth = 0usize;
        let mut text = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        text.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                    text.push(b);
                }
                b'\\' => {
                    if let Some(c) = self.peek() {
                        self.i += 1;
                        text.push(c);
                    }
                }
                b'\r' | b'\n' => {}
                _ => text.push(b),
            }
        }
        self.comment = Some(text);
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        sub(self.s, start, self.i)
    }

    fn token(&mut self) -> &'a [u8] {
        self.take_while(is_token_char)
    }

    fn atom(&mut self) -> &'a [u8] {
        self.take_while(is_atext)
    }

    /// A quoted string (at `"`): its content unescaped, line ends dropped.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(c) = self.peek() {
                        self.i += 1;
                        out.push(c);
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        out
    }
}

/// `type "/" subtype *(";" parameter)`; `None` when the type cannot be read.
fn parse_content_type(v: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<Param>)> {
    let mut lex = Lex::new(v);
    lex.skip_cfws();
    let ty = lex.token();
    lex.skip_cfws();
    if ty.is_empty() || lex.peek() != Some(b'/') {
        return None;
    }
    lex.i += 1;
    lex.skip_cfws();
    let subtype = lex.token();
    lex.skip_cfws();
    if subtype.is_empty() || lex.peek().is_some_and(|b| b != b';') {
        return None;
    }
    Some((ty.to_vec(), subtype.to_vec(), parse_params(&mut lex)))
}

fn parse_cte(v: &[u8]) -> Option<Vec<u8>> {
    let mut lex = Lex::new(v);
    lex.skip_cfws();
    let token = lex.token();
    lex.skip_cfws();
    (!token.is_empty() && lex.peek().is_none()).then(|| token.to_vec())
}

fn parse_disposition(v: &[u8]) -> Option<(Vec<u8>, Vec<Param>)> {
    let mut lex = Lex::new(v);
    lex.skip_cfws();
    let token = lex.token().to_vec();
    if token.is_empty() {
        return None;
    }
    Some((token, parse_params(&mut lex)))
}

fn parse_language(v: &[u8]) -> Vec<Vec<u8>> {
    let mut lex = Lex::new(v);
    let mut out = Vec::new();
    lex.skip_cfws();
    loop {
        let tag = lex.atom();
        if tag.is_empty() {
            break;
        }
        out.push(tag.to_vec());
        lex.skip_cfws();
        if lex.peek() != Some(b',') {
            break;
        }
        lex.i += 1;
        lex.skip_cfws();
    }
    out
}

/// `*(";" attribute "=" value)`, with RFC 2231 continuations merged the way Dovecot does:
/// plain parameters first in message order, then each `name*n[*]` family joined into `name`
/// (or `name*` when any piece is extended, unextended pieces then %-escaped); a family with
/// a missing index is kept piece by piece.
fn parse_params(lex: &mut Lex<'_>) -> Vec<Param> {
    struct Piece {
        key: Vec<u8>,
        idx: u32,
        extended: bool,
        value: Vec<u8>,
    }
    let mut plain = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    loop {
        lex.skip_cfws();
        match lex.peek() {
            None => break,
            Some(b';') => lex.i += 1,
            // Garbage between parameters: skip it.
            Some(_) => {
                lex.i += 1;
                continue;
            }
        }
        lex.skip_cfws();
        let key = lex.token();
        if key.is_empty() {
            continue;
        }
        lex.skip_cfws();
        if lex.peek() != Some(b'=') {
            continue;
        }
        lex.i += 1;
        lex.skip_cfws();
        let value = match lex.peek() {
            Some(b'"') => lex.quoted(),
            // Broken `name==?utf-8?b?...?=`: take the word as it is.
            Some(b'=') => lex
                .take_while(|b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .to_vec(),
            _ => lex.token().to_vec(),
        };
        match rfc2231_key(key) {
            Some((base, idx, extended)) => pieces.push(Piece {
                key: base.to_vec(),
                idx,
                extended,
                value,
            }),
            None => plain.push((key.to_vec(), value)),
        }
    }
    pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut rest = pieces.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|p| p.key.eq_ignore_ascii_case(&first.key))
            .count();
        let (family, tail) = rest.split_at(n);
        rest = tail;
        let complete = family
            .iter()
            .zip(0u32..)
            .all(|(p, expected)| p.idx == expected);
        if !complete {
            for p in family {
                let mut key = p.key.clone();
                key.extend_from_slice(format!("*{}", p.idx).as_bytes());
                if p.extended {
                    key.push(b'*');
                }
                plain.push((key, p.value.clone()));
            }
            continue;
        }
        let extended = family.iter().any(|p| p.extended);
        let mut value = Vec::new();
        if extended && !first.extended {
            value.extend_from_slice(b"''");
        }
        for p in family {
            if extended && !p.extended {
                for &b in &p.value {
                    if b == b'%' {
                        value.extend_from_slice(b"%25");
                    } else {
                        value.push(b);
                    }
                }
            } else {
                value.extend_from_slice(&p.value);
            }
        }
        let mut key = first.key.clone();
        if extended {
            key.push(b'*');
        }
        plain.push((key, value));
    }
    plain
}

/// `name*`, `name*<n>` or `name*<n>*` → (name, n, extended).
fn rfc2231_key(key: &[u8]) -> Option<(&[u8], u32, bool)> {
    let star = memchr::memchr(b'*', key)?;
    let base = sub(key, 0, star);
    let rest = key.get(star + 1..).unwrap_or_default();
    if rest.is_empty() {
        return Some((base, 0, true));
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let idx = sub(rest, 0, digits).iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    });
    match rest.get(digits..).unwrap_or_default() {
        b"" => Some((base, idx, false)),
        b"*" => Some((base, idx, true)),
        _ => None,
    }
}

// ---- IMAP strings -------------------------------------------------------------------------

/// A string the way Dovecot's `imap_append_nstring` writes it: quoted when it can be (at most
/// four characters to escape), else a literal. NUL becomes 0x80.
fn istring(bytes: &[u8]) -> IString<'static> {
    let mut escapes = 0;
    let mut literal = false;
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                escapes += 1;
                if escapes > 4 {
                    literal = true;
                }
            }
            0 | b'\r' | b'\n' | 0x80.. => literal = true,
            _ => {}
        }
    }
    if !literal
        && let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(q) = Quoted::try_from(text.to_owned())
    {
        return IString::Quoted(q);
    }
    literal_istring(bytes.to_vec())
}

fn literal_istring(mut data: Vec<u8>) -> IString<'static> {
    // Only NUL is invalid in a literal; with every NUL replaced (as Dovecot does) the data
    // is valid, and validating it again would read a large message once more.
    if memchr::memchr(0, &data).is_some() {
        for b in &mut data {
            if *b == 0 {
                *b = 0x80;
            }
        }
    }
    IString::Literal(Literal::unvalidated(data))
}

/// Dovecot's `imap_append_nstring_nolf`: a line end followed by white space (folding) is
/// dropped, any other is a space.
fn nolf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\r' || b == b'\n' {
            while matches!(raw.get(i), Some(b'\r' | b'\n')) {
                i += 1;
            }
            if !matches!(raw.get(i), None | Some(b' ' | b'\t')) {
                out.push(b' ');
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn nstring_nolf(raw: Option<&[u8]>) -> NString<'static> {
    NString(raw.map(|r| istring(&nolf(r))))
}

/// Dovecot's `imap_append_string_for_humans` (subjects, display names): white space runs
/// (line ends included) become one space, leading and trailing white space goes; any change,
/// or a character that would need escaping, makes it a literal.
fn human(raw: &[u8]) -> IString<'static> {
    let mut out = Vec::with_capacity(raw.len());
    let mut plain = true;
    let mut space = false;
    for &b in raw {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => space = true,
            _ => {
                if space && !out.is_empty() {
                    out.push(b' ');
                }
                space = false;
                match b {
                    0 => {
                        plain = false;
                        out.push(0x80);
                    }
                    b'"' | b'\\' | 0x80.. => {
                        plain = false;
                        out.push(b);
                    }
                    _ => out.push(b),
                }
            }
        }
    }
    if out.is_empty() {
        return IString::Quoted(Quoted::unvalidated(""));
    }
    if plain && out.as_slice() == raw {
        return istring(&out);
    }
    literal_istring(out)
}

/// Message data as a literal (always a literal, as Dovecot sends it), NUL sent as 0x80.
fn literal(data: Cow<'_, [u8]>) -> NString<'static> {
    NString(Some(literal_istring(data.into_owned())))
}

fn apply_partial(data: Cow<'_, [u8]>, partial: Option<(u32, NonZeroU32)>) -> Cow<'_, [u8]> {
    let Some((origin, count)) = partial else {
        return data;
    };
    let len = data.len();
    let from = usize::try_from(origin).unwrap_or(usize::MAX).min(len);
    let to = from
        .saturating_add(usize::try_from(count.get()).unwrap_or(usize::MAX))
        .min(len);
    match data {
        Cow::Borrowed(s) => Cow::Borrowed(sub(s, from, to)),
        Cow::Owned(mut v) => {
            v.truncate(to);
            v.drain(..from);
            Cow::Owned(v)
        }
    }
}

// ---- sections -----------------------------------------------------------------------------

/// The node a part number names (Dovecot's `imap_msgpart_find`): in a multipart, the n-th
/// child; elsewhere only 1, naming the entity itself; a message/rfc822 part followed by more
/// numbers stands for the message it holds.
fn find_part<'t>(root: &'t Node, path: &[NonZeroU32]) -> Option<&'t Node> {
    let mut part = root;
    for (i, n) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        part = match &part.kind {
            Kind::Multipart(children) => {
                children.get(usize::try_from(n.get() - 1).unwrap_or(usize::MAX))?
            }
            kind => {
                if n.get() != 1 || (more && !matches!(kind, Kind::Message(_))) {
                    return None;
                }
                part
            }
        };
        if more && let Kind::Message(inner) = &part.kind {
            part = inner;
        }
    }
    Some(part)
}

/// The message held by part `path` (for `n.HEADER`, `n.TEXT`, ...): it must be message/rfc822.
fn find_message<'t>(root: &'t Node, path: &[NonZeroU32]) -> Option<&'t Node> {
    match &find_part(root, path)?.kind {
        Kind::Message(inner) => Some(inner),
        _ => None,
    }
}

/// The bytes of a BODY section (before any partial range).
fn section_data<'r>(
    raw: &'r [u8],
    section: Option<&Section<'_>>,
    tree: &mut Option<Node>,
) -> Cow<'r, [u8]> {
    let root_header = || Parser::new(raw).scan_header(0).0;
    let data: Option<Cow<'r, [u8]>> = match section {
        None => Some(raw.into()),
        Some(Section::Header(None)) => Some(sub(raw, 0, root_header()).into()),
        Some(Section::Text(None)) => Some(sub(raw, root_header(), raw.len()).into()),
        Some(Section::HeaderFields(None, names)) => {
            Some(header_subset(raw, 0, root_header(), names.as_ref(), false).into())
        }
        Some(Section::HeaderFieldsNot(None, names)) => {
            Some(header_subset(raw, 0, root_header(), names.as_ref(), true).into())
        }
        Some(Section::Part(part)) => {
            find_part(parsed(tree, raw), part.0.as_ref()).map(|n| n.text(raw).into())
        }
        Some(Section::Mime(part)) => {
            find_part(parsed(tree, raw), part.0.as_ref()).map(|n| n.header(raw).into())
        }
        Some(Section::Header(Some(part))) => {
            find_message(parsed(tree, raw), part.0.as_ref()).map(|n| n.header(raw).into())
        }
        Some(Section::Text(Some(part))) => {
            find_message(parsed(tree, raw), part.0.as_ref()).map(|n| n.text(raw).into())
        }
        Some(Section::HeaderFields(Some(part), names)) => {
            find_message(parsed(tree, raw), part.0.as_ref())
                .map(|n| header_subset(raw, n.start, n.body, names.as_ref(), false).into())
        }
        Some(Section::HeaderFieldsNot(Some(part), names)) => {
            find_message(parsed(tree, raw), part.0.as_ref())
                .map(|n| header_subset(raw, n.start, n.body, names.as_ref(), true).into())
        }
    };
    data.unwrap_or_default()
}

/// The fields of the header `raw[start..end]` whose names are (`not`: are not) in `names`,
/// as they appear, then the header's blank line if it has one.
fn header_subset(
    raw: &[u8],
    start: usize,
    end: usize,
    names: &[AString<'_>],
    not: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = start;
    for f in Fields::new(raw, start, end) {
        let listed = names
            .iter()
            .any(|n| n.as_ref().eq_ignore_ascii_case(f.name));
        if listed != not {
            out.extend_from_slice(sub(raw, f.start, f.end));
        }
        last = f.end;
    }
    out.extend_from_slice(sub(raw, last, end));
    out
}

/// The section as the response names it: header field names in upper case (Dovecot).
fn response_section(section: &Section<'_>) -> Section<'static> {
    fn upper(names: &Vec1<AString<'_>>) -> Vec1<AString<'static>> {
        let list: Vec<AString<'static>> = names
            .as_ref()
            .iter()
            .map(|n| {
                AString::try_from(n.as_ref().to_ascii_uppercase()).unwrap_or_else(|_| n.to_static())
            })
            .collect();
        Vec1::try_from(list).unwrap_or_else(|_| names.to_static())
    }
    match section {
        Section::HeaderFields(part, names) => Section::HeaderFields(part.clone(), upper(names)),
        Section::HeaderFieldsNot(part, names) => {
            Section::HeaderFieldsNot(part.clone(), upper(names))
        }
        other => other.to_static(),
    }
}

// ---- BINARY -------------------------------------------------------------------------------

/// How a part's body is turned into its BINARY content.
#[derive(Clone, Copy)]
enum Decoding {
    Identity,
    Base64,
    QuotedPrintable,
}

/// The bytes BINARY section `path` comes from, and their decoding: the whole message as it is
/// for `BINARY[]`; nothing for a part that does not exist (Dovecot).
fn binary_source<'r>(
    raw: &'r [u8],
    path: &[NonZeroU32],
    tree: &mut Option<Node>,
) -> Result<(&'r [u8], Decoding), Error> {
    if path.is_empty() {
        return Ok((raw, Decoding::Identity));
    }
    let Some(node) = find_part(parsed(tree, raw), path) else {
        return Ok((&[], Decoding::Identity));
    };
    let cte = node.content.cte.as_deref().unwrap_or(b"7bit");
    let decoding = if [&b"7bit"[..], b"8bit", b"binary"]
        .iter()
        .any(|c| cte.eq_ignore_ascii_case(c))
    {
        Decoding::Identity
    } else if cte.eq_ignore_ascii_case(b"base64") {
        Decoding::Base64
    } else if cte.eq_ignore_ascii_case(b"quoted-printable") {
        Decoding::QuotedPrintable
    } else {
        return Err(Error::UnknownCte);
    };
    Ok((node.text(raw), decoding))
}

/// The decoded content of BINARY section `path` (before any partial range).
fn binary_data<'r>(
    raw: &'r [u8],
    path: &[NonZeroU32],
    tree: &mut Option<Node>,
) -> Result<Cow<'r, [u8]>, Error> {
    let (data, decoding) = binary_source(raw, path, tree)?;
    Ok(match decoding {
        Decoding::Identity => Cow::Borrowed(data),
        Decoding::Base64 => {
            let mut out = Vec::with_capacity(data.len() / 4 * 3);
            base64_decode(data, &mut out);
            Cow::Owned(out)
        }
        Decoding::QuotedPrintable => {
            let mut out = Vec::with_capacity(data.len());
            qp_decode(data, &mut out);
            Cow::Owned(out)
        }
    })
}

/// The size of BINARY section `path`, without keeping the decoded data.
fn binary_size(raw: &[u8], path: &[NonZeroU32], tree: &mut Option<Node>) -> Result<usize, Error> {
    let (data, decoding) = binary_source(raw, path, tree)?;
    let mut count = Count(0);
    match decoding {
        Decoding::Identity => return Ok(data.len()),
        Decoding::Base64 => base64_decode(data, &mut count),
        Decoding::QuotedPrintable => qp_decode(data, &mut count),
    }
    Ok(count.0)
}

/// Literal8 when the data holds NUL, else an ordinary literal (Dovecot).
fn binary_value(data: Cow<'_, [u8]>) -> NString8<'static> {
    if memchr::memchr(0, &data).is_some() {
        NString8::Literal8(Literal8 {
            data: Cow::Owned(data.into_owned()),
            mode: LiteralMode::Sync,
        })
    } else {
        NString8::NString(literal(data))
    }
}

/// Where decoded bytes go: a buffer, or only their count (BINARY.SIZE).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Base64, skipping anything outside the alphabet; `=` ends a quantum.
fn base64_decode(input: &[u8], out: &mut impl Sink) {
    fn flush(out: &mut impl Sink, acc: u32, n: u32) {
        match n {
            2 => out.put(&[(acc >> 4) as u8]),
            3 => out.put(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            _ => {}
        }
    }
    let (mut acc, mut n) = (0u32, 0u32);
    for &b in input {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                flush(out, acc, n);
                (acc, n) = (0, 0);
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.put(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    flush(out, acc, n);
}

/// Quoted-printable: `=XX`, soft line breaks, trailing white space on a line dropped; a
/// broken `=` sequence is kept as it is. Line ends are kept as they are.
fn qp_decode(input: &[u8], out: &mut impl Sink) {
    fn hex(b: Option<&u8>) -> Option<u8> {
        let b = *b?;
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'=' => {
                let mut j = i + 1;
                while matches!(input.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                match (input.get(j), input.get(j + 1)) {
                    (None, _) => i = j,
                    (Some(b'\n'), _) => i = j + 1,
                    (Some(b'\r'), Some(b'\n')) => i = j + 2,
                    _ => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                        (Some(hi), Some(lo)) => {
                            out.put(&[(hi << 4) | lo]);
                            i += 3;
                        }
                        _ => {
                            out.put(b"=");
                            i += 1;
                        }
                    },
                }
            }
            b' ' | b'\t' => {
                let mut j = i;
                while matches!(input.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                if !matches!(input.get(j), None | Some(b'\r' | b'\n')) {
                    out.put(sub(input, i, j));
                }
                i = j;
            }
            _ => {
                // Copy the run up to the next special byte at once.
                let run = input
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| !matches!(c, b'=' | b' ' | b'\t'))
                    .count()
                    .max(1);
                out.put(sub(input, i, i + run));
                i += run;
            }
        }
    }
}

// ---- BODYSTRUCTURE ------------------------------------------------------------------------

fn params(list: &[Param]) -> Vec<(IString<'static>, IString<'static>)> {
    list.iter().map(|(k, v)| (istring(k), istring(v))).collect()
}

/// Disposition, language and location (the tail both extension forms share).
fn disposition_tail(c: &Content) -> Disposition<'static> {
    Disposition {
        disposition: c.disposition.as_ref().map(|(d, p)| (istring(d), params(p))),
        tail: Some(Language {
            language: c.language.iter().map(|l| istring(l)).collect(),
            tail: Some(Location {
                location: nstring_nolf(c.location.as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// What Dovecot writes for a multipart without parts: a 0-byte text/plain.
fn empty_text(ext: bool) -> BodyStructure<'static> {
    let c = Content::new(false);
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring(b"charset"), istring(b"us-ascii"))],
                id: NString::NIL,
                description: NString::NIL,
                content_transfer_encoding: istring(b"7bit"),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: istring(b"plain"),
                number_of_lines: 0,
            },
        },
        extension_data: ext.then(|| SinglePartExtensionData {
            md5: NString::NIL,
            tail: Some(disposition_tail(&c)),
        }),
    }
}

/// BODY (`ext` false) or BODYSTRUCTURE (`ext` true) of `node`.
fn structure(raw: &[u8], node: &Node, ext: bool) -> BodyStructure<'static> {
    let c = &node.content;
    if let Kind::Multipart(children) = &node.kind {
        let bodies: Vec<BodyStructure<'static>> =
            children.iter().map(|n| structure(raw, n, ext)).collect();
        let bodies = Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_text(ext)));
        return BodyStructure::Multi {
            bodies,
            subtype: istring(&c.subtype),
            extension_data: ext.then(|| MultiPartExtensionData {
                parameter_list: params(&c.params),
                tail: Some(disposition_tail(c)),
            }),
        };
    }
    let text = node.text(raw);
    let mut parameter_list = params(&c.params);
    if c.is_text()
        && !c
            .params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
    {
        parameter_list.push((istring(b"charset"), istring(b"us-ascii")));
    }
    let basic = BasicFields {
        parameter_list,
        id: nstring_nolf(c.id.as_deref()),
        description: nstring_nolf(c.description.as_deref()),
        content_transfer_encoding: istring(c.cte.as_deref().unwrap_or(b"7bit")),
        size: size_u32(text),
    };
    let specific = match &node.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope(raw, inner.start, inner.body)),
            body_structure: Box::new(structure(raw, inner, ext)),
            number_of_lines: count_lines(text),
        },
        _ if c.is_text() => SpecificFields::Text {
            subtype: istring(&c.subtype),
            number_of_lines: count_lines(text),
        },
        _ => SpecificFields::Basic {
            r#type: istring(&c.ty),
            subtype: istring(&c.subtype),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: ext.then(|| SinglePartExtensionData {
            md5: nstring_nolf(c.md5.as_deref()),
            tail: Some(disposition_tail(c)),
        }),
    }
}

// ---- ENVELOPE -----------------------------------------------------------------------------

/// The ENVELOPE of the header `raw[start..end]`.
fn envelope(raw: &[u8], start: usize, end: usize) -> Envelope<'static> {
    let mut date = None;
    let mut subject = None;
    let mut from = None;
    let mut sender = None;
    let mut reply_to = None;
    let mut to = None;
    let mut cc = None;
    let mut bcc = None;
    let mut in_reply_to = None;
    let mut message_id = None;
    for f in Fields::new(raw, start, end) {
        let slot = match f.name.to_ascii_lowercase().as_slice() {
            b"date" => &mut date,
            b"subject" => &mut subject,
            b"from" => &mut from,
            b"sender" => &mut sender,
            b"reply-to" => &mut reply_to,
            b"to" => &mut to,
            b"cc" => &mut cc,
            b"bcc" => &mut bcc,
            b"in-reply-to" => &mut in_reply_to,
            b"message-id" => &mut message_id,
            _ => continue,
        };
        *slot = Some(f.value);
    }
    let list = |v: Option<&[u8]>| v.map(addresses).unwrap_or_default();
    let from = list(from);
    let or_from = |v: Vec<Address<'static>>| if v.is_empty() { from.clone() } else { v };
    Envelope {
        date: nstring_nolf(date),
        subject: NString(subject.map(human)),
        sender: or_from(list(sender)),
        reply_to: or_from(list(reply_to)),
        from: from.clone(),
        to: list(to),
        cc: list(cc),
        bcc: list(bcc),
        in_reply_to: nstring_nolf(in_reply_to),
        message_id: nstring_nolf(message_id),
    }
}

/// A word of a phrase: its value (quoted strings unescaped), its source form, and whether
/// white space or a comment came before it.
struct Word<'a> {
    value: Cow<'a, [u8]>,
    source: &'a [u8],
    spaced: bool,
}

fn display(words: &[Word<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 && w.spaced {
            out.push(b' ');
        }
        out.extend_from_slice(&w.value);
    }
    out
}

fn joined(words: &[Word<'_>]) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.source.iter().copied())
        .collect()
}

fn address(
    name: Option<&[u8]>,
    adl: Option<&[u8]>,
    mailbox: Option<&[u8]>,
    host: Option<&[u8]>,
) -> Address<'static> {
    Address {
        name: NString(name.map(human)),
        adl: nstring_nolf(adl),
        mailbox: nstring_nolf(mailbox),
        host: nstring_nolf(host),
    }
}

fn mailbox_address(
    name: Option<Vec<u8>>,
    route: Vec<u8>,
    local: Vec<u8>,
    domain: Vec<u8>,
) -> Address<'static> {
    let local: &[u8] = if local.is_empty() {
        b"MISSING_MAILBOX"
    } else {
        &local
    };
    let domain: &[u8] = if domain.is_empty() {
        b"MISSING_DOMAIN"
    } else {
        &domain
    };
    address(
        name.as_deref(),
        (!route.is_empty()).then_some(route.as_slice()),
        Some(local),
        Some(domain),
    )
}

/// The value of the message's last top-level header field `name` (case-insensitive), as
/// ENVELOPE reads it (the last occurrence wins, as in Dovecot).
pub(super) fn header_value(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let header_end = Parser::new(raw).scan_header(0).0;
    Fields::new(raw, 0, header_end)
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .last()
        .map(|f| f.value.to_vec())
}

/// An address's display name, mailbox and host, each as written (`None`: NIL).
pub(super) type AddressParts = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The first address of an address header's `value` as ENVELOPE has it: display name,
/// mailbox (a group's name at a group's start) and host (none for a group).
pub(super) fn first_address(value: &[u8]) -> Option<AddressParts> {
    let part = |s: &NString<'_>| s.0.as_ref().map(|v| v.as_ref().to_vec());
    addresses(value)
        .first()
        .map(|a| (part(&a.name), part(&a.mailbox), part(&a.host)))
}

/// What SEARCH FROM, TO and CC match in an address header's `value`, read as ENVELOPE reads
/// it: each mailbox as `addr@domain` and as `name <addr@domain>` (when it has a name), and
/// each group's name (Dovecot's search matches groups the same way).
pub(super) fn address_search_texts(value: &[u8]) -> Vec<Vec<u8>> {
    let part = |s: &NString<'_>| s.0.as_ref().map(|v| v.as_ref().to_vec());
    let mut out = Vec::new();
    for a in addresses(value) {
        match (part(&a.name), part(&a.mailbox), part(&a.host)) {
            // A group's start (its name) and end.
            (_, Some(group), None) => out.push(group),
            (_, None, None) => {}
            (name, local, Some(host)) => {
                let mut addr = local.unwrap_or_default();
                addr.push(b'@');
                addr.extend_from_slice(&host);
                if let Some(mut name) = name {
                    name.extend_from_slice(b" <");
                    name.extend_from_slice(&addr);
                    name.push(b'>');
                    out.push(name);
                }
                out.push(addr);
            }
        }
    }
    out
}

/// An RFC 5322 address list, tolerantly: groups, routes, comments as names, missing parts
/// filled in.
fn addresses(v: &[u8]) -> Vec<Address<'static>> {
    let mut lex = Lex::new(v);
    let mut out = Vec::new();
    loop {
        lex.skip_cfws();
        match lex.peek() {
            None => break,
            Some(b',' | b';') => lex.i += 1,
            Some(_) => {
                let before = lex.i;
                lex.comment = None;
                let words = lex.words();
                lex.skip_cfws();
                if lex.peek() == Some(b':') {
                    lex.i += 1;
                    let name = display(&words);
                    out.push(address(None, None, Some(&name), None));
                    loop {
                        lex.skip_cfws();
                        match lex.peek() {
                            None => break,
                            Some(b';') => {
                                lex.i += 1;
                                break;
                            }
                            Some(b',') => lex.i += 1,
                            Some(_) => {
                                let at = lex.i;
                                lex.comment = None;
                                let words = lex.words();
                                lex.skip_cfws();
                                lex.mailbox(words, &mut out);
                                if lex.i == at {
                                    lex.i += 1;
                                }
                            }
                        }
                    }
                    out.push(address(None, None, None, None));
                } else {
                    lex.mailbox(words, &mut out);
                }
                if lex.i == before {
                    lex.i += 1;
                }
            }
        }
    }
    out
}

impl<'a> Lex<'a> {
    /// Atoms, quoted strings and dots, up to anything else.
    fn words(&mut self) -> Vec<Word<'a>> {
        let mut words = Vec::new();
        loop {
            let spaced = self.skip_cfws();
            let start = self.i;
            let value: Cow<'a, [u8]> = match self.peek() {
                Some(b'"') => self.quoted().into(),
                Some(b'.') => {
                    self.i += 1;
                    Cow::Borrowed(&b"."[..])
                }
                Some(b) if is_atext(b) => self.atom().into(),
                _ => break,
            };
            words.push(Word {
                value,
                source: sub(self.s, start, self.i),
                spaced,
            });
        }
        words
    }

    /// A domain: a domain literal, or atoms and dots.
    fn domain(&mut self) -> Vec<u8> {
        self.skip_cfws();
        if self.peek() == Some(b'[') {
            let start = self.i;
            while let Some(b) = self.peek() {
                self.i += 1;
                match b {
                    b']' => break,
                    b'\\' if self.peek().is_some() => self.i += 1,
                    _ => {}
                }
            }
            return sub(self.s, start, self.i).to_vec();
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'.') => {
                    self.i += 1;
                    out.push(b'.');
                    self.skip_cfws();
                    continue;
                }
                Some(b) if is_atext(b) => out.extend_from_slice(self.atom()),
                _ => break,
            }
            // After an atom, go on only for a dot.
            let save = self.i;
            self.skip_cfws();
            if !matches!(self.peek(), Some(b'.')) {
                self.i = save;
                break;
            }
        }
        out
    }

    /// The rest of a mailbox after its leading `words`: `<[route:]addr-spec>`, `@domain`, or
    /// nothing (a bare local part).
    fn mailbox(&mut self, words: Vec<Word<'a>>, out: &mut Vec<Address<'static>>) {
        match self.peek() {
            Some(b'<') => {
                self.i += 1;
                let mut route = Vec::new();
                self.skip_cfws();
                if self.peek() == Some(b'@') {
                    let save = self.i;
                    loop {
                        self.skip_cfws();
                        match self.peek() {
                            Some(b'@') => {
                                self.i += 1;
                                if !route.is_empty() {
                                    route.push(b',');
                                }
                                route.push(b'@');
                                route.extend_from_slice(&self.domain());
                            }
                            Some(b',') => self.i += 1,
                            Some(b':') => {
                                self.i += 1;
                                break;
                            }
                            // `<@domain>` and the like: not a route after all.
                            _ => {
                                self.i = save;
                                route.clear();
                                break;
                            }
                        }
                    }
                }
                let local = joined(&self.words());
                self.skip_cfws();
                let domain = if self.peek() == Some(b'@') {
                    self.i += 1;
                    self.domain()
                } else {
                    Vec::new()
                };
                while let Some(b) = self.peek() {
                    self.i += 1;
                    if b == b'>' {
                        break;
                    }
                }
                self.skip_cfws();
                let name = if words.is_empty() {
                    self.comment.take()
                } else {
                    Some(display(&words))
                };
                out.push(mailbox_address(name, route, local, domain));
            }
            Some(b'@') => {
                self.i += 1;
                let domain = self.domain();
                self.skip_cfws();
                let name = self.comment.take();
                out.push(mailbox_address(name, Vec::new(), joined(&words), domain));
            }
            _ if words.is_empty() => {}
            _ => {
                let name = self.comment.take();
                out.push(mailbox_address(
                    name,
                    Vec::new(),
                    display(&words),
                    Vec::new(),
                ));
            }
        }
    }
}

// ---- INTERNALDATE -------------------------------------------------------------------------

/// `secs` (Unix time) as an IMAP date-time in UTC. imap-types builds its `DateTime` only from
/// a chrono value, and chrono is not a dependency here, so the text is formatted with jiff
/// and read back with imap-codec.
fn internal_date(secs: i64) -> Option<DateTime> {
    let ts = jiff::Timestamp::from_second(secs).ok()?;
    let text = ts.strftime("%d-%b-%Y %H:%M:%S +0000").to_string();
    let line = format!("* 1 FETCH (INTERNALDATE \"{text}\")\r\n");
    let (_, response) = ResponseCodec::default().decode(line.as_bytes()).ok()?;
    let Response::Data(Data::Fetch { items, .. }) = response else {
        return None;
    };
    items.into_iter().find_map(|item| match item {
        MessageDataItem::InternalDate(date) => Some(date),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use imap_codec::encode::Encoder;
    use imap_codec::{CommandCodec, ResponseCodec};
    use imap_next::imap_types::command::CommandBody;
    use imap_next::imap_types::fetch::MacroOrMessageDataItemNames;
    use imap_next::imap_types::flag::Flag;

    use super::*;

    /// The data item names of `FETCH 1 <items>`, as imap-codec parses them.
    fn names(items: &str) -> Vec<MessageDataItemName<'static>> {
        let line = format!("a FETCH 1 {items}\r\n");
        let (_, command) = CommandCodec::default()
            .decode(line.as_bytes())
            .unwrap_or_else(|e| panic!("{items}: {e:?}"));
        let CommandBody::Fetch {
            macro_or_item_names,
            ..
        } = command.body
        else {
            panic!("not a FETCH: {items}");
        };
        match macro_or_item_names {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|i| i.to_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
                v.into_iter().map(|i| i.to_static()).collect()
            }
        }
    }

    fn fetch_raw(raw: Option<&[u8]>, items: &str) -> Result<Vec<MessageDataItem<'static>>, Error> {
        let src = FetchSource {
            uid: 7,
            // 2023-11-14 22:13:20 UTC
            received_at: 1_700_000_000,
            size: raw.map_or(0, <[u8]>::len) as u64,
            raw: raw.map(<[u8]>::to_vec),
            flags: vec![FlagFetch::Flag(Flag::Seen)],
        };
        fetch_items(&names(items), src)
    }

    /// The untagged FETCH response for `items` of message `raw`, as sent on the wire.
    fn wire(raw: &[u8], items: &str) -> Vec<u8> {
        let out = fetch_raw(Some(raw), items).unwrap_or_else(|e| panic!("{items}: {e}"));
        let out = Vec1::try_from(out).expect("at least one item");
        let plain = ResponseCodec::default()
            .encode(&Response::Data(Data::Fetch {
                seq: NonZeroU32::MIN,
                items: out.clone(),
            }))
            .dump();
        let ours = encode_fetch(NonZeroU32::MIN, out, &names(items));
        if !has_partial_binary(&names(items)) {
            assert_eq!(ours, plain, "item by item, the same bytes");
        }
        ours
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    // ---- test messages ----

    /// RFC 3501's example message, without MIME.
    const SIMPLE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
        From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
        Subject: afternoon meeting\r\n\
        To: mooch@owatagu.siam.edu.example\r\n\
        Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
        \r\n\
        Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    const SIMPLE_HEADER: usize = 202;

    const ALTERNATIVE: &[u8] = b"From: a@example.com\r\n\
        To: b@example.com\r\n\
        Subject: alt\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        This is a multi-part message in MIME format.\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Caf=C3=A9 au lait\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=\"utf-8\"\r\n\
        \r\n\
        <p>Caf&eacute;</p>\r\n\
        \r\n\
        --b1--\r\n";

    /// Text, a base64 attachment (decoding to bytes with NUL) and an attached message;
    /// groups, a comment as a name and a folded, encoded subject in the header.
    const MIXED: &[u8] = b"From: \"Doe, Jane\" <jane@example.com>\r\n\
        To: team:  ann@example.com, \"Bob B.\" <bob@example.com>;, carl@example.com (Carl C)\r\n\
        Cc: undisclosed-recipients:;\r\n\
        Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\n\x20and  more\r\n\
        Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\
        Message-ID: <m3@example.com>\r\n\
        In-Reply-To: <m2@example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed;\r\n\x20boundary=\"==mix==\"\r\n\
        \r\n\
        --==mix==\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        See attached.\r\n\
        \r\n\
        --==mix==\r\n\
        Content-Type: application/pdf; name=\"r.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
        Content-ID: <pdf1@example.com>\r\n\
        Content-Description: The report\r\n\
        \r\n\
        JVBERi0xLjQKJcfs\r\n\
        AAEC\r\n\
        --==mix==\r\n\
        Content-Type: message/rfc822\r\n\
        Content-Disposition: inline\r\n\
        \r\n\
        From: x@example.net\r\n\
        Subject: inner\r\n\
        Date: Wed, 3 Jan 2024 09:00:00 +0000\r\n\
        \r\n\
        Inner body line 1\r\n\
        Inner body line 2\r\n\
        --==mix==--\r\n\
        epilogue\r\n";
    const MIXED_INNER: &[u8] = b"From: x@example.net\r\n\
        Subject: inner\r\n\
        Date: Wed, 3 Jan 2024 09:00:00 +0000\r\n\
        \r\n\
        Inner body line 1\r\n\
        Inner body line 2";

    /// The message of Dovecot's own BODYSTRUCTURE test (src/lib-imap/test-imap-bodystructure.c),
    /// there with LF line ends; [`dovecot_crlf`] gives it with CRLF.
    const DOVECOT_LF: &[u8] = b"From: user@domain.org\n\
        Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"foo\n\x20bar\"\n\
        \n\
        Root MIME prologue\n\
        \n\
        --foo bar\n\
        Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n\
        Content-ID: <foo@example.com>\n\
        Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
        Content-Disposition: inline; foo=bar\n\
        Content-Description: hellodescription\n\
        Content-Language: en, fi, se\n\
        Content-Location: http://example.com/test.txt\n\
        \n\
        hello\n\
        \n\
        --foo bar\n\
        Content-Type: message/rfc822\n\
        \n\
        From: sub@domain.org\n\
        To: sub-to1@domain.org, sub-to2@domain.org\n\
        Date: Sun, 12 Aug 2012 12:34:56 +0300\n\
        Subject: submsg\n\
        Content-Type: multipart/alternative; boundary=\"sub1\"\n\
        \n\
        Sub MIME prologue\n\
        --sub1\n\
        Content-Type: text/html\n\
        Content-Transfer-Encoding: 8bit\n\
        \n\
        <p>Hello world</p>\n\
        \n\
        --sub1\n\
        Content-Type: text/plain\n\
        Content-Transfer-Encoding: ?invalid\n\
        \n\
        Hello another world\n\
        \n\
        --sub1--\n\
        Sub MIME epilogue\n\
        \n\
        --foo bar--\n\
        Root MIME epilogue\n";

    fn dovecot_crlf() -> Vec<u8> {
        let mut out = Vec::new();
        for &b in DOVECOT_LF {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    /// Dovecot's expected BODYSTRUCTURE for its test message (CRLF sizes), with the
    /// "TEXT" and "MESSAGE" "RFC822" tokens in imap-codec's upper case.
    const DOVECOT_BODYSTRUCTURE: &[u8] = b"(\
        (\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
        \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
        (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")\
        (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 \
        (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) \
        ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)\
        (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) \
        \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
        \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)";

    const DOVECOT_BODY: &[u8] = b"(\
        (\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
        \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)\
        (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 \
        (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) \
        ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)\
        (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) \
        \"alternative\") 21) \"mixed\")";

    /// 8-bit body and a raw 8-bit subject.
    const EIGHT_BIT: &[u8] = b"From: a@example.com\r\n\
        Subject: Gr\xfc\xdfe\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        Gr\xfc\xdfe\r\n";

    const NUL: &[u8] = b"From: a@example.com\r\nSubject: nul\r\n\r\na\0b\r\n";

    const NO_HEADER: &[u8] = b"Hello, this is not a header\r\njust text\r\n";

    const HEADER_ONLY: &[u8] = b"Subject: only\r\n";

    const NO_BOUNDARY: &[u8] =
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\nbody\r\n";

    const UNCLOSED: &[u8] = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
        --x\r\nContent-Type: text/plain\r\n\r\nabc\r\n";

    const DIGEST: &[u8] = b"Content-Type: multipart/digest; boundary=d\r\n\r\n\
        --d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n";

    const RFC2231: &[u8] = b"MIME-Version: 1.0\r\n\
        Content-Type: application/octet-stream;\r\n\x20name*0=\"long\";\r\n\x20name*1=\"name.txt\"\r\n\
        Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.txt\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        AAEC\r\n";

    /// An inner boundary that the outer one is a prefix of: the longest open boundary wins.
    const PREFIX_BOUNDARIES: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n\
        --a\r\n\
        Content-Type: multipart/alternative; boundary=ab\r\n\r\n\
        --ab\r\n\r\none\r\n\
        --ab\r\n\r\ntwo\r\n\
        --ab--\r\n\
        --a\r\n\r\nthree\r\n\
        --a--\r\n";

    /// A part header cut short by the next delimiter.
    const CUT_HEADER: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\
        --b\r\n\r\nx\r\n\
        --b--\r\n";

    const UPPER_CASE: &[u8] = b"MIME-Version: 1.0\r\n\
        Content-Type: TEXT/PLAIN (a comment); CHARSET=UTF-8\r\n\
        Content-Transfer-Encoding: BASE64\r\n\
        \r\n\
        w6k=\r\n";

    // ---- the table ----

    /// (what, message, FETCH items, the response Dovecot sends).
    fn cases() -> Vec<(&'static str, Vec<u8>, &'static str, Vec<u8>)> {
        let simple_body = &SIMPLE[SIMPLE_HEADER..];
        let simple_header = &SIMPLE[..SIMPLE_HEADER];
        let from_subject: &[u8] = b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
            Subject: afternoon meeting\r\n\r\n";
        let simple_env: &[u8] = b"(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" \
            ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
            ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
            ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
            ((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
            \"<B27397-0100000@Blurdybloop.example>\")";
        let alt_text = &ALTERNATIVE[127..];
        let dovecot = dovecot_crlf();
        let nested_text = {
            let from = dovecot
                .windows(17)
                .position(|w| w == b"Sub MIME prologue")
                .expect("prologue");
            dovecot[from..from + 234].to_vec()
        };
        vec![
            // -- a simple message --
            (
                "record-only items",
                SIMPLE.to_vec(),
                "(UID FLAGS INTERNALDATE RFC822.SIZE)",
                b"* 1 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" \
                  RFC822.SIZE 257)\r\n"
                    .to_vec(),
            ),
            (
                "envelope (RFC 3501's example)",
                SIMPLE.to_vec(),
                "ENVELOPE",
                cat(&[b"* 1 FETCH (ENVELOPE ", simple_env, b")\r\n"]),
            ),
            (
                "FULL macro",
                SIMPLE.to_vec(),
                "FULL",
                cat(&[
                    b"* 1 FETCH (FLAGS (\\Seen) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" \
                      RFC822.SIZE 257 ENVELOPE ",
                    simple_env,
                    b" BODY (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 55 1))\r\n",
                ]),
            ),
            (
                "text/plain without MIME",
                SIMPLE.to_vec(),
                "BODYSTRUCTURE",
                b"* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 55 1 NIL NIL NIL NIL))\r\n"
                    .to_vec(),
            ),
            (
                "HEADER.FIELDS: message order, any case, the blank line",
                SIMPLE.to_vec(),
                "BODY.PEEK[HEADER.FIELDS (Subject from)]",
                cat(&[
                    b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {78}\r\n",
                    from_subject,
                    b")\r\n",
                ]),
            ),
            (
                "HEADER.FIELDS.NOT",
                SIMPLE.to_vec(),
                "BODY.PEEK[HEADER.FIELDS.NOT (Date Message-ID TO)]",
                cat(&[
                    b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (DATE MESSAGE-ID TO)] {78}\r\n",
                    from_subject,
                    b")\r\n",
                ]),
            ),
            (
                "HEADER.FIELDS matching nothing",
                SIMPLE.to_vec(),
                "BODY.PEEK[HEADER.FIELDS (X-Nothing)]",
                b"* 1 FETCH (BODY[HEADER.FIELDS (X-NOTHING)] {2}\r\n\r\n)\r\n".to_vec(),
            ),
            (
                "TEXT and part 1 of a non-multipart message",
                SIMPLE.to_vec(),
                "(BODY[TEXT] BODY[1])",
                cat(&[
                    b"* 1 FETCH (BODY[TEXT] {55}\r\n",
                    simple_body,
                    b" BODY[1] {55}\r\n",
                    simple_body,
                    b")\r\n",
                ]),
            ),
            (
                "partial fetches, one past the end",
                SIMPLE.to_vec(),
                "(BODY[]<0.10> BODY.PEEK[]<10000.5> BODY[TEXT]<50.100>)",
                b"* 1 FETCH (BODY[]<0> {10}\r\nDate: Mon, BODY[]<10000> {0}\r\n \
                  BODY[TEXT]<50> {5}\r\now?\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "nonexistent parts are empty; MIME of part 1 is the header",
                SIMPLE.to_vec(),
                "(BODY[2] BODY[1.1] BODY[1.HEADER] BODY[1.MIME])",
                cat(&[
                    b"* 1 FETCH (BODY[2] {0}\r\n BODY[1.1] {0}\r\n BODY[1.HEADER] {0}\r\n \
                      BODY[1.MIME] {202}\r\n",
                    simple_header,
                    b")\r\n",
                ]),
            ),
            (
                "RFC822.HEADER, RFC822.TEXT, RFC822",
                SIMPLE.to_vec(),
                "(RFC822.HEADER RFC822.TEXT RFC822)",
                cat(&[
                    b"* 1 FETCH (RFC822.HEADER {202}\r\n",
                    simple_header,
                    b" RFC822.TEXT {55}\r\n",
                    simple_body,
                    b" RFC822 {257}\r\n",
                    SIMPLE,
                    b")\r\n",
                ]),
            ),
            // -- multipart/alternative --
            (
                "multipart/alternative",
                ALTERNATIVE.to_vec(),
                "(BODY BODYSTRUCTURE)",
                b"* 1 FETCH (BODY ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \
                  \"quoted-printable\" 17 0)(\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \
                  \"7bit\" 20 1) \"alternative\") BODYSTRUCTURE ((\"TEXT\" \"plain\" \
                  (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 0 NIL NIL NIL NIL)\
                  (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 20 1 NIL NIL NIL NIL) \
                  \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n"
                    .to_vec(),
            ),
            (
                "parts: the CRLF before a delimiter belongs to it",
                ALTERNATIVE.to_vec(),
                "(BODY[1] BODY[2])",
                b"* 1 FETCH (BODY[1] {17}\r\nCaf=C3=A9 au lait BODY[2] {20}\r\n\
                  <p>Caf&eacute;</p>\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "MIME of a part; missing part; 1.1 of a leaf part is the part (Dovecot)",
                ALTERNATIVE.to_vec(),
                "(BODY[1.MIME] BODY[3] BODY[1.1])",
                b"* 1 FETCH (BODY[1.MIME] {88}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\r\n BODY[3] {0}\r\n \
                  BODY[1.1] {17}\r\nCaf=C3=A9 au lait)\r\n"
                    .to_vec(),
            ),
            (
                "TEXT of a multipart message",
                ALTERNATIVE.to_vec(),
                "BODY.PEEK[TEXT]",
                cat(&[b"* 1 FETCH (BODY[TEXT] {241}\r\n", alt_text, b")\r\n"]),
            ),
            (
                "BINARY decodes quoted-printable",
                ALTERNATIVE.to_vec(),
                "(BINARY[1] BINARY.SIZE[1] BINARY.PEEK[2])",
                b"* 1 FETCH (BINARY[1] {13}\r\nCaf\xc3\xa9 au lait BINARY.SIZE[1] 13 \
                  BINARY[2] {20}\r\n<p>Caf&eacute;</p>\r\n)\r\n"
                    .to_vec(),
            ),
            // -- multipart/mixed with an attachment and a message --
            (
                "envelope: groups, comment as name, folded subject",
                MIXED.to_vec(),
                "ENVELOPE",
                b"* 1 FETCH (ENVELOPE (\"Tue, 2 Jan 2024 10:00:00 +0000\" \
                  {37}\r\n=?utf-8?q?R=C3=A9sum=C3=A9?= and more \
                  ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
                  ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
                  ((\"Doe, Jane\" NIL \"jane\" \"example.com\")) \
                  ((NIL NIL \"team\" NIL)(NIL NIL \"ann\" \"example.com\")\
                  (\"Bob B.\" NIL \"bob\" \"example.com\")(NIL NIL NIL NIL)\
                  (\"Carl C\" NIL \"carl\" \"example.com\")) \
                  ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL \
                  \"<m2@example.com>\" \"<m3@example.com>\"))\r\n"
                    .to_vec(),
            ),
            (
                "multipart/mixed: base64 attachment, message/rfc822",
                MIXED.to_vec(),
                "BODYSTRUCTURE",
                b"* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 15 1 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"r.pdf\") \
                  \"<pdf1@example.com>\" \"The report\" \"base64\" 22 NIL (\"attachment\" \
                  (\"filename\" \"r.pdf\")) NIL NIL)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 113 \
                  (\"Wed, 3 Jan 2024 09:00:00 +0000\" \"inner\" ((NIL NIL \"x\" \"example.net\")) \
                  ((NIL NIL \"x\" \"example.net\")) ((NIL NIL \"x\" \"example.net\")) NIL NIL NIL \
                  NIL NIL) (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 36 1 NIL \
                  NIL NIL NIL) 5 NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"==mix==\") \
                  NIL NIL NIL))\r\n"
                    .to_vec(),
            ),
            (
                "HEADER and TEXT of an attached message, and its part 1",
                MIXED.to_vec(),
                "(BODY[3.HEADER] BODY[3.TEXT] BODY[3.1])",
                cat(&[
                    b"* 1 FETCH (BODY[3.HEADER] {77}\r\n",
                    &MIXED_INNER[..77],
                    b" BODY[3.TEXT] {36}\r\n",
                    &MIXED_INNER[77..],
                    b" BODY[3.1] {36}\r\n",
                    &MIXED_INNER[77..],
                    b")\r\n",
                ]),
            ),
            (
                "MIME and HEADER.FIELDS of an attached message; HEADER of a non-message",
                MIXED.to_vec(),
                "(BODY[3.MIME] BODY.PEEK[3.HEADER.FIELDS (subject)] BODY[2.HEADER] BODY[3])",
                cat(&[
                    b"* 1 FETCH (BODY[3.MIME] {61}\r\nContent-Type: message/rfc822\r\n\
                      Content-Disposition: inline\r\n\r\n \
                      BODY[3.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n \
                      BODY[2.HEADER] {0}\r\n BODY[3] {113}\r\n",
                    MIXED_INNER,
                    b")\r\n",
                ]),
            ),
            (
                "BINARY of base64 with NUL is a literal8",
                MIXED.to_vec(),
                "(BINARY[2] BINARY.SIZE[2] BINARY[4] BINARY.PEEK[2]<4.4>)",
                b"* 1 FETCH (BINARY[2] ~{15}\r\n%PDF-1.4\n%\xc7\xec\0\x01\x02 BINARY.SIZE[2] 15 \
                  BINARY[4] {0}\r\n BINARY[2]<4> {4}\r\n-1.4)\r\n"
                    .to_vec(),
            ),
            (
                "partial BINARY names its origin; literal8 only when the range holds NUL",
                MIXED.to_vec(),
                "(BINARY.PEEK[2]<0.7> BINARY.PEEK[2]<10.4> UID BINARY.PEEK[2]<99.4>)",
                b"* 1 FETCH (BINARY[2]<0> {7}\r\n%PDF-1. BINARY[2]<10> ~{4}\r\n\xc7\xec\0\x01 \
                  UID 7 BINARY[2]<99> {0}\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "partial BINARY of quoted-printable counts decoded bytes",
                ALTERNATIVE.to_vec(),
                "(BINARY.PEEK[1]<0.7> BINARY.PEEK[1]<3.5> BINARY.PEEK[1])",
                b"* 1 FETCH (BINARY[1]<0> {7}\r\nCaf\xc3\xa9 a BINARY[1]<3> {5}\r\n\xc3\xa9 au \
                  BINARY[1] {13}\r\nCaf\xc3\xa9 au lait)\r\n"
                    .to_vec(),
            ),
            // -- Dovecot's own test message --
            (
                "Dovecot's test message: BODYSTRUCTURE",
                dovecot.clone(),
                "BODYSTRUCTURE",
                cat(&[b"* 1 FETCH (BODYSTRUCTURE ", DOVECOT_BODYSTRUCTURE, b")\r\n"]),
            ),
            (
                "Dovecot's test message: BODY",
                dovecot.clone(),
                "BODY",
                cat(&[b"* 1 FETCH (BODY ", DOVECOT_BODY, b")\r\n"]),
            ),
            (
                "parts inside an attached message",
                dovecot.clone(),
                "(BODY[2.1] BODY[2.2.MIME] BODY.PEEK[2.HEADER.FIELDS (to)])",
                b"* 1 FETCH (BODY[2.1] {20}\r\n<p>Hello world</p>\r\n \
                  BODY[2.2.MIME] {65}\r\nContent-Type: text/plain\r\n\
                  Content-Transfer-Encoding: ?invalid\r\n\r\n \
                  BODY[2.HEADER.FIELDS (TO)] {46}\r\nTo: sub-to1@domain.org, sub-to2@domain.org\r\n\
                  \r\n)\r\n"
                    .to_vec(),
            ),
            (
                "TEXT of an attached message: prologue to epilogue",
                dovecot.clone(),
                "BODY[2.TEXT]",
                cat(&[b"* 1 FETCH (BODY[2.TEXT] {234}\r\n", &nested_text, b")\r\n"]),
            ),
            (
                "bare LF: sizes count the archived bytes",
                DOVECOT_LF.to_vec(),
                "BODY",
                b"* 1 FETCH (BODY ((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \
                  \"quoted\\\"string\") \"<foo@example.com>\" \"hellodescription\" \"7bit\" 6 1)\
                  (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 391 (\"Sun, 12 Aug 2012 12:34:56 \
                  +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \
                  \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" \
                  \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) \
                  ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 19 1)(\"TEXT\" \
                  \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 20 1) \"alternative\") 21) \
                  \"mixed\"))\r\n"
                    .to_vec(),
            ),
            (
                "bare LF: part data",
                DOVECOT_LF.to_vec(),
                "(BODY[1] BODY[2.2])",
                b"* 1 FETCH (BODY[1] {6}\r\nhello\n BODY[2.2] {20}\r\nHello another world\n)\r\n"
                    .to_vec(),
            ),
            // -- 8-bit, NUL --
            (
                "8-bit body and raw 8-bit subject",
                EIGHT_BIT.to_vec(),
                "(ENVELOPE BODYSTRUCTURE BODY[TEXT])",
                b"* 1 FETCH (ENVELOPE (NIL {5}\r\nGr\xfc\xdfe ((NIL NIL \"a\" \"example.com\")) \
                  ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL \
                  NIL NIL) BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \
                  \"8bit\" 7 1 NIL NIL NIL NIL) BODY[TEXT] {7}\r\nGr\xfc\xdfe\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "NUL: 0x80 in BODY, exact in BINARY",
                NUL.to_vec(),
                "(BODY[TEXT] BINARY.PEEK[1] BINARY.SIZE[1] RFC822.SIZE)",
                b"* 1 FETCH (BODY[TEXT] {5}\r\na\x80b\r\n BINARY[1] ~{5}\r\na\0b\r\n \
                  BINARY.SIZE[1] 5 RFC822.SIZE 42)\r\n"
                    .to_vec(),
            ),
            (
                "NUL: whole message",
                NUL.to_vec(),
                "(BODY.PEEK[] BINARY.PEEK[])",
                b"* 1 FETCH (BODY[] {42}\r\nFrom: a@example.com\r\nSubject: nul\r\n\r\na\x80b\r\n \
                  BINARY[] ~{42}\r\nFrom: a@example.com\r\nSubject: nul\r\n\r\na\0b\r\n)\r\n"
                    .to_vec(),
            ),
            // -- malformed --
            (
                "no header block",
                NO_HEADER.to_vec(),
                "(ENVELOPE BODYSTRUCTURE BODY[HEADER] BODY[TEXT])",
                cat(&[
                    b"* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
                      BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" \
                      40 2 NIL NIL NIL NIL) BODY[HEADER] {0}\r\n BODY[TEXT] {40}\r\n",
                    NO_HEADER,
                    b")\r\n",
                ]),
            ),
            (
                "header only, no blank line",
                HEADER_ONLY.to_vec(),
                "(BODYSTRUCTURE BODY[HEADER] BODY[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                b"* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 0 0 NIL NIL NIL NIL) BODY[HEADER] {15}\r\nSubject: only\r\n \
                  BODY[TEXT] {0}\r\n BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: only\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "multipart without a boundary",
                NO_BOUNDARY.to_vec(),
                "(BODYSTRUCTURE BODY[1])",
                b"* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL) BODY[1] {0}\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "multipart never closed",
                UNCLOSED.to_vec(),
                "(BODYSTRUCTURE BODY[1])",
                b"* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 5 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"x\") NIL NIL NIL) \
                  BODY[1] {5}\r\nabc\r\n)\r\n"
                    .to_vec(),
            ),
            (
                "multipart/digest parts default to message/rfc822",
                DIGEST.to_vec(),
                "BODYSTRUCTURE",
                b"* 1 FETCH (BODYSTRUCTURE ((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 21 \
                  (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"plain\" (\"charset\" \
                  \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) \"digest\" \
                  (\"boundary\" \"d\") NIL NIL NIL))\r\n"
                    .to_vec(),
            ),
            (
                "nested boundaries sharing a prefix",
                PREFIX_BOUNDARIES.to_vec(),
                "(BODYSTRUCTURE BODY[1.2] BODY[2])",
                b"* 1 FETCH (BODYSTRUCTURE (((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL \
                  NIL \"7bit\" 3 0 NIL NIL NIL NIL)(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") \
                  NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"ab\") NIL \
                  NIL NIL)(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 \
                  NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"a\") NIL NIL NIL) \
                  BODY[1.2] {3}\r\ntwo BODY[2] {5}\r\nthree)\r\n"
                    .to_vec(),
            ),
            (
                "a part header cut short by a delimiter",
                CUT_HEADER.to_vec(),
                "(BODYSTRUCTURE BODY[1.MIME] BODY[1] BODY[2])",
                b"* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \
                  \"7bit\" 0 0 NIL NIL NIL NIL)(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL \
                  NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL) \
                  BODY[1.MIME] {24}\r\nContent-Type: text/plain BODY[1] {0}\r\n \
                  BODY[2] {1}\r\nx)\r\n"
                    .to_vec(),
            ),
            (
                "strings as written: upper case, comments skipped",
                UPPER_CASE.to_vec(),
                "(BODYSTRUCTURE BINARY[1])",
                b"* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \
                  \"BASE64\" 6 1 NIL NIL NIL NIL) BINARY[1] {2}\r\n\xc3\xa9)\r\n"
                    .to_vec(),
            ),
            (
                "RFC 2231 parameters; BINARY of a single-part message",
                RFC2231.to_vec(),
                "(BODYSTRUCTURE BINARY[1])",
                b"* 1 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" (\"name\" \
                  \"longname.txt\") NIL NIL \"base64\" 6 NIL (\"attachment\" (\"filename*\" \
                  \"utf-8''%E2%82%AC.txt\")) NIL NIL) BINARY[1] ~{3}\r\n\0\x01\x02)\r\n"
                    .to_vec(),
            ),
        ]
    }

    #[test]
    fn fetch_responses_match_dovecot() {
        let mut failed = Vec::new();
        for (what, raw, items, expected) in cases() {
            let got = wire(&raw, items);
            if got != expected {
                failed.push(format!(
                    "{what} ({items}):\n  want {}\n  got  {}",
                    String::from_utf8_lossy(&expected).escape_debug(),
                    String::from_utf8_lossy(&got).escape_debug()
                ));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn record_items_need_no_bytes() {
        let items = "(UID FLAGS INTERNALDATE RFC822.SIZE)";
        assert!(!needs_raw(&names(items)));
        assert!(fetch_raw(None, items).is_ok());
        assert_eq!(fetch_raw(None, "ENVELOPE"), Err(Error::RawMissing));
        assert_eq!(fetch_raw(None, "BODY.PEEK[]"), Err(Error::RawMissing));
    }

    #[test]
    fn seen_is_set_by_body_but_not_peek() {
        assert!(sets_seen(&names("BODY[]")));
        assert!(sets_seen(&names("(UID RFC822.TEXT)")));
        assert!(sets_seen(&names("BINARY[1]")));
        assert!(!sets_seen(&names(
            "(BODY.PEEK[] RFC822.HEADER BINARY.PEEK[1] ENVELOPE)"
        )));
    }

    #[test]
    fn unknown_transfer_encoding_has_no_binary() {
        let raw = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n";
        assert_eq!(fetch_raw(Some(raw), "BINARY[1]"), Err(Error::UnknownCte));
        assert_eq!(
            fetch_raw(Some(raw), "BINARY.SIZE[1]"),
            Err(Error::UnknownCte)
        );
        // BODY is unaffected, and without MIME-Version the field does not count.
        assert!(fetch_raw(Some(raw), "BODY[1]").is_ok());
        let raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n";
        assert!(fetch_raw(Some(raw), "BINARY[1]").is_ok());
    }

    #[test]
    fn internal_date_is_utc() {
        let date = internal_date(0).expect("epoch");
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(MessageDataItem::InternalDate(date)),
        });
        assert_eq!(
            ResponseCodec::default().encode(&response).dump(),
            b"* 1 FETCH (INTERNALDATE \"01-Jan-1970 00:00:00 +0000\")\r\n"
        );
        assert!(internal_date(i64::MAX).is_none());
    }

    fn base64(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        base64_decode(input, &mut out);
        let mut count = Count(0);
        base64_decode(input, &mut count);
        assert_eq!(count.0, out.len());
        out
    }

    fn qp(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        qp_decode(input, &mut out);
        let mut count = Count(0);
        qp_decode(input, &mut count);
        assert_eq!(count.0, out.len());
        out
    }

    #[test]
    fn base64_is_lenient() {
        assert_eq!(base64(b"aGVsbG8="), b"hello");
        assert_eq!(base64(b"aGVs\r\nbG8h"), b"hello!");
        assert_eq!(base64(b"aG*V!s bG8"), b"hello");
        // Two encodings one after the other.
        assert_eq!(base64(b"aGk=aGk="), b"hihi");
    }

    #[test]
    fn quoted_printable_is_lenient() {
        assert_eq!(qp(b"a=3Db=\r\nc  \r\nd=\ne"), b"a=bc\r\nde");
        assert_eq!(qp(b"100% =zz =4"), b"100% =zz =4");
        assert_eq!(qp(b"caf=c3=a9\n"), b"caf\xc3\xa9\n");
        assert_eq!(qp(b"end=  "), b"end");
    }

    /// The address list of a `To:` field with `value`, as encoded.
    fn address_text(value: &[u8]) -> String {
        let header = [b"To: ", value, b"\r\n\r\n"].concat();
        let env = envelope(&header, 0, header.len());
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(MessageDataItem::Envelope(env)),
        });
        let text =
            String::from_utf8(ResponseCodec::default().encode(&response).dump()).expect("ASCII");
        text.strip_prefix("* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL ")
            .and_then(|t| t.strip_suffix(" NIL NIL NIL NIL))\r\n"))
            .unwrap_or(&text)
            .to_owned()
    }

    #[test]
    fn addresses_are_parsed_like_dovecot() {
        let cases: &[(&[u8], &str)] = &[
            (b"a@b.example", "((NIL NIL \"a\" \"b.example\"))"),
            (
                b"\"Last, First\" <first@b.example>",
                "((\"Last, First\" NIL \"first\" \"b.example\"))",
            ),
            (
                b"<@r1.example,@r2.example:u@b.example>",
                "((NIL \"@r1.example,@r2.example\" \"u\" \"b.example\"))",
            ),
            (
                b"u@b.example (Real Name)",
                "((\"Real Name\" NIL \"u\" \"b.example\"))",
            ),
            (b"localonly", "((NIL NIL \"localonly\" \"MISSING_DOMAIN\"))"),
            (b"<>", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))"),
            (
                b"\"john doe\"@b.example",
                "((NIL NIL \"\\\"john doe\\\"\" \"b.example\"))",
            ),
            (
                b"=?utf-8?q?J=C3=B6rg?= <j@b.example>",
                "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"b.example\"))",
            ),
            (
                b"\"A  B\" <x@b.example>",
                "(({3}\r\nA B NIL \"x\" \"b.example\"))",
            ),
            (
                b"Tab\tName  <t@b.example>",
                "((\"Tab Name\" NIL \"t\" \"b.example\"))",
            ),
            (b"", "NIL"),
        ];
        for (value, want) in cases {
            assert_eq!(
                address_text(value),
                *want,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn strings_are_quoted_like_dovecot() {
        fn enc(s: IString<'static>) -> Vec<u8> {
            let response = Response::Data(Data::Fetch {
                seq: NonZeroU32::MIN,
                items: Vec1::from(MessageDataItem::Rfc822(NString(Some(s)))),
            });
            let out = ResponseCodec::default().encode(&response).dump();
            out["* 1 FETCH (RFC822 ".len()..out.len() - 3].to_vec()
        }
        assert_eq!(enc(istring(b"")), b"\"\"");
        assert_eq!(enc(istring(b"a\"b")), b"\"a\\\"b\"");
        assert_eq!(enc(istring(b"\"\"\"\"")), b"\"\\\"\\\"\\\"\\\"\"");
        assert_eq!(enc(istring(b"\"\"\"\"\"")), b"{5}\r\n\"\"\"\"\"");
        assert_eq!(enc(istring(b"\xff")), b"{1}\r\n\xff");
        assert_eq!(enc(istring(&nolf(b"foo\r\n bar"))), b"\"foo bar\"");
        assert_eq!(enc(istring(&nolf(b"foo\nbar"))), b"\"foo bar\"");
        assert_eq!(enc(human(b" \t ")), b"\"\"");
        assert_eq!(enc(human(b"plain text")), b"\"plain text\"");
        assert_eq!(enc(human(b" foo  \t ")), b"{3}\r\nfoo");
        assert_eq!(enc(human(b"hello\r\n  world")), b"{11}\r\nhello world");
        assert_eq!(enc(human(b"say \"hi\"")), b"{8}\r\nsay \"hi\"");
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        let mut raw = Vec::new();
        for i in 0..150 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let out = wire(&raw, "BODYSTRUCTURE");
        assert!(out.starts_with(b"* 1 FETCH (BODYSTRUCTURE (((("));
        assert!(
            String::from_utf8_lossy(&out).contains("\"application\" \"octet-stream\""),
            "the part at the limit is opaque"
        );
    }

    #[test]
    fn many_parts_are_cut_off() {
        let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..(MAX_PARTS + 10) {
            raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        raw.extend_from_slice(b"--b--\r\n");
        let root = Parser::new(&raw).entity(0, false, false, 0);
        let Kind::Multipart(children) = &root.kind else {
            panic!("not a multipart");
        };
        assert_eq!(children.len(), MAX_PARTS - 1);
        assert_eq!(root.end, raw.len());
    }

    #[test]
    fn large_message() {
        let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
        let lines = 20_000_000 / line.len();
        let mut raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
            --b\r\nContent-Type: application/octet-stream\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        for _ in 0..lines {
            raw.extend_from_slice(line);
        }
        raw.extend_from_slice(b"--b--\r\n");
        let started = std::time::Instant::now();
        let text = String::from_utf8(wire(&raw, "(BODYSTRUCTURE BINARY.SIZE[2])")).expect("text");
        let size = (line.len() * lines - 2).to_string();
        assert!(
            text.contains(&format!("\"base64\" {size} NIL NIL NIL NIL)")),
            "{text}"
        );
        assert!(
            text.contains(&format!("BINARY.SIZE[2] {}", lines * 54)),
            "{text}"
        );
        let took = started.elapsed();
        let started = std::time::Instant::now();
        let whole = fetch_raw(Some(&raw), "BODY.PEEK[]").expect("fetch");
        assert_eq!(whole.len(), 1);
        eprintln!("structure+size {took:?}, BODY[] {:?}", started.elapsed());
    }

    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"\n\n\n",
            b":",
            b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n--a\r\n",
            b"Content-Type: message/rfc822\r\n\r\n",
            b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nx",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n--a--",
            b"From: (unclosed comment\r\nTo: \"unclosed quote\r\nCc: <unclosed\r\n\r\n",
            b"Content-Type: text/plain; ;;; =; a=; b*1=x; b*3=y; c*=\r\n\r\n",
            b"To: a@[1.2.3.4], @x:, ,,, ;;; <@>, b@, @c\r\n\r\n",
            b"Content-Transfer-Encoding: base64\r\nMIME-Version: 1.0\r\n\r\n====\xff\0",
            b"\0\0\0\r\n\r\n\0",
        ];
        let items = "(ENVELOPE BODY BODYSTRUCTURE BODY[] BODY[HEADER] BODY[TEXT] BODY[1] \
                     BODY[1.MIME] BODY[1.1] BODY[1.HEADER] BODY[1.TEXT] BODY[1.1.1] BODY[2]<0.5> \
                     BINARY[1] BINARY.SIZE[1] BINARY[1.1] RFC822)";
        for raw in samples {
            let out = fetch_raw(Some(raw), items).expect("fetch");
            assert_eq!(out.len(), names(items).len());
        }
    }
}
