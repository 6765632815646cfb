//! The pack files are the archive's write-ahead log. Every message a batch stores is
//! appended to the current pack as one frame: what the commit needs to file it (its id,
//! metadata and where its bytes are) followed by its bytes when they live in the pack. The
//! pack is fsynced once per batch, and from then on the batch is safe: the database commit
//! that files it need not be durable itself. After a crash, the frames past the position the
//! database last made durable are applied again, in order, so every message that was
//! acknowledged is back with the same UID; a frame cut short by the crash ends the log and
//! is cut off.
//!
//! A frame, little-endian:
//!
//! ```text
//! "MJW1"  header length (u32)  bytes length (u32)  header (JSON)  bytes  check (16)
//! ```
//!
//! `check` is the first 16 bytes of the BLAKE3 hash of everything before it in the frame.
//!
//! A later copy of an archived message (one that differs in its transport headers) is a
//! frame of its own: with its whole bytes, or with only its header block and `body_at`,
//! the offset of the body in the first copy, which it shares (see `copies`).

use std::io;

use serde::{Deserialize, Serialize};

use super::record::{Compression, Meta};

const MAGIC: &[u8; 4] = b"MJW1";
const PREFIX: usize = 12;
const CHECK: usize = 16;
/// No header is anywhere near this; a larger length means a damaged frame.
const MAX_HEADER: usize = 64 * 1024 * 1024;

/// Where a message's bytes are, as a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placed {
    /// In this frame, after the header.
    Pack,
    /// In its own file under `objects/`.
    File,
    /// Nowhere new: a copy of a message archived already, merged into its record.
    None,
}

/// What a frame says about its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub id: String,
    /// BLAKE3 (hex) of the raw bytes.
    pub blob: String,
    pub size: u64,
    pub stored_size: u64,
    pub compression: Compression,
    pub placed: Placed,
    pub meta: Meta,
    /// Set for a later copy of a message kept as its header block: the frame's bytes are
    /// that block, and the copy's body is the first copy's bytes from this offset on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_at: Option<u64>,
    /// With `body_at`: the BLAKE3 (hex) of the copy whose body it shares (the first copy's,
    /// or that of a copy logged before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_of: Option<String>,
}

/// A frame's bytes: `bytes` must be empty unless the header says [`Placed::Pack`]. Returns
/// the frame and the offset of `bytes` in it.
pub fn encode(header: &Header, bytes: &[u8]) -> io::Result<(Vec<u8>, u64)> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let header_len = u32::try_from(json.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame header too large"))?;
    let bytes_len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = Vec::with_capacity(PREFIX + json.len() + bytes.len() + CHECK);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&header_len.to_le_bytes());
    frame.extend_from_slice(&bytes_len.to_le_bytes());
    frame.extend_from_slice(&json);
    frame.extend_from_slice(bytes);
    let check = blake3::hash(&frame);
    frame.extend_from_slice(&check.as_bytes()[..CHECK]);
    Ok((frame, (PREFIX + json.len()) as u64))
}

/// A frame read back: its header, and where its bytes are relative to the frame's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub header: Header,
    pub bytes_at: u64,
    pub bytes_len: u64,
    /// The frame's whole length.
    pub len: u64,
}

/// Why a scan stopped before the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Fewer bytes than a whole frame: a write the crash cut short.
    Short,
    /// Not a frame (no magic, a bad check or header): damage, or bytes from before the log.
    Damaged(String),
}

/// The frames at the start of `data`, in order, and why the scan stopped (`None`: at the
/// very end of `data`). Everything from the first bad frame on is left out.
pub fn scan(data: &[u8]) -> (Vec<Frame>, Option<Stop>) {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        match frame_at(&data[at..]) {
            Ok(frame) => {
                at += frame.len as usize;
                frames.push(frame);
            }
            Err(stop) => return (frames, Some(stop)),
        }
    }
    (frames, None)
}

/// A frame's bytes, when it has them, are at most this long (a pack holds only small
/// blobs); a larger length means a damaged frame.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// The next frame of `reader`, positioned at a frame's start (a pack read from the start):
/// `None` at the very end, else the frame or why it is not one. Reads one frame at a time,
/// so a pack of any size is checked in little memory.
pub fn read_next(reader: &mut impl io::Read) -> io::Result<Option<Result<Frame, Stop>>> {
    let mut buf = vec![0u8; PREFIX];
    let n = read_up_to(reader, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n == PREFIX && &buf[..4] == MAGIC {
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&buf[at..at + 4]);
            u32::from_le_bytes(b) as usize
        };
        let (header_len, bytes_len) = (word(4), word(8));
        if header_len > MAX_HEADER || bytes_len > MAX_BYTES {
            return Ok(Some(Err(Stop::Damaged(format!(
                "lengths {header_len} and {bytes_len}"
            )))));
        }
        buf.resize(PREFIX + header_len + bytes_len + CHECK, 0);
        let m = read_up_to(reader, &mut buf[PREFIX..])?;
        buf.truncate(PREFIX + m);
    } else {
        buf.truncate(n);
    }
    Ok(Some(frame_at(&buf)))
}

