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
        let iter = Mbox::new(reader).enumerate().map(move |(i, m)| {
            let m = m.map_err(|e| Error::io(&path, e))?;
            Ok(Item {
                origin: format!("{origin}:{}", i + 1),
                mail_from: m.sender,
                received_at: m.date,
                raw: m.contents,
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

/// One message of an mbox file.
#[derive(Debug, PartialEq, Eq)]
struct MboxMessage {
    /// The sender of its `From ` line (`None` when empty or `MAILER-DAEMON`).
    sender: Option<String>,
    /// The date of its `From ` line (Unix seconds; see [`from_line_date`]).
    date: Option<i64>,
    /// Every line up to the next `From ` line, `>From ` quoting undone.
    contents: Vec<u8>,
}

/// The messages of an mbox: each starts at a line beginning with `From `, which is not part
/// of it, and ends where the next begins (a blank line before it is the message's, as
/// imaptest and the mbox files of test suites have it; `export --format mbox` writes none); a line of one or more `>` before `From ` loses one
/// `>` (mboxrd quoting, which also undoes mboxo's). Lines before the first `From ` line are
/// not a message.
struct Mbox<R> {
    reader: R,
    /// The message being read.
    current: Option<MboxMessage>,
}

impl<R: std::io::BufRead> Mbox<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            current: None,
        }
    }
}

impl<R: std::io::BufRead> Iterator for Mbox<R> {
    type Item = std::io::Result<MboxMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return self.current.take().map(Ok),
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            if let Some(rest) = line.strip_prefix(b"From ") {
                let next = from_line(rest);
                match self.current.replace(next) {
                    Some(done) => return Some(Ok(done)),
                    None => continue,
                }
            }
            let Some(message) = &mut self.current else {
                continue;
            };
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            let unquote = quotes > 0 && line[quotes..].starts_with(b"From ");
            message
                .contents
                .extend_from_slice(if unquote { &line[1..] } else { &line });
        }
    }
}

/// A message begun by a `From ` line, given what follows `From `: the sender, then the date.
fn from_line(rest: &[u8]) -> MboxMessage {
    let text = String::from_utf8_lossy(rest);
    let text = text.trim_start();
    let (sender, date) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let sender = sender.trim();
    MboxMessage {
        sender: (!sender.is_empty() && sender != "MAILER-DAEMON").then(|| sender.to_owned()),
        date: from_line_date(date),
        contents: Vec::with_capacity(4096),
    }
}

