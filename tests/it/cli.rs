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
    // 18 files: two are copies of one message and two are junk (not listed); two share a
    // Message-ID and body but not their headers, so they are two messages.
    assert_eq!(emls.len(), 18);
    assert_eq!(listed.len(), 15, "{}", stdout(&out));
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
        let found = emls.iter().any(|f| {
            let bytes = std::fs::read(f).expect("read");
            memchr::memmem::find(&bytes, &shown.stdout).is_some()
        });
        assert!(found, "show {id} did not give back original bytes");
    }
    let out = mailjournal(&["verify"], data.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("verified 17 messages: 0 problems"),
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
    assert_eq!(stats["messages"], 17);
    assert_eq!(stats["counters"]["duplicates"], 1);
    assert_eq!(stats["later_copies"], 1, "journaled-twice's second copy");
    assert_eq!(stats["counters"]["journal_reports"], 2);

    // Ingesting everything again stores nothing new.
    args.insert(1, "--json");
    let out = mailjournal(&args, data.path());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary json");
    assert_eq!(again["stored"], 0);
    assert_eq!(again["duplicates"], 18);
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
    // The summary names every listener of the embedded default.
    for want in [
        "  SMTP: 127.0.0.1:2525 (implicit TLS: off)",
        "  IMAP: 127.0.0.1:1143 (implicit TLS: 127.0.0.1:1993)",
        "  HTTP: 127.0.0.1:8025 (HTTPS: off)",
        "  verified logins remembered: 5m",
    ] {
        assert!(
            stdout(&out).lines().any(|l| l.starts_with(want)),
            "{want} in:\n{}",
            stdout(&out)
        );
    }

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
fn commands_on_an_archive_held_without_a_gateway_fail_with_a_clear_message() {
    let t = TestArchive::new();
    let out = mailjournal(&["stats"], t.dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is held by another process, and its admin socket"),
        "{}",
        stderr(&out)
    );
}

/// A `mailjournal serve` child process on a temporary data directory.
struct Gateway {
    child: Option<std::process::Child>,
    smtp: std::net::SocketAddr,
    stderr_log: std::path::PathBuf,
}

impl Gateway {
    // The child is handed to `Gateway`, whose Drop kills and waits for it; a failed start
    // kills and waits for it here.
    #[expect(clippy::zombie_processes)]
    fn start(data: &Path) -> Self {
        let config = data.join("test-config.toml");
        std::fs::create_dir_all(data).expect("data dir");
        std::fs::write(&config, crate::support::TEST_CONFIG).expect("config");
        let stderr_log = data.join("serve.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"))
            .args(["--config", config.to_str().expect("utf-8"), "serve"])
            .env("MAILJOURNAL_DATA_DIR", data)
            .env("MAILJOURNAL_SMTP_LISTEN", "127.0.0.1:0")
            .env("MAILJOURNAL_IMAP_LISTEN", "127.0.0.1:0")
            .env("MAILJOURNAL_IMAPS_LISTEN", "127.0.0.1:0")
            .env("MAILJOURNAL_HTTP_LISTEN", "127.0.0.1:0")
            .env("MAILJOURNAL_JOURNAL_ADDRESSES", "journal@contoso.com")
            .env("MAILJOURNAL_LOG", "info")
            .stderr(std::fs::File::create(&stderr_log).expect("log"))
            .spawn()
            .expect("start serve");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            let addr = log
                .lines()
                .find(|l| l.contains("SMTP listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if let (Some(smtp), true) = (addr, log.contains("mailjournal is running")) {
                return Self {
                    child: Some(child),
                    smtp,
                    stderr_log,
                };
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not start:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        child.wait().expect("wait")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    /// A test that fails half-way leaves no gateway running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One SMTP transaction by hand; returns the final reply.
fn smtp_send(addr: std::net::SocketAddr, message: &str) -> String {
    use std::io::{BufRead, BufReader, Write as _};
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut reply = || {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return text;
            }
        }
    };
    reply();
    for cmd in [
        "EHLO cli.test\r\n",
        "MAIL FROM:<marta@fabrikam.com>\r\n",
        "RCPT TO:<journal@contoso.com>\r\n",
    ] {
        writer.write_all(cmd.as_bytes()).expect("write");
        let r = reply();
        if !r.starts_with('2') {
            return r;
        }
    }
    writer.write_all(b"DATA\r\n").expect("write");
    reply();
    writer
        .write_all(format!("{message}\r\n.\r\nQUIT\r\n").as_bytes())
        .expect("write");
    reply()
}

#[test]
fn the_cli_works_against_a_running_gateway_through_its_admin_socket() {
    let data = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::start(data.path());
    let first = smtp_send(
        gateway.smtp,
        "From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: live\r\nMessage-ID: <live-1@f>\r\n\r\nhello",
    );
    assert!(first.starts_with("250 2.0.0 OK "), "{first}");

    let out = mailjournal(&["list", "--json"], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json_lines(&stdout(&out));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["subject"], "live");
    let id = listed[0]["id"].as_str().expect("id");
    assert_eq!(first.trim_end(), format!("250 2.0.0 OK {id}"));

    let eml = fixtures().join("outbound.eml");
    let out = mailjournal(&["ingest", eml.to_str().expect("utf-8")], data.path());
    assert!(
        stdout(&out).contains("1 message: 1 stored"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let shown = mailjournal(&["show", "2"], data.path());
    assert_eq!(shown.stdout, std::fs::read(&eml).expect("fixture"));
    let out = mailjournal(&["verify"], data.path());
    assert!(out.status.success() && stdout(&out).contains("verified 2 messages: 0 problems"));

    let out = mailjournal(&["status"], data.path());
    assert_eq!(stdout(&out), "logging: on\npull sources: none configured\n");
    let out = mailjournal(&["logging", "pause"], data.path());
    assert!(
        stdout(&out).contains("logging is paused (was on)"),
        "{}",
        stdout(&out)
    );
    let paused = smtp_send(gateway.smtp, "Subject: x\r\n\r\ny");
    assert!(paused.starts_with("451 4.3.2"), "{paused}");
    mailjournal(&["logging", "on"], data.path());
    let out = mailjournal(&["logging"], data.path());
    assert_eq!(stdout(&out), "logging is on\n");

    let config = data.path().join("test-config.toml");
    let out = crate::support::mailjournal_with_input(
        &["user", "add", "exchange", "--role", "source"],
        data.path(),
        b"long enough password\n",
    );
    assert_eq!(stdout(&out), "account exchange added\n");
    let out = mailjournal(&["user", "list"], data.path());
    assert_eq!(stdout(&out), "exchange\tsource\n");
    // The gateway logged the request by its kind and target, never the password's hash.
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains("admin command")
                && l.contains(r#"kind="user add" target="exchange""#)),
        "{log}"
    );
    assert!(
        !log.contains("argon2"),
        "a password hash in the log:\n{log}"
    );
    assert!(!log.contains("password"), "{log}");

    // A signed link, minted by the CLI through the running gateway, opens the message
    // over HTTP without an account (curl as an independent client).
    let out = mailjournal(&["link", id], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_owned();
    assert!(url.contains(&format!("/m/{id}?token=")), "{url}");
    let fetched = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", &url])
        .output()
        .expect("curl");
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let first_raw = mailjournal(&["show", id], data.path()).stdout;
    assert_eq!(
        fetched.stdout, first_raw,
        "the link serves the message byte for byte"
    );

    // SIGHUP reads the configuration again: its logging switch applies.
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[ingest]\nlogging = \"paused\"\n");
    std::fs::write(&config, text).expect("config");
    let pid = gateway.child.as_ref().expect("running").id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stdout(&mailjournal(&["logging"], data.path())) != "logging is paused\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not apply the configuration:\n{}",
            gateway.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A second gateway on the same archive refuses to start, and says why.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"))
        .args(["serve"])
        .env("MAILJOURNAL_DATA_DIR", data.path())
        .env("MAILJOURNAL_SMTP_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_IMAP_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_IMAPS_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .expect("second serve");
    assert!(!second.status.success());
    assert_eq!(
        stderr(&second)
            .matches("is in use by another mailjournal process")
            .count(),
        1,
        "the reason, once: {}",
        stderr(&second)
    );

    let log = gateway.log();
    let status = gateway.stop();
    assert!(
        status.success(),
        "serve exits 0 on SIGTERM: {status:?}\n{log}"
    );
    // Afterwards the CLI opens the archive itself.
    let out = mailjournal(&["stats", "--json"], data.path());
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["messages"], 2);
}

#[test]
fn show_and_verify_report_what_is_wrong() {
    let data = TestArchive::new().close();
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

#[test]
fn read_commands_refuse_a_missing_archive_and_create_none() {
    let data = tempfile::tempdir().expect("tempdir");
    let commands: &[&[&str]] = &[
        &["list"],
        &["show", "1"],
        &["log"],
        &["stats"],
        &["verify"],
        &["user", "list"],
        &["status"],
        &["validate"],
        &["directory", "rematch"],
    ];
    for args in commands {
        let out = mailjournal(args, data.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let want = format!("mailjournal: no archive in {}", data.path().display());
        assert!(
            stderr(&out).starts_with(&want),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
        assert!(
            !data.path().join("archive.redb").exists(),
            "{args:?} created an archive"
        );
    }
    // ingest makes one, and from then on the same commands work.
    let eml = fixtures().join("outbound.eml");
    let out = mailjournal(&["ingest", eml.to_str().expect("utf-8")], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mailjournal(&["stats"], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every directory and file under `dir` that is not owner-only, with its mode.
fn not_owner_only(dir: &Path, found: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 {
        found.push(format!("{} {mode:o}", dir.display()));
    }
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            not_owner_only(&path, found);
        } else if meta.permissions().mode() & 0o777 != 0o600 {
            found.push(format!(
                "{} {:o}",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
}

#[test]
fn the_data_directory_is_owner_only_whatever_the_umask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, crate::support::TEST_CONFIG).expect("config");
    // A small message (into a pack) and a large one (its own file under objects/).
    let small = tmp.path().join("small.eml");
    std::fs::write(
        &small,
        "From: a@fabrikam.com\r\nTo: b@contoso.com\r\nSubject: s\r\n\r\nhi\r\n",
    )
    .expect("eml");
    let noise: String = crate::support::pseudo_random_bytes(300_000)
        .iter()
        .map(|b| char::from(b'A' + b % 26))
        .collect::<String>()
        .as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
        .collect();
    let large = tmp.path().join("large.eml");
    std::fs::write(
        &large,
        format!("From: a@fabrikam.com\r\nTo: b@contoso.com\r\nSubject: l\r\n\r\n{noise}"),
    )
    .expect("eml");
    let run = |args: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask 000; exec \"$0\" --config \"$1\" {args}"))
            .arg(env!("CARGO_BIN_EXE_mailjournal"))
            .arg(&config)
            .env("MAILJOURNAL_DATA_DIR", &data)
            .env_remove("MAILJOURNAL_ORG_DOMAINS")
            .output()
            .expect("run mailjournal")
    };
    let out = run(&format!("ingest {} {}", small.display(), large.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run("validate");
    assert!(!stdout(&out).contains("permissions:"), "{}", stdout(&out));
    assert!(
        data.join("objects").is_dir(),
        "the large message has its own file"
    );
    assert!(data.join("tls").is_dir(), "validate made the certificate");
    let mut found = Vec::new();
    not_owner_only(&data, &mut found);
    assert!(found.is_empty(), "not owner-only with umask 000: {found:?}");

    // An archive made looser by hand: validate names each path and exits 1.
    use std::os::unix::fs::PermissionsExt;
    let perm = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    perm(&data, 0o755);
    perm(&data.join("archive.redb"), 0o644);
    let out = run("validate");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for path in [data.clone(), data.join("archive.redb")] {
        let want = format!("problem: permissions: {} is mode 0", path.display());
        assert!(text.contains(&want), "{want} missing in:\n{text}");
    }
}

#[test]
fn a_port_in_use_is_named_once_and_serve_exits_1() {
    let data = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"))
        .args(["serve"])
        .env("MAILJOURNAL_DATA_DIR", data.path())
        .env("MAILJOURNAL_SMTP_LISTEN", &addr)
        .env("MAILJOURNAL_IMAP_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_IMAPS_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_HTTP_LISTEN", "127.0.0.1:0")
        .env("MAILJOURNAL_LOG", "off")
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&addr), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

#[test]
fn list_and_stats_stop_quietly_when_the_reader_goes_away() {
    let data = tempfile::tempdir().expect("tempdir");
    let eml = fixtures().join("outbound.eml");
    let out = mailjournal(&["ingest", eml.to_str().expect("utf-8")], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let config = data.path().join("test-config.toml");
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["stats"],
        &["show", "1"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("MAILJOURNAL_DATA_DIR", data.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader is gone before the first write: every write is EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{args:?}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
}

#[test]
fn list_prints_a_header_row_on_a_terminal_only() {
    let data = tempfile::tempdir().expect("tempdir");
    let eml = fixtures().join("outbound.eml");
    let out = mailjournal(&["ingest", eml.to_str().expect("utf-8")], data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let piped = stdout(&mailjournal(&["list"], data.path()));
    assert!(
        piped.starts_with("      1  "),
        "no header into a pipe: {piped}"
    );
    // util-linux's script(1) gives the command a terminal.
    let Ok(out) = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --config {} list",
            env!("CARGO_BIN_EXE_mailjournal"),
            data.path().join("test-config.toml").display()
        ))
        .arg("/dev/null")
        .env("MAILJOURNAL_DATA_DIR", data.path())
        .output()
    else {
        eprintln!("script(1) not installed: header row not checked");
        return;
    };
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.trim_start().starts_with("UID")
            && first.contains("DIRECTION")
            && first.ends_with("SUBJECT"),
        "{text:?}"
    );
    assert_eq!(text.lines().count(), 2, "{text:?}");
}

/// Issue 11, defect 1, end to end: a message blind-copied to the journal and the same
/// message in an Exchange journal report (other `Received:`, `Delivered-To:` and
/// `X-MS-Exchange-*` headers), both over SMTP, are one message with one interaction-log
/// entry, and each copy comes back byte for byte from `show --copy`: through the running
/// gateway, and from the packs after the index is lost.
#[test]
fn copies_over_smtp_are_one_message_and_show_copy_gives_each_back() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = fixtures().join("directory");
    // The fixture directory has bad lines on purpose: the good ones are imported.
    let import = || {
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
        assert!(
            stdout(&out).contains("contacts: 6 added"),
            "{}",
            stderr(&out)
        );
    };
    let gateway = Gateway::start(data.path());
    import();
    let headers = "From: Marta Buyer <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\n\
        Subject: Pallets\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
        Message-ID: <pallets-1@fabrikam.com>\r\n";
    let body = "Hi Alice,\r\n\r\nplease quote 400 pallets.\r\n\r\nMarta";
    let bcc = format!(
        "Received: from mail.fabrikam.com by mx1.contoso.com; Fri, 20 Nov 2026 10:00:04 +0000\r\n\
         Delivered-To: alice@contoso.com\r\n{headers}\r\n{body}"
    );
    let carried = format!(
        "Received: from mail.fabrikam.com by ex01.contoso.com; Fri, 20 Nov 2026 10:00:05 +0000\r\n\
         X-MS-Exchange-Organization-AuthAs: Anonymous\r\n\
         X-MS-Exchange-Organization-SCL: 1\r\n{headers}\r\n{body}\r\n"
    );
    let report = format!(
        "From: Microsoft Exchange <postmaster@contoso.com>\r\nTo: journal@contoso.com\r\n\
         Subject: Pallets\r\nMessage-ID: <jr-pallets-1@ex01.contoso.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"jr\"\r\nX-MS-Journal-Report:\r\n\r\n\
         --jr\r\nContent-Type: text/plain\r\n\r\nSender: marta@fabrikam.com\r\n\
         Subject: Pallets\r\nMessage-Id: <pallets-1@fabrikam.com>\r\nTo: alice@contoso.com\r\n\r\n\
         --jr\r\nContent-Type: message/rfc822\r\n\r\n{carried}\r\n--jr--"
    );
    // What the archive received: smtp_send ends the data with a CRLF.
    let first = format!("{bcc}\r\n").into_bytes();
    let second = carried.clone().into_bytes();

    let one = smtp_send(gateway.smtp, &bcc);
    let two = smtp_send(gateway.smtp, &report);
    assert!(one.starts_with("250 2.0.0 OK "), "{one}");
    assert_eq!(one, two, "one message, one id");
    let id = one.trim_end().rsplit(' ').next().expect("id").to_owned();
    // A byte-identical resend of the blind copy adds no copy.
    assert_eq!(smtp_send(gateway.smtp, &bcc), one);

    let check = |when: &str| {
        let out = mailjournal(&["list", "--json"], data.path());
        assert!(out.status.success(), "{when}: {}", stderr(&out));
        let listed = json_lines(&stdout(&out));
        assert_eq!(listed.len(), 1, "{when}: one message");
        let copies = &listed[0]["copies"];
        assert_eq!(copies["count"], 2, "{when}: {copies}");
        assert_eq!(copies["received"], 3, "{when}: {copies}");
        for (i, raw) in [&first, &second].into_iter().enumerate() {
            let c = &copies["list"][i];
            assert_eq!(c["copy"], i + 1, "{when}");
            assert_eq!(c["size"], raw.len(), "{when}");
            assert_eq!(
                c["blob"],
                mailjournal::archive::BlobHash::of(raw).to_hex(),
                "{when}"
            );
            assert!(c["received_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        }
        assert_eq!(copies["list"][1]["kept"], "header-block", "{when}");
        let shown = mailjournal(&["show", &id], data.path());
        assert_eq!(shown.stdout, first, "{when}: show gives the first copy");
        for (n, raw) in [("1", &first), ("2", &second)] {
            let shown = mailjournal(&["show", &id, "--copy", n], data.path());
            assert!(shown.status.success(), "{when}: {}", stderr(&shown));
            assert!(shown.stdout == *raw, "{when}: copy {n} is byte-exact");
        }
        let none = mailjournal(&["show", &id, "--copy", "3"], data.path());
        assert!(!none.status.success(), "{when}");
        assert!(
            stderr(&none).contains("has no copy 3: 2 kept"),
            "{when}: {}",
            stderr(&none)
        );
        let entries = mailjournal(&["log", "--contact", "1001", "--json"], data.path());
        let entries = json_lines(&stdout(&entries));
        assert_eq!(entries.len(), 1, "{when}: one log entry: {entries:?}");
        assert_eq!(entries[0]["id"], id.as_str());
    };
    check("through the gateway");
    let zero = mailjournal(&["show", &id, "--copy", "0"], data.path());
    assert!(!zero.status.success());
    assert!(gateway.stop().success());

    std::fs::remove_file(data.path().join("archive.redb")).expect("lose the index");
    // The gateway rebuilds the index from the packs as it starts. The directory lived in
    // the index too: imported again, and earlier mail matched again.
    let gateway = Gateway::start(data.path());
    import();
    let out = mailjournal(&["directory", "rematch"], data.path());
    assert!(stdout(&out).contains("1 new entries"), "{}", stdout(&out));
    check("rebuilt from the packs");
    let out = mailjournal(&["verify"], data.path());
    assert!(
        out.status.success() && stdout(&out).contains("verified 1 messages: 0 problems"),
        "{}",
        stdout(&out)
    );
    assert!(gateway.stop().success());
}
