//! Content-addressed message files: `objects/<2 hex>/<62 hex>`, zstd-compressed, written
//! to a temporary file, fsynced, renamed into place, and the directory fsynced, so a file
//! that exists under its name is complete and durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::id::BlobHash;

/// zstd level: 3 is zstd's default, fast enough for thousands of messages a second on one
/// core, and takes text mail to well under half its size.
pub const ZSTD_LEVEL: i32 = 3;

pub fn compress(raw: &[u8]) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(raw, ZSTD_LEVEL)
}

/// Decompresses a blob whose raw size is known (from its record).
pub fn decompress(compressed: &[u8], raw_size: u64) -> io::Result<Vec<u8>> {
    let capacity = usize::try_from(raw_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "blob too large"))?;
    let mut out = Vec::with_capacity(capacity);
    zstd::stream::read::Decoder::new(compressed)?.read_to_end(&mut out)?;
    Ok(out)
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

    /// Writes a compressed blob durably. Returns the directory that must be fsynced for the
    /// new name to be durable (the caller fsyncs each directory once per group commit).
    pub fn write(&self, hash: &BlobHash, compressed: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(hash);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        if path.is_file() {
            return Ok(dir);
        }
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.root)?;
        }
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), hash.to_hex()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(compressed)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        Ok(dir)
    }

    pub fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.path(hash))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
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
