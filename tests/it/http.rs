//! The HTTP API and permalinks: a server started by hand on loopback over an archive with
//! the fixture directory, reached with a raw HTTP/1.1 client written here and with curl as
//! an independent one (plain, and HTTPS with a test certificate).
//!
//! Signed links: a valid token opens its one message without an account; a token that is
//! expired, tampered with or made for another message answers 403 (the request carried a
//! credential, and it was refused: asking for a password would not help, so no 401 and no
//! Basic challenge that would pop up a login dialog in the CRM user's browser).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailjournal::archive::{Account, Archive, EntryFilter, Role, StableId};
use mailjournal::auth::Logins;
use mailjournal::clock::{Clock, FixedClock};
use mailjournal::config::HttpSettings;
use mailjournal::http::{self, Context, Tokens};
use mailjournal::ingest::{Envelope, Ingestor, Matcher, Outcome};
use mailjournal::metrics::Metrics;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{policy, test_certificate};

const PASSWORD: &str = "correct horse battery";
/// The server's clock: 2033-05-18, after every message.
const NOW: i64 = 2_000_000_000;
const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

const TO_ALICE: &[u8] = b"From: Marta Buyer <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Chairs\r\n\
Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <http-1@fabrikam.com>\r\n\
\r\n\
Could you quote 40 chairs?\r\n";

const FROM_BOB: &[u8] = b"From: bob@contoso.com\r\n\
To: buyer@fabrikam.com\r\n\
Subject: Tables\r\n\
Date: Sat, 21 Nov 2026 09:00:00 +0000\r\n\
Message-ID: <http-2@contoso.com>\r\n\
\r\n\
Our table offer.\r\n";

const ALICE_REPLY: &[u8] = b"From: alice@contoso.com\r\n\
To: Marta Buyer <marta@fabrikam.com>\r\n\
Subject: Re: Chairs\r\n\
Date: Wed, 02 Dec 2026 15:30:00 +0000\r\n\
Message-ID: <http-3@contoso.com>\r\n\
In-Reply-To: <http-1@fabrikam.com>\r\n\
\r\n\
40 chairs: 4,000 EUR.\r\n";

const INTERNAL: &[u8] = b"From: alice@contoso.com\r\n\
To: carol@contoso.com\r\n\
Subject: Lunch\r\n\
Date: Thu, 03 Dec 2026 11:00:00 +0000\r\n\
Message-ID: <http-4@contoso.com>\r\n\
\r\n\
Noon?\r\n";

const SPAM: &[u8] = b"From: Marta Buyer <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Cheap watches\r\n\
Date: Fri, 20 Nov 2026 12:00:00 +0000\r\n\
Message-ID: <http-5@fabrikam.com>\r\n\
X-Spam-Flag: YES\r\n\
\r\n\
Buy now.\r\n";

/// A copy of TO_ALICE that went through one more relay: the same message.
const TO_ALICE_AGAIN: &[u8] = b"Received: from relay.fabrikam.com\r\n\
From: Marta Buyer <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Chairs\r\n\
Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <http-1@fabrikam.com>\r\n\
\r\n\
Could you quote 40 chairs?\r\n";

fn account(name: &str, role: Role, salesperson: Option<&str>) -> Account {
    crate::support::account(name, PASSWORD, role, salesperson)
}

/// An archive with the fixture directory, five messages and a duplicate, accounts `admin`,
/// `auditor`, `alice` (salesperson AS), `bob` (salesperson BM) and `exchange` (a journaling
/// source, which may not read mail), and the HTTP server on a loopback port.
struct Gateway {
    dir: tempfile::TempDir,
    archive: Arc<Archive>,
    ingestor: Option<Ingestor>,
    committer: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    clock: Arc<FixedClock>,
    tokens: Tokens,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    to_alice: StableId,
    from_bob: StableId,
    alice_reply: StableId,
    spam: StableId,
}

