//! Content-addressed message files: `objects/<2 hex>/<62 hex>`, LZ4-compressed unless that
//! saves too little, written to a temporary file, fsynced, renamed into place, and the
//! directory fsynced, so a file that exists under its name is complete and durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::id::BlobHash;
use super::record::Compression;

/// Creates `path` and its missing parents owner-only (0700), whatever the umask.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Makes the data directory `dir` (0700) and, for a new archive, an empty database file
/// `db` (0600) for redb to initialize; a data directory made beforehand is made owner-only
/// when the archive is created in it.
pub fn prepare_private(dir: &Path, db: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(dir)?;
    match private_file().write(true).create_new(true).open(db) {
        Ok(_) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Options that create a file owner-only (0600), whatever the umask.
pub fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

/// How new messages are compressed (`[storage] compression`). Records say how theirs were,
/// so changing it never affects what is archived already.
///
/// LZ4, the default, decodes about 3.5 times as fast as zstd on mail-sized messages (2.5 vs
/// 0.7 GB/s here), and an IMAP client reading the archive pays the decoding on every
/// message; zstd keeps less (text mail: 0.41 of its bytes against LZ4's 0.62). Attachments,
/// most of an archive's bytes, are stored uncompressed with either (see [`encode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Lz4,
    Zstd,
}

impl Codec {
    /// The share (percent) of a message the codec must save for the message to be stored
    /// compressed; anything that saves less is stored as it is. Base64 of already compressed
    /// attachments (PDF, JPEG, Office files) saves nothing with LZ4, and about 24% with zstd
    /// (what Huffman coding gets back from base64's 6 bits a byte): not worth decoding on
    /// every read, so the bar for zstd is higher. Text mail clears both.
    pub fn min_saving_percent(self) -> u64 {
        match self {
            Codec::Lz4 => 12,
            Codec::Zstd => 30,
        }
    }
}

/// The bytes to store for a message, and how they are encoded: compressed with `codec`
/// (LZ4 as a bare block, zstd as a frame; the blob's BLAKE3 hash guards the content either
/// way), or as they are when that saves too little.
pub fn encode(raw: &[u8], codec: Codec) -> io::Result<(Vec<u8>, Compression)> {
    let (compressed, compression) = match codec {
        Codec::Lz4 => (lz4_flex::block::compress(raw), Compression::Lz4),
        Codec::Zstd => (compress(raw)?, Compression::Zstd),
    };
    let worth_it =
        (compressed.len() as u64) * 100 <= (raw.len() as u64) * (100 - codec.min_saving_percent());
    if worth_it {
        Ok((compressed, compression))
    } else {
        Ok((raw.to_vec(), Compression::None))
    }
}

/// zstd level: 3 is zstd's default, fast enough for thousands of messages a second on one
/// core, and takes text mail to well under half its size.
const ZSTD_LEVEL: i32 = 3;

fn compress(raw: &[u8]) -> io::Result<Vec<u8>> {
    thread_local! {
        // A compressor context per thread: building one per message costs more than
        // compressing a small message.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        let mut out = compressor.compress(raw)?;
        // compress() sizes its buffer for the worst case; queued messages keep only theirs.
        out.shrink_to_fit();
        Ok(out)
    })
}

/// The raw bytes back from stored bytes whose raw size is known (from their record).
pub fn decode(stored: Vec<u8>, compression: Compression, raw_size: u64) -> io::Result<Vec<u8>> {
    let capacity = usize::try_from(raw_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "blob too large"))?;
    let raw = match compression {
        Compression::Zstd => decompress(&stored, raw_size)?,
        Compression::Lz4 => lz4_flex::block::decompress(&stored, capacity)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("lz4: {e}")))?,
        Compression::None => stored,
    };
    if raw.len() != capacity {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes decoded, the record says {raw_size}", raw.len()),
        ));
    }
    Ok(raw)
}

/// Decompresses a zstd blob whose raw size is known.
fn decompress(compressed: &[u8], raw_size: u64) -> io::Result<Vec<u8>> {
    thread_local! {
        // A decompressor context per thread: serving many small messages (IMAP FETCH)
        // would otherwise build one per message.
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let capacity = usize::try_from(raw_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "blob too large"))?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(compressed, capacity)
    })
}

pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("objects"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Writes a blob's stored bytes durably. Returns the directory that must be fsynced for
    /// the new name to be durable (the caller fsyncs each directory once per group commit).
    /// A file already there with the same size is the same bytes (the name is the content's
    /// hash, and the encoding follows from the content); one of another size is an orphan
    /// from an older version that encoded differently (no record refers to it: a message
    /// already archived is never written again), and is replaced.
    pub fn write(&self, hash: &BlobHash, stored: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(hash);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == stored.len() as u64) {
            return Ok(dir);
        }
        if !dir.is_dir() {
            create_private_dir(&dir)?;
            sync_dir(&self.root)?;
        }
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), hash.to_hex()));
        let result = (|| {
            let mut f = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(stored)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        Ok(dir)
    }

    /// The stored blob, `len` bytes (its size as recorded; a file of another size is an
    /// error, not a short or long read).
    pub fn read(&self, hash: &BlobHash, len: u64) -> io::Result<Vec<u8>> {
        let f = File::open(self.path(hash))?;
        let actual = f.metadata()?.len();
        if actual != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the file has {actual} bytes, the record says {len}"),
            ));
        }
        read_at(&f, 0, len)
    }

    /// Every file under `objects/`: blobs by hash, and anything else (left-over temporary
    /// files, strays) by path.
    pub fn scan(&self) -> io::Result<(Vec<BlobHash>, Vec<PathBuf>)> {
        let mut blobs = Vec::new();
        let mut strays = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((blobs, strays)),
            Err(e) => return Err(e),
        };
        for dir in entries {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                strays.push(dir.path());
                continue;
            }
            let prefix = dir.file_name().to_string_lossy().into_owned();
            for file in fs::read_dir(dir.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                match BlobHash::from_hex(&format!("{prefix}{name}")) {
                    Some(hash) if file.file_type()?.is_file() && prefix.len() == 2 => {
                        blobs.push(hash)
                    }
                    _ => strays.push(file.path()),
                }
            }
        }
        Ok((blobs, strays))
    }
}

/// Fsyncs a directory so that names created in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A pack file grows to about this size, then a new one starts.
const PACK_TARGET: u64 = 1024 * 1024 * 1024;

/// Append-only pack files: `packs/pack-000001.dat`, … They are the archive's write-ahead
/// log (see `wal`): every message of a batch is appended as a frame (small messages with
/// their bytes), the pack is fsynced once per batch, and only then is the batch filed in the
/// database. The database records how far into the log it has filed durably; frames past
/// that are filed again when the archive recovers, and a frame cut short by a crash is cut
/// off then. One fsync per batch instead of one per message, and no page rounding.
pub struct Packs {
    dir: PathBuf,
    current: u32,
    file: File,
    len: u64,
    dirty: bool,
}

impl Packs {
    /// Opens pack `id` for appending at `len` (creating it if needed). Bytes past `len` are
    /// left alone: they are the log's unfiled tail, for recovery to read and cut.
    pub fn open(data_dir: &Path, id: u32, len: u64) -> io::Result<Self> {
        let dir = data_dir.join("packs");
        if !dir.is_dir() {
            create_private_dir(&dir)?;
            sync_dir(data_dir)?;
        }
        let path = pack_path(&dir, id);
        let file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {actual} bytes, shorter than the {len} bytes committed",
                    path.display()
                ),
            ));
        }
        sync_dir(&dir)?;
        Ok(Self {
            dir,
            current: id,
            file,
            len,
            dirty: false,
        })
    }

    /// The current pack and the append position: what a commit records.
    pub fn position(&self) -> (u32, u64) {
        (self.current, self.len)
    }

    /// The current pack's bytes from the append position to its end: the log's tail when
    /// the archive opens.
    pub fn tail(&self) -> io::Result<Vec<u8>> {
        let end = self.file.metadata()?.len();
        read_at(&self.file, self.len, end.saturating_sub(self.len))
    }

    /// Whether the current pack has bytes past the append position.
    pub fn has_tail(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() > self.len)
    }

    /// Whether a pack after the current one exists.
    pub fn has_next(&self) -> bool {
        pack_path(&self.dir, self.current + 1).is_file()
    }

    /// Moves the append position to `len` of the current pack, cutting off what follows
    /// (a frame a crash cut short). A damaged tail is copied aside first, never lost.
    pub fn cut(&mut self, len: u64, keep_aside: bool) -> io::Result<()> {
        let end = self.file.metadata()?.len();
        if end > len {
            if keep_aside {
                let aside = self
                    .dir
                    .join(format!("pack-{:06}.dat.damaged-at-{len}", self.current));
                let mut f = private_file()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&aside)?;
                f.write_all(&read_at(&self.file, len, end - len)?)?;
                f.sync_all()?;
            }
            self.file.set_len(len)?;
            self.file.sync_all()?;
            sync_dir(&self.dir)?;
        }
        self.len = len;
        Ok(())
    }

    /// Makes the next pack, which exists, the current one, at its start.
    pub fn advance(&mut self) -> io::Result<()> {
        let next = self.current + 1;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(pack_path(&self.dir, next))?;
        self.current = next;
        self.len = 0;
        Ok(())
    }

    /// Starts a new pack if the current one is full. Call between commits only.
    pub fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.len < PACK_TARGET {
            return Ok(());
        }
        let next = self.current + 1;
        let file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(pack_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.current = next;
        self.file = file;
        self.len = 0;
        Ok(())
    }

    /// Appends bytes; returns their pack and offset. Not durable until [`Packs::sync`].
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<(u32, u64)> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, self.len)?;
        let at = (self.current, self.len);
        self.len += bytes.len() as u64;
        self.dirty = true;
        Ok(at)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Forgets everything appended since `len` (a batch whose staging failed).
    pub fn rollback(&mut self, len: u64) {
        if self.len != len {
            self.len = len;
            if let Err(e) = self.file.set_len(len) {
                tracing::warn!(error = %e, "cannot cut off a failed batch's pack tail; it is cut at the next start");
            }
        }
        self.dirty = false;
    }
}

