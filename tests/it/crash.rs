//! Crash safety, end to end: the real binary under concurrent SMTP load is SIGKILLed at
//! varying moments, restarted on the same data directory, and the archive is checked.
//!
//! The promise under test: a `250` after DATA means the message is durable. So after any
//! crash every acknowledged message is listed (under the id the `250` named, with its exact
//! size), `verify` finds no problem, and re-sending what was not acknowledged (as a sending
//! MTA would) merges into existing records instead of duplicating them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Rng, TEST_CONFIG, mailjournal};

/// Concurrent SMTP sessions per round.
const SESSIONS: u32 = 20;
/// Crash rounds (`MAILJOURNAL_CRASH_ROUNDS` sets another number: `scripts/crash-test`).
const ROUNDS: u32 = 6;

fn rounds() -> u32 {
    std::env::var("MAILJOURNAL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}
/// Acknowledged messages (all sessions together) a round must see before its kill.
const MIN_ACKS_BEFORE_KILL: usize = 20;
/// The journal mailbox the test config accepts (set explicitly, see `Server::start`).
const JOURNAL: &str = "journal@example.com";
/// Every socket read and write gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start may take until the greeting arrives.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a round may take to reach `MIN_ACKS_BEFORE_KILL`.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean stop (SIGTERM) may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// Messages one session sends in one round at most.
const MAX_PER_SESSION: u32 = 5_000;
/// Sessions re-sending after the last round.
const RESEND_SESSIONS: usize = 4;
/// Acknowledged messages re-sent after the last round (to prove they merge).
const RESEND_ACKED: usize = 40;

/// One message of the workload: which round, which session, which of the session's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    round: u32,
    session: u32,
    n: u32,
}

impl Key {
    /// The Message-ID, without angle brackets (as `list --json` shows it).
    fn message_id(self) -> String {
        format!(
            "crash-r{}-t{}-{}@fabrikam.com",
            self.round, self.session, self.n
        )
    }

    fn seed(self) -> u64 {
        (u64::from(self.round) << 48) ^ (u64::from(self.session) << 32) ^ u64::from(self.n)
    }

    /// Large messages are random text that compresses to more than 64 KiB, so the archive
    /// keeps them as files rather than inline.
    fn is_large(self) -> bool {
        Rng(self.seed()).below(8) < 2
    }

    /// Outbound from even sessions, inbound from odd ones.
    fn parties(self) -> (&'static str, &'static str) {
        if self.session.is_multiple_of(2) {
            ("alice@contoso.com", "marta@fabrikam.com")
        } else {
            ("marta@fabrikam.com", "alice@contoso.com")
        }
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const WORDS: &[&str] = &[
    "journal",
    "archive",
    "quarterly",
    "price",
    "list",
    "meeting",
    "contract",
    "invoice",
    "shipment",
    "review",
    "draft",
    "approval",
    "budget",
    "schedule",
    "the",
    "and",
    "for",
    "of",
];

/// The message for `key`, CRLF line endings. Bodies run from a few hundred bytes to about
/// 110 KB; some lines start with a dot (one is a lone dot) to exercise dot-stuffing.
fn message(key: Key) -> Vec<u8> {
    let mut rng = Rng(key.seed());
    let large = rng.below(8) < 2;
    let medium = !large && rng.below(6) == 0;
    let target = if large {
        rng.range(92_000, 110_000)
    } else if medium {
        rng.range(8_000, 48_000)
    } else {
        rng.range(300, 4_000)
    };
    let (from, to) = key.parties();
    let mut m = format!(
        "Date: Mon, 2 Nov 2026 10:{:02}:{:02} +0000\r\n\
         From: <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: crash test round {} session {} message {}\r\n\
         Message-ID: <{}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        key.round % 60,
        key.session % 60,
        key.round,
        key.session,
        key.n,
        key.message_id()
    )
    .into_bytes();
    let header_len = m.len();
    while m.len() - header_len < target {
        match rng.below(24) {
            0 => m.extend_from_slice(b".\r\n"),
            1 => m.extend_from_slice(b"..a line that starts with two dots\r\n"),
            2 => m.extend_from_slice(b".a line that starts with one dot\r\n"),
            _ if large => {
                for _ in 0..76 {
                    m.push(ALPHABET[usize::try_from(rng.below(64)).expect("index")]);
                }
                m.extend_from_slice(b"\r\n");
            }
            _ => {
                let mut line = String::new();
                while line.len() < 60 {
                    let word =
                        WORDS[usize::try_from(rng.below(WORDS.len() as u64)).expect("index")];
                    line.push_str(word);
                    line.push(' ');
                }
                line.push_str(&rng.next().to_string());
                m.extend_from_slice(line.as_bytes());
                m.extend_from_slice(b"\r\n");
            }
        }
    }
    m
}

/// The DATA payload for a message: dot-stuffed and terminated.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 256);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    text: String,
}

/// How one transaction ended.
enum Sent {
    /// `250` after the data, with the stable id it named.
    Acked(String),
    /// A reply other than the expected one (the session itself is still usable).
    Refused(Reply),
    /// The connection broke or timed out; `whole` when all the data had been written.
    Lost { whole: bool },
}

/// A blocking SMTP client speaking just enough of the protocol by hand.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> io::Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut smtp = Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        smtp.expect(None, 220)?;
        smtp.expect(Some("EHLO crash-test.fabrikam.com"), 250)?;
        Ok(smtp)
    }

    /// Reads one (possibly multi-line) reply; the text is that of its last line.
    fn reply(&mut self) -> io::Result<Reply> {
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}"))
                })?;
            if line.as_bytes().get(3) != Some(&b'-') {
                let text = line.get(4..).unwrap_or("").to_owned();
                return Ok(Reply { code, text });
            }
        }
    }

    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    fn expect(&mut self, line: Option<&str>, code: u16) -> io::Result<Reply> {
        let reply = match line {
            Some(line) => self.command(line)?,
            None => self.reply()?,
        };
        if reply.code == code {
            Ok(reply)
        } else {
            Err(io::Error::other(format!(
                "{line:?}: expected {code}, got {} {}",
                reply.code, reply.text
            )))
        }
    }

    fn send(&mut self, from: &str, data: &[u8]) -> Sent {
        let mut whole = false;
        match self.transaction(from, data, &mut whole) {
            Ok(Ok(id)) => Sent::Acked(id),
            Ok(Err(reply)) => Sent::Refused(reply),
            Err(_) => Sent::Lost { whole },
        }
    }

    fn transaction(
        &mut self,
        from: &str,
        data: &[u8],
        whole: &mut bool,
    ) -> io::Result<Result<String, Reply>> {
        for (line, want) in [
            (format!("MAIL FROM:<{from}>"), 250),
            (format!("RCPT TO:<{JOURNAL}>"), 250),
            ("DATA".to_owned(), 354),
        ] {
            let reply = self.command(&line)?;
            if reply.code != want {
                return Ok(Err(reply));
            }
        }
        self.writer.write_all(data)?;
        *whole = true;
        let reply = self.reply()?;
        // `250 2.0.0 OK <stable id>`
        let id = reply
            .text
            .strip_prefix("2.0.0 OK ")
            .map(str::trim)
            .filter(|id| id.len() == 24);
        match (reply.code, id) {
            (250, Some(id)) => Ok(Ok(id.to_owned())),
            _ => Ok(Err(reply)),
        }
    }
}

