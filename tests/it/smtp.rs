//! The SMTP receiver: real clients (lettre, Python's smtplib) against the listeners, and
//! `C:`/`S:` transcripts over an in-memory stream for every error reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope as LettreEnvelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mailjournal::archive::{Archive, Filter, Role};
use mailjournal::auth::Logins;
use mailjournal::clock::SystemClock;
use mailjournal::config::{Logging, Settings};
use mailjournal::runtime::LoggingSwitch;
use mailjournal::server::Server;
use mailjournal::smtp::Context;
use mailjournal::smtp::session::Session;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::support::{TestArchive, server_settings, test_certificate};

const MESSAGE: &[u8] = b"From: Marta <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Order 118\r\n\
Message-ID: <smtp-1@fabrikam.com>\r\n\
Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
\r\n\
Lines that start with a dot must survive dot-stuffing:\r\n\
.\r\n\
..two dots\r\n\
.one dot\r\n\
last line\r\n";

fn without_last_crlf(message: &[u8]) -> &[u8] {
    message.strip_suffix(b"\r\n").expect("ends with CRLF")
}

fn envelope() -> LettreEnvelope {
    LettreEnvelope::new(
        Some("marta@fabrikam.com".parse().expect("address")),
        vec!["journal@contoso.com".parse().expect("address")],
    )
    .expect("envelope")
}

async fn start(settings: &Settings) -> Server {
    Server::start(settings, Arc::new(SystemClock))
        .await
        .expect("server starts")
}

/// The archive's content after the server stopped: every record with its raw bytes.
fn archived(data_dir: &std::path::Path) -> Vec<(mailjournal::archive::Record, Vec<u8>)> {
    let archive = Archive::open(data_dir).expect("open archive");
    let mut filter = Filter::default();
    let mut records = archive.list(&filter).expect("list");
    filter.junk = true;
    records.extend(archive.list(&filter).expect("list junk"));
    records
        .into_iter()
        .map(|r| {
            let raw = archive.raw(&r).expect("raw");
            (r, raw)
        })
        .collect()
}

fn plain_transport(addr: SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

fn tls_parameters(cert_pem: &str) -> TlsParameters {
    TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .build_rustls()
        .expect("tls parameters")
}

#[tokio::test]
async fn lettre_plain_message_is_archived_byte_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&server_settings(dir.path())).await;
    let transport = plain_transport(server.smtp_addr.expect("smtp listener"));
    // lettre ends DATA with CRLF.CRLF whatever the content, so the content it transmits is
    // what it is given plus CRLF: give it the message without its last CRLF.
    let response = transport
        .send_raw(&envelope(), without_last_crlf(MESSAGE))
        .await
        .expect("accepted");
    assert_eq!(u16::from(response.code()), 250);
    let reply: String = response.message().collect::<Vec<_>>().join(" ");
    server.stop().await;

    let stored = archived(dir.path());
    assert_eq!(stored.len(), 1);
    let (record, raw) = &stored[0];
    assert_eq!(
        raw.as_slice(),
        MESSAGE,
        "byte-exact after dot-stuffing both ways"
    );
    assert_eq!(
        reply,
        format!("2.0.0 OK {}", record.id),
        "the 250 names the stable id"
    );
    assert_eq!(record.meta.direction.as_str(), "inbound");
    assert!(
        record
            .meta
            .recipients
            .addresses()
            .all(|a| a != "journal@contoso.com"),
        "the journal address is not a recipient of record"
    );
}

#[tokio::test]
async fn lettre_over_starttls_and_implicit_tls_with_an_rcgen_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    let mut settings = server_settings(dir.path());
    let (tls, cert_pem) = test_certificate(certs.path());
    settings.tls = tls;
    let server = start(&settings).await;

    let addr = server.smtp_addr.expect("smtp");
    let starttls = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .tls(Tls::Required(tls_parameters(&cert_pem)))
        .build();
    let first = MESSAGE.to_vec();
    starttls
        .send_raw(&envelope(), without_last_crlf(&first))
        .await
        .expect("accepted over STARTTLS");

    let addr = server.smtps_addr.expect("smtps");
    let wrapper = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .tls(Tls::Wrapper(tls_parameters(&cert_pem)))
        .build();
    let second = String::from_utf8_lossy(MESSAGE)
        .replace("smtp-1@", "smtp-2@")
        .into_bytes();
    wrapper
        .send_raw(&envelope(), without_last_crlf(&second))
        .await
        .expect("accepted over implicit TLS");
    server.stop().await;

    let raws: Vec<Vec<u8>> = archived(dir.path()).into_iter().map(|(_, r)| r).collect();
    assert_eq!(raws, [first, second]);
}

