//! The interaction log: the directory fixtures, golden cases of which messages make which
//! entries, opt-out, rematch without duplicates, opportunities, and the CLI.

use std::sync::Arc;

use mailjournal::admin;
use mailjournal::archive::{Archive, Counter, EntryFilter};
use mailjournal::directory::{self, Directory};
use mailjournal::ingest::{Envelope, Ingestor, Matcher};

use crate::golden::RECEIVED_AT;
use crate::support::{fixtures, mailjournal, policy};

/// The directory of `fixtures/directory/` (its good lines).
pub fn directory_fixture() -> Directory {
    let dir = fixtures().join("directory");
    let (salespeople, _) = directory::parse_salespeople(
        std::fs::File::open(dir.join("salespeople.csv")).expect("fixture"),
        "salespeople.csv",
    );
    let (contacts, _) = directory::parse_contacts(
        std::fs::File::open(dir.join("contacts.csv")).expect("fixture"),
        "contacts.csv",
    );
    Directory::new(salespeople, contacts)
}

/// An archive with the fixture directory stored and used by its pipeline.
struct Logged {
    _dir: tempfile::TempDir,
    archive: Arc<Archive>,
    ingestor: Option<Ingestor>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl Logged {
    fn new(with_directory: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Arc::new(Archive::open(dir.path()).expect("open"));
        let matcher = Matcher::default();
        if with_directory {
            let d = directory_fixture();
            archive
                .put_directory(d.salespeople(), d.contacts())
                .expect("store directory");
            matcher.set(admin::matcher_for(d));
        }
        let (ingestor, committer) =
            Ingestor::start_with(Arc::clone(&archive), policy(), matcher).expect("start");
        Self {
            _dir: dir,
            archive,
            ingestor: Some(ingestor),
            committer: Some(committer),
        }
    }

    fn ingest(&self, raw: &str) {
        self.ingestor
            .as_ref()
            .expect("running")
            .ingest_blocking(
                raw.replace('\n', "\r\n").as_bytes(),
                &Envelope {
                    mail_from: None,
                    received_at: RECEIVED_AT,
                },
            )
            .expect("ingest");
    }

    /// (salesperson, contact, direction) of every entry, in order.
    fn entries(&self) -> Vec<(String, String, String)> {
        self.archive
            .entries(&EntryFilter::default())
            .expect("entries")
            .into_iter()
            .map(|e| (e.salesperson, e.contact, e.direction.as_str().to_owned()))
            .collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.ingestor = None;
        if let Some(c) = self.committer.take() {
            let _ = c.join();
        }
    }
}

fn message(from: &str, to: &str, cc: &str, id: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\n{cc}Subject: case {id}\nDate: Fri, 20 Nov 2026 10:00:00 +0000\nMessage-ID: <{id}@test>\n\nbody of {id}\n",
        cc = if cc.is_empty() {
            String::new()
        } else {
            format!("Cc: {cc}\n")
        }
    )
}

fn journal_report(original: &str, envelope: &str) -> String {
    format!(
        "From: postmaster@contoso.com\nTo: journal@contoso.com\nSubject: journal\nX-MS-Journal-Report:\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"jr\"\n\n--jr\nContent-Type: text/plain\n\n{envelope}\n--jr\nContent-Type: message/rfc822\n\n{original}--jr--\n"
    )
}

#[test]
fn golden_interaction_log_cases() {
    type Case = (
        &'static str,
        String,
        &'static [(&'static str, &'static str, &'static str)],
    );
    let bcc_original = message("alice@contoso.com", "bob@contoso.com", "", "bcc-only");
    let cases: Vec<Case> = vec![
        (
            "inbound",
            message(
                "Marta Buyer <marta@fabrikam.com>",
                "alice@contoso.com",
                "",
                "in",
            ),
            &[("AS", "1001", "inbound")],
        ),
        (
            "outbound, to an alternative address of the salesperson's",
            message(
                "a.seller@contoso.com",
                "marta@fabrikam.com",
                "bob@contoso.com",
                "out",
            ),
            &[("AS", "1001", "outbound")],
        ),
        (
            "two contacts and two salespeople",
            message(
                "alice@contoso.com",
                "marta@fabrikam.com, rene.ortiz@example.net",
                "bob@contoso.com, purchasing@fabrikam.com",
                "many",
            ),
            &[
                ("AS", "1001", "outbound"),
                ("AS", "1002", "outbound"),
                ("AS", "1003", "outbound"),
            ],
        ),
        (
            "an opted-out contact",
            message("kim@fabrikam.com", "alice@contoso.com", "", "optout"),
            &[],
        ),
        (
            "internal mail",
            message("alice@contoso.com", "bob@contoso.com", "", "internal"),
            &[],
        ),
        (
            "a Bcc-only contact from a journal report",
            journal_report(
                &bcc_original,
                "Sender: alice@contoso.com\nSubject: case bcc-only\nMessage-Id: <bcc-only@test>\nTo: bob@contoso.com\nBcc: rene@fabrikam.com",
            ),
            &[("AS", "1003", "outbound")],
        ),
    ];
    for (name, raw, want) in cases {
        let l = Logged::new(true);
        l.ingest(&raw);
        let got = l.entries();
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(s, c, d)| ((*s).to_owned(), (*c).to_owned(), (*d).to_owned()))
            .collect();
        assert_eq!(got, want, "{name}");
        let stats = l.archive.stats().expect("stats");
        assert_eq!(
            stats.counters[Counter::Unmatched.key()],
            u64::from(want.is_empty()),
            "{name}: a message with no pair is counted"
        );
        if let Some(first) = l
            .archive
            .entries(&EntryFilter::default())
            .expect("e")
            .first()
        {
            assert!(
                first
                    .subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("case "))
            );
            let record = l.archive.get(first.uid).expect("get").expect("record");
            assert_eq!(
                first.id, record.id,
                "the entry links the message's stable id"
            );
        }
    }
}

