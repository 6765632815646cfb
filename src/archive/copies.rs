//! Copies of one message: every distinct byte sequence that arrived for a stable id is kept.
//!
//! Copy 1 is the message's record itself (its blob). Every later copy whose bytes differ
//! (transport headers: `Received:`, `Delivered-To:`, a journal rule's stamps …) gets a row in
//! the `copies` table, numbered 2, 3, … in the order the copies were filed. A copy whose
//! body is byte for byte the first copy's body keeps only its own header block (LZ4, in its
//! log frame) and names where the shared body starts in the first copy: its bytes are that
//! header block followed by the first copy's bytes from there on. (When the copy it was
//! compared with is itself a later copy, which happens when copies arrive together, the row
//! names that copy; a body is always an earlier copy's, so reading one ends.) A copy whose body
//! differs in its bytes (other line endings, say) is kept whole, as a message is. A copy
//! byte-identical to one kept already adds no row (it is counted as received).

use serde::{Deserialize, Serialize};

use super::id::BlobHash;
use super::record::{Compression, Storage};

/// The row of copy `n` (≥ 2) of a message, in the `copies` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRow {
    /// BLAKE3 (hex) of the copy's exact bytes.
    pub blob: String,
    /// The copy's whole size in bytes.
    pub size: u64,
    /// When the gateway received it (Unix seconds).
    pub received_at: i64,
    /// Where its stored bytes are (its header block, or all of it).
    pub storage: Storage,
    pub compression: Compression,
    pub stored_size: u64,
    /// Set when only the header block is stored: the copy's body is that of an earlier
    /// copy (usually the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyRef>,
}

/// Where a header-block copy's body is: copy `of`'s bytes from offset `at` to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyRef {
    pub of: u32,
    pub at: u64,
}

/// How a copy's bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kept {
    /// All of its bytes (the first copy, or a copy whose body differs in its bytes).
    Whole,
    /// Its own header block, against the first copy's body.
    HeaderBlock,
}

/// What the archive tells about one copy of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInfo {
    /// 1 for the first copy.
    #[serde(rename = "copy")]
    pub n: u32,
    pub size: u64,
    /// BLAKE3 (hex) of its exact bytes.
    pub blob: String,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "rfc3339")]
    pub received_at: i64,
    pub kept: Kept,
    /// The bytes it takes on disk (for a header-block copy, that block's).
    pub stored_size: u64,
}

fn rfc3339<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*at))
}

/// Where a message's body starts: after the empty line that ends its header block. `None`
/// for a message with no empty line (no header block, or no body), which is kept whole.
pub fn body_start(raw: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    while line_start < raw.len() {
        let rest = &raw[line_start..];
        if rest.starts_with(b"\r\n") {
            return Some(line_start + 2);
        }
        if rest.starts_with(b"\n") {
            return Some(line_start + 1);
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => line_start += i + 1,
            None => return None,
        }
    }
    None
}

/// A message's split into header block and body, as a copy is compared with the first copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The offset of the body (the header block's length).
    pub body_at: u64,
    /// BLAKE3 of the body.
    pub body: BlobHash,
}

impl Split {
    pub fn of(raw: &[u8]) -> Option<Self> {
        let at = body_start(raw)?;
        Some(Self {
            body_at: at as u64,
            body: BlobHash::of(&raw[at..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_starts_after_the_first_empty_line() {
        for (raw, want) in [
            (&b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"[..], Some(14)),
            (b"A: 1\nB: 2\n\nbody", Some(11)),
            (b"\r\nbody", Some(2)),
            (b"A: 1\r\n\r\n", Some(8)),
            (b"A: 1\r\nB: 2\r\n", None),
            (b"no header block at all", None),
            (b"", None),
        ] {
            assert_eq!(body_start(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
