//! Engagement measured from the journal: hand-written threads (a reply, a reply-all, a
//! forward, auto-replies of several kinds, a bounce, a reply without References, a reply
//! outside the subject window, an opted-out contact) go through the real binary's `ingest`,
//! and the figures the CLI, the HTTP API and `/metrics` show are asserted exactly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailjournal::archive::{Archive, Role};
use mailjournal::auth::Logins;
use mailjournal::clock::{Clock, FixedClock};
use mailjournal::config::HttpSettings;
use mailjournal::http::{self, Context, Tokens};
use mailjournal::metrics::Metrics;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{fixtures, mailjournal};

const PASSWORD: &str = "correct horse battery";
/// 2026-12-01: after every fixture message.
const NOW: i64 = 1_796_083_200;

/// Runs the binary; returns its standard output, checking it succeeded.
fn run(args: &[&str], data: &Path) -> String {
    let out = mailjournal(args, data);
    assert!(
        out.status.success(),
        "mailjournal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The JSON lines of `engagement …`.
fn figures(args: &[&str], data: &Path) -> Vec<Value> {
    let mut all = vec!["engagement"];
    all.extend_from_slice(args);
    all.push("--json");
    run(&all, data)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// An archive with the fixture directory, then the fixture threads ingested by the binary
/// (so the figures are made at commit time).
fn archive_with_threads() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // `ingest` makes the archive; the directory comes before the threads.
    let empty = data.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    run(&["ingest", empty.to_str().expect("path")], data);
    let d = fixtures().join("directory");
    // The fixture files have bad lines on purpose: exit status 1, the good lines imported.
    let out = mailjournal(
        &[
            "directory",
            "import",
            "--salespeople",
            d.join("salespeople.csv").to_str().expect("path"),
            "--contacts",
            d.join("contacts.csv").to_str().expect("path"),
        ],
        data,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("contacts: 6 added"),
        "{out:?}"
    );
    let threads = fixtures().join("engagement");
    let summary = run(&["ingest", "--json", threads.to_str().expect("path")], data);
    assert!(summary.contains("\"stored\":16"), "{summary}");
    dir
}

/// The organization's figures of the fixture threads, as every way of reading them shows.
fn org_totals() -> Value {
    json!({
        // Offer, our answer, the forward, price list, catalog, quote 17, Bob's answer.
        "sent": 7,
        // Marta's reply-all, Pat's reply without References, Pat's late reply, Pat's question.
        "received": 4,
        // The offer (Marta, 2 h later) and the price list (Pat, by subject, 24 h later).
        "replied": 2,
        "reply_rate": 0.2857,
        // Marta's reply-all (1 h 30 min) and Pat's question (45 min).
        "answered": 2,
        "answer_rate": 0.5,
        "their_reply_median_secs": 7200,
        "their_reply_p90_secs": 86400,
        "our_reply_median_secs": 2700,
        "our_reply_p90_secs": 5400,
        // Pat's reply about shipping, Pat's late reply about the catalog.
        "awaiting_us": 2,
        // Our answer to Marta, the forward, the catalog, Bob's answer (quote 17 bounced).
        "awaiting_them": 4,
        // English (headers), Spanish (X-Autoreply), French (subject only).
        "auto_replies": 3,
        "bounces": 1,
        "bulk": 0,
        "last_interaction": "2026-11-20T10:00:00Z",
    })
}

/// (key, sent, received, replied, answered, awaiting_us, awaiting_them, auto, bounces).
type Brief = (String, u64, u64, u64, u64, u64, u64, u64, u64);

fn brief(rows: &[Value], key: &str) -> Vec<Brief> {
    rows.iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
            (
                r[key].as_str().unwrap_or("").to_owned(),
                n("sent"),
                n("received"),
                n("replied"),
                n("answered"),
                n("awaiting_us"),
                n("awaiting_them"),
                n("auto_replies"),
                n("bounces"),
            )
        })
        .collect()
}

fn subjects(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["subject"].as_str().expect("subject"))
        .collect()
}

