//! Ingest benchmark: generated mail through the library with durable group commits, or
//! through a naive Maildir-style store (one fsynced file per message) for comparison.
//!
//! ```text
//! cargo run --release --example bench_ingest -- [--messages N] [--mix small|realistic]
//!     [--dir PATH] [--baseline] [--concurrency K] [--start I] [--dump INDEX]
//! ```
//!
//! `--start I` numbers the messages from I (to add new mail to an existing `--dir`);
//! `--dump INDEX` prints that generated message and exits.
//!
//! Prints one JSON line on stdout; notes (how the time was measured) go to stderr.
//! `scripts/bench-ingest` runs every configuration several times and tabulates medians.
//!
//! Messages are generated on the fly from their index (a seeded xorshift), never held all at
//! once: holding 10,000 of them would dominate the peak RSS being measured. The generation
//! cost is measured separately in a dry pass (the same messages, the same threads, no
//! storage) and subtracted from the wall time; both figures are in the JSON line.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use mailjournal::archive::Archive;
use mailjournal::config::{DEFAULT_CONFIG, Settings};
use mailjournal::ingest::{Envelope, Ingestor, Outcome, PendingIngest, Policy};

/// Submissions each thread keeps in flight, like `ingest::bulk` does, so group commits fill.
const IN_FLIGHT_PER_THREAD: usize = 64;
/// Generated messages are dated from here on (2025-01-06T09:00:00Z), one every 37 seconds.
const BASE_TIME: i64 = 1_736_154_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Text mail of 2–20 KB only.
    Small,
    /// ~94% text of 2–20 KB, ~5% 100 KB–2 MB with an attachment, ~1% about 10 MB.
    Realistic,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Small => "small",
            Mix::Realistic => "realistic",
        }
    }
}

struct Options {
    messages: u64,
    mix: Mix,
    dir: Option<PathBuf>,
    baseline: bool,
    concurrency: usize,
    start: u64,
    /// Print this message instead of running (to look at what is generated).
    dump: Option<u64>,
}

