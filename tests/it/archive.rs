//! The archive and the pipeline through the library: deduplication, durability across
//! reopen, verification, large messages, group commit under concurrency, limits.

use std::sync::Arc;

use mailjournal::archive::{Archive, BlobHash, Codec, Compression, Counter, Filter, Storage};
use mailjournal::classify::Direction;
use mailjournal::config::JunkAction;
use mailjournal::ingest::{self, Envelope, Outcome};

use crate::golden::RECEIVED_AT;
use crate::support::{TestArchive, fixtures, policy};

fn envelope() -> Envelope {
    Envelope {
        mail_from: None,
        received_at: RECEIVED_AT,
    }
}

fn simple(from: &str, to: &str, bcc_header: Option<&str>, mid: &str, body: &str) -> Vec<u8> {
    let mut text = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: test {mid}\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{mid}>\r\n"
    );
    if let Some(b) = bcc_header {
        text.push_str(&format!("X-Envelope-To: {b}\r\n"));
    }
    text.push_str(&format!("\r\n{body}\r\n"));
    text.into_bytes()
}

#[test]
fn identical_bytes_are_stored_once_and_ids_are_stable_across_archives() {
    let raw = std::fs::read(fixtures().join("inbound-bcc.eml")).expect("fixture");
    let a = TestArchive::new();
    let first = a
        .ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    let second = a
        .ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    let (Outcome::Stored { uid, id, .. }, Outcome::Duplicate { uid: uid2, id: id2 }) =
        (&first, &second)
    else {
        panic!("want stored then duplicate, got {first:?} then {second:?}");
    };
    assert_eq!((uid, id), (uid2, id2));
    let stats = a.archive().stats().expect("stats");
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.counters["duplicates"], 1);
    assert_eq!(
        stats.raw_bytes,
        raw.len() as u64,
        "the bytes are stored once"
    );

    // Another instance, another time: the same id.
    let b = TestArchive::new();
    b.ingestor()
        .ingest_blocking(
            b"From: x@fabrikam.com\r\n\r\nsomething else first\r\n",
            &envelope(),
        )
        .expect("ingest");
    let again = b
        .ingestor()
        .ingest_blocking(
            &raw,
            &Envelope {
                mail_from: None,
                received_at: RECEIVED_AT + 86_400,
            },
        )
        .expect("ingest");
    assert!(
        matches!(&again, Outcome::Stored { id: same, uid: 2, .. } if same == id),
        "{again:?}"
    );
}

#[test]
fn a_duplicate_that_adds_an_outside_recipient_reclassifies() {
    let t = TestArchive::new();
    let copy1 = simple(
        "alice@contoso.com",
        "bob@contoso.com",
        None,
        "m1@contoso.com",
        "hi",
    );
    let copy2 = simple(
        "alice@contoso.com",
        "bob@contoso.com",
        Some("kim@fabrikam.com"),
        "m1@contoso.com",
        "hi",
    );
    t.ingestor()
        .ingest_blocking(&copy1, &envelope())
        .expect("ingest");
    let r = t.archive().get(1).expect("get").expect("record");
    assert_eq!(r.meta.direction, Direction::Internal);
    t.ingestor()
        .ingest_blocking(&copy2, &envelope())
        .expect("ingest");
    let r = t.archive().get(1).expect("get").expect("record");
    assert_eq!(r.meta.direction, Direction::Outbound);
    assert_eq!(r.copies, 2);
    assert_eq!(
        t.archive().raw(&r).expect("raw"),
        copy1,
        "the first copy's bytes are kept"
    );
    let outbound = Filter {
        direction: Some(Direction::Outbound),
        ..Filter::default()
    };
    assert_eq!(t.archive().list(&outbound).expect("list").len(), 1);
    let internal = Filter {
        direction: Some(Direction::Internal),
        ..Filter::default()
    };
    assert!(
        t.archive().list(&internal).expect("list").is_empty(),
        "old index row removed"
    );
    let kim = Filter {
        address: Some("kim@fabrikam.com".into()),
        ..Filter::default()
    };
    assert_eq!(
        t.archive().list(&kim).expect("list").len(),
        1,
        "new address indexed"
    );
}

