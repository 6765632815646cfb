//! The transparency log end to end: mail sent with Python's smtplib to the real gateway,
//! proofs fetched with curl from its HTTP listener, checked with `scripts/verify-proof.py`
//! and `mailjournal verify-proof` (and refused with one bit flipped), the verifier key from
//! `mailjournal log-key` over the admin socket, consistency between an old checkpoint and a
//! newer one, and the checkpoint written at shutdown that `mailjournal verify` checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use mailjournal::archive::Role;
use mailjournal::clock::SystemClock;
use mailjournal::server::Server;
use serde_json::Value;

use crate::support::{account, mailjournal, server_settings};

const PASSWORD: &str = "correct horse battery";

/// Sends each message with smtplib; returns the stable ids of the `250` replies.
async fn send(port: u16, messages: &[&str]) -> Vec<String> {
    let list = messages
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
for m in [{list}]:
    s.ehlo_or_helo_if_needed()
    code, text = s.mail("kim@fabrikam.com")
    assert code == 250, (code, text)
    code, text = s.rcpt("journal@contoso.com")
    assert code == 250, (code, text)
    code, text = s.data(m.encode())
    assert code == 250, (code, text)
    print(text.decode().split()[-1])
s.quit()
"#
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg("-c").arg(&script).output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn message(n: u32) -> String {
    format!(
        "From: kim@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: offer {n}\r\n\
         Message-ID: <tlog-{n}@fabrikam.com>\r\n\r\nOffer number {n}.\r\n"
    )
}

/// `curl` as `user` (or without credentials): the status and the body.
async fn curl(addr: std::net::SocketAddr, path: &str, user: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(user) = user {
        cmd.arg("-u").arg(format!("{user}:{PASSWORD}"));
    }
    cmd.arg(format!("http://{addr}{path}"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_owned())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify-proof.py")
}

/// Whether Python's cryptography package is there (CI installs it; see .ci/run).
fn python_has_cryptography() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("MAILJOURNAL_REQUIRE_PYTHON_CRYPTOGRAPHY").is_none(),
            "python3 has no cryptography package, and MAILJOURNAL_REQUIRE_PYTHON_CRYPTOGRAPHY is set"
        );
        eprintln!("skipping scripts/verify-proof.py: python3 has no cryptography package");
    }
    ok
}

