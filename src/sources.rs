//! Message files on disk, for bulk ingest: single messages (`.eml` or any file), mbox files
//! (recognized by their leading `From ` line) and Maildirs (a directory with `cur/` and
//! `new/`), found by walking the paths given.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Why a file could not be read. Reported per file; the run goes on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Error {
    pub path: PathBuf,
    pub reason: String,
}

impl Error {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Error {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// A file found by [`scan`].
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub size: u64,
}

/// One message read from a file.
#[derive(Debug)]
pub struct Item {
    /// `path` for a single message, `path:N` for the Nth message (from 1) of an mbox.
    pub origin: String,
    pub raw: Vec<u8>,
    /// The sender from an mbox `From ` line.
    pub mail_from: Option<String>,
    /// The date from an mbox `From ` line (Unix seconds).
    pub received_at: Option<i64>,
}

/// Lists the files under `paths` in a stable order: directories are walked (Maildirs through
/// `cur/` and `new/` only, hidden entries skipped). Unreadable paths are returned as errors.
pub fn scan(paths: &[PathBuf]) -> (Vec<SourceFile>, Vec<Error>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        walk(path, &mut files, &mut errors);
    }
    (files, errors)
}

fn walk(path: &Path, files: &mut Vec<SourceFile>, errors: &mut Vec<Error>) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return errors.push(Error::io(path, e)),
    };
    if meta.is_file() {
        return files.push(SourceFile {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    if !meta.is_dir() {
        return errors.push(Error {
            path: path.to_path_buf(),
            reason: "not a file or directory".into(),
        });
    }
    let is_maildir = path.join("cur").is_dir() && path.join("new").is_dir();
    let dirs: Vec<PathBuf> = if is_maildir {
        vec![path.join("cur"), path.join("new")]
    } else {
        vec![path.to_path_buf()]
    };
    for dir in dirs {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(Error::io(&dir, e));
                continue;
            }
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            // Maildir++ subfolders are hidden (`.Sent`), so they are skipped above; `tmp/`
            // holds deliveries in progress.
            if is_maildir && child.is_dir() {
                continue;
            }
            walk(&child, files, errors);
        }
    }
}

/// Reads the messages of one file: one, or every message of an mbox. `max_size` bounds
/// what is read of a single-message file (a larger one is reported, not read).
pub fn read(file: &SourceFile, max_size: u64) -> Box<dyn Iterator<Item = Result<Item, Error>>> {
    let path = file.path.clone();
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => return Box::new(std::iter::once(Err(Error::io(&path, e)))),
    };
    let mut head = [0u8; 5];
    let n = match read_up_to(&mut f, &mut head) {
        Ok(n) => n,
        Err(e) => return Box::new(std::iter::once(Err(Error::io(&path, e)))),
    };
    let reader = BufReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(f));
    if &head[..n] == b"From " {
        let origin = path.display().to_string();
        let iter = mail_parser::mailbox::mbox::MessageIterator::new(reader)
            .enumerate()
            .map(move |(i, m)| {
                let m = m.map_err(|e| Error::io(&path, e))?;
                let date = m.internal_date();
                let from = m.from().trim();
                Ok(Item {
                    origin: format!("{origin}:{}", i + 1),
                    mail_from: (!from.is_empty() && from != "MAILER-DAEMON")
                        .then(|| from.to_owned()),
                    received_at: (date > 0).then(|| i64::try_from(date).unwrap_or(i64::MAX)),
                    raw: m.unwrap_contents(),
                })
            });
        return Box::new(iter);
    }
    if file.size > max_size {
        return Box::new(std::iter::once(Err(Error {
            path,
            reason: format!(
                "{} bytes, over the message size limit of {max_size}",
                file.size
            ),
        })));
    }
    let mut raw = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
    let result = reader
        .take(max_size.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(&path, e))
        .map(|_| Item {
            origin: path.display().to_string(),
            raw,
            mail_from: None,
            received_at: None,
        });
    Box::new(std::iter::once(result))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