#[test]
fn golden_threads_give_exact_figures_at_commit_time_and_after_a_rebuild() {
    let dir = archive_with_threads();
    let data = dir.path();

    let summary = figures(&[], data);
    assert_eq!(summary, vec![org_totals()]);

    let people = figures(&["salespeople"], data);
    assert_eq!(
        brief(&people, "salesperson"),
        [
            ("AS".into(), 6, 3, 2, 1, 2, 3, 2, 1),
            // Bob answered Pat; Marta's reply-all (Cc Bob) was answered by Alice, not him.
            ("BM".into(), 1, 2, 0, 1, 0, 1, 1, 0),
        ]
    );
    assert_eq!(people[0]["name"], "Alice Seller");
    assert_eq!(people[0]["reply_rate"], 0.3333);
    assert_eq!(people[1]["our_reply_median_secs"], 2700);
    assert_eq!(people[1]["answer_rate"], 0.5);

    // Kim (1004) opted out: nothing of hers is counted.
    let contacts = figures(&["contacts"], data);
    assert_eq!(
        brief(&contacts, "contact"),
        [
            ("1001".into(), 2, 1, 1, 1, 0, 1, 1, 0),
            // The offer (Cc), whose answer came from Marta; quote 17 bounced.
            ("1002".into(), 2, 0, 0, 0, 0, 0, 1, 1),
            // The forward is no reply to Marta, and waits for René.
            ("1003".into(), 1, 0, 0, 0, 0, 1, 0, 0),
            ("1010".into(), 3, 3, 1, 1, 2, 2, 1, 0),
        ]
    );
    assert_eq!(contacts[0]["their_reply_median_secs"], 7200);
    assert_eq!(contacts[3]["their_reply_median_secs"], 86400);
    assert_eq!(contacts[3]["company"], "(no company)");
    assert_eq!(
        figures(&["contacts", "--contact", "1004"], data),
        Vec::<Value>::new()
    );

    let companies = figures(&["companies"], data);
    assert_eq!(
        brief(&companies, "company"),
        [
            ("(no company)".into(), 3, 3, 1, 1, 2, 2, 1, 0),
            ("Fabrikam".into(), 5, 1, 1, 1, 0, 2, 2, 1),
        ]
    );

    // Alice and Pat only.
    let pair = figures(
        &["summary", "--salesperson", "AS", "--contact", "1010"],
        data,
    );
    assert_eq!(brief(&pair, "x"), [(String::new(), 2, 2, 1, 0, 2, 1, 0, 0)]);

    // By ISO week: the late reply is the only message of week 47.
    let weeks = figures(&["summary", "--period", "week"], data);
    assert_eq!(
        brief(&weeks, "period"),
        [
            ("2026-W45".into(), 7, 3, 2, 2, 1, 4, 3, 1),
            ("2026-W47".into(), 0, 1, 0, 0, 1, 0, 0, 0),
        ]
    );
    let days = figures(
        &[
            "summary",
            "--period",
            "day",
            "--since",
            "2026-11-05",
            "--until",
            "2026-11-06",
        ],
        data,
    );
    assert_eq!(
        brief(&days, "period"),
        [("2026-11-05".into(), 2, 1, 0, 1, 0, 1, 1, 1)]
    );

    let awaiting_us = figures(&["awaiting-us"], data);
    assert_eq!(
        subjects(&awaiting_us),
        ["RE: [EXT] Price list", "Re: Catalog"]
    );
    assert_eq!(awaiting_us[0]["contacts"], json!(["1010"]));
    // Nothing is older than 10000 days.
    assert_eq!(
        figures(&["awaiting-us", "--awaiting-after", "10000days"], data),
        Vec::<Value>::new()
    );
    assert_eq!(
        subjects(&figures(&["awaiting-them"], data)),
        [
            "Catalog",
            "Re: AW: Offer 2026",
            "Fwd: Offer 2026",
            "Re: Delivery dates?"
        ]
    );
    assert_eq!(
        subjects(&figures(&["awaiting-them", "--salesperson", "BM"], data)),
        ["Re: Delivery dates?"]
    );

    // The same figures recomputed from the archive.
    let out = run(&["engagement", "rebuild"], data);
    assert!(out.contains("15 messages"), "{out}");
    assert_eq!(figures(&[], data), vec![org_totals()]);
    assert_eq!(figures(&["contacts"], data), contacts);
    assert_eq!(figures(&["salespeople"], data), people);

    // A table on a terminal-less standard output: one line per salesperson.
    let table = run(&["engagement", "salespeople"], data);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|l| l.contains("AS Alice Seller"))
    );

    // Logging off keeps the figures as they are.
    let config = data.join("test-config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}\n[ingest]\nlogging = \"off\"\n")).expect("config");
    let out = mailjournal(&["engagement", "rebuild"], data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logging is off"),
        "{out:?}"
    );
    assert_eq!(figures(&[], data), vec![org_totals()]);
}

