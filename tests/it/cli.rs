//! The command line, run as the real binary: what an administrator types and sees.

use std::path::Path;

use crate::support::{TestArchive, fixtures, mailjournal};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn ingest_list_show_verify_round_trip_every_fixture() {
    let data = tempfile::tempdir().expect("tempdir");
    let fixtures = fixtures();
    let mut emls: Vec<String> = std::fs::read_dir(&fixtures)
        .expect("fixtures")
        .map(|e| e.expect("entry").path().display().to_string())
        .filter(|p| p.ends_with(".eml"))
        .collect();
    emls.sort();
    let mut args = vec!["ingest"];
    args.extend(emls.iter().map(String::as_str));
    let out = mailjournal(&args, data.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("stored")
            && summary.contains("1 duplicate")
            && summary.contains("2 junk quarantined")
            && summary.contains("0 errors"),
        "{summary}"
    );

    let out = mailjournal(&["list", "--json"], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json_lines(&stdout(&out));
    // 16 files: two are copies of one message and two are junk (not listed).
    assert_eq!(emls.len(), 16);
    assert_eq!(listed.len(), 13, "{}", stdout(&out));
    for m in &listed {
        for key in [
            "id",
            "uid",
            "date",
            "direction",
            "from",
            "recipients",
            "subject",
            "size",
            "flags",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        let id = m["id"].as_str().expect("id");
        let shown = mailjournal(&["show", id], data.path());
        assert!(shown.status.success(), "{}", stderr(&shown));
        assert_eq!(shown.stdout.len() as u64, m["size"].as_u64().expect("size"));
        // Byte-exact: the shown message is one of the fixtures, or inside one (journal).
        let found = std::fs::read_dir(&fixtures).expect("dir").any(|f| {
            let bytes = std::fs::read(f.expect("entry").path()).expect("read");
            memchr::memmem::find(&bytes, &shown.stdout).is_some()
        });
        assert!(found, "show {id} did not give back original bytes");
    }
    let out = mailjournal(&["verify"], data.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("verified 15 messages: 0 problems"),
        "{}",
        stdout(&out)
    );

    let out = mailjournal(&["list", "--junk", "--json"], data.path());
    assert_eq!(json_lines(&stdout(&out)).len(), 2);
    let out = mailjournal(&["list", "--direction", "outbound", "--json"], data.path());
    assert!(
        json_lines(&stdout(&out))
            .iter()
            .all(|m| m["direction"] == "outbound")
    );
    let out = mailjournal(
        &["list", "--address", "BOSS@contoso.com", "--json"],
        data.path(),
    );
    let bcc = json_lines(&stdout(&out));
    assert_eq!(
        bcc.len(),
        1,
        "the Bcc recipient known only from the journal report"
    );
    assert_eq!(bcc[0]["subject"], "Q3 price list");

    let out = mailjournal(&["stats", "--json"], data.path());
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(stats["messages"], 15);
    assert_eq!(stats["counters"]["duplicates"], 1);
    assert_eq!(stats["counters"]["journal_reports"], 2);

    // Ingesting everything again stores nothing new.
    args.insert(1, "--json");
    let out = mailjournal(&args, data.path());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary json");
    assert_eq!(again["stored"], 0);
    assert_eq!(again["duplicates"], 16);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn ingest_reads_mbox_and_maildir_and_reports_bad_files_without_stopping() {
    let src = tempfile::tempdir().expect("tempdir");
    let mbox = b"From marta@fabrikam.com Fri Nov 20 10:00:00 2026\n\
From: marta@fabrikam.com\nTo: alice@contoso.com\nSubject: one\nMessage-ID: <mb1@f>\n\n\
>From the start, this line was quoted in the mbox.\n\n\
From alice@contoso.com Fri Nov 20 11:00:00 2026\n\
From: alice@contoso.com\nTo: marta@fabrikam.com\nSubject: two\nMessage-ID: <mb2@c>\n\nreply\n";
    write(&src.path().join("archive.mbox"), mbox);
    let maildir = src.path().join("Maildir");
    write(
        &maildir.join("cur/1700000000.1.host:2,S"),
        b"From: kim@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: three\r\nMessage-ID: <md1@f>\r\n\r\nx\r\n",
    );
    write(
        &maildir.join("new/1700000001.2.host"),
        b"From: bob@contoso.com\r\nTo: kim@fabrikam.com\r\nSubject: four\r\nMessage-ID: <md2@c>\r\n\r\ny\r\n",
    );
    write(
        &maildir.join("tmp/1700000002.3.host"),
        b"half-delivered, must be skipped",
    );
    write(&src.path().join("empty.eml"), b"");

    let data = tempfile::tempdir().expect("tempdir");
    let missing = src.path().join("no-such-file.eml");
    let out = mailjournal(
        &[
            "ingest",
            missing.to_str().expect("utf-8"),
            src.path().to_str().expect("utf-8"),
        ],
        data.path(),
    );
    assert!(
        !out.status.success(),
        "errors make the exit status non-zero"
    );
    let err = stderr(&out);
    assert!(err.contains("no-such-file.eml"), "{err}");
    assert!(err.contains("empty.eml: the message is empty"), "{err}");
    assert!(
        stdout(&out).contains("5 messages: 4 stored"),
        "the run went on past the bad files: {}",
        stdout(&out)
    );

    let out = mailjournal(&["list", "--json"], data.path());
    let listed = json_lines(&stdout(&out));
    let subjects: Vec<&str> = listed
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    // Paths in byte order: `Maildir` sorts before `archive.mbox`.
    assert_eq!(subjects, ["three", "four", "one", "two"]);
    let first = mailjournal(&["show", "3"], data.path());
    assert!(
        stdout(&first).contains("\nFrom the start, this line was quoted"),
        "mbox >From quoting undone: {}",
        stdout(&first)
    );
    assert_eq!(listed[3]["direction"], "outbound");
}

#[test]
fn check_config_names_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[organization]\ndomains = [\"*.\", \"contoso.com\"]\n[junk]\naction = \"burn\"\nscl_threshold = 42\n[storage]\ndata_dr = \"/x\"\n",
    )
    .expect("write");
    let out = mailjournal(&["check-config", bad.to_str().expect("utf-8")], dir.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        "bad.toml has 4 problem(s)",
        "organization.domains: empty domain",
        "junk.action: unknown variant `burn`",
        "junk.scl_threshold: 42 is not a spam confidence level",
        "storage.data_dr: unknown key",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let out = mailjournal(&["check-config"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("organization domains: contoso.com, *.contoso.eu"));

    // Environment overrides are checked too, and named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"))
        .args(["check-config"])
        .env("MAILJOURNAL_ORG_DOMAINS", "contoso.com,bad domain")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("MAILJOURNAL_ORG_DOMAINS: \"bad domain\" is not a valid domain name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn commands_on_an_archive_in_use_fail_with_a_clear_message() {
    let t = TestArchive::new();
    let out = mailjournal(&["stats"], t.dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is in use by another mailjournal process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn show_and_verify_report_what_is_wrong() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = mailjournal(&["show", "aaaaaaaaaaaaaaaaaaaaaaaa"], data.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no message aaaaaaaaaaaaaaaaaaaaaaaa in the archive"),
        "{}",
        stderr(&out)
    );
    let out = mailjournal(&["show", "not-an-id"], data.path());
    assert!(
        stderr(&out).contains("is not a message id"),
        "{}",
        stderr(&out)
    );
}