impl Gateway {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Arc::new(Archive::open(dir.path()).expect("open"));
        let d = crate::log::directory_fixture();
        archive
            .put_directory(d.salespeople(), d.contacts())
            .expect("directory");
        let matcher = Matcher::default();
        matcher.set(mailjournal::admin::matcher_for(d));
        let (ingestor, committer) =
            Ingestor::start_with(Arc::clone(&archive), policy(), matcher).expect("start");
        let mut ids = Vec::new();
        for raw in [
            TO_ALICE,
            FROM_BOB,
            ALICE_REPLY,
            INTERNAL,
            SPAM,
            TO_ALICE_AGAIN,
        ] {
            let envelope = Envelope {
                mail_from: None,
                received_at: 1_790_000_000,
            };
            let outcome = ingestor
                .submit(raw, &envelope)
                .expect("submit")
                .wait()
                .await
                .expect("stored");
            ids.push(match outcome {
                Outcome::Stored { id, .. } | Outcome::Duplicate { id, .. } => id,
                Outcome::Junk { id, .. } => id,
                Outcome::JunkDropped => panic!("junk is quarantined"),
            });
        }
        assert_eq!(ids[0], ids[5], "the relayed copy is a duplicate");
        for a in [
            account("admin", Role::Admin, None),
            account("auditor", Role::Auditor, None),
            account("alice", Role::Salesperson, Some("AS")),
            account("bob", Role::Salesperson, Some("BM")),
            account("exchange", Role::Source, None),
        ] {
            archive.put_account(&a).expect("account");
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let clock = Arc::new(FixedClock::new(NOW));
        let tokens = Tokens::load(dir.path()).expect("link key");
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context {
            settings: HttpSettings {
                listen: Some(addr),
                tls_listen: None,
                base_url: format!("http://{addr}"),
                link_ttl: DEFAULT_TTL,
            },
            archive: Arc::clone(&archive),
            metrics: Arc::clone(&metrics),
            logins: Arc::new(Logins::standard()),
            tokens: tokens.clone(),
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        http::spawn(listener, ctx, None, tracker.clone(), shutdown.clone());
        Gateway {
            dir,
            archive,
            ingestor: Some(ingestor),
            committer: Some(committer),
            addr,
            clock,
            tokens,
            metrics,
            shutdown,
            tracker,
            to_alice: ids[0].clone(),
            from_bob: ids[1].clone(),
            alice_reply: ids[2].clone(),
            spam: ids[4].clone(),
        }
    }

    /// A second listener on the same archive, speaking HTTPS with a certificate for
    /// `localhost`; returns its address and the certificate's PEM file.
    async fn https(&self) -> (SocketAddr, std::path::PathBuf) {
        let (settings, _pem) = test_certificate(self.dir.path());
        let tls = mailjournal::net::tls::load(&settings, self.dir.path(), "localhost")
            .expect("certificate");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ctx = Arc::new(Context {
            settings: HttpSettings {
                listen: None,
                tls_listen: Some(addr),
                base_url: format!("https://localhost:{}", addr.port()),
                link_ttl: DEFAULT_TTL,
            },
            archive: Arc::clone(&self.archive),
            metrics: Arc::clone(&self.metrics),
            logins: Arc::new(Logins::standard()),
            tokens: self.tokens.clone(),
            clock: Arc::clone(&self.clock) as Arc<dyn Clock>,
        });
        http::spawn(
            listener,
            ctx,
            Some(tls.config),
            self.tracker.clone(),
            self.shutdown.clone(),
        );
        (addr, self.dir.path().join("cert.pem"))
    }

    fn uid(&self, id: &StableId) -> u32 {
        self.archive
            .get_by_id(id)
            .expect("get")
            .expect("archived")
            .uid
    }

    async fn get(&self, target: &str, user: Option<&str>) -> Reply {
        call(self.addr, "GET", target, user.map(|u| (u, PASSWORD)), None).await
    }

    async fn post(&self, target: &str, user: &str, body: &Value) -> Reply {
        call(
            self.addr,
            "POST",
            target,
            Some((user, PASSWORD)),
            Some(body),
        )
        .await
    }

    /// Stops the server (checking that it stops promptly) and the pipeline.
    async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(15), self.tracker.wait())
            .await
            .expect("the HTTP server stops");
        self.ingestor = None;
        if let Some(c) = self.committer.take() {
            tokio::task::spawn_blocking(move || c.join())
                .await
                .expect("join")
                .expect("committer");
        }
    }
}

/// A response as the raw client read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The `error` of a JSON error reply.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("error message")
            .to_owned()
    }
}

fn basic(user: &str, password: &str) -> String {
    data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
}

/// One request over its own connection (`Connection: close`).
async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    auth: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Reply {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((user, password)) = auth {
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            basic(user, password)
        ));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    raw(addr, format!("{head}{body}").as_bytes()).await
}

/// Sends bytes as they are and reads the response until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers and closes")
        .expect("read");
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Reply {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = std::str::from_utf8(&bytes[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        assert_eq!(body.len(), len.parse::<usize>().expect("length"), "{head}");
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..eol]).expect("ASCII");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Runs curl with `args`; returns its standard output, and the status code it reports
/// with `-w '%{http_code}'` appended after a newline.
async fn curl(args: Vec<String>) -> (Vec<u8>, u16) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .args(&args)
            .args(["--write-out", "\n%{http_code}"])
            .output()
            .expect("curl is installed")
    })
    .await
    .expect("curl ran");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stdout = out.stdout;
    let newline = stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("status line");
    let code = std::str::from_utf8(&stdout[newline + 1..])
        .expect("code")
        .parse()
        .expect("numeric code");
    stdout.truncate(newline);
    (stdout, code)
}

fn date(text: &str) -> i64 {
    mailjournal::clock::parse_date(text).expect("date")
}

fn numbers(reply: &Reply) -> Vec<u64> {
    reply.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["no"].as_u64().expect("no"))
        .collect()
}

#[tokio::test]
async fn health_unknown_routes_and_wrong_methods_answer_json() {
    let g = Gateway::start().await;
    let health = g.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({ "status": "ok" }));

    for target in ["/", "/nope", "/m", "/m/", "/api/interactions/1", "/api"] {
        let r = g.get(target, Some("admin")).await;
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.error(), "not found", "{target}");
    }
    let r = call(g.addr, "POST", "/healthz", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.error(), "method not allowed");
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    let r = g
        .get("/api/interactions/1/opportunity", Some("admin"))
        .await;
    assert_eq!(r.status, 405);
    let r = call(g.addr, "DELETE", "/api/links", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    // A database that failed at the storage level (redb refuses every later write after an
    // I/O error such as a full disk) makes the gateway unhealthy: a supervisor can tell.
    g.archive
        .storage_failed(&mailjournal::archive::Error::Db(redb::Error::PreviousIo));
    let health = g.get("/healthz", None).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "failing");
    g.stop().await;
}