#[test]
fn rematch_logs_earlier_mail_once_and_opt_out_keeps_old_entries() {
    let l = Logged::new(false);
    l.ingest(&message(
        "marta@fabrikam.com",
        "alice@contoso.com",
        "",
        "r1",
    ));
    l.ingest(&message("alice@contoso.com", "kim@fabrikam.com", "", "r2"));
    assert!(l.entries().is_empty(), "no directory yet");

    let d = directory_fixture();
    l.archive
        .put_directory(d.salespeople(), d.contacts())
        .expect("directory");
    let pairs = |r: &mailjournal::archive::Record| {
        d.pairs(r.meta.sender.as_deref(), &r.meta.recipients)
            .into_iter()
            .map(|p| (p.salesperson, p.contact))
            .collect()
    };
    let (made, unmatched) = l.archive.rematch(&pairs).expect("rematch");
    assert_eq!((made, unmatched), (1, 1), "kim opted out");
    let (made, _) = l.archive.rematch(&pairs).expect("rematch again");
    assert_eq!(made, 0, "rematch never duplicates");
    assert_eq!(
        l.entries(),
        [("AS".into(), "1001".into(), "inbound".into())]
    );

    // Marta opts out: her existing entry stays, new mail with her makes none.
    let mut contacts = d.contacts().to_vec();
    for c in &mut contacts {
        if c.number == "1001" {
            c.log_email = false;
        }
    }
    let d2 = Directory::new(d.salespeople().to_vec(), contacts);
    l.archive.put_directory(&[], d2.contacts()).expect("update");
    l.ingestor
        .as_ref()
        .expect("running")
        .matcher()
        .set(admin::matcher_for(d2));
    l.ingest(&message(
        "marta@fabrikam.com",
        "alice@contoso.com",
        "",
        "r3",
    ));
    assert_eq!(l.entries().len(), 1, "old entry kept, no new one");
}

#[test]
fn cli_imports_the_directory_reports_bad_lines_and_makes_opportunities() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = fixtures().join("directory");
    let eml = fixtures().join("inbound-bcc.eml");
    let out = mailjournal(&["ingest", eml.to_str().expect("utf-8")], data.path());
    assert!(out.status.success());

    let out = mailjournal(
        &[
            "directory",
            "import",
            "--salespeople",
            dir.join("salespeople.csv").to_str().expect("utf-8"),
            "--contacts",
            dir.join("contacts.csv").to_str().expect("utf-8"),
        ],
        data.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "bad lines make the exit status non-zero"
    );
    for want in [
        "salespeople.csv:6:",
        "salespeople.csv:7:",
        "salespeople.csv:8:",
        "contacts.csv:8:",
        "contacts.csv:12:",
    ] {
        assert!(stderr.contains(want), "{want} missing in:\n{stderr}");
    }
    assert!(
        stdout.contains("salespeople: 4 added") && stdout.contains("contacts: 6 added"),
        "{stdout}"
    );

    let out = mailjournal(&["directory", "rematch"], data.path());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 new entries"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = mailjournal(&["log", "--contact", "1001", "--json"], data.path());
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one entry as JSON");
    assert_eq!(entry["salesperson"], "AS");
    assert_eq!(entry["direction"], "inbound");
    assert_eq!(entry["subject"], "Request for quotation: 400 pallets");
    let date = entry["date"]
        .as_str()
        .expect("the date is text, as in list --json");
    assert!(
        date.parse::<jiff::Timestamp>().is_ok() && date.ends_with('Z'),
        "RFC 3339: {date}"
    );
    let out = mailjournal(&["log", "--contact", "42"], data.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no contact 42 in the directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A salesperson account: `user list` shows whose it is.
    let out = crate::support::mailjournal_with_input(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "salesperson",
            "--salesperson",
            "AS",
        ],
        data.path(),
        b"long enough password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailjournal(&["user", "list"], data.path());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice\tsalesperson\tsalesperson AS\n"
    );

    let out = mailjournal(
        &[
            "opportunity",
            "add",
            "1",
            "--description",
            "400 pallets to Lyon",
        ],
        data.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailjournal(
        &["opportunity", "list", "--contact", "1001", "--json"],
        data.path(),
    );
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(o["description"], "400 pallets to Lyon");
    assert_eq!(
        o["message"], entry["id"],
        "the opportunity links the message"
    );
    let out = mailjournal(
        &["opportunity", "add", "99", "--description", "x"],
        data.path(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no entry 99"));

    let out = mailjournal(&["validate"], data.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("directory: 4 salespeople, 6 contacts"),
        "{text}"
    );
}
