//! Issue 11's property: random sets of messages and copies, ingested in random orders in
//! random batches, with crashes between batches (a batch in the log that never reached the
//! database) and lost indexes (rebuilt from the packs), always give back every accepted byte
//! sequence, under the ids a clean run gives them, and a transparency log with a leaf per
//! accepted message whose root a rebuilt index recomputes.
//!
//! `MAILJOURNAL_PROPERTY_CASES` sets how many random cases run (default 12); a failure
//! prints the case's seed, and `MAILJOURNAL_PROPERTY_SEED` replays that one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use mailjournal::archive::{Archive, Filter};
use mailjournal::ingest::{self, Envelope};

use crate::support::{Rng, TestArchive, policy};

/// The messages of one case: some originals, for each some copies that differ in transport
/// headers only (one id), some byte-identical resends, and some variants with the same
/// Message-ID and body but another Subject or Content-Type (other ids).
fn messages(rng: &mut Rng, case: u64) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for m in 0..3 + rng.below(8) {
        let mid = format!("<p{case}-{m}@fabrikam.com>");
        let lines = 1 + rng.below(40);
        let mut body = String::new();
        for l in 0..lines {
            // Now and then a line a careless mbox or dot-stuffing would break.
            match rng.below(12) {
                0 => body.push_str("From the desk of Marta\r\n"),
                1 => body.push_str(".\r\n"),
                _ => body.push_str(&format!("line {l} of {mid}: {:x}\r\n", rng.next())),
            }
        }
        if rng.chance(10) {
            // Large enough for a blob file of its own.
            let blob = crate::support::pseudo_random_bytes(
                70 * 1024 + usize::try_from(rng.below(9000)).expect("n"),
            );
            for chunk in data_encoding::BASE64.encode(&blob).as_bytes().chunks(76) {
                body.push_str(std::str::from_utf8(chunk).expect("ascii"));
                body.push_str("\r\n");
            }
        }
        let header = |subject: &str, extra: &str| {
            format!(
                "{extra}From: Marta <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\n\
                 Subject: {subject}\r\nDate: Fri, 20 Nov 2026 10:0{}:00 +0000\r\n\
                 Message-ID: {mid}\r\n\r\n",
                m % 10
            )
        };
        let original = format!("{}{body}", header(&format!("offer {m}"), ""));
        all.push(original.clone().into_bytes());
        for c in 0..rng.below(4) {
            let trace = format!(
                "Received: from mx{c}.fabrikam.com by mx.contoso.com; {}\r\n\
                 X-MS-Exchange-Organization-Network-Message-Id: {:x}\r\n",
                rng.next(),
                rng.next()
            );
            all.push(format!("{}{body}", header(&format!("offer {m}"), &trace)).into_bytes());
        }
        if rng.chance(30) {
            all.push(original.into_bytes());
        }
        if rng.chance(30) {
            all.push(format!("{}{body}", header(&format!("offer {m}, revised"), "")).into_bytes());
        }
    }
    all
}

fn envelope(at: i64) -> Envelope {
    Envelope {
        mail_from: None,
        received_at: at,
    }
}

/// id -> the set of byte sequences kept for it (every copy).
fn kept(archive: &Archive) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    let mut out: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for record in archive.list(&Filter::default()).expect("list") {
        let copies = archive.copies(record.uid).expect("copies");
        let set = out.entry(record.id.clone()).or_default();
        for copy in copies {
            let raw = archive
                .copy_raw(record.uid, copy.n)
                .expect("copy")
                .expect("a listed copy exists");
            assert_eq!(
                raw.len() as u64,
                copy.size,
                "copy {} of {}",
                copy.n,
                record.id
            );
            set.insert(raw);
        }
    }
    out
}

/// What a clean run keeps: every distinct byte sequence, under the id `analyze` gives it.
fn expected(all: &[Vec<u8>]) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    let mut out: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for raw in all {
        match ingest::analyze(raw, &envelope(0), &policy()) {
            Ok(ingest::Analyzed::Store(item)) => {
                out.entry(item.id.as_str().to_owned())
                    .or_default()
                    .insert(raw.clone());
            }
            other => panic!("every generated message is stored: {other:?}"),
        }
    }
    out
}