/// Opens a pack in `packs_dir` for reading.
pub fn open_pack(packs_dir: &Path, pack: u32) -> io::Result<File> {
    File::open(pack_path(packs_dir, pack))
}

/// Reads `len` bytes at `offset` of an open pack.
pub fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "blob too large"))?;
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("pack-{id:06}.dat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_base64() -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..30_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        data_encoding::BASE64.encode(&noise).into_bytes()
    }

    #[test]
    fn text_is_compressed_and_noise_is_kept_as_is_with_either_codec() {
        let text = b"Dear Kim, thanks for the call. The quote follows.\r\n".repeat(100);
        for (codec, want) in [
            (Codec::Lz4, Compression::Lz4),
            (Codec::Zstd, Compression::Zstd),
        ] {
            let (stored, how) = encode(&text, codec).expect("encode");
            assert_eq!(how, want);
            assert!(stored.len() * 4 < text.len(), "{codec:?}");
            assert_eq!(
                decode(stored, how, text.len() as u64).expect("decode"),
                text
            );

            // base64 of random bytes: LZ4 saves nothing, zstd about a quarter: below both bars.
            let b64 = noise_base64();
            let (stored, how) = encode(&b64, codec).expect("encode");
            assert_eq!(how, Compression::None, "{codec:?}");
            assert_eq!(stored, b64);
            assert_eq!(
                decode(stored.clone(), how, b64.len() as u64).expect("decode"),
                b64
            );
            assert!(
                decode(stored, how, b64.len() as u64 + 1).is_err(),
                "a size mismatch is an error"
            );
        }
    }

    #[test]
    fn damaged_compressed_bytes_are_an_error_not_a_panic() {
        let text = b"Dear Kim, thanks for the call. The quote follows.\r\n".repeat(100);
        for codec in [Codec::Lz4, Codec::Zstd] {
            let (stored, how) = encode(&text, codec).expect("encode");
            for cut in [1, stored.len() / 2, stored.len() - 1] {
                assert!(decode(stored[..cut].to_vec(), how, text.len() as u64).is_err());
            }
            let mut flipped = stored.clone();
            flipped[0] ^= 0xff;
            if let Ok(raw) = decode(flipped, how, text.len() as u64) {
                assert_ne!(
                    raw, text,
                    "{codec:?}: a damaged block decoded to the original"
                );
            }
        }
    }

    #[test]
    fn records_from_before_format_2_read_as_zstd() {
        let old = br#"{"uid":7,"blob":"ab","storage":{"kind":"file"},"size":10,"stored_size":5,"received_at":1}"#;
        let loc: crate::archive::Location = serde_json::from_slice(old).expect("decode");
        assert_eq!(loc.compression, Compression::Zstd);
    }
}