#[tokio::test]
async fn sources_outside_the_allow_list_must_authenticate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = server_settings(dir.path());
    settings.smtp.allow_networks.clear();
    let server = start(&settings).await;
    server
        .archive()
        .expect("archive")
        .put_account(&crate::support::account(
            "exchange",
            "s3cret pass",
            Role::Source,
            None,
        ))
        .expect("account");
    let addr = server.smtp_addr.expect("smtp");

    let anonymous = plain_transport(addr);
    let e = anonymous
        .send_raw(&envelope(), MESSAGE)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("5.7.1"), "{e}");

    for (mechanism, password, ok) in [
        (Mechanism::Plain, "s3cret pass", true),
        (Mechanism::Login, "s3cret pass", true),
        (Mechanism::Plain, "wrong", false),
    ] {
        let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(addr.port())
            .credentials(Credentials::new("exchange".into(), password.into()))
            .authentication(vec![mechanism])
            .build();
        let result = t.send_raw(&envelope(), MESSAGE).await;
        assert_eq!(result.is_ok(), ok, "{mechanism:?} {password}: {result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("5.7.8"), "{e}");
        }
    }
    server.stop().await;
    let stored = archived(dir.path());
    assert_eq!(stored.len(), 1, "two sends of one message: one record");
    assert_eq!(stored[0].0.copies, 2);
}

/// Runs a Python script (the independent client) off the async workers.
async fn python(script: String) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs")
}

