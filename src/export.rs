//! Writing archived messages out, byte for byte, as `.eml` files, one mbox file or a
//! Maildir (`mailjournal export`). What comes out goes back in with `mailjournal ingest`
//! unchanged: the same bytes, so the same stable ids.
//!
//! An export can be interrupted and run again with the same arguments: it goes on where it
//! stopped. `.eml` files and Maildir messages are written to a temporary name, synced and
//! renamed, so a message is there whole or not at all, and one already there (same name,
//! same size) is skipped. An mbox keeps a progress file beside it
//! (`DEST.export-progress`, see [`Progress`]) naming the last message written and the
//! file's length at that point, both synced; a run that finds it cuts the mbox back to that
//! length and goes on after that message. A finished export removes it.
//!
//! mbox: each message follows a `From SENDER DATE` line (the envelope sender, else
//! `MAILER-DAEMON`; the arrival time in UTC, asctime form), its lines that start with
//! `From ` after any number of `>` get one more `>` (mboxrd quoting, which our reader and
//! mutt's undo), and the next `From ` line follows it directly (no blank line, which a
//! reader that keeps it would make part of the message). [`crate::sources`] reads exactly
//! that back, except for a message that does not end with a line break: the next `From `
//! line must start a line, so it gets one (`.eml` files and Maildirs keep it exactly).

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One `ID.eml` file per message (`ID~copyNNNN.eml` for its later copies) in DEST.
    #[default]
    Eml,
    /// One mbox file DEST (mboxrd quoting).
    Mbox,
    /// A Maildir DEST (`cur/`, `new/`, `tmp/`), every message in `cur/`.
    Maildir,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Eml => "eml",
            Format::Mbox => "mbox",
            Format::Maildir => "maildir",
        })
    }
}

/// One stored copy of a message, to write out.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The message's stable id.
    pub id: &'a str,
    pub uid: u32,
    /// Which copy (1 = the first).
    pub copy: u32,
    /// Arrival time (Unix seconds).
    pub received_at: i64,
    /// The envelope sender, if known.
    pub sender: Option<&'a str>,
    pub raw: &'a [u8],
}

impl Item<'_> {
    /// Where the item is in the export's order (UID, then copy).
    fn position(&self) -> (u32, u32) {
        (self.uid, self.copy)
    }
}

/// What an mbox export has done so far, kept in `DEST.export-progress`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// The export's arguments; a run with other ones does not resume this one.
    pub arguments: String,
    /// The last message written and synced: (UID, copy).
    pub last: (u32, u32),
    /// The mbox's length after it.
    pub length: u64,
}

/// How many mbox messages go between two syncs of the file and its progress file.
const MBOX_SYNC_EVERY: u32 = 256;

/// An export in progress.
pub struct Exporter {
    format: Format,
    dest: PathBuf,
    mbox: Option<Mbox>,
}

struct Mbox {
    file: BufWriter<File>,
    length: u64,
    progress_path: PathBuf,
    arguments: String,
    /// Resume after this (UID, copy).
    resume_after: Option<(u32, u32)>,
    last: Option<(u32, u32)>,
    unsynced: u32,
    /// Messages written with a line break they did not end with.
    unterminated: u64,
}

/// What [`Exporter::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    /// Exported by an earlier run already.
    AlreadyThere,
}

impl Exporter {
    /// Starts (or resumes) an export to `dest`. `arguments` describes the export's filters
    /// and form: a resumed mbox export must have the same.
    pub fn open(format: Format, dest: &Path, arguments: &str) -> Result<Self, Error> {
        let mbox = match format {
            Format::Eml => {
                private_dir(dest)?;
                None
            }
            Format::Maildir => {
                for sub in ["", "cur", "new", "tmp"] {
                    private_dir(&dest.join(sub))?;
                }
                None
            }
            Format::Mbox => Some(Mbox::open(dest, arguments)?),
        };
        Ok(Self {
            format,
            dest: dest.to_path_buf(),
            mbox,
        })
    }

    /// Whether this export goes on from an earlier, interrupted one (an mbox with its
    /// progress file). Directory exports always skip what is there already.
    pub fn resumed(&self) -> bool {
        self.mbox.as_ref().is_some_and(|m| m.resume_after.is_some())
    }