/// Fills `buf` as far as the reader goes; how many bytes it read.
fn read_up_to(reader: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn frame_at(data: &[u8]) -> Result<Frame, Stop> {
    if data.len() < PREFIX {
        return if MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
            Err(Stop::Short)
        } else {
            Err(Stop::Damaged("no frame magic".into()))
        };
    }
    if &data[..4] != MAGIC {
        return Err(Stop::Damaged("no frame magic".into()));
    }
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&data[at..at + 4]);
        u32::from_le_bytes(b) as usize
    };
    let (header_len, bytes_len) = (word(4), word(8));
    if header_len > MAX_HEADER {
        return Err(Stop::Damaged(format!("header length {header_len}")));
    }
    let body_end = PREFIX + header_len + bytes_len;
    let end = body_end + CHECK;
    if data.len() < end {
        return Err(Stop::Short);
    }
    let check = blake3::hash(&data[..body_end]);
    if check.as_bytes()[..CHECK] != data[body_end..end] {
        return Err(Stop::Damaged("check does not match".into()));
    }
    let header: Header = serde_json::from_slice(&data[PREFIX..PREFIX + header_len])
        .map_err(|e| Stop::Damaged(format!("header: {e}")))?;
    if (header.placed == Placed::Pack) != (bytes_len > 0) || bytes_len as u64 > header.stored_size {
        return Err(Stop::Damaged("header and bytes disagree".into()));
    }
    Ok(Frame {
        header,
        bytes_at: (PREFIX + header_len) as u64,
        bytes_len: bytes_len as u64,
        len: end as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(placed: Placed, stored_size: u64) -> Header {
        Header {
            id: "abcdefghijklmnopqrstuvwx".into(),
            blob: "00".repeat(32),
            size: 100,
            stored_size,
            compression: Compression::Zstd,
            placed,
            meta: Meta::arrived(1_795_248_000),
            body_at: None,
            body_of: None,
        }
    }

    #[test]
    fn frames_read_back_and_a_cut_or_damaged_one_ends_the_log() {
        let (a, a_at) = encode(&header(Placed::Pack, 5), b"hello").expect("encode");
        let (b, _) = encode(&header(Placed::None, 5), b"").expect("encode");
        let mut data = [a.clone(), b.clone()].concat();
        let (frames, stop) = scan(&data);
        assert_eq!(stop, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header, header(Placed::Pack, 5));
        assert_eq!(frames[0].bytes_at, a_at);
        let at = a_at as usize;
        assert_eq!(&a[at..at + 5], b"hello");
        assert_eq!(frames[1].header.placed, Placed::None);
        assert_eq!(frames[0].len + frames[1].len, data.len() as u64);

        // Cut anywhere inside the second frame: the first stands, the second is short.
        for cut in [1, 3, 11, 20, b.len() - 1] {
            let (frames, stop) = scan(&data[..a.len() + cut]);
            assert_eq!((frames.len(), stop), (1, Some(Stop::Short)), "cut at {cut}");
        }
        // One flipped bit anywhere in a frame is caught.
        for i in [0, 5, 13, a.len() / 2, a.len() - 1] {
            data[i] ^= 0x10;
            let (frames, stop) = scan(&data);
            assert!(frames.is_empty(), "flip at {i}");
            assert!(
                matches!(stop, Some(Stop::Damaged(_)) | Some(Stop::Short)),
                "flip at {i}: {stop:?}"
            );
            data[i] ^= 0x10;
        }
        // Read one at a time from a stream: the same frames, and the same verdicts.
        let whole = [a.clone(), b.clone()].concat();
        let mut reader = whole.as_slice();
        let first = read_next(&mut reader).expect("read").expect("a frame");
        assert_eq!(first.expect("whole").header, header(Placed::Pack, 5));
        let second = read_next(&mut reader).expect("read").expect("a frame");
        assert_eq!(second.expect("whole").header.placed, Placed::None);
        assert!(read_next(&mut reader).expect("read").is_none(), "the end");
        let mut cut = &whole[..a.len() + 7];
        assert!(read_next(&mut cut).expect("read").expect("frame").is_ok());
        assert_eq!(read_next(&mut cut).expect("read"), Some(Err(Stop::Short)));
        let mut flipped = whole.clone();
        flipped[a.len() + 14] ^= 0x01;
        let mut reader = flipped.as_slice();
        assert!(
            read_next(&mut reader)
                .expect("read")
                .expect("frame")
                .is_ok()
        );
        assert!(matches!(
            read_next(&mut reader).expect("read"),
            Some(Err(Stop::Damaged(_)))
        ));
        // Bytes that were never a frame (an old pack's uncommitted tail).
        let (frames, stop) = scan(b"\x28\xb5\x2f\xfd some zstd frame");
        assert!(frames.is_empty());
        assert!(matches!(stop, Some(Stop::Damaged(_))));
    }
}