#[test]
fn same_message_id_with_a_different_body_is_a_different_message() {
    let t = TestArchive::new();
    let a = simple(
        "a@fabrikam.com",
        "alice@contoso.com",
        None,
        "same@x",
        "version one",
    );
    let b = simple(
        "a@fabrikam.com",
        "alice@contoso.com",
        None,
        "same@x",
        "version two",
    );
    t.ingestor()
        .ingest_blocking(&a, &envelope())
        .expect("ingest");
    let o = t
        .ingestor()
        .ingest_blocking(&b, &envelope())
        .expect("ingest");
    assert!(matches!(o, Outcome::Stored { uid: 2, .. }), "{o:?}");
}

#[test]
fn records_uids_and_uidvalidity_survive_reopening() {
    let t = TestArchive::new();
    let uidvalidity = t.archive().uidvalidity();
    for i in 0..5 {
        let raw = simple(
            "a@fabrikam.com",
            "alice@contoso.com",
            None,
            &format!("r{i}@x"),
            "b",
        );
        t.ingestor()
            .ingest_blocking(&raw, &envelope())
            .expect("ingest");
    }
    let dir = t.close();
    let archive = Archive::open(dir.path()).expect("reopen");
    assert_eq!(archive.uidvalidity(), uidvalidity);
    let uids: Vec<u32> = archive
        .list(&Filter::default())
        .expect("list")
        .iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(uids, [1, 2, 3, 4, 5]);
    drop(archive);
    let (ingestor, committer) = ingest::Ingestor::start(
        Arc::new(Archive::open(dir.path()).expect("reopen")),
        policy(),
    )
    .expect("start");
    let raw = simple("a@fabrikam.com", "alice@contoso.com", None, "r-new@x", "b");
    let o = ingestor.ingest_blocking(&raw, &envelope()).expect("ingest");
    assert!(
        matches!(o, Outcome::Stored { uid: 6, .. }),
        "UIDs continue: {o:?}"
    );
    drop(ingestor);
    committer.join().expect("committer");
}

#[test]
fn a_second_process_cannot_open_an_archive_in_use() {
    let t = TestArchive::new();
    match Archive::open(t.dir.path()) {
        Err(e) => assert!(
            e.to_string()
                .contains("in use by another mailjournal process"),
            "{e}"
        ),
        Ok(_) => panic!("two handles on one archive"),
    }
}

#[test]
fn twenty_megabyte_attachment_is_a_file_and_round_trips() {
    let raw = crate::golden::twenty_megabyte_message();
    assert!(raw.len() > 20 * 1024 * 1024);
    let t = TestArchive::new();
    let o = t
        .ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    let Outcome::Stored { uid, .. } = o else {
        panic!("{o:?}")
    };
    let r = t.archive().get(uid).expect("get").expect("record");
    assert_eq!(r.storage, Storage::File);
    assert_eq!(r.meta.attachments, 1);
    assert_eq!(r.meta.direction, Direction::Outbound);
    assert_eq!(r.size, raw.len() as u64);
    assert!(t.archive().raw(&r).expect("raw") == raw, "byte-exact");
    let report = t.archive().verify(false, |_, _| {}).expect("verify");
    assert!(
        report.problems.is_empty() && report.orphans.is_empty(),
        "{report:?}"
    );
}