    /// Writes one message (or finds it written by an earlier run).
    pub fn write(&mut self, item: &Item<'_>) -> Result<Written, Error> {
        match (self.format, &mut self.mbox) {
            (Format::Mbox, Some(mbox)) => mbox.write(item),
            (Format::Maildir, _) => {
                // Padded, so that name order (the order `ingest` reads in) keeps each
                // message's copies in their order.
                let name = format!(
                    "{}.M{:010}C{:04}.{}.mailjournal:2,",
                    item.received_at.max(0),
                    item.uid,
                    item.copy,
                    item.id
                );
                let tmp = self.dest.join("tmp").join(&name);
                write_whole(&tmp, &self.dest.join("cur").join(&name), item.raw)
            }
            _ => {
                // `~` sorts after `.`: `ingest` of the directory reads a message's later
                // copies after its first, in their order.
                let name = if item.copy <= 1 {
                    format!("{}.eml", item.id)
                } else {
                    format!("{}~copy{:04}.eml", item.id, item.copy)
                };
                // A hidden name: `ingest` of the directory skips a half-written file.
                let tmp = self.dest.join(format!(".{name}.tmp"));
                write_whole(&tmp, &self.dest.join(&name), item.raw)
            }
        }
    }

    /// Makes everything written durable; an mbox export's progress file goes. Returns how
    /// many messages an mbox holds with a final line break they did not have.
    pub fn finish(self) -> Result<u64, Error> {
        match self.mbox {
            Some(mbox) => {
                let n = mbox.unterminated;
                mbox.finish().map(|()| n)
            }
            None => {
                let dir = match self.format {
                    Format::Maildir => self.dest.join("cur"),
                    _ => self.dest.clone(),
                };
                sync_dir(&dir).map(|()| 0)
            }
        }
    }
}

impl Mbox {
    fn open(dest: &Path, arguments: &str) -> Result<Self, Error> {
        let progress_path = progress_path(dest);
        let progress = match std::fs::read(&progress_path) {
            Ok(bytes) => Some(serde_json::from_slice::<Progress>(&bytes).map_err(|e| {
                Error::Refused(format!(
                    "{} is not an export progress file ({e}); remove it to start afresh",
                    progress_path.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(format!("reading {}", progress_path.display()))(e)),
        };
        let exists = dest.exists();
        let (file, length, resume_after) = match progress {
            Some(p) if p.arguments != arguments => {
                return Err(Error::Refused(format!(
                    "{} is an unfinished export with other arguments ({}); run that again \
                     to finish it, or choose another destination",
                    dest.display(),
                    p.arguments
                )));
            }
            Some(p) if exists => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .map_err(io(format!("opening {}", dest.display())))?;
                let what = format!("cutting {} back to its last synced message", dest.display());
                file.set_len(p.length).map_err(io(what.clone()))?;
                file.seek(std::io::SeekFrom::End(0)).map_err(io(what))?;
                (file, p.length, Some(p.last))
            }
            Some(_) => {
                return Err(Error::Refused(format!(
                    "{} is gone but its progress file {} is there; remove the progress file \
                     to start afresh",
                    dest.display(),
                    progress_path.display()
                )));
            }
            None if exists => {
                return Err(Error::Refused(format!(
                    "{} exists and is no unfinished export: choose another destination",
                    dest.display()
                )));
            }
            None => {
                let file = private_file(dest)?;
                (file, 0, None)
            }
        };
        Ok(Self {
            file: BufWriter::with_capacity(256 * 1024, file),
            length,
            progress_path,
            arguments: arguments.to_owned(),
            resume_after,
            last: None,
            unsynced: 0,
            unterminated: 0,
        })
    }

    fn write(&mut self, item: &Item<'_>) -> Result<Written, Error> {
        if self
            .resume_after
            .is_some_and(|after| item.position() <= after)
        {
            return Ok(Written::AlreadyThere);
        }
        let mut bytes = Vec::with_capacity(item.raw.len() + 128);
        bytes.extend_from_slice(b"From ");
        bytes.extend_from_slice(item.sender.unwrap_or("MAILER-DAEMON").as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(asctime(item.received_at).as_bytes());
        bytes.push(b'\n');
        quote_into(item.raw, &mut bytes);
        // The next `From ` line must start a line: a message that does not end with a line
        // break gets one (an mbox cannot hold it exactly). No blank line is added, since
        // readers that keep it (ours, imaptest's) would make it part of the message.
        if !item.raw.ends_with(b"\n") {
            bytes.push(b'\n');
            self.unterminated += 1;
        }
        self.file
            .write_all(&bytes)
            .map_err(io("writing the mbox"))?;
        self.length += bytes.len() as u64;
        self.last = Some(item.position());
        self.unsynced += 1;
        if self.unsynced >= MBOX_SYNC_EVERY {
            self.sync()?;
        }
        Ok(Written::New)
    }

    /// Syncs the mbox, then records how far it got.
    fn sync(&mut self) -> Result<(), Error> {
        self.unsynced = 0;
        let Some(last) = self.last else {
            return Ok(());
        };
        self.file.flush().map_err(io("writing the mbox"))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io("syncing the mbox"))?;
        let progress = Progress {
            arguments: self.arguments.clone(),
            last,
            length: self.length,
        };
        let text = serde_json::to_vec(&progress).map_err(|e| io("progress")(e.into()))?;
        let tmp = self.progress_path.with_extension("export-progress.tmp");
        replace(&tmp, &self.progress_path, &text)
    }

    fn finish(mut self) -> Result<(), Error> {
        self.file.flush().map_err(io("writing the mbox"))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(io("syncing the mbox"))?;
        match std::fs::remove_file(&self.progress_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io(format!("removing {}", self.progress_path.display()))(e));
            }
        }
        Ok(())
    }
}

/// Where `export --with-proofs` puts the evidence: `DEST.proofs`, beside the export (so
/// that `ingest DEST` never takes a proof for a message).
pub fn proofs_dir(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".proofs");
    dest.with_file_name(name)
}

