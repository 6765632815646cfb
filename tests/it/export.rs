//! `mailjournal export`: every message out byte for byte, and back in with `ingest` under
//! the same ids (issue 11, Export).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mailjournal::admin::FilterArgs;
use mailjournal::export::{Format, progress_path};

use crate::support::{fixtures, mailjournal};

/// Messages that mbox quoting and separators get wrong when done carelessly, and two
/// copies of one message that differ in their transport headers only (one id, two copies).
const AWKWARD: [(&str, &[u8]); 6] = [
    (
        "copy-1.eml",
        b"Received: from mx1.fabrikam.com by mx.contoso.com; Mon, 2 Nov 2026 10:00:01 +0000\r\n\
From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: twice\r\n\
Message-ID: <twice@f>\r\n\r\nthe same body\r\n",
    ),
    (
        "copy-2.eml",
        b"Received: from mx2.fabrikam.com by mx.contoso.com; Mon, 2 Nov 2026 10:00:03 +0000\r\n\
Delivered-To: journal@contoso.com\r\n\
From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: twice\r\n\
Message-ID: <twice@f>\r\n\r\nthe same body\r\n",
    ),
    (
        "from-lines.eml",
        b"From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: From lines\r\n\
Message-ID: <from-lines@f>\r\n\r\nFrom the start.\r\n>From once quoted.\r\n>>From twice.\r\n\
From \r\nFrom\r\n",
    ),
    (
        "no-final-newline.eml",
        b"From: marta@fabrikam.com\nTo: alice@contoso.com\nSubject: cut short\n\
Message-ID: <short@f>\n\nthe last line has no line break",
    ),
    (
        "trailing-blank-lines.eml",
        b"From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: blank lines\r\n\
Message-ID: <blank@f>\r\n\r\nbody\r\n\r\n\r\n",
    ),
    (
        "bare-lf-blank.eml",
        b"From: marta@fabrikam.com\nTo: alice@contoso.com\nSubject: lf blank\n\
Message-ID: <lf-blank@f>\n\nbody\n\n",
    ),
];