/// A message with a base64 attachment of already compressed data (`kib` KiB of it).
fn with_incompressible_attachment(mid: &str, kib: usize) -> Vec<u8> {
    let data = crate::support::pseudo_random_bytes(kib * 1024);
    let b64 = data_encoding::BASE64.encode(&data);
    let mut body = String::from(
        "--b\r\nContent-Type: text/plain\r\n\r\nThe quote, as promised.\r\n\r\n--b\r\n\
         Content-Type: application/pdf; name=quote.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        body.push_str("\r\n");
    }
    body.push_str("--b--");
    format!(
        "From: alice@contoso.com\r\nTo: kim@fabrikam.com\r\nSubject: quote\r\n\
         Date: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn mail_that_compresses_poorly_is_stored_as_is_and_text_is_compressed() {
    let t = TestArchive::new();
    let pdf_small = with_incompressible_attachment("pdf-small@contoso.com", 20);
    let pdf_large = with_incompressible_attachment("pdf-large@contoso.com", 300);
    let text = simple(
        "alice@contoso.com",
        "kim@fabrikam.com",
        None,
        "text@contoso.com",
        &"Thanks for the call today; the numbers are below.\r\n".repeat(200),
    );
    // A file left at the large blob's name by an older version that compressed everything
    // (no record refers to it): the new bytes replace it.
    let large_blob = BlobHash::of(&pdf_large).to_hex();
    let stale = t
        .dir
        .path()
        .join("objects")
        .join(&large_blob[..2])
        .join(&large_blob[2..]);
    std::fs::create_dir_all(stale.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stale, b"an older encoding of the same bytes").expect("write");

    for raw in [&pdf_small, &pdf_large, &text] {
        t.ingestor()
            .ingest_blocking(raw, &envelope())
            .expect("ingest");
    }
    let records: Vec<_> = (1..=3)
        .map(|uid| t.archive().get(uid).expect("get").expect("record"))
        .collect();
    for (r, raw) in records.iter().zip([&pdf_small, &pdf_large, &text]) {
        assert!(
            t.archive().raw(r).expect("raw") == *raw,
            "byte-exact: {r:?}"
        );
    }
    let (small, large, plain) = (&records[0], &records[1], &records[2]);
    assert!(matches!(small.storage, Storage::Pack { .. }), "{small:?}");
    assert_eq!(small.compression, Compression::None);
    assert_eq!(small.stored_size, small.size);
    assert_eq!(large.storage, Storage::File);
    assert_eq!(large.compression, Compression::None);
    assert_eq!(
        std::fs::read(&stale).expect("blob file"),
        pdf_large,
        "the file holds the message as it is"
    );
    assert_eq!(plain.compression, Compression::Lz4);
    assert!(plain.stored_size * 4 < plain.size, "{plain:?}");
    let stats = t.archive().stats().expect("stats");
    assert_eq!(
        stats.stored_bytes,
        small.size + large.size + plain.stored_size
    );
    let report = t.archive().verify(false, |_, _| {}).expect("verify");
    assert!(
        report.problems.is_empty() && report.orphans.is_empty(),
        "{report:?}"
    );

    // A flipped byte in an uncompressed blob has no codec to trip over it: the hash does.
    let mut bytes = std::fs::read(&stale).expect("read");
    bytes[1000] ^= 0x01;
    std::fs::write(&stale, &bytes).expect("tamper");
    let report = t.archive().verify(false, |_, _| {}).expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].contains("does not hash to its name"),
        "{report:?}"
    );
}

#[test]
fn changing_the_codec_leaves_what_is_archived_readable() {
    let text = |mid: &str| {
        simple(
            "alice@contoso.com",
            "kim@fabrikam.com",
            None,
            mid,
            &"Thanks for the call today; the numbers are below.\r\n".repeat(100),
        )
    };
    let (first, second) = (text("zstd@contoso.com"), text("lz4@contoso.com"));
    let t = TestArchive::with_policy(ingest::Policy {
        codec: Codec::Zstd,
        ..policy()
    });
    t.ingestor()
        .ingest_blocking(&first, &envelope())
        .expect("ingest");
    let dir = t.close();

    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    ingestor
        .ingest_blocking(&second, &envelope())
        .expect("ingest");
    for (uid, raw, how) in [
        (1, &first, Compression::Zstd),
        (2, &second, Compression::Lz4),
    ] {
        let r = archive.get(uid).expect("get").expect("record");
        assert_eq!(r.compression, how);
        assert!(r.stored_size * 4 < r.size, "{r:?}");
        assert_eq!(&archive.raw(&r).expect("raw"), raw);
    }
    let report = archive.verify(false, |_, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{report:?}");
    drop(ingestor);
    committer.join().expect("committer");
}

#[test]
fn verify_names_a_corrupt_or_missing_blob_and_repair_removes_only_orphans() {
    let t = TestArchive::new();
    // A message big and random enough to be stored as its own file.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let body: String = (0..200_000u32)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let raw = simple("a@fabrikam.com", "alice@contoso.com", None, "v@x", &body);
    t.ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    let small = simple("a@fabrikam.com", "alice@contoso.com", None, "v2@x", "small");
    t.ingestor()
        .ingest_blocking(&small, &envelope())
        .expect("ingest");
    let r = t.archive().get(1).expect("get").expect("record");
    assert_eq!(r.storage, Storage::File);
    let blob_path = t
        .dir
        .path()
        .join("objects")
        .join(&r.blob[..2])
        .join(&r.blob[2..]);
    let orphan = t.dir.path().join("objects").join("ab").join("c".repeat(62));
    std::fs::create_dir_all(orphan.parent().expect("parent")).expect("mkdir");
    std::fs::write(&orphan, b"left by an interrupted commit").expect("write");

    let report = t.archive().verify(false, |_, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.orphans, std::slice::from_ref(&orphan));

    // Flip one byte of the stored file: the codec or the hash catches it.
    let mut bytes = std::fs::read(&blob_path).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob_path, &bytes).expect("tamper");
    let report = t.archive().verify(true, |_, _| {}).expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].starts_with("message 1 ("),
        "{}",
        report.problems[0]
    );
    assert!(!orphan.exists(), "repair removed the orphan");
    assert!(blob_path.exists(), "repair never removes a referenced blob");

    std::fs::remove_file(&blob_path).expect("remove");
    let report = t.archive().verify(false, |_, _| {}).expect("verify");
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0].contains("reading message 1"),
        "{}",
        report.problems[0]
    );
}