/// Issue 12: TLS 1.2 and 1.3 only, and only AEAD suites with forward secrecy, checked with
/// OpenSSL (Python's ssl) as the client, which is told to offer what we refuse.
#[tokio::test]
async fn tls_refuses_old_protocols_and_weak_suites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&server_settings(dir.path())).await;
    let addr = server.smtps_addr.expect("smtps");
    let script = format!(
        r#"
import socket, ssl
def attempt(name, maximum=None, minimum=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    try:
        with socket.create_connection(("127.0.0.1", {port}), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                print(name, "accepted", tls.version(), tls.cipher()[0])
    except ssl.SSLError as e:
        print(name, "refused", e.reason)
V = ssl.TLSVersion
attempt("tls1.0", maximum=V.TLSv1, minimum=V.TLSv1, ciphers="DEFAULT:@SECLEVEL=0")
attempt("tls1.1", maximum=V.TLSv1_1, minimum=V.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
attempt("cbc", maximum=V.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0")
attempt("static-rsa", maximum=V.TLSv1_2, ciphers="AES128-GCM-SHA256:AES256-SHA256:@SECLEVEL=0")
attempt("tls1.2", maximum=V.TLSv1_2, minimum=V.TLSv1_2)
attempt("tls1.3", minimum=V.TLSv1_3)
"#,
        port = addr.port()
    );
    let out = python(script).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once(' ')).collect();
    for old in ["tls1.0", "tls1.1", "cbc", "static-rsa"] {
        // Refused by the server (an alert), not by the client's own configuration.
        let got = lines.get(old).copied().unwrap_or("");
        assert!(
            got.starts_with("refused") && got.to_ascii_uppercase().contains("ALERT"),
            "{old}: {got}\n{text}"
        );
    }
    assert!(
        lines
            .get("tls1.2")
            .is_some_and(|l| l.starts_with("accepted TLSv1.2 ECDHE-")),
        "{text}"
    );
    assert!(
        lines
            .get("tls1.3")
            .is_some_and(|l| l.starts_with("accepted TLSv1.3")),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn python_smtplib_is_an_independent_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&server_settings(dir.path())).await;
    let addr = server.smtp_addr.expect("smtp");
    let script = format!(
        r#"
import smtplib, ssl, sys
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
code, text = s.ehlo("python.test")
assert code == 250 and b"STARTTLS" in text and b"CHUNKING" in text, text
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
code, text = s.ehlo("python.test")
assert b"STARTTLS" not in text, text
msg = b"From: kim@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: from python\r\nMessage-ID: <py-1@fabrikam.com>\r\n\r\n.leading dot\r\nbody\r\n"
refused = s.sendmail("kim@fabrikam.com", ["journal@contoso.com", "nobody@contoso.com"], msg)
assert list(refused) == ["nobody@contoso.com"] and refused["nobody@contoso.com"][0] == 550, refused
print(s.noop()[0], s.verify("x")[0])
s.quit()
"#,
        port = addr.port()
    );
    let out = python(script).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "250 252");
    server.stop().await;
    let stored = archived(dir.path());
    assert_eq!(stored.len(), 1);
    assert!(stored[0].1.ends_with(b"\r\n.leading dot\r\nbody\r\n"));
}

#[tokio::test]
async fn over_the_connection_limits_clients_get_421() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = server_settings(dir.path());
    settings.smtp.max_connections = 1;
    settings.smtp.max_connections_per_minute = 3;
    // The per-minute limit is for strangers: take loopback out of the journaling sources.
    settings.smtp.allow_networks.clear();
    let server = start(&settings).await;
    let addr = server.smtp_addr.expect("smtp");
    let greeting = |mut s: tokio::net::TcpStream| async move {
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let (first, text) =
        greeting(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    assert!(text.starts_with("220 mx.test ESMTP"), "{text}");
    let (_, text) = greeting(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    assert_eq!(text, "421 4.7.0 Too many connections, try again later\r\n");
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, text) = greeting(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    assert!(text.starts_with("220 "), "a freed slot is reusable: {text}");
    let (_, text) = greeting(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    assert_eq!(
        text,
        "421 4.7.0 Too many connections from your address, try again later\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn strangers_leave_the_reserved_slots_to_the_journaling_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = server_settings(dir.path());
    // Five slots: one kept for the journaling source (127.0.0.1), and a stranger may hold
    // one at most (a tenth, at least one).
    settings.smtp.max_connections = 5;
    settings.smtp.allow_networks = vec!["127.0.0.1/32".parse().expect("net")];
    let server = start(&settings).await;
    let addr = server.smtp_addr.expect("smtp");
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(SocketAddr::new(ip, 0)).expect("bind");
            let mut s = socket.connect(addr).await.expect("connect");
            let mut buf = vec![0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("reply in time")
                .expect("read");
            (s, String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    };
    let mut held = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let (s, text) = from(ip).await;
        assert!(text.starts_with("220 "), "{ip}: {text}");
        held.push(s);
        if held.len() == 1 {
            let (_, text) = from(ip).await;
            assert!(
                text.contains("from your address"),
                "one slot per stranger: {text}"
            );
        }
    }
    let (_, text) = from("127.0.0.6").await;
    assert!(text.starts_with("421 4.7.0 Too many connections"), "{text}");
    let (_source, text) = from("127.0.0.1").await;
    assert!(
        text.starts_with("220 "),
        "the journaling source still gets in: {text}"
    );
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn journaling_sources_are_not_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = server_settings(dir.path());
    settings.smtp.max_connections_per_minute = 2;
    let server = start(&settings).await;
    let addr = server.smtp_addr.expect("smtp");
    for _ in 0..5 {
        let mut c = Client::connect(addr).await;
        c.expect("220 mx.test").await;
        c.send("QUIT\r\n").await;
        c.expect("221").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_second_gateway_on_the_same_archive_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = server_settings(dir.path());
    let server = start(&settings).await;
    let Err(e) = Server::start(&settings, Arc::new(SystemClock)).await else {
        panic!("two servers on one archive");
    };
    assert!(
        e.to_string()
            .contains("in use by another mailjournal process"),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_message_in_progress_finish_and_says_421_to_idle_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&server_settings(dir.path())).await;
    let addr = server.smtp_addr.expect("smtp");
    let mut idle = Client::connect(addr).await;
    idle.expect("220 ").await;
    let mut busy = Client::connect(addr).await;
    busy.expect("220 ").await;
    busy.send("EHLO busy.test\r\nMAIL FROM:<marta@fabrikam.com>\r\nRCPT TO:<journal@contoso.com>\r\nDATA\r\n")
        .await;
    busy.expect_reply("250").await;
    busy.expect("250 2.1.0").await;
    busy.expect("250 2.1.5").await;
    busy.expect("354 ").await;
    busy.send("Subject: half\r\n\r\nfirst half\r\n").await;

    let stopping = tokio::spawn(server.stop());
    idle.expect("421 4.3.2").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    busy.send("second half\r\n.\r\n").await;
    busy.expect("250 2.0.0 OK ").await;
    busy.send("QUIT\r\n").await;
    stopping.await.expect("stopped");
    assert_eq!(archived(dir.path()).len(), 1);
}

// ---- transcripts -----------------------------------------------------------------------

/// A client for transcripts: send bytes, expect reply lines.
struct Client<S> {
    reader: BufReader<tokio::io::ReadHalf<S>>,
    writer: tokio::io::WriteHalf<S>,
}

impl Client<tokio::net::TcpStream> {
    async fn connect(addr: SocketAddr) -> Self {
        Self::new(tokio::net::TcpStream::connect(addr).await.expect("connect"))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite> Client<S> {
    fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.expect("write");
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply in time")
            .expect("read");
        line
    }

    /// The next line starts with `prefix`.
    async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(line.starts_with(prefix), "want {prefix:?}, got {line:?}");
        line
    }

    /// A whole (possibly multi-line) reply with this code; returns its lines.
    async fn expect_reply(&mut self, code: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            assert!(line.starts_with(code), "want {code}, got {line:?}");
            let last = line.as_bytes().get(3) == Some(&b' ');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The connection is closed (EOF).
    async fn expect_closed(&mut self) {
        let line = self.line().await;
        assert_eq!(line, "", "expected the connection to close");
    }
}

/// A session over an in-memory stream, from `peer`, on `t`'s archive.
struct Harness {
    archive: TestArchive,
    logging: Arc<LoggingSwitch>,
}

impl Harness {
    fn new() -> Self {
        Self {
            archive: TestArchive::new(),
            logging: Arc::new(LoggingSwitch::new(Logging::On)),
        }
    }

    fn context(&self, adjust: impl FnOnce(&mut Context)) -> Arc<Context> {
        let settings = server_settings(self.archive.dir.path());
        let mut ctx = Context {
            settings: settings.smtp,
            max_message_size: 4096,
            ingestor: self.archive.ingestor().clone(),
            tls: None,
            logging: Arc::clone(&self.logging),
            logins: Arc::new(Logins::standard()),
            clock: Arc::new(SystemClock),
            data_budget: Arc::new(Semaphore::new(1024 * 1024)),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            metrics: Arc::default(),
        };
        adjust(&mut ctx);
        Arc::new(ctx)
    }

    fn connect(&self, ctx: Arc<Context>, peer: &str) -> Client<DuplexStream> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = peer.parse().expect("peer");
        tokio::spawn(Session::new(ctx, server, peer).run(false));
        Client::new(client)
    }

    /// Plays `script`: `C: ` lines are sent (with CRLF), `S: ` lines are expected as
    /// prefixes of the next reply line.
    async fn play(&self, client: &mut Client<DuplexStream>, script: &str) {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(c) = line.strip_prefix("C: ") {
                client.send(&format!("{c}\r\n")).await;
            } else if line == "C:" {
                client.send("\r\n").await;
            } else if let Some(s) = line.strip_prefix("S: ") {
                client.expect(s).await;
            } else if line == "S:" {
                client.expect_closed().await;
            } else {
                panic!("bad transcript line {line:?}");
            }
        }
    }

    /// The greeting, then EHLO and its whole reply.
    async fn ehlo(&self, client: &mut Client<DuplexStream>) {
        self.play(
            client,
            "S: 220
             C: EHLO x.test",
        )
        .await;
        client.expect_reply("250").await;
    }

    fn stored(&self) -> usize {
        self.archive
            .archive()
            .list(&Filter::default())
            .expect("list")
            .len()
    }
}

const LOOPBACK: &str = "127.0.0.1:40000";
/// A transcript from the greeting to the `354` of DATA.
const UP_TO_DATA: &str = "S: 220
     C: HELO x.test
     S: 250
     C: MAIL FROM:<a@fabrikam.com>
     S: 250
     C: RCPT TO:<journal@contoso.com>
     S: 250
     C: DATA
     S: 354";
const OUTSIDE: &str = "203.0.113.9:40000";

#[tokio::test]
async fn transcript_a_journal_delivery_with_pipelining() {
    let h = Harness::new();
    let mut c = h.connect(h.context(|_| {}), LOOPBACK);
    c.expect("220 mx.test ESMTP").await;
    c.send("EHLO exchange.contoso.com\r\n").await;
    let ehlo = c.expect_reply("250").await.concat();
    for capability in [
        "PIPELINING",
        "SIZE 4096",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
        "HELP",
    ] {
        assert!(ehlo.contains(capability), "{capability} missing: {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured: {ehlo}");
    // One write, many commands: the replies come in order.
    c.send("MAIL FROM:<marta@fabrikam.com> SIZE=200 BODY=8BITMIME\r\nRCPT TO:<JOURNAL@contoso.com>\r\nRCPT TO:<journal@contoso.com>\r\nDATA\r\n")
        .await;
    h.play(
        &mut c,
        "S: 250 2.1.0 OK
         S: 250 2.1.5 OK
         S: 250 2.1.5 OK
         S: 354 ",
    )
    .await;
    c.send("From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: café\r\n\r\n..x\r\n.\r\nNOOP\r\n")
        .await;
    h.play(
        &mut c,
        "S: 250 2.0.0 OK
         S: 250 2.0.0 OK
         C: VRFY alice
         S: 252 2.5.0
         C: HELP
         S: 214 2.0.0
         C: RSET
         S: 250 2.0.0 OK
         C: QUIT
         S: 221 2.0.0 Bye
         S:",
    )
    .await;
    assert_eq!(h.stored(), 1);
    let r = h.archive.archive().get(1).expect("get").expect("record");
    let raw = h.archive.archive().raw(&r).expect("raw");
    assert!(raw.ends_with(b"\r\n\r\n.x\r\n"), "dot unstuffed: {raw:?}");
}

#[tokio::test]
async fn transcript_bdat_chunks() {
    let h = Harness::new();
    let mut c = h.connect(h.context(|_| {}), LOOPBACK);
    let part1 = "From: a@fabrikam.com\r\nTo: alice@contoso.com\r\n";
    let part2 = "Subject: chunked\r\n\r\n.not stuffed in BDAT\r\n";
    h.ehlo(&mut c).await;
    c.send(&format!(
        "MAIL FROM:<a@fabrikam.com>\r\nRCPT TO:<journal@contoso.com>\r\nBDAT {}\r\n{part1}BDAT {} LAST\r\n{part2}",
        part1.len(),
        part2.len()
    ))
    .await;
    h.play(
        &mut c,
        &format!(
            "S: 250 2.1.0
             S: 250 2.1.5
             S: 250 2.0.0 {} octets received
             S: 250 2.0.0 OK ",
            part1.len()
        ),
    )
    .await;
    let r = h.archive.archive().get(1).expect("get").expect("record");
    let raw = h.archive.archive().raw(&r).expect("raw");
    assert_eq!(raw, format!("{part1}{part2}").into_bytes());
    // BDAT without a transaction: the chunk is read and dropped, then refused.
    c.send("BDAT 5 LAST\r\nhello").await;
    c.expect("503 5.5.1").await;
    c.send("NOOP\r\n").await;
    c.expect("250 2.0.0").await;
}

#[tokio::test]
async fn transcript_sequence_and_syntax_errors_then_the_session_goes_on() {
    let h = Harness::new();
    let mut c = h.connect(h.context(|_| {}), LOOPBACK);
    let long = "x".repeat(5000);
    h.play(
        &mut c,
        &format!(
            "S: 220
             C: MAIL FROM:<a@fabrikam.com>
             S: 503 5.5.1 Send EHLO or HELO first
             C: HELO x.test
             S: 250 mx.test
             C: RCPT TO:<journal@contoso.com>
             S: 503 5.5.1 Send MAIL FROM first
             C: DATA
             S: 503 5.5.1
             C: FROB
             S: 500 5.5.2 Syntax error, command unrecognized
             C: MAIL FROM:<not an address
             S: 501 5.1.7 Bad sender address syntax
             C: MAIL FROM:<a@fabrikam.com>
             S: 250 2.1.0
             C: MAIL FROM:<b@fabrikam.com>
             S: 503 5.5.1 Nested MAIL command
             C: DATA
             S: 554 5.5.1 No valid recipients
             C: RCPT TO:<alice@contoso.com>
             S: 550 5.1.1 No such recipient here
             C: RCPT TO:<x@elsewhere.example>
             S: 550 5.1.1 No such recipient here
             C: NOOP {long}
             S: 500 5.5.2 Line too long
             C: EXPN staff
             S: 502 5.5.1
             C: NOOP
             S: 250 2.0.0 OK"
        ),
    )
    .await;
}

#[tokio::test]
async fn transcript_limits_size_and_recipients() {
    let h = Harness::new();
    let ctx = h.context(|ctx| {
        ctx.settings.max_recipients = 2;
        ctx.settings.journal_addresses = vec![
            "j1@contoso.com".into(),
            "j2@contoso.com".into(),
            "j3@contoso.com".into(),
        ];
    });
    let mut c = h.connect(ctx, LOOPBACK);
    h.play(
        &mut c,
        "S: 220
         C: HELO x.test
         S: 250
         C: MAIL FROM:<a@fabrikam.com> SIZE=999999
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         C: MAIL FROM:<a@fabrikam.com>
         S: 250 2.1.0
         C: RCPT TO:<j1@contoso.com>
         S: 250 2.1.5
         C: RCPT TO:<j2@contoso.com>
         S: 250 2.1.5
         C: RCPT TO:<j3@contoso.com>
         S: 452 4.5.3 Too many recipients
         C: DATA
         S: 354",
    )
    .await;
    // More data than SIZE allows: all of it is read, none kept, then 552.
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(100).repeat(60));
    c.send(&format!("{big}.\r\n")).await;
    c.expect("552 5.3.4").await;
    c.send("NOOP\r\n").await;
    c.expect("250 2.0.0 OK").await;
    assert_eq!(h.stored(), 0);
}

#[tokio::test]
async fn transcript_outside_sources_are_refused_and_may_not_auth_in_the_clear() {
    let h = Harness::new();
    let mut c = h.connect(h.context(|_| {}), OUTSIDE);
    c.expect("220").await;
    c.send("EHLO outside.test\r\n").await;
    let ehlo = c.expect_reply("250").await.concat();
    assert!(
        !ehlo.contains("AUTH"),
        "no AUTH offered in the clear: {ehlo}"
    );
    h.play(
        &mut c,
        "C: AUTH PLAIN AGV4Y2hhbmdlAHMzY3JldA==
         S: 538 5.7.11 Encryption required
         C: MAIL FROM:<a@fabrikam.com>
         S: 550 5.7.1 Not authorized to send journal mail here
         C: QUIT
         S: 221",
    )
    .await;
}

#[tokio::test]
async fn transcript_auth_failures_are_delayed_and_end_the_session() {
    let h = Harness::new();
    h.archive
        .archive()
        .put_account(&crate::support::account(
            "exchange",
            "right",
            Role::Source,
            None,
        ))
        .expect("account");
    let mut c = h.connect(
        h.context(|ctx| ctx.settings.allow_networks.clear()),
        LOOPBACK,
    );
    // "\0exchange\0wrong" and "\0exchange\0right" in base64.
    let started = std::time::Instant::now();
    h.ehlo(&mut c).await;
    h.play(
        &mut c,
        "C: MAIL FROM:<a@fabrikam.com>
         S: 550 5.7.1
         C: AUTH PLAIN AGV4Y2hhbmdlAHdyb25n
         S: 535 5.7.8 Authentication credentials invalid
         C: AUTH LOGIN
         S: 334 VXNlcm5hbWU6
         C: ZXhjaGFuZ2U=
         S: 334 UGFzc3dvcmQ6
         C: cmlnaHQ=
         S: 235 2.7.0 Authentication successful
         C: AUTH PLAIN AGV4Y2hhbmdlAHJpZ2h0
         S: 503 5.5.1 Already authenticated
         C: MAIL FROM:<a@fabrikam.com>
         S: 250 2.1.0",
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "a failed login is answered slowly"
    );
    let mut c = h.connect(
        h.context(|ctx| ctx.settings.allow_networks.clear()),
        LOOPBACK,
    );
    h.play(
        &mut c,
        "S: 220
         C: HELO x.test
         S: 250
         C: AUTH PLAIN AGV4Y2hhbmdlAHdyb25n
         S: 535 5.7.8
         C: AUTH PLAIN AGV4Y2hhbmdlAHdyb25n
         S: 535 5.7.8
         C: AUTH PLAIN *
         S: 501 5.0.0 Authentication cancelled
         C: AUTH PLAIN AGV4Y2hhbmdlAHdyb25n
         S: 421 4.7.0 Too many failed attempts
         S:",
    )
    .await;
}

#[tokio::test]
async fn transcript_idle_clients_time_out_with_421() {
    let h = Harness::new();
    let ctx = h.context(|ctx| ctx.settings.command_timeout = Duration::from_secs(1));
    let mut c = h.connect(ctx, LOOPBACK);
    h.play(
        &mut c,
        "S: 220
         C: HELO x.test
         S: 250
         S: 421 4.4.2 mx.test Timeout, closing connection
         S:",
    )
    .await;
}

#[tokio::test]
async fn transcript_logging_switch_paused_off_on() {
    let h = Harness::new();
    let ctx = h.context(|_| {});
    let message = "C: From: a@fabrikam.com
                   C: To: alice@contoso.com
                   C: Message-ID: <switch@fabrikam.com>
                   C:
                   C: hello
                   C: .";
    h.logging.set(Logging::Paused);
    let mut c = h.connect(Arc::clone(&ctx), LOOPBACK);
    h.play(
        &mut c,
        "S: 220
         C: HELO x.test
         S: 250
         C: MAIL FROM:<a@fabrikam.com>
         S: 451 4.3.2 Journaling is paused, try again later",
    )
    .await;
    h.logging.set(Logging::Off);
    h.play(
        &mut c,
        &format!(
            "C: MAIL FROM:<a@fabrikam.com>
             S: 250 2.1.0
             C: RCPT TO:<journal@contoso.com>
             S: 250 2.1.5
             C: DATA
             S: 354
             {message}
             S: 250 2.0.0 OK, not logged"
        ),
    )
    .await;
    assert_eq!(h.stored(), 0, "off archives nothing");
    h.logging.set(Logging::On);
    h.play(
        &mut c,
        &format!(
            "C: MAIL FROM:<a@fabrikam.com>
             S: 250 2.1.0
             C: RCPT TO:<journal@contoso.com>
             S: 250 2.1.5
             C: DATA
             S: 354
             {message}
             S: 250 2.0.0 OK "
        ),
    )
    .await;
    assert_eq!(h.stored(), 1);
}

#[tokio::test]
async fn transcript_a_storage_failure_answers_451_and_stores_nothing() {
    let h = Harness::new();
    // Large blobs go to objects/: make that impossible (a file where the directory goes).
    std::fs::write(h.archive.dir.path().join("objects"), b"not a directory").expect("write");
    let ctx = h.context(|ctx| ctx.max_message_size = 1024 * 1024);
    let mut c = h.connect(ctx, LOOPBACK);
    let mut state = 0x1234_5678_9abc_def0_u64;
    let noise: String = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'A' + (state % 26) as u8)
        })
        .collect::<String>()
        .as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned() + "\r\n")
        .collect();
    h.play(&mut c, UP_TO_DATA).await;
    c.send(&format!(
        "From: a@fabrikam.com\r\nMessage-ID: <fail@f>\r\n\r\n{noise}.\r\n"
    ))
    .await;
    c.expect("451 4.3.0 Temporary failure storing the message, try again later")
        .await;
    assert_eq!(h.stored(), 0);
    c.send("NOOP\r\n").await;
    c.expect("250").await;
}

#[tokio::test]
async fn transcript_plaintext_pipelined_after_starttls_is_discarded() {
    let h = Harness::new();
    let certs = tempfile::tempdir().expect("tempdir");
    let (tls, cert_pem) = test_certificate(certs.path());
    let loaded = mailjournal::net::tls::load(&tls, certs.path(), "localhost").expect("tls");
    let ctx = h.context(|ctx| ctx.tls = Some(loaded.config));
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(Session::new(ctx, server, LOOPBACK.parse().expect("peer")).run(false));
    let mut plain = Client::new(client);
    plain.expect("220").await;
    // The injected NOOP must never be answered (CVE-2011-0411 style).
    plain.send("STARTTLS\r\nNOOP\r\n").await;
    plain.expect("220 2.0.0 Ready to start TLS").await;
    let stream = plain.reader.into_inner().unsplit(plain.writer);

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(mailjournal::net::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, stream).await.expect("handshake");
    let mut c = Client::new(tls);
    c.send("EHLO x.test\r\n").await;
    let ehlo = c.expect_reply("250").await.concat();
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.send("NOOP\r\n").await;
    c.expect("250 2.0.0 OK").await;
}

use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn transcript_bdat_0_last_ends_the_message_and_data_may_not_follow_bdat() {
    let h = Harness::new();
    let mut c = h.connect(h.context(|_| {}), LOOPBACK);
    let head = "From: a@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: zero\r\n\r\n";
    h.ehlo(&mut c).await;
    c.send(&format!(
        "MAIL FROM:<a@fabrikam.com>\r\nRCPT TO:<journal@contoso.com>\r\nBDAT {}\r\n{head}",
        head.len()
    ))
    .await;
    h.play(
        &mut c,
        &format!(
            "S: 250 2.1.0
             S: 250 2.1.5
             S: 250 2.0.0 {} octets received
             C: DATA
             S: 503 5.5.1 DATA cannot be used after BDAT in the same transaction
             C: BDAT 0 LAST
             S: 250 2.0.0 OK",
            head.len()
        ),
    )
    .await;
    let record = h.archive.archive().get(1).expect("get").expect("stored");
    let raw = h.archive.archive().raw(&record).expect("raw");
    assert_eq!(raw, head.as_bytes(), "the chunk before DATA is kept");
    // RSET drops the chunks of an unfinished message: the next message is only its own.
    let second = "From: b@fabrikam.com\r\nSubject: after RSET\r\n\r\nbody\r\n";
    c.send(&format!(
        "MAIL FROM:<a@fabrikam.com>\r\nRCPT TO:<journal@contoso.com>\r\nBDAT 7\r\nstale\r\nRSET\r\n\
         MAIL FROM:<b@fabrikam.com>\r\nRCPT TO:<journal@contoso.com>\r\nBDAT {} LAST\r\n{second}",
        second.len()
    ))
    .await;
    h.play(
        &mut c,
        "S: 250 2.1.0
         S: 250 2.1.5
         S: 250 2.0.0 7 octets received
         S: 250 2.0.0 OK
         S: 250 2.1.0
         S: 250 2.1.5
         S: 250 2.0.0 OK",
    )
    .await;
    let record = h.archive.archive().get(2).expect("get").expect("stored");
    let raw = h.archive.archive().raw(&record).expect("raw");
    assert_eq!(raw, second.as_bytes());
    assert_eq!(h.stored(), 2);
}

/// Sends `text` one byte at a time, `gap` apart, until the server closes.
async fn trickle(c: &mut Client<DuplexStream>, text: &str, gap: Duration) {
    for byte in text.bytes() {
        if c.writer.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
}

#[tokio::test]
async fn transcript_a_trickled_command_or_message_times_out_as_a_whole() {
    let h = Harness::new();
    let ctx = h.context(|ctx| {
        ctx.settings.command_timeout = Duration::from_millis(800);
        ctx.settings.data_timeout = Duration::from_millis(1500);
    });
    // One byte every 200 ms: each read is quick, the command line never ends in time.
    let mut c = h.connect(Arc::clone(&ctx), LOOPBACK);
    c.expect("220").await;
    trickle(&mut c, "NOOP NOOP NOOP", Duration::from_millis(200)).await;
    h.play(
        &mut c,
        "S: 421 4.4.2 mx.test Timeout, closing connection
         S:",
    )
    .await;
    // The same for message data: the whole message has `data_timeout`.
    let mut c = h.connect(ctx, LOOPBACK);
    h.play(&mut c, UP_TO_DATA).await;
    trickle(
        &mut c,
        "Subject: slow\r\n\r\nthis body never ends in time",
        Duration::from_millis(200),
    )
    .await;
    h.play(
        &mut c,
        "S: 421 4.4.2 mx.test Timeout, closing connection
         S:",
    )
    .await;
    assert_eq!(h.stored(), 0);
}