fn run(args: &[&str], data: &Path) -> String {
    let out = mailjournal(args, data);
    assert!(
        out.status.success(),
        "mailjournal {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every kept copy of every message of the archive in `data`: (id, copy) -> its bytes.
fn contents(data: &Path) -> BTreeMap<(String, u64), Vec<u8>> {
    let mut all = BTreeMap::new();
    for junk in [false, true] {
        let mut args = vec!["list", "--json"];
        if junk {
            args.push("--junk");
        }
        for line in run(&args, data).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let id = v["id"].as_str().expect("id").to_owned();
            let copies = v["copies"]["list"].as_array().expect("copies").len() as u64;
            for n in 1..=copies {
                let raw = mailjournal(&["show", &id, "--copy", &n.to_string()], data).stdout;
                all.insert((id.clone(), n), raw);
            }
        }
    }
    all
}

/// An archive with every fixture and the awkward messages, ingested from files.
fn source_archive() -> (tempfile::TempDir, BTreeMap<(String, u64), Vec<u8>>) {
    let src = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "eml") {
            std::fs::copy(&p, src.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    for (name, raw) in AWKWARD {
        std::fs::write(src.path().join(name), raw).expect("write");
    }
    let data = tempfile::tempdir().expect("tempdir");
    // Some fixtures are refused on purpose (empty, oversized): the rest are stored.
    let _ = mailjournal(&["ingest", path(src.path())], data.path());
    let all = contents(data.path());
    for (_, raw) in AWKWARD {
        assert!(
            all.values().any(|v| v == raw),
            "the awkward message is archived as it was: {}",
            String::from_utf8_lossy(raw)
        );
    }
    (data, all)
}

#[test]
fn every_format_round_trips_through_ingest_with_the_same_ids_and_bytes() {
    let (data, before) = source_archive();
    assert!(before.len() > 20, "{} messages", before.len());
    let twice: Vec<_> = before.keys().filter(|(_, n)| *n == 2).collect();
    assert!(!twice.is_empty(), "a message with two copies");
    let out = tempfile::tempdir().expect("tempdir");
    for format in ["eml", "mbox", "maildir"] {
        let dest = out.path().join(format!("export.{format}"));
        // Twice: junk is exported only when asked for, as `list` lists it.
        let text = run(&["export", "--format", format, path(&dest)], data.path());
        assert!(text.starts_with("exported "), "{text}");
        assert_eq!(
            text.contains("1 of them did not end with a line break"),
            format == "mbox",
            "{text}"
        );
        let junk_dest = out.path().join(format!("junk.{format}"));
        run(
            &["export", "--junk", "--format", format, path(&junk_dest)],
            data.path(),
        );
        let fresh = tempfile::tempdir().expect("tempdir");
        run(&["ingest", path(&dest), path(&junk_dest)], fresh.path());
        let after = contents(fresh.path());
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{format}: the same ids"
        );
        for (key, raw) in &before {
            if format == "mbox" && !raw.ends_with(b"\n") {
                // mbox cannot say that a message ends without a line break.
                let mut want = raw.clone();
                want.push(b'\n');
                assert!(after[key] == want, "{format}: {key:?} gains a line break");
                continue;
            }
            assert!(
                after[key] == *raw,
                "{format}: {key:?} comes back byte for byte"
            );
        }
    }
    // What the files are: one per message in a directory, an mboxrd file.
    let eml = out.path().join("export.eml");
    let (first, _) = before.keys().next().expect("an id");
    assert_eq!(
        std::fs::read(eml.join(format!("{first}.eml"))).expect("read"),
        before[&(first.clone(), 1)]
    );
    let (id, _) = twice[0];
    assert_eq!(
        std::fs::read(eml.join(format!("{id}~copy0002.eml"))).expect("read"),
        before[&(id.clone(), 2)]
    );
    let mbox = std::fs::read(out.path().join("export.mbox")).expect("read");
    let text = String::from_utf8_lossy(&mbox);
    assert!(
        text.contains(
            "\n>From the start.\r\n>>From once quoted.\r\n>>>From twice.\r\n>From \r\nFrom\r\n"
        ),
        "mboxrd quoting"
    );
    assert!(text.starts_with("From "), "{}", &text[..80.min(text.len())]);
    let cur = std::fs::read_dir(out.path().join("export.maildir/cur"))
        .expect("cur")
        .count();
    assert_eq!(
        cur,
        before.len()
            - std::fs::read_dir(out.path().join("junk.maildir/cur"))
                .expect("cur")
                .count()
    );
    use std::os::unix::fs::PermissionsExt;
    for p in [
        eml.join(format!("{first}.eml")),
        out.path().join("export.mbox"),
    ] {
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is owner-only: {mode:o}", p.display());
    }
}

/// `--with-proofs`: beside the export, each message's inclusion proof with its signed
/// checkpoint, which `verify-proof` accepts with the log's key.
#[test]
fn an_export_with_proofs_carries_evidence_that_verify_proof_accepts() {
    let (data, before) = source_archive();
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("evidence");
    let text = run(&["export", "--with-proofs", path(&dest)], data.path());
    let ids: BTreeSet<&String> = before.keys().map(|(id, _)| id).collect();
    let junk = run(&["list", "--json", "--junk"], data.path())
        .lines()
        .count();
    assert!(
        text.contains(&format!("{} inclusion proofs", ids.len() - junk)),
        "{text}"
    );
    let proofs = mailjournal::export::proofs_dir(&dest);
    let key = run(&["log-key"], data.path());
    let key = key.trim();
    let mut checked = 0;
    for entry in std::fs::read_dir(&proofs).expect("proofs") {
        let p = entry.expect("entry").path();
        let id = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_owned();
        assert!(ids.contains(&id), "a proof for a message: {}", p.display());
        let ok = mailjournal(&["verify-proof", path(&p), "--key", key], data.path());
        assert!(
            ok.status.success(),
            "{}: {}{}",
            p.display(),
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, ids.len() - junk);
    // The evidence is not part of what `ingest DEST` reads.
    assert!(
        !dest
            .join(format!("{}.json", ids.iter().next().expect("an id")))
            .exists()
    );
}

#[test]
fn an_interrupted_export_goes_on_where_it_stopped() {
    let (data, before) = source_archive();
    let out = tempfile::tempdir().expect("tempdir");
    let whole = out.path().join("whole.mbox");
    run(&["export", "--format", "mbox", path(&whole)], data.path());
    let whole_bytes = std::fs::read(&whole).expect("read");
    assert!(
        !progress_path(&whole).exists(),
        "a finished export leaves no progress file"
    );

    // An export that stopped after its third message, halfway through the fourth: its
    // last progress file says three, and the file goes on with a torn message.
    // What the mbox holds, in its order: every copy of every message, by UID.
    let items: Vec<(u64, usize)> = run(&["list", "--json"], data.path())
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let uid = v["uid"].as_u64().expect("uid");
            let copies = v["copies"]["list"].as_array().expect("copies").len();
            (1..=copies).map(move |n| (uid, n))
        })
        .collect();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(memchr_all(&whole_bytes).into_iter().map(|i| i + 1))
        .collect();
    let cut = starts[3];
    let torn = out.path().join("torn.mbox");
    let mut bytes = whole_bytes[..cut].to_vec();
    bytes.extend_from_slice(&whole_bytes[cut..cut + 40]);
    std::fs::write(&torn, &bytes).expect("write");
    let arguments = serde_json::to_string(&(Format::Mbox, &FilterArgs::default())).expect("json");
    let progress = serde_json::json!({ "arguments": arguments, "last": items[2], "length": cut });
    std::fs::write(progress_path(&torn), progress.to_string()).expect("write");

    // Other arguments do not finish it.
    let other = mailjournal(
        &[
            "export",
            "--format",
            "mbox",
            "--direction",
            "inbound",
            path(&torn),
        ],
        data.path(),
    );
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("unfinished export with other arguments"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    let text = run(&["export", "--format", "mbox", path(&torn)], data.path());
    assert!(text.contains("; 3 were there already"), "{text}");
    assert!(
        std::fs::read(&torn).expect("read") == whole_bytes,
        "the resumed export is the uninterrupted one, byte for byte"
    );
    assert!(!progress_path(&torn).exists());

    // A finished mbox is never overwritten; a directory export run again writes nothing.
    let again = mailjournal(&["export", "--format", "mbox", path(&whole)], data.path());
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists and is no unfinished export"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let dir = out.path().join("eml");
    run(&["export", path(&dir)], data.path());
    let text = run(&["export", path(&dir)], data.path());
    let logged = before.len()
        - run(&["list", "--json", "--junk"], data.path())
            .lines()
            .count();
    assert!(
        text.starts_with(&format!("exported 0 messages (0 B) to {}", dir.display()))
            && text.contains(&format!("; {logged} were there already")),
        "{text}"
    );
}

/// Offsets of the `\n` before each `From ` line of an mbox we wrote (ours quote every
/// other `From ` at a line start, so each is a message's first line).
fn memchr_all(mbox: &[u8]) -> Vec<usize> {
    mbox.windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"\nFrom ")
        .map(|(i, _)| i)
        .collect()
}