#[test]
fn concurrent_submitters_share_group_commits_and_get_distinct_uids() {
    let t = TestArchive::new();
    std::thread::scope(|s| {
        for thread in 0..8 {
            let ingestor = t.ingestor().clone();
            s.spawn(move || {
                for i in 0..50 {
                    let raw = simple(
                        "a@fabrikam.com",
                        "alice@contoso.com",
                        None,
                        &format!("t{thread}-{i}@x"),
                        "body",
                    );
                    let o = ingestor.ingest_blocking(&raw, &envelope()).expect("ingest");
                    assert!(matches!(o, Outcome::Stored { .. }), "{o:?}");
                }
            });
        }
    });
    let mut uids: Vec<u32> = t
        .archive()
        .list(&Filter::default())
        .expect("list")
        .iter()
        .map(|r| r.uid)
        .collect();
    uids.sort_unstable();
    assert_eq!(uids, (1..=400).collect::<Vec<_>>());
}

#[test]
fn empty_and_oversized_messages_are_refused_with_a_reason() {
    let mut p = policy();
    p.max_message_size = 64 * 1024;
    let t = TestArchive::with_policy(p);
    let e = t
        .ingestor()
        .ingest_blocking(b"", &envelope())
        .expect_err("empty");
    assert_eq!(e.to_string(), "the message is empty");
    assert!(!e.is_transient());
    let big = vec![b'x'; 64 * 1024 + 1];
    let e = t
        .ingestor()
        .ingest_blocking(&big, &envelope())
        .expect_err("too large");
    assert_eq!(
        e.to_string(),
        "the message is 65537 bytes, over the limit of 65536 bytes"
    );
    assert_eq!(t.archive().stats().expect("stats").messages, 0);
}

#[test]
fn junk_is_quarantined_or_dropped_per_config() {
    let raw = std::fs::read(fixtures().join("spam-flagged.eml")).expect("fixture");
    let t = TestArchive::new();
    let o = t
        .ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    assert!(matches!(o, Outcome::Junk { .. }), "{o:?}");
    assert!(
        t.archive()
            .list(&Filter::default())
            .expect("list")
            .is_empty(),
        "never logged"
    );
    let stats = t.archive().stats().expect("stats");
    assert_eq!((stats.inbound, stats.junk_quarantined_now), (0, 1));

    let mut p = policy();
    p.junk.action = JunkAction::Drop;
    let t = TestArchive::with_policy(p);
    let o = t
        .ingestor()
        .ingest_blocking(&raw, &envelope())
        .expect("ingest");
    assert_eq!(o, Outcome::JunkDropped);
    let stats = t.archive().stats().expect("stats");
    assert_eq!(stats.messages, 0);
    assert_eq!(stats.counters[Counter::JunkDropped.key()], 1);
}

#[test]
fn list_filters_by_direction_date_and_address() {
    let t = TestArchive::new();
    for name in [
        "inbound-bcc.eml",
        "outbound.eml",
        "internal.eml",
        "external.eml",
    ] {
        let raw = std::fs::read(fixtures().join(name)).expect("fixture");
        t.ingestor()
            .ingest_blocking(&raw, &envelope())
            .expect("ingest");
    }
    let a = t.archive();
    let subjects = |f: Filter| -> Vec<String> {
        a.list(&f)
            .expect("list")
            .into_iter()
            .map(|r| r.meta.subject.unwrap_or_default())
            .collect()
    };
    assert_eq!(
        subjects(Filter {
            direction: Some(Direction::Inbound),
            ..Filter::default()
        }),
        ["Request for quotation: 400 pallets"]
    );
    // 2026-11-20T10:00:00Z onwards: the outbound reply and the internal note.
    assert_eq!(
        subjects(Filter {
            since: Some(1_795_168_800),
            ..Filter::default()
        })
        .len(),
        2
    );
    assert_eq!(
        subjects(Filter {
            until: Some(1_795_168_800),
            ..Filter::default()
        }),
        ["Request for quotation: 400 pallets", "Weekly digest"]
    );
    assert_eq!(
        subjects(Filter {
            address: Some("bob@contoso.com".into()),
            ..Filter::default()
        })
        .len(),
        2,
        "bob is Cc on the reply and To on the internal note"
    );
    assert_eq!(
        subjects(Filter {
            limit: Some(3),
            ..Filter::default()
        })
        .len(),
        3
    );
}