#[test]
fn a_contact_who_opts_out_leaves_the_figures_at_the_next_rebuild() {
    let dir = archive_with_threads();
    let data = dir.path();
    let contacts = data.join("opt-out.csv");
    std::fs::write(
        &contacts,
        "number;name;company;emails;log_email\n1010;Pat Private;;pat@example.net;no\n",
    )
    .expect("csv");
    run(
        &[
            "directory",
            "import",
            "--contacts",
            contacts.to_str().expect("path"),
        ],
        data,
    );
    // At once: Pat is shown nowhere by contact or company.
    let rows = figures(&["contacts"], data);
    assert!(rows.iter().all(|r| r["contact"] != "1010"), "{rows:?}");
    assert!(figures(&["awaiting-us"], data).is_empty());
    // After a rebuild, the organization's figures leave Pat's mail out too.
    run(&["engagement", "rebuild"], data);
    assert_eq!(
        brief(&figures(&[], data), "x"),
        [(String::new(), 4, 1, 1, 1, 0, 2, 2, 1)]
    );
}

#[test]
fn a_reply_ingested_before_the_message_it_answers_still_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let threads = fixtures().join("engagement");
    let file = |name: &str| threads.join(name).to_str().expect("path").to_owned();
    let empty = data.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    run(&["ingest", empty.to_str().expect("path")], data);
    let d = fixtures().join("directory");
    mailjournal(
        &[
            "directory",
            "import",
            "--salespeople",
            d.join("salespeople.csv").to_str().expect("path"),
            "--contacts",
            d.join("contacts.csv").to_str().expect("path"),
        ],
        data,
    );
    // Marta's reply-all first, then the offer it answers (a bulk ingest in another order).
    run(&["ingest", &file("03-reply-all.eml")], data);
    assert_eq!(figures(&[], data)[0]["replied"], 0);
    run(&["ingest", &file("01-offer.eml")], data);
    let summary = figures(&[], data);
    assert_eq!(
        brief(&summary, "x"),
        [(String::new(), 1, 1, 1, 0, 1, 0, 0, 0)]
    );
    assert_eq!(summary[0]["their_reply_median_secs"], 7200);
    assert!(figures(&["awaiting-them"], data).is_empty());
    // A rebuild, in date order, comes to the same.
    run(&["engagement", "rebuild"], data);
    assert_eq!(figures(&[], data), summary);
}

/// A curl request as `user`; returns the status and body.
async fn curl(url: String, user: Option<&str>) -> (u16, Vec<u8>) {
    let user = user.map(|u| format!("{u}:{PASSWORD}"));
    let out = tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new("curl");
        c.args(["--silent", "--show-error", "--max-time", "30"]);
        if let Some(u) = user {
            c.args(["--user", &u]);
        }
        c.arg(url).args(["--write-out", "\n%{http_code}"]);
        c.output().expect("curl is installed")
    })
    .await
    .expect("curl ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let newline = body.iter().rposition(|&b| b == b'\n').expect("status");
    let status = std::str::from_utf8(&body[newline + 1..])
        .expect("code")
        .parse()
        .expect("number");
    body.truncate(newline);
    (status, body)
}