#[tokio::test]
async fn permalinks_with_basic_auth_show_each_account_only_what_it_may_read() {
    let g = Gateway::start().await;
    let alice_msg = format!("/m/{}", g.to_alice);

    // An administrator gets the original bytes (the first copy: duplicates merge into it).
    let r = g.get(&alice_msg, Some("admin")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, TO_ALICE, "byte-exact");
    assert_eq!(r.header("content-type"), Some("message/rfc822"));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    // Ids are case-insensitive, as everywhere else.
    let upper = format!("/m/{}", g.to_alice.as_str().to_uppercase());
    assert_eq!(g.get(&upper, Some("auditor")).await.body, TO_ALICE);

    // Alice reads her own mail, and gets for Bob's exactly what a missing message gets.
    assert_eq!(g.get(&alice_msg, Some("alice")).await.body, TO_ALICE);
    let bobs = g.get(&format!("/m/{}", g.from_bob), Some("alice")).await;
    assert_eq!(bobs.status, 404);
    let missing_id = StableId::from_message_id("nobody@nowhere", b"nothing");
    let missing = g.get(&format!("/m/{missing_id}"), Some("alice")).await;
    let garbage = g.get("/m/not-an-id", Some("alice")).await;
    for r in [&missing, &garbage] {
        assert_eq!((r.status, &r.body), (bobs.status, &bobs.body));
    }
    assert_eq!(
        g.get(&format!("/m/{}", g.from_bob), Some("bob")).await.body,
        FROM_BOB
    );
    // Quarantined junk addressed to her: only accounts that see everything read it.
    let spam = format!("/m/{}", g.spam);
    assert_eq!(g.get(&spam, Some("alice")).await.status, 404);
    assert_eq!(g.get(&spam, Some("admin")).await.body, SPAM);

    // No credentials: 401 with the challenge, whether the message exists or not.
    for target in [alice_msg.as_str(), "/m/not-an-id"] {
        let r = g.get(target, None).await;
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"mailjournal\"")
        );
        assert_eq!(r.error(), "authentication required");
    }
    g.stop().await;
}

/// Each failure from an address waits twice as long as the one before (1 s, 2 s, ...), so
/// the failures are spread over two servers, each with its own throttle.
#[tokio::test]
async fn wrong_passwords_and_unknown_accounts_are_refused_slowly() {
    let g = Gateway::start().await;
    let target = format!("/m/{}", g.to_alice);
    let started = Instant::now();
    let wrong = call(
        g.addr,
        "GET",
        &target,
        Some(("alice", "wrong password")),
        None,
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1), "delayed");
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("Basic realm=\"mailjournal\"")
    );
    assert_eq!(wrong.error(), "authentication required");
    let started = Instant::now();
    assert_eq!(g.get(&target, Some("mallory")).await.status, 401);
    assert!(started.elapsed() >= Duration::from_secs(2), "longer");
    // The right password still works afterwards (the throttle only delays).
    assert_eq!(g.get(&target, Some("alice")).await.body, TO_ALICE);
    g.stop().await;
}

#[tokio::test]
async fn accounts_that_may_not_read_mail_and_garbage_credentials_get_401() {
    let g = Gateway::start().await;
    let target = format!("/m/{}", g.to_alice);
    let r = g.get(&target, Some("exchange")).await;
    assert_eq!(r.status, 401, "a journaling source account reads nothing");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic !!!\r\n\r\n"
    );
    let r = raw(g.addr, request.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"mailjournal\"")
    );
    g.stop().await;
}