#[test]
fn bytes_past_the_log_that_are_no_frame_are_cut_off_and_kept_aside() {
    let t = TestArchive::new();
    let first = simple("a@fabrikam.com", "alice@contoso.com", None, "p1@x", "one");
    t.ingestor()
        .ingest_blocking(&first, &envelope())
        .expect("ingest");
    let dir = t.close();
    let pack = dir.path().join("packs/pack-000001.dat");
    let committed = std::fs::metadata(&pack).expect("pack").len();
    assert!(committed > 0);
    // Not a frame: what an older version's crash left after its last commit.
    let mut bytes = std::fs::read(&pack).expect("read");
    let junk = [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5, 6, 7, 8];
    bytes.extend_from_slice(&junk);
    std::fs::write(&pack, &bytes).expect("write");

    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    assert!(archive.needs_recovery());
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    assert!(!archive.needs_recovery());
    assert_eq!(std::fs::metadata(&pack).expect("pack").len(), committed);
    let aside = dir
        .path()
        .join(format!("packs/pack-000001.dat.damaged-at-{committed}"));
    assert_eq!(std::fs::read(&aside).expect("kept aside"), junk);
    let second = simple("a@fabrikam.com", "alice@contoso.com", None, "p2@x", "two");
    ingestor
        .ingest_blocking(&second, &envelope())
        .expect("ingest");
    for (uid, raw) in [(1, &first), (2, &second)] {
        let r = archive.get(uid).expect("get").expect("record");
        assert!(matches!(r.storage, Storage::Pack { pack: 1, .. }), "{r:?}");
        assert_eq!(&archive.raw(&r).expect("raw"), raw);
    }
    let report = archive.verify(false, |_, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{report:?}");
    drop(ingestor);
    committer.join().expect("committer");
}

#[test]
fn a_batch_in_the_log_but_not_in_the_database_is_filed_at_the_next_start() {
    let t = TestArchive::new();
    let first = simple("a@fabrikam.com", "alice@contoso.com", None, "w1@x", "one");
    t.ingestor()
        .ingest_blocking(&first, &envelope())
        .expect("ingest");
    let dir = t.close();
    let second = simple("a@fabrikam.com", "alice@contoso.com", None, "w2@x", "two");
    let copy = simple(
        "a@fabrikam.com",
        "alice@contoso.com",
        Some("bob@contoso.com"),
        "w2@x",
        "two",
    );
    let large = with_incompressible_attachment("w3@x", 100);
    // A crash after a batch was written to the log (and fsynced), before its commit was
    // durable: staged, never committed.
    {
        let archive = Archive::open(dir.path()).expect("open");
        let items = [&second, &copy, &large]
            .into_iter()
            .map(|raw| match ingest::analyze(raw, &envelope(), &policy()) {
                Ok(ingest::Analyzed::Store(item)) => *item,
                other => panic!("{other:?}"),
            })
            .collect();
        archive.stage(items).expect("stage");
    }
    // ... and the start of a frame that the crash cut short.
    let pack = dir.path().join("packs/pack-000001.dat");
    let whole = std::fs::metadata(&pack).expect("pack").len();
    let mut bytes = std::fs::read(&pack).expect("read");
    bytes.extend_from_slice(b"MJW1\x40\x00\x00\x00\x00\x00\x00\x00{\"id\":");
    std::fs::write(&pack, &bytes).expect("write");

    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    assert!(archive.needs_recovery());
    assert!(
        archive.get(2).expect("get").is_none(),
        "not filed before recovery"
    );
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    assert_eq!(
        std::fs::metadata(&pack).expect("pack").len(),
        whole,
        "the cut-short frame is cut off"
    );
    let two = archive.get(2).expect("get").expect("filed from the log");
    assert_eq!(archive.raw(&two).expect("raw"), second);
    assert_eq!(two.copies, 2, "the copy in the same batch is merged");
    assert_eq!(
        archive.copy_raw(2, 2).expect("copy").as_deref(),
        Some(copy.as_slice()),
        "and its bytes are kept, from the log"
    );
    assert!(
        two.meta
            .recipients
            .addresses()
            .any(|a| a == "bob@contoso.com")
    );
    let three = archive.get(3).expect("get").expect("filed from the log");
    assert_eq!(three.storage, Storage::File);
    assert!(archive.raw(&three).expect("raw") == large);
    let stats = archive.stats().expect("stats");
    assert_eq!((stats.messages, stats.next_uid), (3, 4));
    assert_eq!(stats.counters["duplicates"], 1);

    let fourth = simple("a@fabrikam.com", "alice@contoso.com", None, "w4@x", "four");
    let again = ingestor
        .ingest_blocking(&fourth, &envelope())
        .expect("ingest");
    assert!(matches!(again, Outcome::Stored { uid: 4, .. }), "{again:?}");
    let report = archive.verify(false, |_, _| {}).expect("verify");
    assert!(
        report.problems.is_empty() && report.orphans.is_empty(),
        "{report:?}"
    );
    drop(ingestor);
    committer.join().expect("committer");

    // Filed once: a second start has nothing left to file.
    drop(archive);
    let archive = Archive::open(dir.path()).expect("reopen");
    assert!(!archive.needs_recovery());
    assert_eq!(archive.stats().expect("stats").messages, 4);
}

/// A fresh archive with every golden fixture ingested.
fn with_every_fixture() -> TestArchive {
    let t = TestArchive::new();
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).expect("read");
            t.ingestor()
                .ingest_blocking(&raw, &envelope())
                .expect("ingest");
        }
    }
    t
}

