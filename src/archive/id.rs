//! Content-derived identities: the blob hash (exact bytes) and the stable id (the message).

use std::fmt;
use std::str::FromStr;

/// BLAKE3 of a message's exact bytes: the name of its blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    pub fn of(raw: &[u8]) -> Self {
        Self(*blake3::hash(raw).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.to_hex())
    }
}

/// The stable id of a message: its permalink, the same on every instance and every re-ingest.
///
/// With a Message-ID it is derived from the Message-ID, every header field that is not a
/// transport header ([`is_transport_header`]: `Received:`, a second journal rule's stamps,
/// a spam filter's verdict), and the body (line endings and trailing blank lines
/// normalized), so copies that differ only in transport headers get the same id, and
/// messages that differ in anything else (a Subject, a Content-Type, the MIME structure)
/// get different ones. Without a Message-ID it is derived from the exact bytes, so only
/// identical content shares an id.
///
/// Archives written before version 2 of this derivation keep their ids (an id is never
/// derived again once stored); new messages get version-2 ids.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StableId(String);

/// Bytes of the BLAKE3 digest kept in an id: 120 bits, 24 base32 characters.
const ID_BYTES: usize = 15;
const ID_LEN: usize = 24;

impl StableId {
    /// The id of a message with this Message-ID (without angle brackets), these header
    /// fields (name and raw value, in the message's order; transport headers are left out
    /// here) and body.
    pub fn from_message<'a>(
        message_id: &str,
        fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: &[u8],
    ) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"mailjournal/v2/message\0");
        h.update(message_id.trim().as_bytes());
        h.update(b"\0");
        for (name, value) in fields {
            if is_transport_header(name) {
                continue;
            }
            h.update(name.trim().to_ascii_lowercase().as_bytes());
            h.update(b":");
            // Folding and runs of white space do not count: relays re-fold long lines.
            let mut words = value
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            if let Some(first) = words.next() {
                h.update(first);
                for w in words {
                    h.update(b" ");
                    h.update(w);
                }
            }
            h.update(b"\n");
        }
        h.update(b"\0");
        hash_normalized_body(&mut h, body);
        Self::from_digest(h.finalize())
    }

    /// Version 1 of the derivation (Message-ID and body only), the ids of messages archived
    /// before version 2; it merged messages that shared both but differed in their headers,
    /// so nothing new gets such an id.
    pub fn from_message_id(message_id: &str, body: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"mailjournal/v1/message-id\0");
        h.update(message_id.trim().as_bytes());
        h.update(b"\0");
        hash_normalized_body(&mut h, body);
        Self::from_digest(h.finalize())
    }

    /// The id of a message known only by its exact bytes.
    pub fn from_content(blob: &BlobHash) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"mailjournal/v1/content\0");
        h.update(&blob.0);
        Self::from_digest(h.finalize())
    }

    fn from_digest(digest: blake3::Hash) -> Self {
        let text = data_encoding::BASE32_NOPAD.encode(&digest.as_bytes()[..ID_BYTES]);
        Self(text.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Header fields that relays, journal rules and filters add or change on the way, so that
/// two copies of one message may differ in them (the README lists them): `Received`,
/// `X-Received`, `Received-SPF`, `Return-Path`, `Delivered-To`, `X-Original-To`,
/// `X-Envelope-To`, `X-Envelope-From`, `Authentication-Results`, `ARC-*`,
/// `X-MS-Exchange-*`, `X-Forefront-Antispam-Report`, `X-Microsoft-Antispam*`, `X-Spam-*`.
/// Compared without regard to case.
pub fn is_transport_header(name: &str) -> bool {
    const EXACT: [&str; 10] = [
        "received",
        "x-received",
        "received-spf",
        "return-path",
        "delivered-to",
        "x-original-to",
        "x-envelope-to",
        "x-envelope-from",
        "authentication-results",
        "x-forefront-antispam-report",
    ];
    const PREFIXES: [&str; 4] = ["arc-", "x-ms-exchange-", "x-microsoft-antispam", "x-spam-"];
    let name = name.trim().to_ascii_lowercase();
    EXACT.contains(&name.as_str()) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// CRLF and LF count alike, and trailing blank lines are ignored: relays that change either
/// do not change the message.
fn hash_normalized_body(h: &mut blake3::Hasher, body: &[u8]) {
    let mut end = body.len();
    while end > 0 && matches!(body[end - 1], b'\r' | b'\n' | b' ' | b'\t') {
        end -= 1;
    }
    let body = &body[..end];
    // Copy the body without the CR of each CRLF into a buffer hashed in large pieces
    // (BLAKE3 is fast on big inputs and slow on many tiny ones).
    let mut buf = Vec::with_capacity(body.len().min(64 * 1024));
    let mut start = 0;
    for i in memchr::memchr_iter(b'\r', body) {
        if body.get(i + 1) == Some(&b'\n') {
            buf.extend_from_slice(&body[start..i]);
            start = i + 1;
            if buf.len() >= 64 * 1024 {
                h.update(&buf);
                buf.clear();
            }
        }
    }
    buf.extend_from_slice(&body[start..]);
    h.update(&buf);
}

impl fmt::Display for StableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StableId({})", self.0)
    }
}

impl FromStr for StableId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let valid = lower.len() == ID_LEN
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if valid {
            Ok(Self(lower))
        } else {
            Err(format!(
                "{s:?} is not a message id ({ID_LEN} characters a-z, 2-7)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_count_except_transport_headers() {
        let body = b"Hello\r\nWorld\r\n".as_slice();
        let base: Vec<(&str, &[u8])> = vec![
            ("From", b"marta@fabrikam.com"),
            ("Subject", b"price list"),
            ("Content-Type", b"text/plain"),
        ];
        let id =
            |fields: &[(&str, &[u8])]| StableId::from_message("a@x", fields.iter().copied(), body);
        let same = id(&base);
        // Transport headers anywhere, in any case, and re-folded values: the same message.
        let mut relayed = vec![
            ("Received", b"from mx1 by mx2".as_slice()),
            ("ARC-Seal", b"i=1"),
            ("X-MS-Exchange-Organization-SCL", b"1"),
            ("return-path", b"<bounce@x>"),
        ];
        relayed.extend([
            ("from", b"marta@fabrikam.com".as_slice()),
            ("Subject", b"price\r\n  list"),
            ("X-Spam-Status", b"No"),
            ("Content-Type", b"text/plain"),
            ("Authentication-Results", b"spf=pass"),
        ]);
        assert_eq!(id(&relayed), same);
        // Anything else: another message.
        let mut mime = base.clone();
        mime[2] = ("Content-Type", b"text/plain; charset=utf-8");
        assert_ne!(id(&mime), same);
        let mut more = base.clone();
        more.push(("MIME-Version", b"1.0"));
        assert_ne!(id(&more), same);
        let mut reordered = base.clone();
        reordered.swap(0, 1);
        assert_ne!(
            id(&reordered),
            same,
            "the order of the fields is the message's"
        );
        assert_ne!(
            StableId::from_message("a@x", base.iter().copied(), b"Hello\r\nWorld!\r\n"),
            same
        );
        assert_ne!(
            StableId::from_message_id("a@x", body),
            same,
            "v1 and v2 differ"
        );
    }

    #[test]
    fn ids_are_stable_and_normalized() {
        let a = StableId::from_message_id("abc@example.com", b"Hello\r\nWorld\r\n");
        let b = StableId::from_message_id("abc@example.com", b"Hello\nWorld\n\n\n");
        let c = StableId::from_message_id("abc@example.com", b"Hello\nWorld!\n");
        let d = StableId::from_message_id("abd@example.com", b"Hello\nWorld\n");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // The derivation is part of the product: links must not change between versions.
        assert_eq!(
            a.as_str(),
            StableId::from_message_id(" abc@example.com ", b"Hello\nWorld").as_str()
        );
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(a.as_str().parse::<StableId>(), Ok(a.clone()));
        assert_eq!(a.as_str().to_uppercase().parse::<StableId>(), Ok(a));
        assert!("short".parse::<StableId>().is_err());
    }

    #[test]
    fn content_ids_differ_from_message_ids() {
        let blob = BlobHash::of(b"x");
        assert_ne!(
            StableId::from_content(&blob),
            StableId::from_content(&BlobHash::of(b"y"))
        );
        assert_eq!(BlobHash::from_hex(&blob.to_hex()), Some(blob));
        assert_eq!(BlobHash::from_hex("zz"), None);
    }
}