#[tokio::test]
async fn signed_links_open_their_one_message_until_they_expire() {
    let g = Gateway::start().await;
    let token = g.tokens.issue(&g.to_alice, NOW + 3600);
    let url = http::link(&format!("http://{}", g.addr), &g.to_alice, &token);
    let target = url
        .strip_prefix(&format!("http://{}", g.addr))
        .expect("same server");
    assert_eq!(target, format!("/m/{}?token={token}", g.to_alice));

    // No account needed: the raw message and its metadata.
    let r = g.get(target, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, TO_ALICE);
    assert_eq!(r.header("content-type"), Some("message/rfc822"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let meta = g
        .get(&format!("/m/{}.json?token={token}", g.to_alice), None)
        .await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.json()["id"], g.to_alice.as_str());
    // Ids are base32, case-insensitive: the id in capitals is the same message, checked in
    // its canonical form against the same tag.
    let upper = g
        .get(
            &format!("/m/{}?token={token}", g.to_alice.as_str().to_uppercase()),
            None,
        )
        .await;
    assert_eq!(upper.status, 200);
    assert_eq!(upper.body, TO_ALICE);

    // The same token for another message, a tampered token, and a token signed with
    // another key: 403, and no Basic challenge.
    let mut tampered = token.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    let foreign = Tokens::from_key(&[9; 32]).issue(&g.to_alice, NOW + 3600);
    for target in [
        format!("/m/{}?token={token}", g.from_bob),
        format!("/m/{}?token={tampered}", g.to_alice),
        format!("/m/{}?token={foreign}", g.to_alice),
        format!("/m/{}?token=", g.to_alice),
    ] {
        let r = g.get(&target, None).await;
        assert_eq!(r.status, 403, "{target}");
        assert_eq!(r.error(), "this link is not valid", "{target}");
        assert_eq!(r.header("www-authenticate"), None);
    }
    // A token opens only messages, not the API.
    let api = g
        .get(&format!("/api/interactions?token={token}"), None)
        .await;
    assert_eq!(api.status, 401);
    // Basic credentials, when given, are what counts.
    let both = call(
        g.addr,
        "GET",
        target,
        Some(("alice", "wrong password")),
        None,
    )
    .await;
    assert_eq!(both.status, 401);

    // The key is the data directory's: a second load (as the CLI does) makes the same
    // links.
    let again = Tokens::load(g.dir.path()).expect("key");
    assert_eq!(again.issue(&g.to_alice, NOW + 3600), token);

    // At its expiry the link stops working, and says why.
    g.clock.set(NOW + 3599);
    assert_eq!(g.get(target, None).await.status, 200);
    g.clock.set(NOW + 3600);
    let expired = g.get(target, None).await;
    assert_eq!(expired.status, 403);
    assert_eq!(expired.error(), "this link has expired");
    g.stop().await;
}

#[tokio::test]
async fn message_metadata_with_its_entries() {
    let g = Gateway::start().await;
    let r = g
        .get(&format!("/m/{}.json", g.to_alice), Some("alice"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    let v = r.json();
    assert_eq!(v["id"], g.to_alice.as_str());
    assert_eq!(v["uid"], g.uid(&g.to_alice));
    assert_eq!(v["direction"], "inbound");
    assert_eq!(v["subject"], "Chairs");
    assert_eq!(v["date"], "2026-11-20T10:00:00Z");
    assert_eq!(
        v["copies"]["received"], 2,
        "the relayed copy merged into it"
    );
    assert_eq!(v["copies"]["count"], 2, "and both copies are kept");
    assert_eq!(v["from"]["address"], "marta@fabrikam.com");
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(entries[0]["salesperson"], "AS");
    assert_eq!(entries[0]["contact"], "1001");
    assert_eq!(entries[0]["id"], g.to_alice.as_str());

    let internal = g
        .archive
        .list(&Default::default())
        .expect("list")
        .into_iter()
        .find(|r| r.meta.subject.as_deref() == Some("Lunch"))
        .expect("internal message");
    let r = g
        .get(&format!("/m/{}.json", internal.id), Some("auditor"))
        .await;
    assert_eq!(r.json()["entries"], json!([]), "unmatched: no entries");
    assert_eq!(
        g.get(&format!("/m/{}.json", g.from_bob), Some("alice"))
            .await
            .status,
        404
    );
    g.stop().await;
}

#[tokio::test]
async fn interactions_are_filtered_paged_and_limited_to_what_the_account_may_read() {
    let g = Gateway::start().await;
    let all: Vec<_> = g.archive.entries(&EntryFilter::default()).expect("entries");
    let all_numbers: Vec<u64> = all.iter().map(|e| e.no).collect();
    assert!(all.len() >= 3, "{all:?}");
    let alices: BTreeSet<u32> = [g.uid(&g.to_alice), g.uid(&g.alice_reply)].into();

    let r = g.get("/api/interactions", Some("auditor")).await;
    assert_eq!(r.status, 200);
    assert_eq!(numbers(&r), all_numbers);
    assert_eq!(r.json()["next_after"], Value::Null);
    let first = &r.json()["entries"][0];
    for key in [
        "no",
        "uid",
        "id",
        "date",
        "direction",
        "salesperson",
        "contact",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }

    // Filters.
    let by = |f: &dyn Fn(&mailjournal::archive::Entry) -> bool| -> Vec<u64> {
        all.iter().filter(|e| f(e)).map(|e| e.no).collect()
    };
    for (query, want) in [
        ("contact=1001", by(&|e| e.contact == "1001")),
        ("salesperson=BM", by(&|e| e.salesperson == "BM")),
        (
            "direction=outbound",
            by(&|e| e.direction.as_str() == "outbound"),
        ),
        (
            "direction=Inbound",
            by(&|e| e.direction.as_str() == "inbound"),
        ),
        ("since=2026-12-01", by(&|e| e.date >= date("2026-12-01"))),
        (
            "until=2026-11-21T00:00:00Z",
            by(&|e| e.date < date("2026-11-21")),
        ),
        (
            "contact=1001&direction=outbound&since=2026-11-01&until=2027-01-01",
            by(&|e| e.contact == "1001" && e.direction.as_str() == "outbound"),
        ),
        ("contact=9999", Vec::new()),
        ("contact=&salesperson=", all_numbers.clone()),
    ] {
        assert!(!want.is_empty() || query.contains("9999"), "{query}");
        let r = g
            .get(&format!("/api/interactions?{query}"), Some("admin"))
            .await;
        assert_eq!(numbers(&r), want, "{query}");
    }
    assert_eq!(
        numbers(
            &g.get("/api/interactions?since=2026-12-01", Some("admin"))
                .await
        ),
        vec![
            all.iter()
                .find(|e| e.uid == g.uid(&g.alice_reply))
                .expect("reply entry")
                .no
        ]
    );

    // Paging: one entry per page, following next_after to the end.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    for _ in 0..=all.len() {
        let query = match after {
            Some(a) => format!("/api/interactions?limit=1&after={a}"),
            None => "/api/interactions?limit=1".to_owned(),
        };
        let v = g.get(&query, Some("admin")).await.json();
        seen.extend(
            v["entries"]
                .as_array()
                .expect("page")
                .iter()
                .map(|e| e["no"].as_u64().expect("no")),
        );
        match v["next_after"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, all_numbers, "every entry once, in order");

    // A salesperson sees the entries of her messages only, paged as well.
    let r = g.get("/api/interactions", Some("alice")).await;
    let hers: Vec<u64> = all
        .iter()
        .filter(|e| alices.contains(&e.uid))
        .map(|e| e.no)
        .collect();
    assert_eq!(hers.len(), 2);
    assert_eq!(numbers(&r), hers);
    let page = g
        .get("/api/interactions?limit=1", Some("alice"))
        .await
        .json();
    assert_eq!(page["entries"][0]["no"], hers[0]);
    assert_eq!(page["next_after"], hers[0]);
    let page = g
        .get(
            &format!("/api/interactions?limit=1&after={}", hers[0]),
            Some("alice"),
        )
        .await
        .json();
    assert_eq!(page["entries"][0]["no"], hers[1]);
    assert_eq!(page["next_after"], Value::Null);
    assert!(
        numbers(
            &g.get("/api/interactions?salesperson=BM", Some("alice"))
                .await
        )
        .is_empty()
    );

    // Bad parameters name themselves.
    for (query, word) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("direction=sideways", "direction"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("after=-1", "after"),
    ] {
        let r = g
            .get(&format!("/api/interactions?{query}"), Some("admin"))
            .await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.error().starts_with(word), "{query}: {}", r.error());
    }
    assert_eq!(
        g.get("/api/interactions?limit=1000", Some("admin"))
            .await
            .status,
        200
    );
    assert_eq!(g.get("/api/interactions", None).await.status, 401);
    g.stop().await;
}

#[tokio::test]
async fn opportunities_are_made_from_visible_entries_by_accounts_that_may_write() {
    let g = Gateway::start().await;
    let entries = g.archive.entries(&EntryFilter::default()).expect("entries");
    let hers = entries
        .iter()
        .find(|e| e.uid == g.uid(&g.to_alice))
        .expect("alice's entry")
        .no;
    let bobs = entries
        .iter()
        .find(|e| e.uid == g.uid(&g.from_bob))
        .expect("bob's entry")
        .no;
    let path = |no: u64| format!("/api/interactions/{no}/opportunity");
    let body = json!({ "description": "  40 chairs, 4,000 EUR  " });

    let r = g.post(&path(hers), "alice", &body).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    assert_eq!(created["entry"], hers);
    assert_eq!(created["description"], "40 chairs, 4,000 EUR");
    assert_eq!(created["contact"], "1001");
    assert_eq!(created["salesperson"], "AS");
    assert_eq!(created["message"], g.to_alice.as_str());
    assert_eq!(created["created"], NOW);

    // Auditors are read-only; others' entries and unknown ones are not found.
    let r = g.post(&path(hers), "auditor", &body).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "this account is read-only");
    assert_eq!(g.post(&path(hers), "bob", &body).await.status, 404);
    assert_eq!(g.post(&path(bobs), "alice", &body).await.status, 404);
    assert_eq!(g.post(&path(999_999), "alice", &body).await.status, 404);
    assert_eq!(
        g.post("/api/interactions/abc/opportunity", "alice", &body)
            .await
            .status,
        404
    );
    // A description is required.
    for bad in [
        json!({}),
        json!({ "description": "" }),
        json!({ "description": "   " }),
        json!({ "description": 42 }),
        json!(["description"]),
    ] {
        let r = g.post(&path(hers), "alice", &bad).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = call(g.addr, "POST", &path(hers), Some(("alice", PASSWORD)), None).await;
    assert_eq!(r.status, 400, "no body");
    assert!(r.error().starts_with("description"), "{}", r.error());
    // JSON only: a form a browser could post cross-site is refused.
    let form = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {}\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n\r\n{{\"description\": \"by a form\"}}",
        path(hers),
        basic("alice", PASSWORD)
    );
    assert_eq!(raw(g.addr, form.as_bytes()).await.status, 415);
    let r = g
        .post(&path(bobs), "admin", &json!({ "description": "Tables" }))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["contact"], "1002");

    // Listed per contact, for whoever may read the message.
    let r = g
        .get("/api/contacts/1001/opportunities", Some("alice"))
        .await;
    assert_eq!(r.status, 200);
    let list = r.json()["opportunities"].clone();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0], created);
    let auditor = g
        .get("/api/contacts/1001/opportunities", Some("auditor"))
        .await;
    assert_eq!(auditor.json()["opportunities"][0], created);
    let bob = g.get("/api/contacts/1001/opportunities", Some("bob")).await;
    assert_eq!(bob.json()["opportunities"], json!([]));
    let bob = g.get("/api/contacts/1002/opportunities", Some("bob")).await;
    assert_eq!(bob.json()["opportunities"][0]["description"], "Tables");
    let none = g
        .get("/api/contacts/4711/opportunities", Some("admin"))
        .await;
    assert_eq!(none.json(), json!({ "opportunities": [] }));
    assert_eq!(
        g.get("/api/contacts/1001/opportunities", None).await.status,
        401
    );
    g.stop().await;
}