/// Issue 11, defect 3: with its index (archive.redb) lost, the archive rebuilds it from the
/// packs with the same UIDVALIDITY, UIDs and ids, so IMAP clients need no resync and
/// `imap://…;UID=n` links keep working; the next message gets the next UID.
#[test]
fn a_rebuilt_index_keeps_uidvalidity_uids_and_ids() {
    let t = with_every_fixture();
    let before_validity = t.archive().uidvalidity();
    let listing = |archive: &Archive| -> Vec<(u32, String, String)> {
        let junk = Filter {
            junk: true,
            ..Filter::default()
        };
        let mut v: Vec<_> = [Filter::default(), junk]
            .iter()
            .flat_map(|f| archive.list(f).expect("list"))
            .map(|r| (r.uid, r.id, r.blob))
            .collect();
        v.sort();
        v
    };
    let before = listing(t.archive());
    assert!(before.len() > 10, "{before:?}");
    let dir = t.close();
    std::fs::remove_file(dir.path().join("archive.redb")).expect("lose the index");
    // A new archive's UIDVALIDITY is its creation second: let one pass, so that a rebuild
    // that made a new one would show it.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    assert_eq!(archive.uidvalidity(), before_validity, "UIDVALIDITY kept");
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    // The committer files the packs again before this one.
    let next = simple(
        "alice@contoso.com",
        "kim@fabrikam.com",
        None,
        "after-rebuild@contoso.com",
        "hello again",
    );
    let outcome = ingestor
        .ingest_blocking(&next, &envelope())
        .expect("ingest");
    let max_uid = before.iter().map(|(uid, _, _)| *uid).max().expect("uids");
    assert!(
        matches!(outcome, Outcome::Stored { uid, .. } if uid == max_uid + 1),
        "{outcome:?}"
    );
    let mut after = listing(&archive);
    after.retain(|(uid, _, _)| *uid <= max_uid);
    assert_eq!(after, before, "the same UIDs, ids and bytes");
    drop(ingestor);
    committer.join().expect("committer");
}