const USAGE: &str = "usage: bench_ingest [--messages N] [--mix small|realistic] [--dir PATH] \
                     [--baseline] [--concurrency K] [--start I] [--dump INDEX]";

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 10_000,
        mix: Mix::Small,
        dir: None,
        baseline: false,
        concurrency: 4,
        start: 0,
        dump: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--messages" => o.messages = value()?.parse().context("--messages: not a number")?,
            "--mix" => {
                o.mix = match value()?.as_str() {
                    "small" => Mix::Small,
                    "realistic" => Mix::Realistic,
                    other => bail!("--mix: {other:?} is neither \"small\" nor \"realistic\""),
                }
            }
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--baseline" => o.baseline = true,
            "--concurrency" => {
                o.concurrency = value()?.parse().context("--concurrency: not a number")?;
                if o.concurrency == 0 {
                    bail!("--concurrency must be at least 1");
                }
            }
            "--start" => o.start = value()?.parse().context("--start: not a number")?,
            "--dump" => o.dump = Some(value()?.parse().context("--dump: not a number")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.messages == 0 {
        bail!("--messages must be at least 1");
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// Deterministic message generation
// ---------------------------------------------------------------------------------------

/// xorshift64*, seeded through splitmix64 so neighbouring indexes diverge at once.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (multiply-shift rather than a slow modulo; the bias is negligible).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// An index into a list of `n`, skewed towards the front (roughly Zipf-like), as word
    /// frequencies are.
    fn skewed(&mut self, n: usize) -> usize {
        self.below(n) * self.below(n) / n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "for",
    "is",
    "on",
    "that",
    "we",
    "with",
    "this",
    "you",
    "it",
    "be",
    "are",
    "as",
    "at",
    "will",
    "please",
    "have",
    "from",
    "by",
    "our",
    "can",
    "not",
    "or",
    "an",
    "all",
    "your",
    "if",
    "has",
    "was",
    "would",
    "meeting",
    "report",
    "contract",
    "invoice",
    "project",
    "team",
    "update",
    "review",
    "next",
    "week",
    "attached",
    "draft",
    "budget",
    "quarter",
    "customer",
    "order",
    "delivery",
    "schedule",
    "thanks",
    "regards",
    "question",
    "proposal",
    "agreement",
    "payment",
    "account",
    "support",
    "request",
    "issue",
    "release",
    "version",
    "deadline",
    "approval",
    "confirm",
    "discuss",
    "tomorrow",
    "morning",
    "afternoon",
    "call",
    "office",
    "shipment",
    "warehouse",
    "pricing",
    "discount",
    "forecast",
    "revenue",
    "sales",
    "marketing",
    "legal",
    "compliance",
    "audit",
    "policy",
    "retention",
    "journal",
    "archive",
    "server",
    "migration",
    "backup",
    "network",
    "security",
    "access",
    "password",
    "training",
    "onboarding",
    "candidate",
    "interview",
    "travel",
    "expenses",
    "receipt",
    "reimbursement",
    "conference",
    "slides",
    "agenda",
    "minutes",
    "summary",
    "feedback",
    "changes",
    "comments",
    "signature",
    "document",
    "spreadsheet",
    "figures",
    "numbers",
    "estimate",
    "quote",
    "supplier",
    "vendor",
    "partner",
    "board",
    "director",
    "manager",
    "colleague",
    "department",
    "regional",
    "international",
    "subsidiary",
    "headquarters",
    "quarterly",
    "annual",
    "monthly",
    "deliverables",
    "milestone",
    "risk",
    "mitigation",
    "escalation",
    "priority",
    "urgent",
    "pending",
    "resolved",
    "ticket",
    "incident",
    "outage",
    "maintenance",
    "window",
    "weekend",
    "holiday",
    "availability",
    "capacity",
    "resources",
    "allocation",
    "headcount",
    "hiring",
    "performance",
    "objectives",
    "strategy",
    "roadmap",
    "initiative",
    "workshop",
    "stakeholders",
    "requirements",
    "specification",
    "prototype",
    "testing",
    "production",
    "deployment",
    "rollback",
    "customers",
    "renewal",
    "subscription",
    "license",
    "terms",
    "conditions",
    "clause",
    "amendment",
    "negotiation",
    "counterparty",
    "settlement",
    "reconciliation",
    "ledger",
    "statement",
    "balance",
    "transfer",
    "wire",
    "remittance",
    "tax",
    "filing",
    "deadlines",
    "should",
    "could",
    "might",
    "must",
    "also",
    "however",
    "therefore",
    "because",
    "before",
    "after",
    "during",
    "until",
    "about",
    "again",
    "already",
    "still",
    "just",
    "only",
    "very",
    "more",
    "less",
    "most",
    "some",
    "any",
    "each",
    "every",
    "other",
    "same",
    "new",
    "final",
    "first",
    "last",
    "good",
    "great",
    "sure",
    "happy",
    "glad",
    "sorry",
    "unfortunately",
];

const FIRST_NAMES: &[&str] = &[
    "Alice",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hiroshi",
    "Ines",
    "Jonas",
    "Katarzyna",
    "Luis",
    "Mei",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomasz",
    "Ulla",
    "Viktor",
    "Wen",
    "Yusuf",
    "Zoe",
];

const LAST_NAMES: &[&str] = &[
    "Andersen",
    "Bianchi",
    "Costa",
    "Dubois",
    "Eriksson",
    "Fischer",
    "Garcia",
    "Hoffmann",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Urban",
    "Vogel",
    "Weber",
    "Yamamoto",
    "Zimmermann",
];

/// The organization's domains (`*.example.com`) and some outside ones.
const INSIDE_DOMAINS: &[&str] = &["example.com", "eu.example.com", "us.example.com"];
const OUTSIDE_DOMAINS: &[&str] = &[
    "partner.org",
    "supplier.net",
    "customer-corp.com",
    "lawfirm.eu",
    "mail.example.net",
    "bank.co.uk",
    "logistics.de",
    "consulting.fr",
];

const ATTACHMENT_TYPES: &[(&str, &str)] = &[
    ("application/pdf", "pdf"),
    ("image/jpeg", "jpg"),
    ("application/zip", "zip"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Small,
    Medium,
    Huge,
}

/// Which size class message `index` of `n` falls in. Fixed by index, not drawn at random, so
/// the counts are exact: 1 in 100 huge (at least 3 whenever n >= 3), 1 in 20 medium.
fn class_of(mix: Mix, index: u64, n: u64) -> Class {
    if mix == Mix::Small {
        return Class::Small;
    }
    let huge_every = (n / 3).clamp(1, 100);
    if index % huge_every == huge_every / 2 {
        Class::Huge
    } else if index % 20 == 7 {
        Class::Medium
    } else {
        Class::Small
    }
}

fn message_id(index: u64) -> String {
    let tag = Rng::new(index ^ 0x4D49_4400).next();
    let domain = if index.is_multiple_of(3) {
        OUTSIDE_DOMAINS[(index / 3 % OUTSIDE_DOMAINS.len() as u64) as usize]
    } else {
        INSIDE_DOMAINS[(index % INSIDE_DOMAINS.len() as u64) as usize]
    };
    format!("{index}.{tag:016x}@mail.{domain}")
}

fn person(rng: &mut Rng, inside: bool) -> (String, String) {
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let domain = rng.pick(if inside {
        INSIDE_DOMAINS
    } else {
        OUTSIDE_DOMAINS
    });
    let address = format!(
        "{}.{}@{domain}",
        first.to_ascii_lowercase(),
        last.to_ascii_lowercase()
    );
    (format!("\"{first} {last}\" <{address}>"), address)
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends about `len` bytes of prose: words from the vocabulary, now and then a number or a
/// reference code, sentences and paragraphs, CRLF lines of at most ~72 characters.
fn push_prose(out: &mut Vec<u8>, rng: &mut Rng, len: usize, html: bool) {
    let end = out.len() + len;
    let mut line = String::with_capacity(80);
    let mut word = String::with_capacity(16);
    let mut sentence_left = rng.between(6, 20);
    let mut paragraph_left = rng.between(3, 7);
    let mut capital = true;
    if html {
        push_line(out, "<p>");
    }
    while out.len() < end {
        word.clear();
        // Writing to a String cannot fail.
        let _ = match rng.below(40) {
            0 => write!(word, "{}", rng.below(100_000)),
            1 => write!(word, "REF-{:06X}", rng.below(1 << 24)),
            _ => word.write_str(WORDS[rng.skewed(WORDS.len())]),
        };
        if line.len() + word.len() + 1 > 72 {
            push_line(out, &line);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        if capital {
            let mut chars = word.chars();
            if let Some(c) = chars.next() {
                line.push(c.to_ascii_uppercase());
                line.push_str(chars.as_str());
            }
            capital = false;
        } else {
            line.push_str(&word);
        }
        sentence_left -= 1;
        if sentence_left == 0 {
            line.push(if rng.chance(10) { '?' } else { '.' });
            capital = true;
            sentence_left = rng.between(6, 20);
            paragraph_left -= 1;
            if paragraph_left == 0 {
                push_line(out, &line);
                line.clear();
                push_line(out, if html { "</p><p>" } else { "" });
                paragraph_left = rng.between(3, 7);
            }
        }
    }
    if !line.is_empty() {
        push_line(out, &line);
    }
    if html {
        push_line(out, "</p>");
    }
}

/// Appends `len` pseudo-random bytes, base64-encoded in 76-character CRLF lines.
fn push_base64(out: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    const LINE: usize = 57; // 57 bytes make 76 characters
    let mut raw = [0u8; LINE * 256];
    let mut text = String::with_capacity(raw.len() / 3 * 4 + 2 * 256);
    let mut left = len;
    while left > 0 {
        let n = left.min(raw.len());
        rng.fill(&mut raw[..n]);
        text.clear();
        for chunk in raw[..n].chunks(LINE) {
            data_encoding::BASE64.encode_append(chunk, &mut text);
            text.push_str("\r\n");
        }
        out.extend_from_slice(text.as_bytes());
        left -= n;
    }
}

/// One generated message, its `MAIL FROM` and when it arrived.
struct Generated {
    raw: Vec<u8>,
    mail_from: String,
    received_at: i64,
}

/// Generates message `index`: the same bytes every time.
fn generate(mix: Mix, index: u64, n: u64) -> Generated {
    let mut rng = Rng::new(index);
    let class = class_of(mix, index, n);
    let target = match class {
        Class::Small => rng.between(2_000, 20_000),
        Class::Medium => rng.between(100_000, 2_000_000),
        Class::Huge => 10_000_000 + rng.below(100_000),
    };
    let mut m = Vec::with_capacity(target + 4096);
    let received_at = BASE_TIME + 37 * index as i64;

    // Mail goes out (inside sender), comes in, stays inside, or passes between outsiders.
    let sender_inside = rng.chance(55);
    let (from, mail_from) = person(&mut rng, sender_inside);
    let to_count = rng.between(1, 3);
    let to: Vec<String> = (0..to_count)
        .map(|_| {
            let inside = rng.chance(if sender_inside { 40 } else { 85 });
            person(&mut rng, inside).0
        })
        .collect();
    let cc: Vec<String> = if rng.chance(30) {
        (0..rng.between(1, 2))
            .map(|_| {
                let inside = rng.chance(60);
                person(&mut rng, inside).0
            })
            .collect()
    } else {
        Vec::new()
    };
    let date = jiff::Timestamp::from_second(received_at - rng.between(1, 30) as i64)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let relay = rng.pick(OUTSIDE_DOMAINS);
    push_line(
        &mut m,
        &format!(
            "Received: from mx.{relay} (mx.{relay} [192.0.2.{}])\r\n\tby mx1.example.com \
             with ESMTPS id {:012X}; {date}",
            rng.between(1, 254),
            rng.next() >> 16
        ),
    );
    push_line(&mut m, &format!("Date: {date}"));
    push_line(&mut m, &format!("From: {from}"));
    push_line(&mut m, &format!("To: {}", to.join(",\r\n\t")));
    if !cc.is_empty() {
        push_line(&mut m, &format!("Cc: {}", cc.join(",\r\n\t")));
    }
    let mut subject: Vec<&str> = (0..rng.between(3, 9))
        .map(|_| WORDS[rng.skewed(WORDS.len())])
        .collect();
    let reply_to =
        (index > 0 && rng.chance(35)).then(|| index - 1 - rng.below(index.min(50) as usize) as u64);
    if reply_to.is_some() {
        subject.insert(0, "Re:");
    }
    push_line(&mut m, &format!("Subject: {}", subject.join(" ")));
    push_line(&mut m, &format!("Message-ID: <{}>", message_id(index)));
    if let Some(parent) = reply_to {
        let parent = message_id(parent);
        push_line(&mut m, &format!("In-Reply-To: <{parent}>"));
        push_line(&mut m, &format!("References: <{parent}>"));
    }
    push_line(&mut m, "MIME-Version: 1.0");

    let boundary = format!("=_bench_{:016x}", rng.next());
    match class {
        Class::Small if rng.chance(60) => {
            // Plain text only.
            push_line(&mut m, "Content-Type: text/plain; charset=utf-8");
            push_line(&mut m, "Content-Transfer-Encoding: 7bit");
            push_line(&mut m, "");
            let left = target.saturating_sub(m.len()).max(200);
            push_prose(&mut m, &mut rng, left, false);
        }
        Class::Small => {
            // What most clients send: the text twice, plain and HTML.
            push_line(
                &mut m,
                &format!("Content-Type: multipart/alternative; boundary=\"{boundary}\""),
            );
            push_line(&mut m, "");
            let left = target.saturating_sub(m.len() + 300).max(400);
            push_line(&mut m, &format!("--{boundary}"));
            push_line(&mut m, "Content-Type: text/plain; charset=utf-8");
            push_line(&mut m, "");
            let seed = rng.next();
            push_prose(&mut m, &mut Rng::new(seed), left * 2 / 5, false);
            push_line(&mut m, &format!("--{boundary}"));
            push_line(&mut m, "Content-Type: text/html; charset=utf-8");
            push_line(&mut m, "");
            push_line(&mut m, "<html><body>");
            push_prose(&mut m, &mut Rng::new(seed), left * 3 / 5, true);
            push_line(&mut m, "</body></html>");
            push_line(&mut m, &format!("--{boundary}--"));
        }
        Class::Medium | Class::Huge => {
            push_line(
                &mut m,
                &format!("Content-Type: multipart/mixed; boundary=\"{boundary}\""),
            );
            push_line(&mut m, "");
            push_line(&mut m, &format!("--{boundary}"));
            push_line(&mut m, "Content-Type: text/plain; charset=utf-8");
            push_line(&mut m, "");
            let text_len = rng.between(500, 4_000);
            push_prose(&mut m, &mut rng, text_len, false);
            let (ctype, ext) = ATTACHMENT_TYPES[rng.below(ATTACHMENT_TYPES.len())];
            let name = format!("{}-{index}.{ext}", WORDS[rng.between(35, WORDS.len() - 1)]);
            push_line(&mut m, &format!("--{boundary}"));
            push_line(&mut m, &format!("Content-Type: {ctype}; name=\"{name}\""));
            push_line(&mut m, "Content-Transfer-Encoding: base64");
            push_line(
                &mut m,
                &format!("Content-Disposition: attachment; filename=\"{name}\""),
            );
            push_line(&mut m, "");
            // Base64 in 76-character lines takes 78 bytes per 57 bytes of data.
            let encoded = target.saturating_sub(m.len() + boundary.len() + 8);
            push_base64(&mut m, &mut rng, encoded / 78 * 57);
            push_line(&mut m, &format!("--{boundary}--"));
        }
    }
    Generated {
        raw: m,
        mail_from,
        received_at,
    }
}

// ---------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------

/// The message indexes still to do, shared by the threads of a run: each takes the next one
/// when it is ready for it, as concurrent SMTP sessions would, so a thread busy with a
/// 10 MB message does not hold up the others.
struct Work {
    next: AtomicU64,
    end: u64,
}

impl Work {
    fn new(o: &Options) -> Self {
        Self {
            next: AtomicU64::new(o.start),
            end: o.start + o.messages,
        }
    }
}

impl Iterator for &Work {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.end).then_some(i)
    }
}

/// The dry pass: generates exactly what a run generates, on as many threads, and stores
/// nothing. Returns (seconds, raw bytes).
fn dry_pass(o: &Options, threads: usize) -> (f64, u64) {
    let n = o.start + o.messages;
    let work = Work::new(o);
    let started = Instant::now();
    let bytes: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let work = &work;
                s.spawn(move || {
                    let mut bytes = 0u64;
                    for i in work {
                        let g = std::hint::black_box(generate(o.mix, i, n));
                        bytes += g.raw.len() as u64;
                    }
                    bytes
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a generating thread panicked"))
            .sum()
    });
    (started.elapsed().as_secs_f64(), bytes)
}

#[derive(Default)]
struct Tally {
    raw_bytes: u64,
    stored: u64,
    duplicates: u64,
    other: u64,
}

impl Tally {
    fn settle(&mut self, pending: PendingIngest) -> anyhow::Result<()> {
        match pending
            .wait_blocking()
            .context("a message was not stored")?
        {
            Outcome::Stored { .. } => self.stored += 1,
            Outcome::Duplicate { .. } => self.duplicates += 1,
            Outcome::Junk { .. } | Outcome::JunkDropped => self.other += 1,
        }
        Ok(())
    }

    fn add(&mut self, other: Tally) {
        self.raw_bytes += other.raw_bytes;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.other += other.other;
    }
}

/// Ingests through the library. Returns the wall time of the submitting loop, from the first
/// submission until the last message is durable.
fn run_mailjournal(o: &Options, dir: &Path) -> anyhow::Result<(f64, Tally)> {
    let settings = Settings::from_toml(DEFAULT_CONFIG, "bench", |_| None)
        .context("the embedded default configuration is invalid")?;
    let archive = Arc::new(
        Archive::open(dir).with_context(|| format!("opening the archive in {}", dir.display()))?,
    );
    let (ingestor, committer) = Ingestor::start(archive, Policy::from_settings(&settings))
        .context("starting the ingestor")?;
    let n = o.start + o.messages;
    let work = Work::new(o);

    let started = Instant::now();
    let tallies: Vec<anyhow::Result<Tally>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..o.concurrency)
            .map(|_| {
                let (ingestor, work) = (&ingestor, &work);
                s.spawn(move || -> anyhow::Result<Tally> {
                    let mut tally = Tally::default();
                    let mut in_flight = VecDeque::with_capacity(IN_FLIGHT_PER_THREAD);
                    for i in work {
                        let g = generate(o.mix, i, n);
                        let envelope = Envelope {
                            mail_from: Some(g.mail_from),
                            received_at: g.received_at,
                        };
                        let pending = ingestor
                            .submit(&g.raw, &envelope)
                            .with_context(|| format!("submitting message {i}"))?;
                        tally.raw_bytes += g.raw.len() as u64;
                        drop(g.raw);
                        in_flight.push_back(pending);
                        while in_flight.len() >= IN_FLIGHT_PER_THREAD {
                            if let Some(p) = in_flight.pop_front() {
                                tally.settle(p)?;
                            }
                        }
                    }
                    for p in in_flight {
                        tally.settle(p)?;
                    }
                    Ok(tally)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a submitting thread panicked"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();

    let mut total = Tally::default();
    for t in tallies {
        total.add(t?);
    }
    drop(ingestor);
    committer
        .join()
        .map_err(|_| anyhow::anyhow!("the commit thread panicked"))?;
    Ok((seconds, total))
}

/// What a naive durable store does, as a Maildir delivery: each message written to `tmp/`,
/// fsynced, renamed into `new/`, and `new/` fsynced. One thread, uncompressed.
fn run_baseline(o: &Options, dir: &Path) -> anyhow::Result<(f64, Tally)> {
    let tmp = dir.join("tmp");
    let new = dir.join("new");
    for d in [&tmp, &new, &dir.join("cur")] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    let n = o.start + o.messages;
    let pid = std::process::id();
    let host = "bench";

    let started = Instant::now();
    let mut tally = Tally::default();
    for i in o.start..o.start + o.messages {
        let g = generate(o.mix, i, n);
        let name = format!("{}.M{i}P{pid}.{host}", g.received_at);
        let tmp_path = tmp.join(&name);
        let mut f =
            File::create(&tmp_path).with_context(|| format!("creating {}", tmp_path.display()))?;
        f.write_all(&g.raw)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp_path.display()))?;
        drop(f);
        fs::rename(&tmp_path, new.join(&name))
            .with_context(|| format!("moving {name} into new/"))?;
        File::open(&new)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", new.display()))?;
        tally.raw_bytes += g.raw.len() as u64;
        tally.stored += 1;
    }
    Ok((started.elapsed().as_secs_f64(), tally))
}

/// The summed length of every file under `dir` (for redb: the database file's length), and
/// the bytes the file system allocated for them (less where a file is sparse).
fn disk_bytes(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let mut total = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
                allocated += meta.blocks() * 512;
            }
        }
    }
    Ok((total, allocated))
}

/// Bytes this process caused to be written to storage so far (`write_bytes` of
/// `/proc/self/io`), or 0 where the kernel does not say.
fn io_write_bytes() -> u64 {
    fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Restarts the peak resident set from the current one (Linux: `5` to `clear_refs`), so that
/// the peak measured afterwards is the run's, not the dry pass's. False where that fails.
fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set (`VmHWM`), in MB (10^6 bytes).
fn peak_rss_mb() -> anyhow::Result<f64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024.0 / 1e6)
}