/// The date of an mbox `From ` line as Unix seconds: asctime's `Sat Mar 24 23:00:00 2007`
/// (the weekday and the seconds may be missing), with an optional zone after the year
/// (`2007 +0200`) or, as some writers put it, before (`+0200 2007`): a numeric offset,
/// `UTC`/`GMT`/`UT`/`Z`, or an IANA name (`Europe/Berlin`). Without a zone, or with one we
/// cannot place (an abbreviation like `CEST` means different things in different places),
/// the time is taken as UTC. `None` if it is no such date.
fn from_line_date(text: &str) -> Option<i64> {
    use jiff::fmt::strtime::BrokenDownTime;
    let mut words: Vec<&str> = text.split_whitespace().collect();
    // The weekday says nothing the date does not (and writers get it wrong).
    if words
        .first()
        .is_some_and(|w| BrokenDownTime::parse("%a", w).is_ok())
    {
        words.remove(0);
    }
    // Month, day, time, then the year and the zone in either order.
    let (date, rest) = (words.get(..3)?, words.get(3..)?);
    let (year, zone) = match rest {
        [year] => (*year, None),
        [a, b] if a.bytes().all(|c| c.is_ascii_digit()) => (*a, Some(*b)),
        [a, b] => (*b, Some(*a)),
        _ => return None,
    };
    let zone = zone.map(|z| match z.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "UT" | "Z" => "+0000",
        _ => z,
    });
    let time = if date[2].bytes().filter(|&b| b == b':').count() == 1 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    let civil = format!("{} {} {} {year}", date[0], date[1], date[2]);
    let utc = || {
        let tm = BrokenDownTime::parse(format!("%b %d {time} %Y"), &civil).ok()?;
        let at = tm
            .to_datetime()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?;
        Some(at.timestamp().as_second())
    };
    let Some(zone) = zone else {
        return utc();
    };
    let zoned = BrokenDownTime::parse(format!("%b %d {time} %Y %Q"), format!("{civil} {zone}"))
        .ok()
        .and_then(|tm| match tm.offset() {
            Some(_) => tm.to_timestamp().ok(),
            None => tm.to_zoned().ok().map(|z| z.timestamp()),
        });
    match zoned {
        Some(at) => Some(at.as_second()),
        // A numeric offset that does not parse makes the line no date we know.
        None if zone.starts_with(['+', '-']) => None,
        None => utc(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_dates() {
        // 2007-03-24T23:00:00Z
        const UTC: i64 = 1_174_777_200;
        let cases: &[(&str, Option<i64>)] = &[
            ("Sat Mar 24 23:00:00 2007", Some(UTC)),
            ("Sat Mar 24 23:00:00 2007 +0200", Some(UTC - 2 * 3600)),
            ("Sat Mar 24 23:00:00 2007 -0500", Some(UTC + 5 * 3600)),
            ("Sat Mar 24 23:00:00 +0200 2007", Some(UTC - 2 * 3600)),
            (
                "Sat Mar 24 23:00:00 -0530 2007",
                Some(UTC + 5 * 3600 + 1800),
            ),
            ("Sat Mar 24 23:00:00 2007 UTC", Some(UTC)),
            ("Sat Mar 24 23:00:00 GMT 2007", Some(UTC)),
            ("Sat Mar 24 23:00:00 2007 gmt", Some(UTC)),
            // An abbreviation that names no one place: as before, UTC.
            ("Sat Mar 24 23:00:00 CEST 2007", Some(UTC)),
            ("Sat Mar 24 23:00 2007", Some(UTC)),
            ("Mar 24 23:00:00 2007 +0200", Some(UTC - 2 * 3600)),
            ("  Sat  Mar  24  23:00:00  2007  ", Some(UTC)),
            // Single-digit days are padded with a space.
            ("Sat Mar  3 23:00:00 2007", Some(UTC - 21 * 86_400)),
            // A wrong weekday does not lose the date.
            ("Mon Mar 24 23:00:00 2007", Some(UTC)),
            ("Sat Mar 24 23:00:00 2007 +02xx", None),
            ("Sat Mar 32 23:00:00 2007", None),
            ("Sat Mar 24 2007", None),
            ("Sat Mar 24 23:00:00 2007 +0200 extra", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(from_line_date(text), *want, "{text:?}");
        }
    }

    #[test]
    fn mbox_messages() {
        let mbox = b"From alice@contoso.com Sat Mar 24 23:00:00 2007 +0200\n\
Subject: one\n\
\n\
>From the start\n\
>>From here\n\
> From nothing\n\
\n\
From MAILER-DAEMON Sat Mar 24 23:00:00 2007\n\
Subject: two\n\
From  \n\
Subject: three\n";
        let got: Vec<MboxMessage> = Mbox::new(&mbox[..])
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(
            got,
            [
                MboxMessage {
                    sender: Some("alice@contoso.com".into()),
                    date: Some(1_174_770_000),
                    contents: b"Subject: one\n\nFrom the start\n>From here\n> From nothing\n\n"
                        .to_vec(),
                },
                MboxMessage {
                    sender: None,
                    date: Some(1_174_777_200),
                    contents: b"Subject: two\n".to_vec(),
                },
                MboxMessage {
                    sender: None,
                    date: None,
                    contents: b"Subject: three\n".to_vec(),
                },
            ]
        );
    }
}
