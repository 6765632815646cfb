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
/// With a Message-ID it is derived from the Message-ID and the body (line endings and
/// trailing blank lines normalized), so copies that differ only in transport headers
/// (`Received:`, a second journal rule, a retry) get the same id. Without one it is derived
/// from the exact bytes, so only identical content shares an id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StableId(String);

/// Bytes of the BLAKE3 digest kept in an id: 120 bits, 24 base32 characters.
const ID_BYTES: usize = 15;
const ID_LEN: usize = 24;

impl StableId {
    /// The id of a message with this Message-ID (without angle brackets) and body.
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