#[tokio::test]
async fn the_api_shows_a_salesperson_her_own_figures_and_metrics_the_totals() {
    let dir = tokio::task::spawn_blocking(archive_with_threads)
        .await
        .expect("setup");
    let archive = Arc::new(Archive::open(dir.path()).expect("open"));
    for (name, role, code) in [
        ("admin", Role::Admin, None),
        ("alice", Role::Salesperson, Some("AS")),
        ("bob", Role::Salesperson, Some("BM")),
    ] {
        archive
            .put_account(&crate::support::account(name, PASSWORD, role, code))
            .expect("account");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = Arc::new(Context {
        settings: HttpSettings {
            listen: Some(addr),
            tls_listen: None,
            base_url: format!("http://{addr}"),
            link_ttl: Duration::from_secs(3600),
        },
        archive: Arc::clone(&archive),
        metrics: Arc::new(Metrics::default()),
        logins: Arc::new(Logins::standard()),
        tokens: Tokens::load(dir.path()).expect("link key"),
        clock: Arc::new(FixedClock::new(NOW)) as Arc<dyn Clock>,
    });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    http::spawn(listener, ctx, None, tracker.clone(), shutdown.clone());
    let url = |path: &str| format!("http://{addr}{path}");
    let get = |path: &str, user: Option<&'static str>| curl(url(path), user);
    let body = |b: &[u8]| -> Value { serde_json::from_slice(b).expect("JSON") };

    let (status, _) = get("/api/engagement/summary", None).await;
    assert_eq!(status, 401);
    let (status, b) = get("/api/engagement/summary", Some("admin")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body(&b),
        json!({ "rows": [org_totals()], "total": 1, "next_offset": null })
    );

    // Alice sees her own figures as the summary, and only her row among salespeople.
    let (_, b) = get("/api/engagement/summary", Some("alice")).await;
    let rows = body(&b)["rows"].as_array().expect("rows").clone();
    assert_eq!(brief(&rows, "x"), [(String::new(), 6, 3, 2, 1, 2, 3, 2, 1)]);
    let (_, b) = get("/api/engagement/salespeople", Some("alice")).await;
    let rows = body(&b)["rows"].as_array().expect("rows").clone();
    assert_eq!(
        brief(&rows, "salesperson"),
        [("AS".into(), 6, 3, 2, 1, 2, 3, 2, 1)]
    );
    let (status, b) = get("/api/engagement/summary?salesperson=BM", Some("alice")).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&b));
    // Pat through Bob's eyes: his question and answer only, none of Alice's mail with Pat.
    let (_, b) = get("/api/engagement/contacts", Some("bob")).await;
    let rows = body(&b)["rows"].as_array().expect("rows").clone();
    assert_eq!(
        brief(&rows, "contact"),
        [
            ("1001".into(), 0, 1, 0, 0, 0, 0, 0, 0),
            ("1010".into(), 1, 1, 0, 1, 0, 1, 1, 0),
        ]
    );
    let (_, b) = get("/api/engagement/awaiting-them", Some("bob")).await;
    let rows = body(&b)["rows"].as_array().expect("rows").clone();
    assert_eq!(subjects(&rows), ["Re: Delivery dates?"]);

    // Paged.
    let (_, b) = get("/api/engagement/awaiting-them?limit=3", Some("admin")).await;
    let page = body(&b);
    assert_eq!(
        (page["total"].clone(), page["next_offset"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(3));
    let (_, b) = get(
        "/api/engagement/awaiting-them?limit=3&offset=3",
        Some("admin"),
    )
    .await;
    let page = body(&b);
    assert_eq!(
        subjects(page["rows"].as_array().expect("rows")),
        ["Re: Delivery dates?"]
    );
    assert_eq!(page["next_offset"], Value::Null);

    // Bad requests say what is wrong, and nothing about the inside.
    let (status, b) = get("/api/engagement/summary?period=year", Some("admin")).await;
    assert_eq!(status, 400);
    assert_eq!(body(&b)["error"], "period: one of day, week, month");
    let (status, _) = get("/api/engagement/everything", Some("admin")).await;
    assert_eq!(status, 404);

    let (status, b) = get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(b).expect("UTF-8");
    for line in [
        "mailjournal_engagement_messages{kind=\"sent\"} 7",
        "mailjournal_engagement_messages{kind=\"received\"} 4",
        "mailjournal_engagement_messages{kind=\"replied\"} 2",
        "mailjournal_engagement_messages{kind=\"auto_reply\"} 3",
        "mailjournal_engagement_messages{kind=\"bounce\"} 1",
        "mailjournal_engagement_reply_rate 0.2857",
        "mailjournal_engagement_response_seconds{side=\"them\",quantile=\"0.9\"} 86400",
        "mailjournal_engagement_response_seconds{side=\"us\",quantile=\"0.5\"} 2700",
        "mailjournal_engagement_awaiting{side=\"us\"} 2",
        "mailjournal_engagement_awaiting{side=\"them\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