#[tokio::test]
async fn the_api_mints_links_to_messages_the_account_may_read() {
    let g = Gateway::start().await;
    let r = g
        .post("/api/links", "alice", &json!({ "id": g.to_alice.as_str() }))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let expires_at = NOW + DEFAULT_TTL.as_secs() as i64;
    assert_eq!(v["expires_at"], expires_at);
    assert_eq!(v["id"], g.to_alice.as_str());
    let url = v["url"].as_str().expect("url").to_owned();
    let token = g.tokens.issue(&g.to_alice, expires_at);
    assert_eq!(
        url,
        format!("http://{}/m/{}?token={token}", g.addr, g.to_alice)
    );
    // curl, with no credentials, follows it.
    let (body, code) = curl(vec![url]).await;
    assert_eq!(code, 200);
    assert_eq!(body, TO_ALICE);

    let r = g
        .post(
            "/api/links",
            "auditor",
            &json!({ "id": g.from_bob.as_str(), "ttl_seconds": 120 }),
        )
        .await;
    assert_eq!(r.json()["expires_at"], NOW + 120);
    // Not hers, not there, not an id, a lifetime out of range.
    assert_eq!(
        g.post("/api/links", "alice", &json!({ "id": g.from_bob.as_str() }))
            .await
            .status,
        404
    );
    let missing = StableId::from_message_id("nobody@nowhere", b"nothing");
    assert_eq!(
        g.post("/api/links", "admin", &json!({ "id": missing.as_str() }))
            .await
            .status,
        404
    );
    for bad in [
        json!({ "id": "nope" }),
        json!({}),
        json!({ "id": g.to_alice.as_str(), "ttl_seconds": 5 }),
        json!({ "id": g.to_alice.as_str(), "ttl_seconds": 400_000_000 }),
    ] {
        assert_eq!(
            g.post("/api/links", "admin", &bad).await.status,
            400,
            "{bad}"
        );
    }
    let anonymous = call(
        g.addr,
        "POST",
        "/api/links",
        None,
        Some(&json!({ "id": g.to_alice.as_str() })),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    g.stop().await;
}

#[tokio::test]
async fn metrics_in_prometheus_format() {
    let g = Gateway::start().await;
    g.metrics.ingest_latency.observe(Duration::from_millis(3));
    g.metrics.smtp_sessions.inc();
    let r = g.get("/metrics", None).await;
    assert_eq!(r.status, 200, "open to loopback peers");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).expect("UTF-8");
    for line in [
        "mailjournal_messages{direction=\"inbound\"} 1",
        "mailjournal_messages{direction=\"outbound\"} 2",
        "mailjournal_messages{direction=\"internal\"} 1",
        "mailjournal_messages{direction=\"external\"} 0",
        "mailjournal_junk_quarantined 1",
        "mailjournal_duplicates_total 1",
        "mailjournal_unmatched_messages 1",
        "mailjournal_ingest_latency_seconds_bucket{le=\"0.0025\"} 0",
        "mailjournal_ingest_latency_seconds_bucket{le=\"0.005\"} 1",
        "mailjournal_ingest_latency_seconds_bucket{le=\"+Inf\"} 1",
        "mailjournal_ingest_latency_seconds_count 1",
        "mailjournal_smtp_sessions 1",
        "mailjournal_imap_sessions 0",
        "# TYPE mailjournal_ingest_latency_seconds histogram",
        "# TYPE mailjournal_unmatched_messages gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    // Every *_total is a counter (Prometheus' naming rule): no gauge wears that suffix.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(
            !(line.ends_with(" gauge") && line.contains("_total ")),
            "{line}"
        );
    }
    assert!(text.contains("\nmailjournal_ingest_latency_seconds_sum 0.003"));
    g.stop().await;
}