/// Issue 11, defect 2: one flipped byte anywhere in a pack file (a frame's magic, lengths,
/// header, bytes or check: what a rebuild reads) is reported by `verify`, every time.
#[test]
fn verify_finds_a_flipped_byte_anywhere_in_the_log() {
    let t = with_every_fixture();
    let clean = t.archive().verify(false, |_, _| {}).expect("verify");
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert!(clean.frames_checked > 10, "{}", clean.frames_checked);
    let dir = t.close();
    let pack = dir.path().join("packs").join("pack-000001.dat");
    let original = std::fs::read(&pack).expect("pack");
    let mut state = 0x5eed_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut missed = Vec::new();
    for _ in 0..40 {
        let at = usize::try_from(next() % original.len() as u64).expect("offset");
        let mut damaged = original.clone();
        damaged[at] ^= 1 << (next() % 8);
        std::fs::write(&pack, &damaged).expect("damage");
        let archive = Archive::open(dir.path()).expect("open");
        let report = archive.verify(false, |_, _| {}).expect("verify");
        if report.problems.is_empty() {
            missed.push(at);
        }
    }
    std::fs::write(&pack, &original).expect("restore");
    assert!(
        missed.is_empty(),
        "flips not found at offsets {missed:?} of {}",
        original.len()
    );
}

/// The transport headers a copy of `big` picked up on its way (a hub, Exchange's stamps).
const TRANSPORT: &str = "Received: from hub2.contoso.com by mx1.contoso.com; Fri, 20 Nov 2026 10:00:09 +0000\r\n\
    Delivered-To: bob@contoso.com\r\n\
    X-MS-Exchange-Organization-AuthAs: Anonymous\r\n\
    X-MS-Exchange-Organization-Network-Message-Id: 6b1f0f5e-5c1d-4a8e-9b57-3f2c3e1a9d42\r\n";

/// Issue 11, defect 1: copies that differ only in transport headers are one message (one
/// id, one record, the union of recipients), and every distinct copy comes back byte for
/// byte; a later copy of a 1 MiB message costs its header block, not another body; a
/// byte-identical resend adds no copy; a rebuilt index numbers the copies the same.
#[test]
fn every_distinct_copy_is_kept_byte_exact_and_costs_its_header_block() {
    let t = TestArchive::new();
    let first = with_incompressible_attachment("copies-1@contoso.com", 1024);
    let mut second = TRANSPORT.as_bytes().to_vec();
    second.extend_from_slice(&first);
    let mut third =
        b"Received: from edge.contoso.com\r\nX-Original-To: carol@contoso.com\r\n".to_vec();
    third.extend_from_slice(&first);
    let ingest = |raw: &[u8]| {
        t.ingestor()
            .ingest_blocking(raw, &envelope())
            .expect("ingest")
    };

    let Outcome::Stored { uid, id, .. } = ingest(&first) else {
        panic!("the first copy is stored");
    };
    let before = t.archive().stats().expect("stats");
    assert!(matches!(ingest(&second), Outcome::Duplicate { uid: u, .. } if u == uid));
    let after = t.archive().stats().expect("stats");
    let added = after.stored_bytes - before.stored_bytes;
    assert!(
        added > 0 && added < 64 * 1024,
        "a copy of a {} byte message took {added} more stored bytes",
        first.len()
    );
    assert!(
        after.disk_bytes - before.disk_bytes < 64 * 1024,
        "and {} more bytes on disk",
        after.disk_bytes - before.disk_bytes
    );
    // A byte-identical resend of copy 2: counted, not kept again.
    assert!(matches!(ingest(&second), Outcome::Duplicate { .. }));
    assert_eq!(
        t.archive().stats().expect("stats").stored_bytes,
        after.stored_bytes
    );
    assert!(matches!(ingest(&third), Outcome::Duplicate { .. }));
    // And the first copy again.
    assert!(matches!(ingest(&first), Outcome::Duplicate { .. }));

    let archive = t.archive();
    let stats = archive.stats().expect("stats");
    assert_eq!(stats.messages, 1, "one message");
    assert_eq!(stats.later_copies, 2, "two later copies kept");
    assert_eq!(stats.counters["duplicates"], 4);
    let record = archive.get(uid).expect("get").expect("record");
    assert_eq!(record.copies, 5, "five copies arrived");
    assert_eq!(record.id, id.as_str());
    let recipients: Vec<_> = record.meta.recipients.addresses().collect();
    for want in ["kim@fabrikam.com", "bob@contoso.com", "carol@contoso.com"] {
        assert!(recipients.contains(&want), "{want} in {recipients:?}");
    }
    let copies = archive.copies(uid).expect("copies");
    let numbers: Vec<_> = copies.iter().map(|c| (c.n, c.kept)).collect();
    use mailjournal::archive::Kept;
    assert_eq!(
        numbers,
        [
            (1, Kept::Whole),
            (2, Kept::HeaderBlock),
            (3, Kept::HeaderBlock)
        ],
        "three distinct copies"
    );
    for (n, want) in [(1, &first), (2, &second), (3, &third)] {
        let c = &copies[n as usize - 1];
        assert_eq!(c.size, want.len() as u64, "copy {n}");
        assert_eq!(c.blob, BlobHash::of(want).to_hex(), "copy {n}");
        assert_eq!(c.received_at, RECEIVED_AT);
        let raw = archive.copy_raw(uid, n).expect("copy").expect("kept");
        assert!(raw == *want, "copy {n} is byte-exact");
    }
    assert_eq!(archive.copy_raw(uid, 4).expect("copy"), None);
    assert_eq!(archive.copy_raw(uid, 0).expect("copy"), None);
    assert_eq!(archive.copy_raw(uid + 1, 1).expect("copy"), None);
    assert!(
        archive.raw(&record).expect("raw") == first,
        "IMAP's bytes: the first copy"
    );
    let report = archive.verify(false, |_, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.copies_checked, 2);

    // The index lost: rebuilt from the packs, the same copies under the same numbers.
    let dir = t.close();
    std::fs::remove_file(dir.path().join("archive.redb")).expect("lose the index");
    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    let (ingestor, committer) =
        ingest::Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    assert_eq!(archive.copies(uid).expect("copies"), copies);
    for (n, want) in [(1, &first), (2, &second), (3, &third)] {
        let raw = archive.copy_raw(uid, n).expect("copy").expect("kept");
        assert!(raw == *want, "copy {n} is byte-exact after the rebuild");
    }
    let record = archive.get(uid).expect("get").expect("record");
    assert_eq!(record.copies, 5);
    drop(ingestor);
    committer.join().expect("committer");
}