/// One message a session tried to send, and how that ended.
#[derive(Debug, Clone)]
struct Attempt {
    key: Key,
    /// The stable id from the `250`, if it came.
    acked: Option<String>,
    /// All the data was written (the crash hit while waiting for the reply).
    whole: bool,
    /// The refusal, if that is how it ended.
    refusal: Option<Reply>,
    /// The message's size in bytes (before dot-stuffing).
    size: u64,
}

/// One session's workload: distinct messages until told to stop, reconnecting on errors.
fn session(
    port: u16,
    round: u32,
    session: u32,
    stop: &AtomicBool,
    acks: &AtomicUsize,
    deadline: Instant,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut conn: Option<Smtp> = None;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && n < MAX_PER_SESSION && Instant::now() < deadline {
        if conn.is_none() {
            match Smtp::connect(port) {
                Ok(smtp) => conn = Some(smtp),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(smtp) = conn.as_mut() else { continue };
        let key = Key { round, session, n };
        n += 1;
        let raw = message(key);
        let data = dot_stuffed(&raw);
        let mut attempt = Attempt {
            key,
            acked: None,
            whole: false,
            refusal: None,
            size: raw.len() as u64,
        };
        match smtp.send(key.parties().0, &data) {
            Sent::Acked(id) => {
                attempt.acked = Some(id);
                attempt.whole = true;
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Sent::Refused(reply) => {
                attempt.refusal = Some(reply);
                if smtp.command("RSET").is_err() {
                    conn = None;
                }
            }
            Sent::Lost { whole } => {
                attempt.whole = whole;
                conn = None;
            }
        }
        attempts.push(attempt);
    }
    if let Some(mut smtp) = conn {
        let _ = smtp.command("QUIT");
    }
    attempts
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The last lines of the server log, for failure messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(80);
    format!(
        "--- last lines of {} ---\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}

/// `mailjournal serve` on `data` with its SMTP listener on `port`, output to `log`.
fn spawn(config: &Path, data: &Path, port: u16, log: std::fs::File) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailjournal"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("MAILJOURNAL_DATA_DIR", data)
        .env("MAILJOURNAL_SMTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("MAILJOURNAL_IMAP_LISTEN", "")
        .env("MAILJOURNAL_IMAPS_LISTEN", "")
        .env("MAILJOURNAL_HTTP_LISTEN", "")
        .env("MAILJOURNAL_JOURNAL_ADDRESSES", JOURNAL)
        .env_remove("MAILJOURNAL_SMTPS_LISTEN")
        .env_remove("MAILJOURNAL_ORG_DOMAINS")
        .env_remove("MAILJOURNAL_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn mailjournal serve")
}

/// `mailjournal serve`, running.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the gateway on `data` and waits for its greeting. Retries on another port if
    /// the one picked was taken in the meantime.
    fn start(data: &Path, log: &Path, what: &str) -> Self {
        let config = data.join("test-config.toml");
        if !config.exists() {
            std::fs::create_dir_all(data).expect("data dir");
            std::fs::write(&config, TEST_CONFIG).expect("write config");
        }
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the server log");
            writeln!(file, "=== test: start ({what}) on 127.0.0.1:{port} ===").expect("write log");
            let child = spawn(&config, data, port, file);
            let mut server = Server {
                child,
                port,
                log: log.to_path_buf(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => {
                    // Drop kills it if it is still running.
                    failures.push(e);
                    let exited = server.child.try_wait().ok().flatten().is_some();
                    if !exited {
                        break;
                    }
                }
            }
        }
        panic!(
            "mailjournal serve did not start ({what}): {failures:?}\n{}",
            log_tail(log)
        );
    }

    /// Polls until the port answers with `220`, or the process exits, or the deadline.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return Err(format!("exited with {status} on port {}", self.port));
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("set read timeout");
                let mut greeting = [0u8; 3];
                if stream.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                    let _ = stream.write_all(b"QUIT\r\n");
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no 220 greeting on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the gateway on the crashed archive `data` and SIGKILLs it `after` that,
    /// ready or not: mostly while it is still recovering what the crash left.
    fn kill_while_starting(data: &Path, log: &Path, after: Duration) {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the server log");
        let mut child = spawn(&data.join("test-config.toml"), data, free_port(), file);
        std::thread::sleep(after);
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// SIGTERM and wait for a clean exit.
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "the server did not stop within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit must be clean.
    fn stop(&mut self, what: &str) {
        let status = self.terminate();
        assert!(
            status.success(),
            "the server ({what}) exited with {status} after SIGTERM\n{}",
            log_tail(&self.log)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One record of `list --json`.
#[derive(Debug)]
struct Listed {
    id: String,
    size: u64,
    copies: u64,
}

/// `list --json` by Message-ID. Fails on a Message-ID listed twice (a duplicate record).
fn list(data: &Path, log: &Path) -> BTreeMap<String, Listed> {
    let out = mailjournal(&["list", "--json"], data);
    assert!(
        out.status.success(),
        "list failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tail(log)
    );
    let mut listed = BTreeMap::new();
    let mut duplicates = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        let message_id = v["message_id"]
            .as_str()
            .expect("every test message has a Message-ID")
            .trim_matches(['<', '>'])
            .to_owned();
        let record = Listed {
            id: v["id"].as_str().expect("id").to_owned(),
            size: v["size"].as_u64().expect("size"),
            copies: v["copies"]["received"].as_u64().expect("copies"),
        };
        if let Some(first) = listed.get(&message_id) {
            duplicates.push(format!("<{message_id}>: {first:?} and {record:?}"));
        } else {
            listed.insert(message_id, record);
        }
    }
    assert!(
        duplicates.is_empty(),
        "{} message(s) with more than one record:\n{}\n{}",
        duplicates.len(),
        duplicates.join("\n"),
        log_tail(log)
    );
    listed
}

/// `verify` exits 0 and reports `records` messages with no problem.
fn verify(data: &Path, records: usize, log: &Path, when: &str) {
    let out = mailjournal(&["verify"], data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!("verified {records} messages: 0 problems");
    assert!(
        out.status.success() && stdout.contains(&want),
        "verify {when}: expected {want:?}, got {}:\n{stdout}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        log_tail(log)
    );
}

/// Checks every acknowledged attempt against the listing; returns the problems found.
fn missing_acked(attempts: &[Attempt], listed: &BTreeMap<String, Listed>) -> Vec<String> {
    let mut problems = Vec::new();
    for a in attempts {
        let Some(id) = &a.acked else { continue };
        let mid = a.key.message_id();
        match listed.get(&mid) {
            None => problems.push(format!("<{mid}> got 250 ({id}) but is not in the archive")),
            Some(l) if &l.id != id => problems.push(format!(
                "<{mid}> got 250 with id {id} but is listed as {}",
                l.id
            )),
            Some(l) if l.size != a.size => problems.push(format!(
                "<{mid}> is listed with size {}, {} bytes were sent",
                l.size, a.size
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Listed records that no session ever sent.
fn unknown_records(attempts: &[Attempt], listed: &BTreeMap<String, Listed>) -> Vec<String> {
    let sent: BTreeSet<String> = attempts.iter().map(|a| a.key.message_id()).collect();
    listed
        .keys()
        .filter(|mid| !sent.contains(*mid))
        .cloned()
        .collect()
}

/// After a crash: every `250` is in the archive, nothing unknown is, and `verify` is clean.
/// Returns the listing.
fn check_after_crash(
    data: &Path,
    log: &Path,
    attempts: &[Attempt],
    when: &str,
) -> BTreeMap<String, Listed> {
    let listed = list(data, log);
    let mut problems = missing_acked(attempts, &listed);
    problems.extend(
        unknown_records(attempts, &listed)
            .into_iter()
            .map(|mid| format!("<{mid}> is archived but was never sent")),
    );
    assert!(
        problems.is_empty(),
        "{when}: {} problem(s):\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        log_tail(log)
    );
    verify(data, listed.len(), log, when);
    listed
}

/// What one re-sending session got: ids by message, and the messages that failed.
#[derive(Default)]
struct Resent {
    ids: Vec<(Key, String)>,
    failures: Vec<String>,
}

/// Sends `keys` in order over one session (reconnecting, three tries per message).
fn resend_session(port: u16, keys: &[Key]) -> Resent {
    let mut resent = Resent::default();
    let mut conn: Option<Smtp> = None;
    for &key in keys {
        let data = dot_stuffed(&message(key));
        let mut last = String::new();
        for _ in 0..3 {
            if conn.is_none() {
                match Smtp::connect(port) {
                    Ok(smtp) => conn = Some(smtp),
                    Err(e) => {
                        last = format!("connect: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            let Some(smtp) = conn.as_mut() else { continue };
            match smtp.send(key.parties().0, &data) {
                Sent::Acked(id) => {
                    resent.ids.push((key, id));
                    last.clear();
                    break;
                }
                Sent::Refused(reply) => {
                    last = format!("{} {}", reply.code, reply.text);
                    if smtp.command("RSET").is_err() {
                        conn = None;
                    }
                }
                Sent::Lost { .. } => {
                    last = "connection lost".to_owned();
                    conn = None;
                }
            }
        }
        if !last.is_empty() {
            resent
                .failures
                .push(format!("<{}>: {last}", key.message_id()));
        }
    }
    if let Some(mut smtp) = conn {
        let _ = smtp.command("QUIT");
    }
    resent
}

/// Sends `keys` over a few sessions; every one must get `250`. Returns the ids by key.
fn resend(port: u16, keys: &[Key], log: &Path) -> BTreeMap<Key, String> {
    let chunk = keys.len().div_ceil(RESEND_SESSIONS).max(1);
    let results: Vec<Resent> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|keys| s.spawn(move || resend_session(port, keys)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("resend thread"))
            .collect()
    });
    let mut ids = BTreeMap::new();
    let mut failures = Vec::new();
    for r in results {
        ids.extend(r.ids);
        failures.extend(r.failures);
    }
    assert!(
        failures.is_empty(),
        "re-sending after the crashes failed for {} message(s):\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        log_tail(log)
    );
    ids
}

/// Blob files under `objects/` (messages stored as files rather than inline).
fn blob_files(data: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(data.join("objects")) else {
        return 0;
    };
    dirs.filter_map(Result::ok)
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.filter_map(Result::ok))
        .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_message_and_resending_creates_no_duplicates() {
    let began = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let log = work.path().join("server.log");
    let mut all: Vec<Attempt> = Vec::new();

    let rounds = rounds();
    for round in 0..rounds {
        let mut server = Server::start(&data, &log, &format!("round {round}"));
        let port = server.port;
        // Varying kill moments: 150 ms, 320 ms, ... after the load starts, and never before
        // MIN_ACKS_BEFORE_KILL messages were acknowledged.
        let kill_at = Duration::from_millis(150 + 170 * u64::from(round % 12));
        let stop = AtomicBool::new(false);
        let acks = AtomicUsize::new(0);
        let deadline = Instant::now() + ACK_TIMEOUT + Duration::from_secs(5);
        let (killed_after, reached, attempts) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..SESSIONS)
                .map(|t| {
                    let (stop, acks) = (&stop, &acks);
                    s.spawn(move || session(port, round, t, stop, acks, deadline))
                })
                .collect();
            let started = Instant::now();
            let reached = loop {
                let elapsed = started.elapsed();
                if elapsed >= kill_at && acks.load(Ordering::SeqCst) >= MIN_ACKS_BEFORE_KILL {
                    break true;
                }
                if elapsed > ACK_TIMEOUT {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            let killed_after = started.elapsed();
            server.kill();
            stop.store(true, Ordering::SeqCst);
            let attempts: Vec<Attempt> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("session thread"))
                .collect();
            (killed_after, reached, attempts)
        });
        let refusals: Vec<String> = attempts
            .iter()
            .filter_map(|a| {
                let r = a.refusal.as_ref()?;
                Some(format!("<{}>: {} {}", a.key.message_id(), r.code, r.text))
            })
            .collect();
        assert!(
            reached,
            "round {round}: fewer than {MIN_ACKS_BEFORE_KILL} messages acknowledged within \
             {ACK_TIMEOUT:?} ({} attempts, refusals: {refusals:?})\n{}",
            attempts.len(),
            log_tail(&log)
        );
        // A temporary refusal (4xx) leaves a message unacknowledged, for the re-send to
        // deliver; a permanent one means the test or the gateway is misconfigured.
        let permanent = attempts
            .iter()
            .filter(|a| a.refusal.as_ref().is_some_and(|r| r.code >= 500))
            .count();
        assert_eq!(
            permanent,
            0,
            "round {round}: refused permanently: {refusals:?}\n{}",
            log_tail(&log)
        );
        all.extend(attempts.iter().cloned());

        // Both ways back from a crash: the CLI opening the crashed archive first, or the
        // gateway restarting on it first. Either way the gateway must start and stop cleanly.
        let when = format!("after the crash of round {round}");
        // Every third round, a crash during the recovery from the crash, too.
        if round % 3 == 2 {
            let after = Duration::from_millis(5 + 13 * u64::from(round % 7));
            Server::kill_while_starting(&data, &log, after);
        }
        let listed = if round.is_multiple_of(2) {
            let listed = check_after_crash(&data, &log, &all, &when);
            Server::start(&data, &log, &format!("restart after round {round}")).stop(&when);
            listed
        } else {
            Server::start(&data, &log, &format!("restart after round {round}")).stop(&when);
            check_after_crash(&data, &log, &all, &when)
        };
        // Committed but not acknowledged: the crash came between the commit and the reply.
        let committed_unacked = attempts
            .iter()
            .filter(|a| a.acked.is_none() && listed.contains_key(&a.key.message_id()))
            .count();
        let acked = attempts.iter().filter(|a| a.acked.is_some()).count();
        let whole = attempts
            .iter()
            .filter(|a| a.acked.is_none() && a.whole)
            .count();
        println!(
            "round {round}: killed after {} ms: {} sent, {acked} acknowledged, {} not \
             ({whole} fully sent, {} cut off mid-transaction, {} refused with 4xx; \
             {committed_unacked} of them committed all the same)",
            killed_after.as_millis(),
            attempts.len(),
            attempts.len() - acked,
            attempts.len() - acked - whole - refusals.len(),
            refusals.len()
        );
    }

    // Everything sent over all rounds, and what was not acknowledged.
    let keys: BTreeSet<Key> = all.iter().map(|a| a.key).collect();
    assert_eq!(keys.len(), all.len(), "every attempt is a distinct message");
    let before = list(&data, &log);
    let unacked: Vec<Key> = all
        .iter()
        .filter(|a| a.acked.is_none())
        .map(|a| a.key)
        .collect();
    let acked: Vec<&Attempt> = all.iter().filter(|a| a.acked.is_some()).collect();
    let step = (acked.len() / RESEND_ACKED).max(1);
    let sample: Vec<Key> = acked
        .iter()
        .step_by(step)
        .take(RESEND_ACKED)
        .map(|a| a.key)
        .collect();
    let committed_unacked: BTreeSet<Key> = unacked
        .iter()
        .copied()
        .filter(|k| before.contains_key(&k.message_id()))
        .collect();

    // Re-send the unacknowledged ones (as the sending MTA would) and a sample of the
    // acknowledged ones, then stop cleanly.
    let mut server = Server::start(&data, &log, "re-send");
    let mut to_send = unacked.clone();
    to_send.extend(&sample);
    let resent = resend(server.port, &to_send, &log);
    server.stop("after re-sending");

    let after = list(&data, &log);
    let mut problems = missing_acked(&all, &after);
    problems.extend(
        unknown_records(&all, &after)
            .into_iter()
            .map(|mid| format!("<{mid}> is archived but was never sent")),
    );
    if after.len() != keys.len() {
        problems.push(format!(
            "{} records for {} distinct messages sent",
            after.len(),
            keys.len()
        ));
    }
    let sampled: BTreeSet<Key> = sample.iter().copied().collect();
    for a in &all {
        let mid = a.key.message_id();
        let Some(l) = after.get(&mid) else {
            problems.push(format!("<{mid}> is not in the archive after re-sending"));
            continue;
        };
        if let Some(id) = resent.get(&a.key)
            && id != &l.id
        {
            problems.push(format!(
                "<{mid}> re-sent: 250 named {id}, listed as {}",
                l.id
            ));
        }
        let copies = if sampled.contains(&a.key) || committed_unacked.contains(&a.key) {
            2
        } else {
            1
        };
        if l.copies != copies {
            problems.push(format!(
                "<{mid}> has {} copies, expected {copies} (acknowledged: {}, re-sent: {})",
                l.copies,
                a.acked.is_some(),
                resent.contains_key(&a.key)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "after re-sending: {} problem(s):\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        log_tail(&log)
    );
    verify(&data, keys.len(), &log, "after re-sending");

    let out = mailjournal(&["stats", "--json"], &data);
    assert!(out.status.success(), "stats failed");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    assert_eq!(stats["messages"], keys.len() as u64, "{stats}");
    assert_eq!(stats["counters"]["stored"], keys.len() as u64, "{stats}");
    assert_eq!(
        stats["counters"]["duplicates"],
        (sample.len() + committed_unacked.len()) as u64,
        "{stats}"
    );
    let out = mailjournal(&["list", "--junk", "--json"], &data);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "nothing is junk: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let large = keys.iter().filter(|k| k.is_large()).count();
    let files = blob_files(&data);
    assert!(files > 0, "large messages are stored as files");

    println!(
        "crash test: {} rounds, {} messages ({} acknowledged, {} not, of which {} had been \
         committed), {large} large, {files} blob files; re-sent {} unacknowledged and {} \
         acknowledged without duplicates; {:.1} s",
        rounds,
        keys.len(),
        acked.len(),
        unacked.len(),
        committed_unacked.len(),
        unacked.len(),
        sample.len(),
        began.elapsed().as_secs_f64()
    );
}

/// A tmpfs of a fixed size mounted on a directory for one test: a disk that really fills up.
/// Mounting needs root (CI runs as root); elsewhere the test skips, unless
/// `MAILJOURNAL_REQUIRE_TMPFS` (set by `.ci/run`) makes that a failure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str, test: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self(dir.to_path_buf())),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("MAILJOURNAL_REQUIRE_TMPFS").is_none(),
                    "cannot mount a tmpfs ({why}), and MAILJOURNAL_REQUIRE_TMPFS is set: run as root"
                );
                eprintln!(
                    "skipped {test}: cannot mount a tmpfs ({why}); run as root, or set \
                     MAILJOURNAL_REQUIRE_TMPFS=1 to make this a failure"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the file system is full, then gives back `spare` bytes.
fn fill_disk(path: &Path, spare: u64) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 256 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let len = file.metadata().expect("filler size").len();
    file.set_len(len.saturating_sub(spare))
        .expect("give some space back");
}

/// The real thing, not a simulated error: the data directory sits on a small tmpfs that
/// the test fills. The gateway must answer 4xx (never 5xx, never a 250 for what it did not
/// keep) while the disk is full, and once space is freed take mail again, by itself or
/// after it exited with 75 (EX_TEMPFAIL) so that its supervisor restarts it, as systemd's
/// `Restart=on-failure` does. Every message acknowledged before, during and after is there.
#[test]
fn a_full_disk_refuses_with_4xx_loses_no_acknowledged_message_and_recovers_when_freed() {
    let test = "a_full_disk_refuses_with_4xx_loses_no_acknowledged_message_and_recovers_when_freed";
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("disk");
    let log = work.path().join("server.log");
    let Some(_disk) = Tmpfs::mount(&data, "24m", test) else {
        return;
    };
    let mut server = Server::start(&data, &log, "on a 24 MiB disk");
    let filler = data.join("filler");
    fill_disk(&filler, 3 * 1024 * 1024);

    let mut acked: Vec<(Key, String)> = Vec::new();
    let mut refusals: Vec<Reply> = Vec::new();
    let mut exit: Option<ExitStatus> = None;
    let mut smtp: Option<Smtp> = None;
    let mut n = 0;
    // Send until the gateway has refused a few messages in a row (or exited).
    while refusals.len() < 5 && n < 3_000 {
        if let Some(status) = server.child.try_wait().expect("poll the server") {
            exit = Some(status);
            break;
        }
        let Some(session) = smtp.as_mut() else {
            smtp = Smtp::connect(server.port).ok();
            if smtp.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = Key {
            round: 90,
            session: 0,
            n,
        };
        n += 1;
        match session.send(key.parties().0, &dot_stuffed(&message(key))) {
            Sent::Acked(id) => {
                acked.push((key, id));
                refusals.clear();
            }
            Sent::Refused(reply) => {
                assert!(
                    (400..500).contains(&reply.code),
                    "a full disk must be a temporary failure, got {} {}\n{}",
                    reply.code,
                    reply.text,
                    log_tail(&log)
                );
                refusals.push(reply);
                let _ = session.command("RSET");
            }
            Sent::Lost { .. } => smtp = None,
        }
    }
    drop(smtp);
    assert!(
        exit.is_some() || !refusals.is_empty(),
        "the disk never filled up after {n} messages\n{}",
        log_tail(&log)
    );
    assert!(
        !acked.is_empty(),
        "nothing was accepted before the disk filled up"
    );
    assert!(
        exit.is_some()
            || refusals
                .iter()
                .any(|r| r.code == 452 && r.text.starts_with("4.3.1")),
        "a full disk is told as such (452 4.3.1), got {refusals:?}\n{}",
        log_tail(&log)
    );

    std::fs::remove_file(&filler).expect("free the space");
    // After the space is back, a message must get its 250 within 30 s; a gateway that exited
    // with 75 is started again first, as its supervisor would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut restarted = false;
    loop {
        if exit.is_none() {
            exit = server.child.try_wait().expect("poll the server");
        }
        if let Some(status) = exit.take() {
            assert_eq!(
                status.code(),
                Some(75),
                "the gateway may only exit with 75 (EX_TEMPFAIL) on a storage failure\n{}",
                log_tail(&log)
            );
            server = Server::start(&data, &log, "after the disk was freed");
            restarted = true;
        }
        let key = Key {
            round: 91,
            session: 0,
            n,
        };
        n += 1;
        if let Ok(mut session) = Smtp::connect(server.port)
            && let Sent::Acked(id) = session.send(key.parties().0, &dot_stuffed(&message(key)))
        {
            acked.push((key, id));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no message was accepted within 30 s of freeing the disk (restarted: {restarted})\n{}",
            log_tail(&log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop("after the disk was freed");

    let listed = list(&data, &log);
    let missing: Vec<String> = acked
        .iter()
        .filter(|(key, id)| {
            listed.get(&key.message_id()).is_none_or(|l| &l.id != id)
                || listed[&key.message_id()].size != message(*key).len() as u64
        })
        .map(|(key, id)| format!("<{}> (acked as {id})", key.message_id()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged message(s) missing or changed after the full disk (restarted: {restarted}): {missing:?}\n{}",
        missing.len(),
        log_tail(&log)
    );
    verify(&data, listed.len(), &log, "after the full disk");
    eprintln!(
        "{test}: {} acknowledged, {} refused in a row while full, restarted: {restarted}",
        acked.len(),
        refusals.len()
    );
}

/// A later copy of a message (other transport headers) acknowledged just before a SIGKILL
/// is kept: the next command files it from the log, as copy 2, byte for byte, and `verify`
/// checks it; a resend after the restart adds no third copy.
#[test]
fn a_copy_acknowledged_just_before_a_sigkill_is_kept() {
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("serve.log");
    let first = b"From: Marta Buyer <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\n\
Subject: Crates\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <crates-1@fabrikam.com>\r\n\
\r\nPlease quote 40 crates.\r\n"
        .to_vec();
    let mut copy = b"Received: from hub2.contoso.com by mx1.contoso.com\r\n\
Delivered-To: bob@contoso.com\r\nX-MS-Exchange-Organization-SCL: 1\r\n"
        .to_vec();
    copy.extend_from_slice(&first);

    let mut server = Server::start(data.path(), &log, "before the kill");
    let mut smtp = Smtp::connect(server.port).expect("connect");
    let acked =
        [&first, &copy].map(
            |raw| match smtp.send("marta@fabrikam.com", &dot_stuffed(raw)) {
                Sent::Acked(id) => id,
                Sent::Refused(r) => panic!("refused: {r:?}\n{}", log_tail(&log)),
                Sent::Lost { .. } => panic!("lost\n{}", log_tail(&log)),
            },
        );
    assert_eq!(acked[0], acked[1], "one message");
    let id = acked[0].clone();
    server.kill();
    drop(smtp);

    let shown = mailjournal(&["show", &id, "--copy", "2"], data.path());
    assert!(
        shown.status.success() && shown.stdout == copy,
        "copy 2 after the kill: {}\n{}",
        String::from_utf8_lossy(&shown.stderr),
        log_tail(&log)
    );
    let shown = mailjournal(&["show", &id], data.path());
    assert_eq!(shown.stdout, first, "the first copy");
    verify(data.path(), 1, &log, "after the kill");

    let mut server = Server::start(data.path(), &log, "after the kill");
    let mut smtp = Smtp::connect(server.port).expect("connect");
    assert!(matches!(
        smtp.send("marta@fabrikam.com", &dot_stuffed(&copy)),
        Sent::Acked(again) if again == id
    ));
    drop(smtp);
    server.stop("after the resend");
    let out = mailjournal(&["list", "--json"], data.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one message");
    assert_eq!(v["copies"]["count"], 2, "{v}");
    assert_eq!(v["copies"]["received"], 3, "{v}");
}
