//! Golden ingest cases: `fixtures/NAME.eml` (or `NAME.1.eml`, `NAME.2.eml`, … ingested in
//! order into one archive) in, `fixtures/NAME.json` out: what `list --json` shows after the
//! ingest, and what each ingest returned. `UPDATE_GOLDEN=1` rewrites the expected files,
//! which are then reviewed like code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailjournal::archive::{Filter, Flag};
use mailjournal::ingest::{Envelope, Outcome};
use serde_json::json;

use crate::support::{TestArchive, fixtures};

/// 2026-11-21T00:00:00Z: when every golden message "arrives".
pub const RECEIVED_AT: i64 = 1_795_219_200;

/// Name of the generated case: a 20 MB attachment is too big to commit as a fixture, so its
/// `.eml` is made at test time, deterministically; its expected JSON is committed.
const GENERATED: &str = "twenty-megabyte-attachment";

/// The generated case's message: an outbound mail with a 20 MiB pseudo-random attachment.
pub fn twenty_megabyte_message() -> Vec<u8> {
    let payload = crate::support::pseudo_random_bytes(20 * 1024 * 1024);
    let base64 = data_encoding::BASE64.encode(&payload);
    let mut message = String::with_capacity(base64.len() + base64.len() / 38 + 1024);
    message.push_str(
        "From: Alice <alice@contoso.com>\r\n\
         To: marta@fabrikam.com\r\n\
         Subject: Scans of the signed contract\r\n\
         Date: Fri, 20 Nov 2026 12:00:00 +0000\r\n\
         Message-ID: <big-1@contoso.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"big-boundary-1\"\r\n\
         \r\n\
         --big-boundary-1\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Attached.\r\n\
         --big-boundary-1\r\n\
         Content-Type: application/octet-stream; name=\"scans.bin\"\r\n\
         Content-Disposition: attachment; filename=\"scans.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n",
    );
    for line in base64.as_bytes().chunks(76) {
        message.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        message.push_str("\r\n");
    }
    message.push_str("--big-boundary-1--\r\n");
    message.into_bytes()
}

fn read_case_file(file: &std::path::Path) -> Vec<u8> {
    if file.file_name().and_then(|n| n.to_str()) == Some(&format!("{GENERATED}.eml")) {
        return twenty_megabyte_message();
    }
    std::fs::read(file).expect("read fixture")
}

fn cases() -> BTreeMap<String, Vec<PathBuf>> {
    let mut cases: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".eml") else {
            continue;
        };
        let case = match stem.rsplit_once('.') {
            Some((case, n)) if n.parse::<u32>().is_ok() => case,
            _ => stem,
        };
        cases.entry(case.to_owned()).or_default().push(path);
    }
    for files in cases.values_mut() {
        files.sort();
    }
    cases.insert(
        GENERATED.to_owned(),
        vec![fixtures().join(format!("{GENERATED}.eml"))],
    );
    cases
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Stored {
            malformed: false, ..
        } => "stored",
        Outcome::Stored {
            malformed: true, ..
        } => "stored-malformed",
        Outcome::Duplicate { .. } => "duplicate",
        Outcome::Junk { .. } => "junk-quarantined",
        Outcome::JunkDropped => "junk-dropped",
    }
}

#[test]
fn golden_ingest_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(
        cases.len() >= 15,
        "fixtures went missing: {:?}",
        cases.keys()
    );
    let mut failures = Vec::new();
    for (case, files) in &cases {
        let t = TestArchive::new();
        let mut outcomes = Vec::new();
        let mut originals = Vec::new();
        for file in files {
            let raw = read_case_file(file);
            let envelope = Envelope {
                mail_from: None,
                received_at: RECEIVED_AT,
            };
            let outcome = t
                .ingestor()
                .ingest_blocking(&raw, &envelope)
                .unwrap_or_else(|e| panic!("{case}: ingest failed: {e}"));
            outcomes.push(outcome_name(&outcome));
            originals.push(raw);
        }
        let archive = t.archive();
        let mut records = archive.list(&Filter::default()).expect("list");
        records.extend(
            archive
                .list(&Filter {
                    junk: true,
                    ..Filter::default()
                })
                .expect("list junk"),
        );
        // Every record gives back its original bytes: the file itself, or for a journal
        // report the message it carried, byte for byte.
        for r in &records {
            let raw = archive.raw(r).expect("raw");
            let ok = if r.has_flag(Flag::JournalReport) {
                originals
                    .iter()
                    .any(|o| memchr::memmem::find(o, &raw).is_some() && raw.len() < o.len())
            } else {
                originals.contains(&raw)
            };
            assert!(ok, "{case}: message {} does not round-trip", r.uid);
        }
        // And every copy kept gives back the bytes that arrived.
        let copies = archive.copies_of(&records).expect("copies");
        for (r, kept) in records.iter().zip(&copies) {
            for c in kept {
                let raw = archive
                    .copy_raw(r.uid, c.n)
                    .expect("copy")
                    .expect("a kept copy");
                assert_eq!(raw.len() as u64, c.size, "{case}: copy {} size", c.n);
                let ok = originals
                    .iter()
                    .any(|o| *o == raw || memchr::memmem::find(o, &raw).is_some());
                assert!(ok, "{case}: copy {} of {} does not round-trip", c.n, r.uid);
            }
        }
        let actual = json!({
            "outcomes": outcomes,
            "messages": records.iter().zip(&copies).map(|(r, c)| r.view(c)).collect::<Vec<_>>(),
        });
        let actual = serde_json::to_string_pretty(&actual).expect("json") + "\n";
        let expected_path = fixtures().join(format!("{case}.json"));
        if update {
            std::fs::write(&expected_path, &actual).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{case}: output differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                expected_path.display()
            )),
            Err(e) => failures.push(format!("{case}: {}: {e}", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