fn reopen(dir: &Path) -> (Arc<Archive>, ingest::Ingestor, std::thread::JoinHandle<()>) {
    let archive = Arc::new(Archive::open(dir).expect("reopen"));
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start (recovers)");
    (archive, ingestor, committer)
}

fn run_case(seed: u64) {
    let mut rng = Rng(seed);
    let mut all = messages(&mut rng, seed);
    rng.shuffle(&mut all);
    let want = expected(&all);
    let dir = TestArchive::new().close();
    let mut at = 1_790_000_000;
    let mut rest: &[Vec<u8>] = &all;
    let mut events = Vec::new();
    while !rest.is_empty() {
        let n = usize::try_from(1 + rng.below(6))
            .expect("n")
            .min(rest.len());
        let (batch, later) = rest.split_at(n);
        rest = later;
        if rng.chance(35) {
            // A start (which files what an earlier crash left), then a crash after the
            // batch reached the log, before its commit: staged only.
            let (archive, ingestor, committer) = reopen(dir.path());
            drop(ingestor);
            committer.join().expect("committer");
            let items = batch
                .iter()
                .map(|raw| {
                    at += 1;
                    match ingest::analyze(raw, &envelope(at), &policy()) {
                        Ok(ingest::Analyzed::Store(item)) => *item,
                        other => panic!("{other:?}"),
                    }
                })
                .collect();
            archive.stage(items).expect("stage");
            events.push(format!("crash after staging {n}"));
        } else {
            let (_archive, ingestor, committer) = reopen(dir.path());
            for raw in batch {
                at += 1;
                ingestor
                    .ingest_blocking(raw, &envelope(at))
                    .expect("ingest");
            }
            drop(ingestor);
            committer.join().expect("committer");
            events.push(format!("ingest {n}"));
        }
        if rng.chance(15) {
            std::fs::remove_file(dir.path().join("archive.redb")).expect("lose the index");
            events.push("index lost".into());
        }
    }
    let (archive, ingestor, committer) = reopen(dir.path());
    let got = kept(&archive);
    let report = || format!("seed {seed}: {events:?}");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same ids as a clean run ({})",
        report()
    );
    for (id, bytes) in &want {
        assert!(
            got[id] == *bytes,
            "{id}: every distinct byte sequence kept, no other ({}): kept {}, want {}",
            report(),
            got[id].len(),
            bytes.len()
        );
    }
    let report_text = archive.verify(false, |_, _| {}).expect("verify");
    assert!(
        report_text.problems.is_empty(),
        "verify ({}): {:?}",
        report(),
        report_text.problems
    );
    // The transparency log has a leaf for every copy that was filed.
    let size = archive.tlog_size().expect("size");
    let root = archive.tlog_root(size).expect("root");
    // One leaf per accepted message: resends and copies are arrivals the log records.
    assert_eq!(size, all.len() as u64, "leaves ({})", report());
    drop(ingestor);
    committer.join().expect("committer");

    // And the index rebuilt from the packs gives the same again, with the same tree.
    std::fs::remove_file(dir.path().join("archive.redb")).expect("lose the index");
    let (archive, ingestor, committer) = reopen(dir.path());
    assert!(kept(&archive) == got, "rebuilt ({})", report());
    assert_eq!(
        archive.tlog_size().expect("size"),
        size,
        "rebuilt ({})",
        report()
    );
    assert!(
        archive.tlog_root(size).expect("root") == root,
        "the same root after a rebuild ({})",
        report()
    );
    drop(ingestor);
    committer.join().expect("committer");
}

#[test]
fn every_accepted_byte_sequence_survives_random_orders_crashes_and_rebuilds() {
    if let Some(seed) = std::env::var("MAILJOURNAL_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return run_case(seed);
    }
    let cases: u64 = std::env::var("MAILJOURNAL_PROPERTY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for case in 0..cases {
        run_case(0x6d6a_0000 + case);
    }
}