#[tokio::test]
async fn curl_over_https_and_plain_http() {
    let g = Gateway::start().await;
    let (tls_addr, cert) = g.https().await;
    let port = tls_addr.port();
    let https = |path: &str| format!("https://localhost:{port}{path}");
    let tls_args = |extra: &[String]| -> Vec<String> {
        let mut args = vec![
            "--cacert".to_owned(),
            cert.display().to_string(),
            "--resolve".to_owned(),
            format!("localhost:{port}:127.0.0.1"),
        ];
        args.extend_from_slice(extra);
        args
    };
    let (body, code) = curl(tls_args(&[https("/healthz")])).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("JSON"),
        json!({ "status": "ok" })
    );
    let (body, code) = curl(tls_args(&[
        "--user".into(),
        format!("admin:{PASSWORD}"),
        https(&format!("/m/{}", g.from_bob)),
    ]))
    .await;
    assert_eq!(code, 200);
    assert_eq!(body, FROM_BOB, "byte-exact over TLS");
    let (_, code) = curl(tls_args(&[
        "--user".into(),
        "admin:wrong".into(),
        https(&format!("/m/{}", g.from_bob)),
    ]))
    .await;
    assert_eq!(code, 401);
    // A link minted over HTTPS carries the HTTPS base URL.
    let (body, code) = curl(tls_args(&[
        "--user".into(),
        format!("bob:{PASSWORD}"),
        "--json".into(),
        json!({ "id": g.from_bob.as_str() }).to_string(),
        https("/api/links"),
    ]))
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let url = serde_json::from_slice::<Value>(&body).expect("JSON")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(url.starts_with(&https("/m/")), "{url}");
    let (body, code) = curl(tls_args(&[url])).await;
    assert_eq!((code, body.as_slice()), (200, FROM_BOB));

    // Plain HTTP on loopback, with curl's own keep-alive handling of two requests.
    let plain = format!("http://{}", g.addr);
    let (body, code) = curl(vec![
        "--user".into(),
        format!("alice:{PASSWORD}"),
        format!("{plain}/m/{}.json", g.to_alice),
    ])
    .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["entries"][0]["salesperson"], "AS");
    let (_, code) = curl(vec![
        "--user".into(),
        format!("alice:{PASSWORD}"),
        "--output".into(),
        "/dev/null".into(),
        format!("{plain}/healthz"),
        "--next".into(),
        format!("{plain}/m/{}", g.from_bob),
    ])
    .await;
    assert_eq!(code, 401, "the second request has no credentials (--next)");
    g.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let g = Gateway::start().await;
    // A keep-alive connection that has done one request and now idles.
    let mut idle = TcpStream::connect(g.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("reply");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let addr = g.addr;
    let started = Instant::now();
    g.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connections do not hold up shutdown"
    );
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// An Exchange journal report of mail from Marta to Alice with a blind copy to Bob (another
/// salesperson): the Bcc is in the report's envelope, not in the message.
pub const BLIND_COPY_REPORT: &[u8] = b"From: Microsoft Exchange <postmaster@contoso.com>\r\n\
To: journal@example.com\r\n\
Subject: Benches\r\n\
Message-ID: <journal-blind-1@ex01.contoso.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"jr\"\r\n\
X-MS-Journal-Report:\r\n\
\r\n\
--jr\r\n\
Content-Type: text/plain\r\n\
\r\n\
Sender: marta@fabrikam.com\r\n\
Subject: Benches\r\n\
Message-Id: <http-blind-1@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Bcc: bob@contoso.com\r\n\
\r\n\
--jr\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Marta Buyer <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Benches\r\n\
Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n\
Message-ID: <http-blind-1@fabrikam.com>\r\n\
\r\n\
Six benches, please.\r\n\
--jr--\r\n";