/// The JSON line, in this order.
#[derive(serde::Serialize)]
struct Report {
    mode: &'static str,
    mix: &'static str,
    messages: u64,
    raw_bytes: u64,
    /// Wall time minus the generation time.
    seconds: f64,
    msgs_per_s: f64,
    /// MB = 10^6 bytes of raw mail.
    mb_per_s: f64,
    disk_bytes: u64,
    disk_ratio: f64,
    /// The run's peak resident set (the dry pass's peak is reset before it where Linux
    /// allows, else included). MB = 10^6 bytes.
    peak_rss_mb: f64,
    wall_seconds: f64,
    gen_seconds: f64,
    concurrency: usize,
    /// Bytes the file system allocated for the data directory's files (`st_blocks`).
    disk_allocated_bytes: u64,
    /// Bytes written to storage during the run (`/proc/self/io`): the write amplification.
    io_write_bytes: u64,
    /// The peak RSS of the dry pass alone: what the generator itself needs.
    dry_pass_peak_rss_mb: f64,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_ingest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let o = parse_args()?;
    if let Some(index) = o.dump {
        let g = generate(o.mix, index, o.start + o.messages);
        std::io::stdout()
            .write_all(&g.raw)
            .context("writing the message")?;
        return Ok(());
    }
    let temp;
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("bench-ingest.")
                .tempdir()
                .context("creating a temporary directory")?;
            temp.path().join("data")
        }
    };
    let (before, allocated_before) = disk_bytes(&dir)?;
    if before > 0 {
        eprintln!(
            "note: {} is not empty ({before} bytes); disk_bytes counts only what this run adds",
            dir.display()
        );
    }
    let threads = if o.baseline { 1 } else { o.concurrency };

    let (gen_seconds, gen_bytes) = dry_pass(&o, threads);
    let dry_pass_peak_rss = peak_rss_mb()?;
    let peak_reset = reset_peak_rss();
    let written_before = io_write_bytes();
    let (wall, tally) = if o.baseline {
        run_baseline(&o, &dir)?
    } else {
        run_mailjournal(&o, &dir)?
    };
    if tally.raw_bytes != gen_bytes {
        bail!(
            "generation is not deterministic: {gen_bytes} bytes in the dry pass, {} in the run",
            tally.raw_bytes
        );
    }
    if tally.stored != o.messages {
        eprintln!(
            "warning: {} of {} messages stored as new ({} duplicates, {} junk)",
            tally.stored, o.messages, tally.duplicates, tally.other
        );
    }
    let written = io_write_bytes().saturating_sub(written_before);
    let (after, allocated_after) = disk_bytes(&dir)?;
    let disk = after.saturating_sub(before);
    let allocated = allocated_after.saturating_sub(allocated_before);
    let peak_rss = peak_rss_mb()?;
    // Generation ran inside the measured loop; take off what it costs on its own.
    let seconds = (wall - gen_seconds).max(wall * 0.01);
    let raw = tally.raw_bytes as f64;
    let mode = if o.baseline {
        "baseline"
    } else {
        "mailjournal"
    };
    eprintln!(
        "{mode}/{}: {} messages, {:.1} MB raw; wall {wall:.3} s including generation, which \
         alone took {gen_seconds:.3} s in a dry pass on {threads} thread(s) and is subtracted; \
         MB = 10^6 bytes; peak RSS {peak_rss:.1} MB ({}; the generator's own buffers, up to \
         one message per thread, included), {dry_pass_peak_rss:.1} MB in the dry pass alone",
        o.mix.name(),
        o.messages,
        raw / 1e6,
        if peak_reset {
            "the run's own: the dry pass's peak was reset"
        } else {
            "whole process: resetting the peak after the dry pass failed"
        },
    );
    let line = Report {
        mode,
        mix: o.mix.name(),
        messages: o.messages,
        raw_bytes: tally.raw_bytes,
        seconds: round(seconds, 4),
        msgs_per_s: round(o.messages as f64 / seconds, 1),
        mb_per_s: round(raw / 1e6 / seconds, 2),
        disk_bytes: disk,
        disk_ratio: round(disk as f64 / raw, 4),
        peak_rss_mb: round(peak_rss, 1),
        wall_seconds: round(wall, 4),
        gen_seconds: round(gen_seconds, 4),
        concurrency: threads,
        disk_allocated_bytes: allocated,
        io_write_bytes: written,
        dry_pass_peak_rss_mb: round(dry_pass_peak_rss, 1),
    };
    let line = serde_json::to_string(&line).context("encoding the report")?;
    println!("{line}");
    Ok(())
}