/// `verify` checks every byte a copy relies on: one flipped byte in the header block a
/// copy keeps (the last frame of the pack) is reported, naming the copy.
#[test]
fn verify_finds_a_flipped_byte_in_a_copys_header_block() {
    let t = TestArchive::new();
    let first = with_incompressible_attachment("copies-2@contoso.com", 200);
    let mut second = TRANSPORT.as_bytes().to_vec();
    second.extend_from_slice(&first);
    for raw in [&first, &second] {
        t.ingestor()
            .ingest_blocking(raw, &envelope())
            .expect("ingest");
    }
    let clean = t.archive().verify(false, |_, _| {}).expect("verify");
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let dir = t.close();
    let pack = dir.path().join("packs").join("pack-000001.dat");
    let original = std::fs::read(&pack).expect("pack");
    // The frame ends in its 16-byte check; before it, the stored header block.
    for back in [17, 18, 30] {
        let mut damaged = original.clone();
        let at = damaged.len() - back;
        damaged[at] ^= 0x04;
        std::fs::write(&pack, &damaged).expect("damage");
        let archive = Archive::open(dir.path()).expect("open");
        let report = archive.verify(false, |_, _| {}).expect("verify");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("copy 2 of message 1")),
            "flip {back} bytes before the end: {:?}",
            report.problems
        );
    }
    std::fs::write(&pack, &original).expect("restore");
    let archive = Archive::open(dir.path()).expect("open");
    assert!(
        archive
            .verify(false, |_, _| {})
            .expect("verify")
            .problems
            .is_empty()
    );
}

/// IMAP shows a message with two copies once, with the first copy's bytes (over SMTP, read
/// with async-imap).
#[tokio::test]
async fn imap_shows_a_message_with_copies_once_with_the_first_copys_bytes() {
    use futures::TryStreamExt;
    let first = simple(
        "marta@fabrikam.com",
        "alice@contoso.com",
        None,
        "imap-copies@fabrikam.com",
        "Two copies, one message.",
    );
    let mut copy = TRANSPORT.as_bytes().to_vec();
    copy.extend_from_slice(&first);
    let (_dir, server) = crate::imap::server_with(&[&first, &copy]).await;
    let archive = server.archive().expect("archive");
    assert_eq!(archive.copies(1).expect("copies").len(), 2, "both kept");
    let mut s = crate::imap::login(&server).await;
    let inbox = s.examine("INBOX").await.expect("examine");
    assert_eq!(inbox.exists, 1, "one message");
    let fetched: Vec<_> = s
        .uid_fetch("1:*", "BODY.PEEK[]")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .expect("answers");
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body(), Some(first.as_slice()), "the first copy");
    s.logout().await.expect("logout");
    server.stop().await;
}