/// Runs `scripts/verify-proof.py FILE --key KEY`: (success, stdout + stderr).
fn run_script(file: &Path, key: &str) -> (bool, String) {
    let out = Command::new("python3")
        .arg(script())
        .arg(file)
        .args(["--key", key])
        .output()
        .expect("run the script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn verify_proof(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = mailjournal(&[&["verify-proof"], args].concat(), dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The proof with one bit of `field` (a base64 string, or element `index` of a list of
/// them) flipped.
fn flipped(proof: &Value, field: &str, index: Option<usize>) -> Value {
    let mut p = proof.clone();
    let slot = match index {
        Some(i) => &mut p[field][i],
        None => &mut p[field],
    };
    let mut bytes = data_encoding::BASE64
        .decode(slot.as_str().expect("base64").as_bytes())
        .expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    *slot = Value::String(data_encoding::BASE64.encode(&bytes));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn proofs_from_the_gateway_verify_independently_and_one_flipped_bit_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut settings = server_settings(&data);
    settings.transparency.name = "journal.test".into();
    let server = Server::start(&settings, Arc::new(SystemClock))
        .await
        .expect("start");
    let archive = Arc::clone(server.archive().expect("archive"));
    for (name, role) in [
        ("admin", Role::Admin),
        ("auditor", Role::Auditor),
        ("exchange", Role::Source),
        ("carol", Role::Salesperson),
    ] {
        let code = (role == Role::Salesperson).then_some("ZZ");
        archive
            .put_account(&account(name, PASSWORD, role, code))
            .expect("account");
    }
    drop(archive);
    let smtp = server.smtp_addr.expect("smtp").port();
    let http = server.http_addr.expect("http");
    let ids = send(smtp, &[&message(1), &message(2), &message(3)]).await;
    assert_eq!(ids.len(), 3);

    // The verifier key, from the running gateway over its admin socket.
    let out = mailjournal(&["log-key"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let parts: Vec<&str> = key.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{key}");
    assert!(parts[0].starts_with("journal.test/mailjournal/"), "{key}");
    assert_eq!(parts[1].len(), 8, "{key}");

    // The proof of the second message, as an admin sees it.
    let (status, body) = curl(http, &format!("/m/{}/proof", ids[1]), Some("admin")).await;
    assert_eq!(status, 200, "{body}");
    let proof: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(proof["format"], "mailjournal-inclusion-proof/1");
    assert_eq!(proof["leaf_index"], 1);
    assert_eq!(proof["tree_size"], 3);
    assert_eq!(proof["leaf_fields"]["id"], ids[1].as_str());
    assert_eq!(proof["leaf_fields"]["uid"], 2);
    let checkpoint = proof["checkpoint"].as_str().expect("checkpoint");
    let lines: Vec<&str> = checkpoint.lines().collect();
    assert_eq!(lines[0], parts[0], "the origin is the key's name");
    assert_eq!(lines[1], "3");
    assert!(
        lines[4].starts_with(&format!("\u{2014} {} ", parts[0])),
        "{checkpoint}"
    );
    let file = dir.path().join("proof.json");
    std::fs::write(&file, &body).expect("write");
    let file_s = file.to_str().expect("utf-8");

    let (ok, text) = verify_proof(&data, &[file_s, "--key", &key]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("OK: message {} (UID 2) is leaf 1", ids[1])),
        "{text}"
    );

    let script_runs = python_has_cryptography();
    if script_runs {
        let (ok, text) = run_script(&file, &key);
        assert!(ok, "{text}");
        assert!(
            text.starts_with(&format!("OK: message {} (UID 2", ids[1])),
            "{text}"
        );
    }
    // One bit flipped in the leaf, in the path, in the signed root: both verifiers refuse.
    let mut cp = proof.clone();
    cp["checkpoint"] = Value::String(checkpoint.replacen(
        lines[2],
        &{
            let mut root = data_encoding::BASE64
                .decode(lines[2].as_bytes())
                .expect("root");
            root[0] ^= 0x80;
            data_encoding::BASE64.encode(&root)
        },
        1,
    ));
    for (what, bad) in [
        ("leaf", flipped(&proof, "leaf", None)),
        ("path", flipped(&proof, "inclusion", Some(0))),
        ("checkpoint root", cp),
    ] {
        let bad_file = dir.path().join("bad.json");
        std::fs::write(&bad_file, bad.to_string()).expect("write");
        let (ok, text) = verify_proof(&data, &[bad_file.to_str().expect("utf-8"), "--key", &key]);
        assert!(!ok && text.contains("FAILED"), "{what}: {text}");
        if script_runs {
            let (ok, text) = run_script(&bad_file, &key);
            assert!(!ok && text.contains("FAILED"), "{what}: {text}");
        }
    }
    // Another key refuses the good proof.
    let other = key.replacen(parts[1], "00000000", 1);
    let (ok, _) = verify_proof(&data, &[file_s, "--key", &other]);
    assert!(!ok);

    // Who may not read the message gets no proof of it.
    let (status, _) = curl(http, &format!("/m/{}/proof", ids[1]), None).await;
    assert_eq!(status, 401);
    let (status, _) = curl(http, &format!("/m/{}/proof", ids[1]), Some("exchange")).await;
    assert_eq!(status, 401, "a journaling source reads nothing");
    let (status, _) = curl(http, &format!("/m/{}/proof", ids[1]), Some("carol")).await;
    assert_eq!(status, 404, "a salesperson who is no party to it");
    let (status, _) = curl(http, "/m/aaaaaaaaaaaaaaaaaaaaaaaa/proof", Some("admin")).await;
    assert_eq!(status, 404);

    // An auditor keeps today's checkpoint; two more messages later, the log proves that
    // the tree of three is a prefix of the tree of five.
    let (status, old) = curl(http, "/log/checkpoint", Some("auditor")).await;
    assert_eq!(status, 200);
    assert_eq!(old.lines().nth(1), Some("3"));
    let old_file = dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old).expect("write");
    send(smtp, &[&message(4), &message(5)]).await;
    let (status, body) = curl(http, "/log/consistency?from=3", Some("carol")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = curl(http, "/log/consistency?from=0", Some("auditor")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = curl(http, "/log/consistency?from=3", Some("auditor")).await;
    assert_eq!(status, 200, "{body}");
    let consistency: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(consistency["old_size"], 3);
    assert_eq!(consistency["new_size"], 5);
    let cons_file = dir.path().join("consistency.json");
    std::fs::write(&cons_file, &body).expect("write");
    let cons_s = cons_file.to_str().expect("utf-8");
    let old_s = old_file.to_str().expect("utf-8");
    let (ok, text) = verify_proof(&data, &[cons_s, "--key", &key, "--old", old_s]);
    assert!(ok, "{text}");
    assert!(
        text.contains("of 3 leaves is a prefix of its tree of 5 leaves"),
        "{text}"
    );
    let bad = flipped(&consistency, "consistency", Some(0));
    std::fs::write(&cons_file, bad.to_string()).expect("write");
    let (ok, text) = verify_proof(&data, &[cons_s, "--key", &key, "--old", old_s]);
    assert!(!ok && text.contains("FAILED"), "{text}");

    // At shutdown a checkpoint covers everything, and `verify` finds the tree intact.
    send(smtp, &[&message(6)]).await;
    server.stop().await;
    let note = std::fs::read_to_string(data.join("tlog/checkpoint")).expect("checkpoint file");
    assert_eq!(note.lines().nth(1), Some("6"), "{note}");
    let out = mailjournal(&["verify"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("transparency log"), "{text}");
}

#[test]
fn the_cli_proves_a_message_of_an_archive_it_ingested() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&mail).expect("mkdir");
    for n in 1..=4 {
        std::fs::write(mail.join(format!("{n}.eml")), message(n)).expect("write");
    }
    let data = dir.path().join("data");
    let out = mailjournal(&["ingest", mail.to_str().expect("utf-8")], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `ingest` leaves a checkpoint of what it stored.
    let note = std::fs::read_to_string(data.join("tlog/checkpoint")).expect("checkpoint file");
    assert_eq!(note.lines().nth(1), Some("4"), "{note}");
    let key = mailjournal(&["log-key"], &data);
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    let out = mailjournal(&["prove", "3"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("proof.json");
    std::fs::write(&file, &out.stdout).expect("write");
    let (ok, text) = verify_proof(&data, &[file.to_str().expect("utf-8"), "--key", &key]);
    assert!(ok, "{text}");
    assert!(text.contains("(UID 3) is leaf 2 of the log"), "{text}");
    // The key file is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("tlog/signing-key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_witness_command_gets_each_new_checkpoint_and_the_last_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let witnessed = dir.path().join("witnessed");
    let mut settings = server_settings(&data);
    settings.transparency.checkpoint_interval = std::time::Duration::from_secs(1);
    settings.transparency.witness_command = vec![
        "sh".into(),
        "-c".into(),
        format!("cat >> '{}'", witnessed.display()),
    ];
    let server = Server::start(&settings, Arc::new(SystemClock))
        .await
        .expect("start");
    let smtp = server.smtp_addr.expect("smtp").port();
    send(smtp, &[&message(1)]).await;
    // The notes one after another: each origin line is followed by its size.
    let sizes = |text: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].starts_with("localhost/mailjournal/"))
            .map(|w| w[1].to_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&witnessed).unwrap_or_default();
        if sizes(&text).contains(&"1".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of 1 leaf: {text:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    send(smtp, &[&message(2), &message(3)]).await;
    server.stop().await;
    let text = std::fs::read_to_string(&witnessed).expect("witnessed");
    let got = sizes(&text);
    assert_eq!(got.last().map(String::as_str), Some("3"), "{text}");
    // Each checkpoint once: sizes only grow.
    let numbers: Vec<u64> = got.iter().map(|s| s.parse().expect("size")).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(
        text.contains("\u{2014} localhost/mailjournal/")
            || text.contains("\u{2014} mx.test/mailjournal/"),
        "{text}"
    );
}