/// Writes one file of evidence (`name` in `dir`, which is made owner-only if missing),
/// whole and synced.
pub fn write_evidence(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    private_dir(dir)?;
    replace(&dir.join(format!(".{name}.tmp")), &dir.join(name), bytes)
}

/// `DEST.export-progress`.
pub fn progress_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".export-progress");
    dest.with_file_name(name)
}

/// Appends `raw` to `out` with mboxrd quoting: a line that starts with `From ` after zero
/// or more `>` gets one more `>`.
pub fn quote_into(raw: &[u8], out: &mut Vec<u8>) {
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if line[quotes..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
}

/// `Thu Dec  3 16:45:13 2026`, in UTC, as mbox `From ` lines have it.
fn asctime(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a %b %e %H:%M:%S %Y")
        .to_string()
}

/// Writes `bytes` to `path` whole (see [`replace`]), unless a file of their size is there
/// already: written by an earlier run.
fn write_whole(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<Written, Error> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(Written::AlreadyThere);
    }
    replace(tmp, path, bytes)?;
    Ok(Written::New)
}

/// Puts `bytes` at `path` in one step: written to `tmp`, synced, renamed.
fn replace(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let what = format!("writing {}", path.display());
    let mut file = private_file(tmp)?;
    file.write_all(bytes).map_err(io(what.clone()))?;
    file.sync_data().map_err(io(what.clone()))?;
    std::fs::rename(tmp, path).map_err(io(what))
}

/// A new file only its owner may read (exported mail is as private as the archive).
fn private_file(path: &Path) -> Result<File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("creating {}", path.display())))
}

fn private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io(format!("creating {}", path.display())))
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_quoting() {
        let mut out = Vec::new();
        quote_into(
            b"From a\r\n>From b\n>>From c\nFromage\n> From d\nx From e\nFrom ",
            &mut out,
        );
        assert_eq!(
            out,
            b">From a\r\n>>From b\n>>>From c\nFromage\n> From d\nx From e\n>From ".to_vec()
        );
    }

    #[test]
    fn asctime_pads_the_day() {
        assert_eq!(asctime(1_174_777_200), "Sat Mar 24 23:00:00 2007");
        assert_eq!(asctime(1_764_780_313), "Wed Dec  3 16:45:13 2025");
    }

    #[test]
    fn progress_file_sits_beside_the_mbox() {
        assert_eq!(
            progress_path(Path::new("/x/out.mbox")),
            Path::new("/x/out.mbox.export-progress")
        );
    }
}