/// Issue 12, access defects 1 and 2: a salesperson who may read a message sees neither
/// another salesperson's blind copy nor that salesperson's entry, and cannot make an
/// opportunity of it; the blind recipient's own salesperson and the accounts that see
/// everything do.
#[tokio::test]
async fn blind_copies_and_other_salespeoples_entries_stay_with_their_salesperson() {
    let g = Gateway::start().await;
    let ingestor = g.ingestor.as_ref().expect("running");
    let envelope = Envelope {
        mail_from: None,
        received_at: 1_790_000_000,
    };
    let id = match ingestor
        .submit(BLIND_COPY_REPORT, &envelope)
        .expect("submit")
        .wait()
        .await
        .expect("stored")
    {
        Outcome::Stored { id, .. } => id,
        other => panic!("stored, not {other:?}"),
    };
    let json = |user: &'static str| {
        let path = format!("/m/{id}.json");
        let g = &g;
        async move {
            let r = g.get(&path, Some(user)).await;
            assert_eq!(r.status, 200, "{user}");
            r.json()
        }
    };
    let recipients = |v: &Value| -> Vec<String> {
        v["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|r| r["address"].as_str().expect("address").to_owned())
            .collect()
    };
    let salespeople = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["salesperson"].as_str().expect("code").to_owned())
            .collect()
    };

    let admin = json("admin").await;
    assert_eq!(recipients(&admin), ["alice@contoso.com", "bob@contoso.com"]);
    let mut all = salespeople(&admin);
    all.sort();
    assert_eq!(all, ["AS", "BM"]);
    let alice = json("alice").await;
    assert_eq!(recipients(&alice), ["alice@contoso.com"], "{alice}");
    assert_eq!(salespeople(&alice), ["AS"], "{alice}");
    let bob = json("bob").await;
    assert_eq!(
        recipients(&bob),
        ["alice@contoso.com", "bob@contoso.com"],
        "his own blind copy"
    );
    assert_eq!(salespeople(&bob), ["BM"], "{bob}");

    // The interactions list shows each only their own entry of it.
    let entries = g.archive.entries(&EntryFilter::default()).expect("entries");
    let of = |code: &str| {
        entries
            .iter()
            .find(|e| e.id == id.as_str() && e.salesperson == code)
            .expect("entry")
            .no
    };
    let (hers, his) = (of("AS"), of("BM"));
    let listed = |v: Value| -> Vec<u64> {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["id"] == id.as_str())
            .map(|e| e["no"].as_u64().expect("no"))
            .collect()
    };
    assert_eq!(
        listed(g.get("/api/interactions", Some("alice")).await.json()),
        [hers]
    );
    assert_eq!(
        listed(g.get("/api/interactions", Some("bob")).await.json()),
        [his]
    );

    // Opportunities: only from one's own entry (or as an admin).
    let body = json!({ "description": "benches" });
    let path = |no: u64| format!("/api/interactions/{no}/opportunity");
    assert_eq!(g.post(&path(his), "alice", &body).await.status, 404);
    assert_eq!(g.post(&path(hers), "bob", &body).await.status, 404);
    assert_eq!(g.post(&path(hers), "alice", &body).await.status, 201);
    assert_eq!(g.post(&path(his), "admin", &body).await.status, 201);
    let opportunities = |user| {
        let (g, id) = (&g, &id);
        async move {
            g.get("/api/contacts/1001/opportunities", Some(user))
                .await
                .json()["opportunities"]
                .as_array()
                .expect("list")
                .iter()
                .filter(|o| o["message"] == id.as_str())
                .map(|o| o["salesperson"].as_str().expect("code").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(opportunities("alice").await, ["AS"]);
    assert_eq!(opportunities("bob").await, ["BM"]);

    // A signed link shows the message, not its blind copies or entries.
    let token = g.tokens.issue(&id, NOW + 60);
    let r = g.get(&format!("/m/{id}.json?token={token}"), None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(recipients(&v), ["alice@contoso.com"]);
    assert_eq!(v["entries"], json!([]));
    g.stop().await;
}

/// Every copy of a message kept has its own link, `/m/{id}/copies/{n}`, with the checks of
/// `/m/{id}`: whoever may read the message reads each copy byte for byte, a signed link to
/// it opens its copies too, and a foreign message, an unknown copy or a bad number is 404.
#[tokio::test]
async fn each_copy_has_a_link_with_the_access_checks_of_its_message() {
    let g = Gateway::start().await;
    let copy = |id: &StableId, n: &str| format!("/m/{id}/copies/{n}");
    for user in ["alice", "admin", "auditor"] {
        let r = g.get(&copy(&g.to_alice, "1"), Some(user)).await;
        assert_eq!((r.status, r.body.as_slice()), (200, TO_ALICE), "{user}");
        let r = g.get(&copy(&g.to_alice, "2"), Some(user)).await;
        assert_eq!(r.status, 200, "{user}");
        assert_eq!(
            r.body, TO_ALICE_AGAIN,
            "{user}: the relayed copy, byte-exact"
        );
        assert_eq!(r.header("content-type"), Some("message/rfc822"));
        assert_eq!(r.header("cache-control"), Some("private, no-store"));
    }
    // `/m/{id}` still serves the first copy.
    assert_eq!(
        g.get(&format!("/m/{}", g.to_alice), Some("alice"))
            .await
            .body,
        TO_ALICE
    );
    // Bob may not read Alice's mail: her copies are as missing as a copy that is not there.
    let foreign = g.get(&copy(&g.to_alice, "2"), Some("bob")).await;
    assert_eq!(foreign.status, 404);
    for target in [
        copy(&g.to_alice, "3"),
        copy(&g.to_alice, "0"),
        copy(&g.to_alice, "two"),
        copy(&g.from_bob, "2"),
        copy(
            &StableId::from_message_id("nobody@nowhere", b"nothing"),
            "1",
        ),
        "/m/not-an-id/copies/1".to_owned(),
    ] {
        let r = g.get(&target, Some("admin")).await;
        assert_eq!((r.status, &r.body), (404, &foreign.body), "{target}");
    }
    // Without credentials: 401, whatever the copy.
    assert_eq!(g.get(&copy(&g.to_alice, "2"), None).await.status, 401);
    assert_eq!(g.get("/m/not-an-id/copies/9", None).await.status, 401);

    // A signed link to the message opens its copies; one to another message does not.
    let token = g.tokens.issue(&g.to_alice, NOW + 3600);
    let r = g
        .get(&format!("{}?token={token}", copy(&g.to_alice, "2")), None)
        .await;
    assert_eq!((r.status, r.body.as_slice()), (200, TO_ALICE_AGAIN));
    let r = g
        .get(&format!("{}?token={token}", copy(&g.from_bob, "1")), None)
        .await;
    assert_eq!(r.status, 403);
    let r = g
        .get(&format!("{}?token={token}", copy(&g.to_alice, "3")), None)
        .await;
    assert_eq!(r.status, 404);

    // The metadata lists both copies.
    let v = g
        .get(&format!("/m/{}.json", g.to_alice), Some("alice"))
        .await
        .json();
    let list = v["copies"]["list"].as_array().expect("copies");
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[1]["copy"], 2);
    assert_eq!(list[1]["size"], TO_ALICE_AGAIN.len());
    assert_eq!(list[1]["kept"], "header-block");
    assert_eq!(
        list[1]["blob"],
        mailjournal::archive::BlobHash::of(TO_ALICE_AGAIN).to_hex()
    );
    g.stop().await;
}
