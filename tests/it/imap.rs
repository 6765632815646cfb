//! The IMAP view: async-imap (and Python's imaplib) against the listeners, transcripts of
//! RFC 3501's examples that apply to a read-only server.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use lettre::address::Envelope as LettreEnvelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mailjournal::archive::Role;
use mailjournal::clock::SystemClock;
use mailjournal::server::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::server_settings;

pub const PASSWORD: &str = "correct horse battery";

/// [`server_with`] with the fixture directory and these accounts besides `auditor` (name,
/// role, salesperson code).
pub async fn server_with_people(
    messages: &[&[u8]],
    accounts: &[(&str, Role, Option<&str>)],
) -> (tempfile::TempDir, Server) {
    let (dir, server) = server_with(messages).await;
    let archive = server.archive().expect("archive");
    let directory = crate::log::directory_fixture();
    archive
        .put_directory(directory.salespeople(), directory.contacts())
        .expect("directory");
    for &(name, role, code) in accounts {
        archive
            .put_account(&crate::support::account(name, PASSWORD, role, code))
            .expect("account");
    }
    (dir, server)
}

/// A server with an auditor account `auditor`, and the messages sent to it over SMTP.
pub async fn server_with(messages: &[&[u8]]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&server_settings(dir.path()), Arc::new(SystemClock))
        .await
        .expect("server starts");
    let archive = server.archive().expect("archive");
    archive
        .put_account(&crate::support::account(
            "auditor",
            PASSWORD,
            Role::Auditor,
            None,
        ))
        .expect("account");
    let smtp = server.smtp_addr.expect("smtp");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .build();
    let envelope = LettreEnvelope::new(
        Some("marta@fabrikam.com".parse().expect("address")),
        vec!["journal@contoso.com".parse().expect("address")],
    )
    .expect("envelope");
    for m in messages {
        // lettre adds the final CRLF itself.
        let body = m.strip_suffix(b"\r\n").unwrap_or(m);
        transport.send_raw(&envelope, body).await.expect("sent");
    }
    (dir, server)
}

/// Every answer of a command that streams them (FETCH, STORE); panics if it fails.
async fn answers<T, S>(started: async_imap::error::Result<S>) -> Vec<T>
where
    S: futures::Stream<Item = async_imap::error::Result<T>>,
{
    started
        .expect("command accepted")
        .try_collect()
        .await
        .expect("every answer")
}

/// The names LIST gives for `reference` and `pattern`.
async fn folder_names(
    s: &mut async_imap::Session<TcpStream>,
    reference: &str,
    pattern: &str,
) -> Vec<String> {
    s.list(Some(reference), Some(pattern))
        .await
        .expect("list")
        .try_collect::<Vec<_>>()
        .await
        .expect("names")
        .iter()
        .map(|n| n.name().to_owned())
        .collect()
}

pub async fn login(server: &Server) -> async_imap::Session<TcpStream> {
    let stream = TcpStream::connect(server.imap_addr.expect("imap"))
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting");
    client
        .login("auditor", PASSWORD)
        .await
        .map_err(|(e, _)| e)
        .expect("login")
}

const PLAIN: &[u8] = b"From: Marta <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Quote\r\n\
Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <imap-1@fabrikam.com>\r\n\
\r\n\
Hello Alice.\r\n";

const OUTBOUND: &[u8] = b"From: alice@contoso.com\r\n\
To: marta@fabrikam.com\r\n\
Subject: Re: Quote\r\n\
Date: Sat, 21 Nov 2026 09:00:00 +0000\r\n\
Message-ID: <imap-2@contoso.com>\r\n\
\r\n\
Here it is.\r\n";

#[tokio::test]
async fn folders_uids_flags_and_idle() {
    let (_dir, server) = server_with(&[PLAIN, OUTBOUND]).await;
    let mut s = login(&server).await;

    let names: Vec<String> = folder_names(&mut s, "", "*").await;
    for want in [
        "INBOX",
        "Inbound",
        "Outbound",
        "Internal",
        "By month/2026/11",
    ] {
        assert!(
            names.contains(&want.to_owned()),
            "{want} missing: {names:?}"
        );
    }

    let inbox = s.select("INBOX").await.expect("select");
    assert_eq!(inbox.exists, 2);
    assert_eq!(inbox.uid_next, Some(3));
    let uidvalidity = inbox.uid_validity.expect("uidvalidity");
    let outbound = s.examine("Outbound").await.expect("examine");
    assert_eq!(outbound.exists, 1);
    assert_eq!(
        outbound.uid_validity,
        Some(uidvalidity),
        "one UIDVALIDITY everywhere"
    );
    let fetched = answers(s.uid_fetch("1:4294967295", "(UID FLAGS)").await).await;
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, Some(2), "the same UID in every folder");
    assert_eq!(fetched[0].message, 1, "sequence numbers are per folder");

    s.select("Inbound").await.expect("select");
    let stored = answers(s.store("1", "+FLAGS (\\Seen \\Flagged)").await).await;
    assert_eq!(stored.len(), 1);
    let status = s
        .status("Inbound", "(MESSAGES UNSEEN UIDNEXT)")
        .await
        .expect("status");
    assert_eq!((status.exists, status.unseen), (1, Some(0)));
    let e = s
        .run_command_and_check_ok("STORE 1 +FLAGS (\\Deleted)")
        .await
        .expect_err("the archive is read-only");
    assert!(format!("{e:?}").contains("CANNOT"), "{e:?}");

    // IDLE: a message arriving over SMTP shows up as EXISTS within a second.
    s.select("INBOX").await.expect("select");
    let mut idle = s.idle();
    idle.init().await.expect("idle");
    let smtp = server.smtp_addr.expect("smtp");
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(smtp.port())
            .build();
        let envelope = LettreEnvelope::new(
            Some("kim@fabrikam.com".parse().expect("address")),
            vec!["journal@contoso.com".parse().expect("address")],
        )
        .expect("envelope");
        transport
            .send_raw(
                &envelope,
                b"From: kim@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: new\r\n\r\nx",
            )
            .await
            .expect("sent");
        std::time::Instant::now()
    });
    let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
    let reason = wait.await.expect("idle wait");
    let arrived = std::time::Instant::now();
    let sent = sender.await.expect("sender");
    assert!(
        matches!(
            reason,
            async_imap::extensions::idle::IdleResponse::NewData(_)
        ),
        "{reason:?}"
    );
    assert!(arrived.duration_since(sent) < Duration::from_secs(1));
    let mut s = idle.done().await.expect("done");
    let inbox = s.select("INBOX").await.expect("select");
    assert_eq!(inbox.exists, 3);
    s.logout().await.expect("logout");
    server.stop().await;
}

/// A raw client for transcripts.
struct Raw {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    async fn connect(server: &Server) -> Self {
        let stream = TcpStream::connect(server.imap_addr.expect("imap"))
            .await
            .expect("connect");
        let (r, w) = tokio::io::split(stream);
        let mut raw = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        raw.expect("* OK").await;
        raw
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply in time")
            .expect("read");
        line
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(line.starts_with(prefix), "want {prefix:?}, got {line:?}");
        line
    }

    /// Logs in as `user` and EXAMINEs an INBOX of one unseen message (tags a1 and a2).
    async fn examine_one(&mut self, user: &str) {
        self.play(&format!(
            "C: a1 LOGIN {user} \"{PASSWORD}\"
             S: a1 OK
             C: a2 EXAMINE INBOX
             S: * FLAGS
             S: * 1 EXISTS
             S: * 0 RECENT
             S: * OK [UNSEEN 1]
             S: * OK [UIDVALIDITY
             S: * OK [UIDNEXT
             S: * OK [PERMANENTFLAGS
             S: a2 OK [READ-ONLY]"
        ))
        .await;
    }

    /// Plays `C:`/`S:` lines; `S:` lines are prefixes of the next line, `S=` lines the
    /// whole of it.
    async fn play(&mut self, script: &str) {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(c) = line.strip_prefix("C: ") {
                self.writer
                    .write_all(format!("{c}\r\n").as_bytes())
                    .await
                    .expect("write");
            } else if let Some(s) = line.strip_prefix("S: ") {
                self.expect(s).await;
            } else if let Some(s) = line.strip_prefix("S= ") {
                let got = self.line().await;
                assert_eq!(
                    got.trim_end_matches(['\r', '\n']),
                    s,
                    "want exactly this line"
                );
            } else {
                panic!("bad transcript line {line:?}");
            }
        }
    }
}

#[tokio::test]
async fn transcript_read_only_and_malformed_commands() {
    let (_dir, server) = server_with(&[PLAIN]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a001 CAPABILITY
         S: * CAPABILITY IMAP4REV1
         S: a001 OK
         C: a002 SELECT INBOX
         S: a002 BAD
         C: a003 LOGIN auditor \"{PASSWORD}\"
         S: a003 OK
         C: a004 FROBNICATE
         S: a004 BAD
         C: a005 SELECT INBOX
         S: * FLAGS (\\Seen \\Flagged)
         S: * 1 EXISTS
         S: * 0 RECENT
         S: * OK [UNSEEN 1]
         S: * OK [UIDVALIDITY
         S: * OK [UIDNEXT 2]
         S: * OK [PERMANENTFLAGS (\\Seen \\Flagged)]
         S: a005 OK [READ-WRITE]
         C: a006 CREATE Foo
         S: a006 NO [CANNOT]
         C: a007 APPEND INBOX {{3+}}
         C: abc
         S: a007 NO [CANNOT]
         C: a008 COPY 1 Outbound
         S: a008 NO [CANNOT]
         C: a009 EXPUNGE
         S: a009 NO [CANNOT]
         C: a010 UID FETCH 1:4294967295 (UID FLAGS)
         S: * 1 FETCH (UID 1 FLAGS ())
         S: a010 OK
         C: a012 FETCH 9 (FLAGS)
         S: a012 BAD
         C: a013 STORE 2:3 +FLAGS (\\Seen)
         S: a013 BAD
         C: a014 UID FETCH 9 (FLAGS)
         S: a014 OK
         C: a011 LOGOUT
         S: * BYE
         S: a011 OK"
    ))
    .await;
    server.stop().await;
}

/// A session over an in-memory stream from `peer` (to test what only a non-loopback client
/// sees), with TLS available.
fn duplex_session(
    archive: &std::sync::Arc<mailjournal::archive::Archive>,
    peer: &str,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> tokio::io::DuplexStream {
    let settings = server_settings(std::path::Path::new("unused"));
    let ctx = std::sync::Arc::new(mailjournal::imap::Context {
        settings: settings.imap,
        archive: std::sync::Arc::clone(archive),
        tls,
        logins: std::sync::Arc::new(mailjournal::auth::Logins::standard()),
        shutdown: tokio_util::sync::CancellationToken::new(),
        metrics: std::sync::Arc::default(),
    });
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = peer.parse().expect("peer");
    tokio::spawn(mailjournal::imap::session::Session::new(ctx, server, peer).run(false));
    client
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    line
}

/// Issue 12 (slowloris): a client must log in within a minute of connecting, however it
/// trickles its bytes (each read is quick; the login never comes); the 30-minute idle
/// timeout is for logged-in clients.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_logs_in_is_logged_out_after_a_minute_however_it_trickles() {
    let t = crate::support::TestArchive::new();
    let stream = duplex_session(t.archive(), "203.0.113.9:4000", None);
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    assert!(read_line(&mut r).await.starts_with("* OK"));
    let start = tokio::time::Instant::now();
    let writer = tokio::spawn(async move {
        for b in b"a LOGIN somebody slowly".iter().cycle().take(100) {
            if w.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(300), r.read_line(&mut line))
        .await
        .expect("answered in time")
        .expect("read");
    let waited = start.elapsed();
    assert_eq!(line.trim_end(), "* BYE autologout: no login in time");
    assert!(
        waited >= mailjournal::imap::session::LOGIN_TIMEOUT
            && waited < mailjournal::imap::session::LOGIN_TIMEOUT + Duration::from_secs(6),
        "{waited:?}"
    );
    line.clear();
    let n = r.read_line(&mut line).await.expect("read");
    assert_eq!(n, 0, "then the connection is closed: {line:?}");
    writer.abort();
}

#[tokio::test]
async fn passwords_need_tls_off_loopback_and_starttls_drops_injected_plaintext() {
    let t = crate::support::TestArchive::new();
    t.archive()
        .put_account(&crate::support::account(
            "auditor",
            PASSWORD,
            Role::Auditor,
            None,
        ))
        .expect("account");
    let certs = tempfile::tempdir().expect("tempdir");
    let (tls, cert_pem) = crate::support::test_certificate(certs.path());
    let loaded = mailjournal::net::tls::load(&tls, certs.path(), "localhost").expect("tls");
    let stream = duplex_session(t.archive(), "203.0.113.9:993", Some(loaded.config));
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let greeting = read_line(&mut r).await;
    assert!(
        greeting.contains("LOGINDISABLED") && greeting.contains("STARTTLS"),
        "{greeting}"
    );
    assert!(!greeting.contains("AUTH=PLAIN"), "{greeting}");
    w.write_all(format!("a1 LOGIN auditor \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .expect("write");
    assert!(read_line(&mut r).await.starts_with("a1 NO"));
    w.write_all(b"a2 AUTHENTICATE PLAIN AGF1ZGl0b3IAeA==\r\n")
        .await
        .expect("write");
    assert!(read_line(&mut r).await.starts_with("a2 NO"));
    // The NOOP rides in the same packet as STARTTLS: it must never be answered.
    w.write_all(b"a3 STARTTLS\r\na4 NOOP\r\n")
        .await
        .expect("write");
    assert!(read_line(&mut r).await.starts_with("a3 OK"));
    let stream = r.into_inner().unsplit(w);

    let mut roots = rustls::RootCertStore::empty();
    for cert in
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(
            cert_pem.as_bytes(),
        )
    {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(mailjournal::net::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .expect("handshake");
    let (r, mut w) = tokio::io::split(tls);
    let mut r = BufReader::new(r);
    w.write_all(b"a5 CAPABILITY\r\n").await.expect("write");
    let caps = read_line(&mut r).await;
    assert!(
        caps.contains("AUTH=PLAIN") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(
        read_line(&mut r).await.starts_with("a5 OK"),
        "no answer to the injected NOOP"
    );
    w.write_all(format!("a6 LOGIN auditor \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .expect("write");
    assert!(read_line(&mut r).await.starts_with("a6 OK"));
}

#[tokio::test]
async fn search_by_address_subject_body_and_flags() {
    let (_dir, server) = server_with(&[PLAIN, OUTBOUND]).await;
    let mut s = login(&server).await;
    s.select("INBOX").await.expect("select");
    let uids = |v: std::collections::HashSet<u32>| {
        let mut v: Vec<u32> = v.into_iter().collect();
        v.sort_unstable();
        v
    };
    let all = s.uid_search("ALL").await.expect("search");
    assert_eq!(uids(all), [1, 2]);
    let from = s.uid_search("FROM marta").await.expect("search");
    assert_eq!(uids(from), [1]);
    let subject = s.uid_search("SUBJECT \"re: quote\"").await.expect("search");
    assert_eq!(uids(subject), [2]);
    let body = s.uid_search("BODY \"here it IS\"").await.expect("search");
    assert_eq!(uids(body), [2]);
    let to = s.uid_search("TO alice@contoso.com").await.expect("search");
    assert_eq!(uids(to), [1]);
    s.uid_store("2", "+FLAGS (\\Flagged)")
        .await
        .expect("store")
        .try_collect::<Vec<_>>()
        .await
        .expect("stored");
    let flagged = s.uid_search("FLAGGED").await.expect("search");
    assert_eq!(uids(flagged), [2]);
    let both = s.uid_search("OR FROM marta FLAGGED").await.expect("search");
    assert_eq!(uids(both), [1, 2]);
    let wide = s
        .uid_search("UID 1:4294967295 NOT FLAGGED")
        .await
        .expect("search");
    assert_eq!(uids(wide), [1]);
    let seqs = s.search("SENTSINCE 21-Nov-2026").await.expect("search");
    assert_eq!(uids(seqs), [2]);
    let e = s
        .run_command_and_check_ok("SEARCH CHARSET KOI8-R ALL")
        .await
        .expect_err("unsupported charset");
    assert!(format!("{e:?}").contains("BadCharset"), "{e:?}");
    s.logout().await.expect("logout");
    server.stop().await;
}

#[tokio::test]
async fn transcript_rfc3501_list_status_examples() {
    let (_dir, server) = server_with(&[PLAIN, OUTBOUND]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: A101 LIST \"\" \"\"
         S: * LIST (\\Noselect) \"/\" \"\"
         S: A101 OK
         C: A102 LIST \"\" %
         S: * LIST (\\HasNoChildren) \"/\" INBOX
         S: * LIST (\\HasNoChildren) \"/\" Inbound
         S: * LIST (\\HasNoChildren) \"/\" Outbound
         S: * LIST (\\HasNoChildren) \"/\" Internal
         S: * LIST (\\HasNoChildren) \"/\" External
         S: * LIST (\\HasNoChildren \\Junk) \"/\" Junk
         S: * LIST (\\Noselect \\HasChildren) \"/\" \"By month\"
         S: A102 OK
         C: A103 LIST \"By month/\" *
         S: * LIST (\\Noselect \\HasChildren) \"/\" \"By month/2026\"
         S: * LIST (\\HasNoChildren) \"/\" \"By month/2026/11\"
         S: A103 OK
         C: A042 STATUS Inbound (UIDNEXT MESSAGES)
         S: * STATUS Inbound (UIDNEXT 3 MESSAGES 1)
         S: A042 OK
         C: A043 STATUS \"By month\" (MESSAGES)
         S: A043 NO
         C: A044 SELECT Nonexistent
         S: A044 NO
         C: A045 NAMESPACE
         S: * NAMESPACE ((\"\" \"/\")) NIL NIL
         S: A045 OK
         C: A046 ID NIL
         S: * ID (\"name\" \"mailjournal\"
         S: A046 OK"
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn fetch_body_is_byte_exact_and_sets_seen_only_without_peek() {
    let (_dir, server) = server_with(&[PLAIN]).await;
    let mut s = login(&server).await;
    s.select("INBOX").await.expect("select");
    let peeked = answers(s.fetch("1", "(FLAGS BODY.PEEK[])").await).await;
    assert_eq!(peeked[0].body(), Some(PLAIN), "byte-exact");
    assert_eq!(peeked[0].flags().count(), 0, "PEEK leaves \\Seen alone");
    let read = answers(s.fetch("1", "BODY[TEXT]").await).await;
    assert_eq!(read[0].text(), Some(b"Hello Alice.\r\n".as_slice()));
    assert!(
        read[0]
            .flags()
            .any(|f| matches!(f, async_imap::types::Flag::Seen)),
        "a FETCH that sets \\Seen reports it"
    );
    let status = s.status("INBOX", "(UNSEEN)").await.expect("status");
    assert_eq!(status.unseen, Some(0));
    s.logout().await.expect("logout");
    server.stop().await;
}

#[tokio::test]
async fn a_salesperson_reaches_only_their_own_mail_by_every_route() {
    const TO_ALICE: &[u8] = b"From: Marta <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\nSubject: for alice\r\nMessage-ID: <acl-1@fabrikam.com>\r\n\r\nalice only\r\n";
    const FROM_BOB: &[u8] = b"From: bob@contoso.com\r\nTo: buyer@fabrikam.com\r\nSubject: from bob\r\nMessage-ID: <acl-2@contoso.com>\r\n\r\nbob only\r\n";
    let (_dir, server) = server_with_people(&[TO_ALICE, FROM_BOB], &[]).await;
    let archive = server.archive().expect("archive");
    let mut alice = crate::support::account("alice", PASSWORD, Role::Salesperson, Some("AS"));
    archive.put_account(&alice).expect("account");

    let stream = TcpStream::connect(server.imap_addr.expect("imap"))
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(stream);
    client.read_response().await.expect("greeting");
    let mut s = client
        .login("alice", PASSWORD)
        .await
        .map_err(|(e, _)| e)
        .expect("login");

    // Folder listing: her own salesperson folder, nobody else's, and no Junk.
    let names: Vec<String> = folder_names(&mut s, "", "*").await;
    assert!(
        names.contains(&"Salespeople/Alice Seller".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("Bob Manager")),
        "{names:?}"
    );
    assert!(!names.contains(&"Junk".to_owned()), "{names:?}");

    // SELECT and STATUS counts.
    assert_eq!(s.select("INBOX").await.expect("select").exists, 1);
    let status = s.status("Outbound", "(MESSAGES)").await.expect("status");
    assert_eq!(status.exists, 0, "bob's outbound mail is not counted");
    // Bob's contact holds none of her mail: she does not see that it exists.
    assert!(
        !names.contains(&"Contacts/Fabrikam/Buyer".to_owned())
            && names.contains(&"Contacts/Fabrikam/Marta Buyer".to_owned()),
        "only contacts with her mail are listed: {names:?}"
    );
    assert!(s.examine("Contacts/Fabrikam/Buyer").await.is_err());
    // UIDNEXT says nothing of the mail she cannot see (UID 2 is bob's).
    let inbox = s.examine("INBOX").await.expect("examine");
    assert_eq!(inbox.uid_next, Some(2));

    // FETCH of a guessed UID, and SEARCH.
    s.select("INBOX").await.expect("select");
    let guessed = answers(s.uid_fetch("2", "(BODY.PEEK[])").await).await;
    assert!(guessed.is_empty(), "UID 2 is bob's: nothing comes back");
    let all = s.uid_search("ALL").await.expect("search");
    assert_eq!(all.into_iter().collect::<Vec<_>>(), [1]);
    let body = s.uid_search("BODY \"bob only\"").await.expect("search");
    assert!(body.is_empty());

    // An administrator grants her Bob's mail: the next SELECT shows it.
    alice.grants.push("BM".into());
    archive.put_account(&alice).expect("grant");
    assert_eq!(s.select("INBOX").await.expect("select").exists, 2);
    let buyer = s.examine("Contacts/Fabrikam/Buyer").await.expect("examine");
    assert_eq!(
        buyer.exists, 1,
        "with the grant, bob's contact is hers to read"
    );
    s.logout().await.expect("logout");
    server.stop().await;
}

#[tokio::test]
async fn contact_folders_with_non_ascii_names_travel_in_modified_utf7() {
    const FROM_RENE: &[u8] = b"From: rene@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: hola\r\nMessage-ID: <utf7-1@fabrikam.com>\r\n\r\nhi\r\n";
    let (_dir, server) = server_with(&[FROM_RENE]).await;
    let archive = server.archive().expect("archive");
    let directory = crate::log::directory_fixture();
    archive
        .put_directory(&[], directory.contacts())
        .expect("directory");
    let mut s = login(&server).await;
    let names: Vec<String> = folder_names(&mut s, "Contacts/", "*").await;
    // "René Ortiz": é is U+00E9, "AOk" in modified base64.
    assert!(
        names.contains(&"Contacts/Fabrikam/Ren&AOk- Ortiz".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"Contacts/(no company)/Pat Private".to_owned()),
        "{names:?}"
    );
    let rene = s
        .examine("Contacts/Fabrikam/Ren&AOk- Ortiz")
        .await
        .expect("examine");
    assert_eq!(rene.exists, 1);
    s.logout().await.expect("logout");
    server.stop().await;
}

/// A FETCH of many messages is answered in batches loaded ahead of the writer: every
/// message comes back once, in sequence order, byte-exact, including ones far larger than a
/// batch, and a FETCH that sets `\Seen` does so (and says so) for every one of them.
#[tokio::test]
async fn a_long_fetch_answers_every_message_in_order_byte_exact() {
    let messages: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            // Mostly small messages; every 50th is larger than a whole batch.
            let lines = if i % 50 == 7 { 5000 } else { 20 + i % 13 };
            let mut m = format!(
                "From: Marta <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\n\
                 Subject: batch {i}\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
                 Message-ID: <batch-{i}@fabrikam.com>\r\n\r\n"
            );
            for n in 0..lines {
                m.push_str(&format!("Message {i}, line {n}: the quick brown fox.\r\n"));
            }
            m.into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let (_dir, server) = server_with(&refs).await;
    let mut s = login(&server).await;
    s.select("INBOX").await.expect("select");

    let sizes = answers(s.uid_fetch("1:*", "(RFC822.SIZE)").await).await;
    let sizes: Vec<u32> = sizes.iter().filter_map(|f| f.size).collect();
    let expected: Vec<u32> = messages.iter().map(|m| m.len() as u32).collect();
    assert_eq!(sizes, expected, "RFC822.SIZE of every message, in order");

    let fetched = answers(s.fetch("1:*", "(UID BODY[])").await).await;
    assert_eq!(fetched.len(), messages.len(), "one answer per message");
    for (n, (f, m)) in fetched.iter().zip(&messages).enumerate() {
        assert_eq!(f.message, n as u32 + 1, "sequence order");
        assert_eq!(f.body(), Some(m.as_slice()), "message {n} byte-exact");
        assert!(
            f.flags()
                .any(|x| matches!(x, async_imap::types::Flag::Seen)),
            "message {n}: the FETCH that set \\Seen reports it"
        );
    }
    let status = s.status("INBOX", "(UNSEEN)").await.expect("status");
    assert_eq!(status.unseen, Some(0), "every message is \\Seen now");
    s.logout().await.expect("logout");
    server.stop().await;
}

#[tokio::test]
async fn transcript_hostile_folder_names_and_patterns_get_answers_not_crashes() {
    let (_dir, server) = server_with(&[PLAIN]).await;
    let mut c = Raw::connect(&server).await;
    let stars = "*".repeat(40_000);
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: a2 SELECT \"&'-\"
         S: a2 NO Mailbox name is not valid mUTF-7
         C: a3 EXAMINE &A-
         S: a3 NO Mailbox name is not valid mUTF-7
         C: a4 STATUS \"&!-\" (MESSAGES)
         S: a4 NO Mailbox name is not valid mUTF-7
         C: a5 LIST \"\" \"&A-\"
         S: a5 OK LIST completed
         C: a6 LSUB \"&'-\" \"*\"
         S: a6 OK LSUB completed
         C: a7 LIST \"\" {stars}
         S: a7 BAD Mailbox pattern too long
         C: a8 LIST \"\" \"*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%Z\"
         S: a8 OK LIST completed
         C: a9 LIST \"\" \"I*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%X\"
         S: * LIST (\\HasNoChildren) \"/\" INBOX
         S: a9 OK LIST completed
         C: a10 NOOP
         S: a10 OK NOOP completed
         C: a11 LSUB \"\" INBOX
         S: * LSUB (\\HasNoChildren) \"/\" INBOX
         S: a11 OK LSUB completed
         C: a12 CREATE Trash
         S: a12 NO [CANNOT] The folders are fixed
         C: a13 SUBSCRIBE INBOX
         S: a13 OK Subscriptions are fixed"
    ))
    .await;
    server.stop().await;
}

/// imaptest's `atoms`: mailbox names made of every atom character. SELECT of a name that is
/// no folder (or not valid modified UTF-7) answers NO, and a LIST pattern that is not valid
/// modified UTF-7 names no folder: an empty OK, as Dovecot answers (it used to be NO). The
/// session goes on.
#[tokio::test]
async fn transcript_imaptest_atoms_unusual_atom_characters() {
    let (_dir, server) = server_with(&[PLAIN]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: a2 LIST \"\" ~foo
         S: a2 OK LIST completed
         C: a3 SELECT ~foo
         S: a3 NO
         C: a4 SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}}
         S: a4 NO
         C: a5 LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}}%*
         S: a5 OK LIST completed
         C: a6 LSUB \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}}%*
         S: a6 OK LSUB completed
         C: a7 EXAMINE INBOX
         S: * FLAGS
         S: * 1 EXISTS"
    ))
    .await;
    server.stop().await;
}

/// A message for the SEARCH transcripts: `headers`, then a one-line body.
fn mail(id: &str, headers: &str) -> Vec<u8> {
    format!("Message-ID: <{id}@fabrikam.com>\r\nSubject: {id}\r\n{headers}\r\nbody {id}\r\n")
        .into_bytes()
}

/// imaptest's `search-addresses`: FROM finds every mailbox of a `From:` with several, and TO
/// finds a group by its name, empty groups too, and the mailboxes inside groups (the record
/// keeps only the first From and no group names, so these used to find nothing).
#[tokio::test]
async fn transcript_imaptest_search_addresses_in_groups_and_lists() {
    let m1 = mail(
        "addr-1",
        "From: user-from1@fabrikam.com, user-from2@fabrikam.com\r\nCc: user-cc@fabrikam.com\r\n",
    );
    let m2 = mail(
        "addr-2",
        "From: RealFrom <user-from@fabrikam.com>\r\n\
         To: groupname: groupuser1@fabrikam.com, groupuser2@fabrikam.com;,\r\n \
         groupname2: groupuser3@fabrikam.com;\r\n",
    );
    let m3 = mail(
        "addr-3",
        "From: RealFrom <user-from@fabrikam.com>\r\nTo: groupname:;\r\n",
    );
    let (_dir, server) = server_with(&[&m1, &m2, &m3]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: a2 EXAMINE INBOX
         S: * FLAGS
         S: * 3 EXISTS"
    ))
    .await;
    while !c.line().await.starts_with("a2 OK") {}
    c.play(
        "C: b1 SEARCH FROM user-from1
         S= * SEARCH 1
         S: b1 OK
         C: b2 SEARCH FROM user-from2
         S= * SEARCH 1
         S: b2 OK
         C: b3 SEARCH TO groupname
         S= * SEARCH 2 3
         S: b3 OK
         C: b4 SEARCH TO groupname2
         S= * SEARCH 2
         S: b4 OK
         C: b5 SEARCH TO groupuser3
         S= * SEARCH 2
         S: b5 OK
         C: b6 SEARCH FROM realfrom
         S= * SEARCH 2 3
         S: b6 OK
         C: b7 SEARCH NOT TO groupname
         S= * SEARCH 1
         S: b7 OK
         C: b8 SEARCH CC groupname
         S= * SEARCH
         S: b8 OK",
    )
    .await;
    server.stop().await;
}

/// imaptest's `search-date`: SENTBEFORE, SENTON and SENTSINCE compare the day of the `Date:`
/// header as written, its time and zone disregarded (RFC 3501 § 6.4.4), not its UTC day.
#[tokio::test]
async fn transcript_imaptest_search_sent_dates_as_written() {
    let dates = [
        "Sat, 24 Mar 2007 23:00:00 +0200",
        "Sun, 25 Mar 2007 00:00:00 +0200",
        "Sun, 25 Mar 2007 04:00:00 +0300",
        "Sun, 25 Mar 2007 23:00:00 -0300",
        "Mon, 26 Mar 2007 00:00:00 +0300",
    ];
    let messages: Vec<Vec<u8>> = dates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            mail(
                &format!("date-{i}"),
                &format!("From: marta@fabrikam.com\r\nDate: {d}\r\n"),
            )
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let (_dir, server) = server_with(&refs).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: a2 EXAMINE INBOX
         S: * FLAGS
         S: * 5 EXISTS"
    ))
    .await;
    while !c.line().await.starts_with("a2 OK") {}
    c.play(
        "C: b1 SEARCH SENTBEFORE 25-Mar-2007
         S= * SEARCH 1
         S: b1 OK
         C: b2 SEARCH SENTON 24-Mar-2007
         S= * SEARCH 1
         S: b2 OK
         C: b3 SEARCH SENTON 25-Mar-2007
         S= * SEARCH 2 3 4
         S: b3 OK
         C: b4 SEARCH SENTSINCE 26-Mar-2007
         S= * SEARCH 5
         S: b4 OK
         C: b5 SEARCH SENTBEFORE 26-Mar-2007 NOT SENTON 24-Mar-2007
         S= * SEARCH 2 3 4
         S: b5 OK",
    )
    .await;
    server.stop().await;
}

/// SORT and SORT=DISPLAY (RFC 5256, 5957), as imaptest's `sort-*` tests check them: base
/// subjects (`Re:`, `[list]` and `(fwd)` removed, compared upper-cased), dates as instants,
/// the first address's local part, display names decoded, REVERSE per key, ties in sequence
/// order, UID SORT, search criteria, and charsets we cannot read.
#[tokio::test]
async fn transcript_sort_and_sort_display() {
    let m1 = mail(
        "sort-1",
        "From: Zed <user2@domain2.org>\r\nTo: =?iso-8859-1?q?foo_aar?= <e@f.g>\r\n\
         Date: Fri, 22 Feb 2008 00:00:00 +0200\r\n",
    );
    let m1 = String::from_utf8(m1)
        .expect("utf-8")
        .replace("Subject: sort-1", "Subject: Re: [list] beta (fwd)");
    let m2 = mail(
        "sort-2",
        "From: user1@domain1.org\r\nTo: team: a@b.c;\r\nDate: Thu, 21 Feb 2008 23:30:00 +0000\r\n",
    );
    let m2 = String::from_utf8(m2)
        .expect("utf-8")
        .replace("Subject: sort-2", "Subject: Alpha");
    let m3 = mail(
        "sort-3",
        "From: Adam <user2@domain1.org>\r\nTo: b@c.d\r\nDate: Thu, 21 Feb 2008 22:30:00 +0000\r\n",
    );
    let m3 = String::from_utf8(m3)
        .expect("utf-8")
        .replace("Subject: sort-3", "Subject: [xyz]");
    let (_dir, server) = server_with(&[m1.as_bytes(), m2.as_bytes(), m3.as_bytes()]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK [CAPABILITY IMAP4REV1 IDLE NAMESPACE UNSELECT ENABLE BINARY SORT SORT=DISPLAY
         C: a2 EXAMINE INBOX
         S: * FLAGS
         S: * 3 EXISTS"
    ))
    .await;
    while !c.line().await.starts_with("a2 OK") {}
    c.play(
        "C: b1 SORT (SUBJECT) UTF-8 ALL
         S= * SORT 2 1 3
         S: b1 OK SORT completed
         C: b2 SORT (REVERSE SUBJECT) US-ASCII ALL
         S= * SORT 3 1 2
         S: b2 OK
         C: b3 SORT (DATE) UTF-8 ALL
         S= * SORT 1 3 2
         S: b3 OK
         C: b4 SORT (REVERSE DATE) UTF-8 ALL
         S= * SORT 2 3 1
         S: b4 OK
         C: b5 SORT (FROM) UTF-8 ALL
         S= * SORT 2 1 3
         S: b5 OK
         C: b6 SORT (REVERSE FROM) UTF-8 ALL
         S= * SORT 1 3 2
         S: b6 OK
         C: b7 SORT (DISPLAYFROM) UTF-8 ALL
         S= * SORT 3 2 1
         S: b7 OK
         C: b8 SORT (DISPLAYTO) UTF-8 ALL
         S= * SORT 3 1 2
         S: b8 OK
         C: b9 SORT (TO ARRIVAL) UTF-8 ALL
         S= * SORT 3 1 2
         S: b9 OK
         C: b10 UID SORT (SUBJECT) UTF-8 NOT SUBJECT alpha
         S= * SORT 1 3
         S: b10 OK
         C: b11 SORT (SIZE) UTF-8 FROM nobody
         S= * SORT
         S: b11 OK
         C: b12 SORT (SUBJECT) KOI8-R ALL
         S: b12 NO [BADCHARSET
         C: b13 SORT (NOSUCHKEY) UTF-8 ALL
         S: b13 BAD
         C: b14 NOOP
         S: b14 OK",
    )
    .await;
    server.stop().await;
}

/// THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256), as imaptest's `thread*` tests
/// check them: answers under their parent, a missing parent as a placeholder holding its
/// answers side by side, subjects grouped, threads in date order, UID THREAD.
#[tokio::test]
async fn transcript_thread_references_and_orderedsubject() {
    let messages: Vec<Vec<u8>> = [
        ("t1", "foo", "", 1),
        ("t2", "Re: foo", "<t1@fabrikam.com>", 2),
        ("t3", "Re: foo", "<t1@fabrikam.com>", 3),
        ("t4", "bar", "<missing@fabrikam.com>", 4),
        ("t5", "Re: bar", "<missing@fabrikam.com>", 5),
        ("t6", "baz", "", 6),
    ]
    .iter()
    .map(|(id, subject, refs, day)| {
        let refs = if refs.is_empty() {
            String::new()
        } else {
            format!("References: {refs}\r\n")
        };
        format!(
            "From: marta@fabrikam.com\r\nTo: alice@contoso.com\r\nSubject: {subject}\r\n\
             Date: {day} Mar 2026 10:00:00 +0000\r\nMessage-ID: <{id}@fabrikam.com>\r\n{refs}\
             \r\nbody {id}\r\n"
        )
        .into_bytes()
    })
    .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let (_dir, server) = server_with(&refs).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK [CAPABILITY IMAP4REV1 IDLE NAMESPACE UNSELECT ENABLE BINARY SORT SORT=DISPLAY \
            THREAD=ORDEREDSUBJECT THREAD=REFERENCES
         C: a2 EXAMINE INBOX
         S: * FLAGS
         S: * 6 EXISTS"
    ))
    .await;
    while !c.line().await.starts_with("a2 OK") {}
    c.play(
        "C: b1 THREAD REFERENCES UTF-8 ALL
         S= * THREAD (1 (2)(3))((4)(5))(6)
         S: b1 OK THREAD completed
         C: b2 THREAD ORDEREDSUBJECT US-ASCII ALL
         S= * THREAD (1 (2)(3))(4 5)(6)
         S: b2 OK
         C: b3 UID THREAD REFERENCES UTF-8 NOT SUBJECT baz
         S= * THREAD (1 (2)(3))((4)(5))
         S: b3 OK
         C: b4 THREAD REFERENCES UTF-8 2:3
         S= * THREAD ((2)(3))
         S: b4 OK
         C: b5 THREAD REFERENCES UTF-8 SUBJECT nothing
         S= * THREAD
         S: b5 OK
         C: b6 THREAD REFS UTF-8 ALL
         S: b6 BAD
         C: b7 THREAD REFERENCES KOI8-R ALL
         S: b7 NO [BADCHARSET
         C: b8 NOOP
         S: b8 OK",
    )
    .await;
    server.stop().await;
}

/// ESEARCH and ESORT (RFC 4731, 5267), as imaptest's `esort` checks them: `RETURN (MIN MAX
/// COUNT ALL)` answered `* ESEARCH (TAG "…")`, `RETURN ()` meaning ALL, UID, no match, SORT in
/// its order, and unknown options BAD with the session going on.
#[tokio::test]
async fn transcript_esearch_and_esort() {
    let messages: Vec<Vec<u8>> = (1..=5)
        .map(|i| {
            let day = [3, 1, 5, 2, 4][i - 1];
            mail(
                &format!("es-{i}"),
                &format!("From: marta@fabrikam.com\r\nDate: {day} Mar 2026 10:00:00 +0000\r\n"),
            )
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let (_dir, server) = server_with(&refs).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK [CAPABILITY IMAP4REV1 IDLE NAMESPACE UNSELECT ENABLE BINARY SORT SORT=DISPLAY \
            THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESEARCH ESORT
         C: a2 EXAMINE INBOX
         S: * FLAGS
         S: * 5 EXISTS"
    ))
    .await;
    while !c.line().await.starts_with("a2 OK") {}
    c.play(
        "C: b1 SEARCH RETURN (MIN MAX COUNT ALL) ALL
         S= * ESEARCH (TAG \"b1\") MIN 1 MAX 5 COUNT 5 ALL 1:5
         S: b1 OK SEARCH completed
         C: b2 SEARCH RETURN () 2:4
         S= * ESEARCH (TAG \"b2\") ALL 2:4
         S: b2 OK
         C: b3 UID SEARCH RETURN (COUNT MIN) SUBJECT nothing
         S= * ESEARCH (TAG \"b3\") UID COUNT 0
         S: b3 OK
         C: b4 SORT RETURN (ALL) (DATE) UTF-8 ALL
         S= * ESEARCH (TAG \"b4\") ALL 2,4,1,5,3
         S: b4 OK SORT completed
         C: b5 SORT RETURN (MIN MAX) (REVERSE DATE) UTF-8 ALL
         S= * ESEARCH (TAG \"b5\") MIN 1 MAX 5
         S: b5 OK
         C: b6 SEARCH RETURN (SAVE) ALL
         S: b6 BAD
         C: b7 SEARCH RETURN (MIN) NOSUCHKEY
         S: b7 BAD
         C: b8 SEARCH 1:2
         S= * SEARCH 1 2
         S: b8 OK",
    )
    .await;
    server.stop().await;
}

/// STATUS=SIZE (RFC 8438): a folder's SIZE is what its messages' RFC822.SIZE add up to;
/// CHILDREN and SPECIAL-USE are announced with the LIST attributes they promise (`Junk` is
/// `\\Junk`); `UID FETCH 4294967295` names no message and answers nothing; DELETED-STORAGE
/// is 0 in the read-only archive.
#[tokio::test]
async fn transcript_status_size_children_special_use_and_the_last_uid() {
    let (_dir, server) = server_with(&[PLAIN, OUTBOUND]).await;
    let sizes = [PLAIN.len(), OUTBOUND.len()];
    let total: usize = sizes.iter().sum();
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK [CAPABILITY IMAP4REV1 IDLE NAMESPACE UNSELECT ENABLE BINARY SORT SORT=DISPLAY \
            THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESEARCH ESORT CHILDREN SPECIAL-USE STATUS=SIZE
         C: a2 STATUS INBOX (MESSAGES SIZE DELETED-STORAGE)
         S= * STATUS INBOX (MESSAGES 2 SIZE {total} DELETED-STORAGE 0)
         S: a2 OK STATUS completed
         C: a3 STATUS Outbound (SIZE)
         S= * STATUS Outbound (SIZE {outbound})
         S: a3 OK
         C: a4 LIST \"\" Junk
         S= * LIST (\\HasNoChildren \\Junk) \"/\" Junk
         S: a4 OK
         C: a5 LIST \"\" \"By month\"
         S= * LIST (\\Noselect \\HasChildren) \"/\" \"By month\"
         S: a5 OK
         C: a6 EXAMINE INBOX
         S: * FLAGS",
        outbound = sizes[1],
    ))
    .await;
    while !c.line().await.starts_with("a6 OK") {}
    c.play(
        "C: b1 UID FETCH 4294967295 (UID FLAGS)
         S: b1 OK FETCH completed
         C: b2 UID FETCH 1:4294967295 (UID)
         S= * 1 FETCH (UID 1)
         S= * 2 FETCH (UID 2)
         S: b2 OK
         C: b3 FETCH 1:2 (RFC822.SIZE)",
    )
    .await;
    for (i, size) in sizes.iter().enumerate() {
        let line = c.line().await;
        assert_eq!(line, format!("* {} FETCH (RFC822.SIZE {size})\r\n", i + 1));
    }
    c.expect("b3 OK").await;
    server.stop().await;
}

/// LIST-STATUS (RFC 5819): `LIST … RETURN (STATUS (…))` gives each selectable folder's STATUS
/// after its LIST line, none for a folder that only holds folders; unknown return options
/// answer BAD and the session goes on.
#[tokio::test]
async fn transcript_list_status() {
    let (_dir, server) = server_with(&[PLAIN, OUTBOUND]).await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN auditor \"{PASSWORD}\"
         S: a1 OK
         C: a2 LIST \"\" \"In%\" RETURN (STATUS (MESSAGES UNSEEN))
         S= * LIST (\\HasNoChildren) \"/\" INBOX
         S= * STATUS INBOX (MESSAGES 2 UNSEEN 2)
         S= * LIST (\\HasNoChildren) \"/\" Inbound
         S= * STATUS Inbound (MESSAGES 1 UNSEEN 1)
         S= * LIST (\\HasNoChildren) \"/\" Internal
         S= * STATUS Internal (MESSAGES 0 UNSEEN 0)
         S: a2 OK LIST completed
         C: a3 LIST \"\" \"By month\" RETURN (CHILDREN STATUS (MESSAGES))
         S= * LIST (\\Noselect \\HasChildren) \"/\" \"By month\"
         S: a3 OK LIST completed
         C: a4 LIST \"\" Outbound RETURN (SUBSCRIBED)
         S= * LIST (\\HasNoChildren) \"/\" Outbound
         S: a4 OK
         C: a5 LIST \"\" * RETURN (MYRIGHTS)
         S: a5 BAD
         C: a6 LIST \"\" * RETURN (STATUS (NOSUCHITEM))
         S: a6 BAD
         C: a7 NOOP
         S: a7 OK"
    ))
    .await;
    server.stop().await;
}

/// What each account may do, told the RFC 4314 way: `lrsw` where it can read (and keep its
/// own `\Seen` and `\Flagged`, which last), `l` on folders that only hold folders, no folder
/// it cannot see, and ACLs nobody may read or change over IMAP.
#[tokio::test]
async fn transcript_acl_rights_are_what_an_account_may_really_do() {
    let (_dir, server) = server_with(&[PLAIN]).await;
    let mut c = Raw::connect(&server).await;
    c.writer
        .write_all(b"a0 CAPABILITY\r\n")
        .await
        .expect("write");
    let caps = c.expect("* CAPABILITY ").await;
    assert!(
        caps.contains(" ACL ") && caps.contains(" RIGHTS=texk"),
        "{caps:?}"
    );
    c.play(&format!(
        "S: a0 OK
         C: a1 MYRIGHTS INBOX
         S: a1 BAD
         C: a2 LOGIN auditor \"{PASSWORD}\"
         S: a2 OK [CAPABILITY"
    ))
    .await;
    c.writer
        .write_all(b"a3 CAPABILITY\r\n")
        .await
        .expect("write");
    let caps = c.expect("* CAPABILITY ").await;
    assert!(
        caps.contains(" ACL ") && caps.contains(" RIGHTS=texk"),
        "{caps:?}"
    );
    c.expect("a3 OK").await;

    let exact = [
        ("a4 MYRIGHTS INBOX", "* MYRIGHTS \"INBOX\" lrsw\r\n"),
        ("a5 myrights \"inbox\"", "* MYRIGHTS \"inbox\" lrsw\r\n"),
        ("a6 MYRIGHTS \"By month\"", "* MYRIGHTS \"By month\" l\r\n"),
        (
            "a7 MYRIGHTS \"By month/2026/11\"",
            "* MYRIGHTS \"By month/2026/11\" lrsw\r\n",
        ),
        ("a8 MYRIGHTS Junk", "* MYRIGHTS \"Junk\" lrsw\r\n"),
    ];
    for (command, answer) in exact {
        c.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("write");
        assert_eq!(c.line().await, answer, "{command}");
        let tag = command.split(' ').next().unwrap_or_default();
        c.expect(&format!("{tag} OK")).await;
    }
    c.play(
        "C: b1 MYRIGHTS Nowhere
         S: b1 NO [NONEXISTENT]
         C: b2 MYRIGHTS \"By month/1999/01\"
         S: b2 NO [NONEXISTENT]
         C: b3 GETACL INBOX
         S: b3 NO [NOPERM]
         C: b4 GETACL Nowhere
         S: b4 NO [NONEXISTENT]
         C: b5 LISTRIGHTS INBOX auditor
         S: b5 NO [NOPERM]
         C: b6 SETACL INBOX anyone +lrswite
         S: b6 NO [NOPERM]
         C: b7 DELETEACL INBOX anyone
         S: b7 NO [NOPERM]
         C: b8 MYRIGHTS
         S: b8 BAD
         C: b9 MYRIGHTS INBOX Outbound
         S: b9 BAD
         C: b10 MYRIGHTS &Jjo
         S: b10 NO
         C: b11 FROBNICATE INBOX
         S: b11 BAD",
    )
    .await;

    // Pipelined after other commands, with a literal: answers stay in order.
    c.writer
        .write_all(b"c1 NOOP\r\nc2 MYRIGHTS {8+}\r\nOutbound\r\nc3 NOOP\r\n")
        .await
        .expect("write");
    c.expect("c1 OK").await;
    assert_eq!(c.line().await, "* MYRIGHTS \"Outbound\" lrsw\r\n");
    c.expect("c2 OK").await;
    c.expect("c3 OK").await;
    c.writer
        .write_all(b"c4 MYRIGHTS {5}\r\n")
        .await
        .expect("write");
    c.expect("+ ").await;
    c.writer.write_all(b"INBOX\r\n").await.expect("write");
    assert_eq!(c.line().await, "* MYRIGHTS \"INBOX\" lrsw\r\n");
    c.expect("c4 OK").await;

    // `s` and `w` are real: \Seen and \Flagged are the account's own and stay.
    c.play(
        "C: d1 SELECT INBOX
         S: * FLAGS
         S: * 1 EXISTS
         S: * 0 RECENT
         S: * OK [UNSEEN 1]
         S: * OK [UIDVALIDITY
         S: * OK [UIDNEXT
         S: * OK [PERMANENTFLAGS (\\Seen \\Flagged)]
         S: d1 OK [READ-WRITE]
         C: d2 MYRIGHTS INBOX
         S: * MYRIGHTS \"INBOX\" lrsw
         S: d2 OK
         C: d3 STORE 1 +FLAGS (\\Seen \\Flagged)
         S: * 1 FETCH (FLAGS (\\Seen \\Flagged))
         S: d3 OK
         C: d4 STORE 1 +FLAGS (\\Deleted)
         S: d4 NO [CANNOT]
         C: d5 LOGOUT
         S: * BYE
         S: d5 OK",
    )
    .await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: e1 LOGIN auditor \"{PASSWORD}\"
         S: e1 OK
         C: e2 EXAMINE INBOX
         S: * FLAGS
         S: * 1 EXISTS
         S: * 0 RECENT
         S: * OK [UIDVALIDITY
         S: * OK [UIDNEXT
         S: * OK [PERMANENTFLAGS ()]
         S: e2 OK [READ-ONLY]
         C: e3 FETCH 1 (FLAGS)
         S: * 1 FETCH (FLAGS (\\Seen \\Flagged))
         S: e3 OK
         C: e4 LOGOUT
         S: * BYE
         S: e4 OK"
    ))
    .await;
    server.stop().await;
}

/// A salesperson's rights: `lrsw` in her own folders, and other people's folders and Junk
/// do not exist for her, for MYRIGHTS as for SELECT.
#[tokio::test]
async fn transcript_acl_a_salesperson_has_rights_only_where_she_may_read() {
    const TO_ALICE: &[u8] = b"From: Marta <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\nSubject: for alice\r\nMessage-ID: <myrights-1@fabrikam.com>\r\n\r\nalice only\r\n";
    const FROM_BOB: &[u8] = b"From: bob@contoso.com\r\nTo: buyer@fabrikam.com\r\nSubject: from bob\r\nMessage-ID: <myrights-2@contoso.com>\r\n\r\nbob only\r\n";
    let (_dir, server) = server_with_people(
        &[TO_ALICE, FROM_BOB],
        &[("alice", Role::Salesperson, Some("AS"))],
    )
    .await;
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN alice \"{PASSWORD}\"
         S: a1 OK
         C: a2 MYRIGHTS INBOX
         S: * MYRIGHTS \"INBOX\" lrsw
         S: a2 OK
         C: a3 MYRIGHTS \"Salespeople/Alice Seller\"
         S: * MYRIGHTS \"Salespeople/Alice Seller\" lrsw
         S: a3 OK
         C: a4 MYRIGHTS \"Contacts/Fabrikam/Marta Buyer\"
         S: * MYRIGHTS \"Contacts/Fabrikam/Marta Buyer\" lrsw
         S: a4 OK
         C: a5 MYRIGHTS Contacts
         S: * MYRIGHTS \"Contacts\" l
         S: a5 OK
         C: a6 MYRIGHTS \"Contacts/Fabrikam/Buyer\"
         S: a6 NO [NONEXISTENT]
         C: a7 MYRIGHTS \"Salespeople/Bob Manager\"
         S: a7 NO [NONEXISTENT]
         C: a8 MYRIGHTS Junk
         S: a8 NO [NONEXISTENT]
         C: a9 GETACL INBOX
         S: a9 NO [NOPERM]
         C: a10 GETACL Junk
         S: a10 NO [NONEXISTENT]
         C: a11 LOGOUT
         S: * BYE
         S: a11 OK"
    ))
    .await;
    server.stop().await;
}

/// RFC 3516: a partial BINARY answer names its origin, `BINARY[1]<0>`, for base64 and
/// quoted-printable parts alike; data with NUL stays a literal8.
#[tokio::test]
async fn transcript_partial_binary_names_its_origin() {
    const PARTS: &[u8] = b"From: Marta <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: parts\r\n\
Message-ID: <binary-1@fabrikam.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
YWJjZGVmZ2hpams=\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=C3=A9 au lait\r\n\
--b\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQ=\r\n\
--b--\r\n";
    let (_dir, server) = server_with(&[PARTS]).await;
    let mut c = Raw::connect(&server).await;
    c.examine_one("auditor").await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "b1 FETCH 1 (BINARY.PEEK[1]<0.7> BINARY.PEEK[1]<3.5>)",
            b"* 1 FETCH (BINARY[1]<0> {7}\r\nabcdefg BINARY[1]<3> {5}\r\ndefgh)\r\n",
        ),
        (
            "b2 UID FETCH 1 (BINARY.PEEK[2]<0.7> BINARY.PEEK[2]<3.5> BINARY.SIZE[2])",
            b"* 1 FETCH (UID 1 BINARY[2]<0> {7}\r\nCaf\xc3\xa9 a BINARY[2]<3> {5}\r\n\xc3\xa9 au \
              BINARY.SIZE[2] 13)\r\n",
        ),
        (
            "b3 FETCH 1 (BINARY.PEEK[3]<1.3> BINARY.PEEK[3]<3.5>)",
            b"* 1 FETCH (BINARY[3]<1> {3}\r\n\x01\x02\x03 BINARY[3]<3> {2}\r\n\x03\x04)\r\n",
        ),
        (
            "b4 FETCH 1 (BINARY.PEEK[3]<0.2> BINARY.PEEK[1]<20.5> BINARY.PEEK[1])",
            b"* 1 FETCH (BINARY[3]<0> ~{2}\r\n\x00\x01 BINARY[1]<20> {0}\r\n \
              BINARY[1] {11}\r\nabcdefghijk)\r\n",
        ),
    ];
    for (command, want) in cases {
        c.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("write");
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_exact(&mut c.reader, &mut got),
        )
        .await
        .expect("in time")
        .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{command}"
        );
        let tag = command.split(' ').next().unwrap_or_default();
        c.expect(&format!("{tag} OK")).await;
    }
    server.stop().await;
}

/// A message that came with bare LFs is archived as it came and served over IMAP with CRLF,
/// RFC822.SIZE and partial offsets counting what is sent; the CLI still hands back the bytes
/// that were accepted.
#[tokio::test]
async fn bare_lf_mail_is_served_with_crlf_and_kept_as_it_came() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eml = crate::support::fixtures().join("bare-lf.eml");
    let original = std::fs::read(&eml).expect("fixture");
    assert!(original.contains(&b'\n') && !original.contains(&b'\r'));
    let crlf: Vec<u8> = String::from_utf8(original.clone())
        .expect("text")
        .replace('\n', "\r\n")
        .into_bytes();
    let out = crate::support::mailjournal(&["ingest", eml.to_str().expect("path")], dir.path());
    assert!(out.status.success(), "{out:?}");

    let server = Server::start(&server_settings(dir.path()), Arc::new(SystemClock))
        .await
        .expect("server starts");
    let archive = server.archive().expect("archive");
    archive
        .put_account(&crate::support::account(
            "auditor",
            PASSWORD,
            Role::Auditor,
            None,
        ))
        .expect("account");
    let mut s = login(&server).await;
    s.examine("INBOX").await.expect("examine");
    let size_only = answers(s.fetch("1", "RFC822.SIZE").await).await;
    assert_eq!(size_only[0].size, Some(crlf.len() as u32));
    let got = answers(
        s.fetch("1", "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT])")
            .await,
    )
    .await;
    let body = got[0].body().expect("BODY[]");
    assert_eq!(
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&crlf),
        "every line ends with CRLF"
    );
    assert_eq!(
        got[0].size,
        Some(body.len() as u32),
        "RFC822.SIZE counts it"
    );
    let text = got[0].text().expect("BODY[TEXT]");
    assert!(crlf.ends_with(text) && text.ends_with(b"\r\n"), "{text:?}");
    let larger = s
        .search(format!("LARGER {}", original.len()))
        .await
        .expect("search");
    assert_eq!(larger.len(), 1, "SEARCH LARGER compares the size served");
    s.logout().await.expect("logout");

    // A partial offset counts the CRLFs too.
    let mut c = Raw::connect(&server).await;
    c.examine_one("auditor").await;
    c.writer
        .write_all(b"a3 FETCH 1 (BODY.PEEK[]<10.40>)\r\n")
        .await
        .expect("write");
    let mut want = b"* 1 FETCH (BODY[]<10> {40}\r\n".to_vec();
    want.extend_from_slice(&crlf[10..50]);
    want.extend_from_slice(b")\r\n");
    let mut got = vec![0u8; want.len()];
    tokio::io::AsyncReadExt::read_exact(&mut c.reader, &mut got)
        .await
        .expect("read");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    c.expect("a3 OK").await;
    server.stop().await;

    // The archive still holds, and hands back, the bytes it accepted.
    let shown = crate::support::mailjournal(&["show", "1"], dir.path());
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(
        shown.stdout, original,
        "show gives the original bare-LF bytes"
    );
}

/// `mailjournal directory import` against the running server (through its admin socket),
/// with these CSV files written into `dir`.
pub async fn import_directory(data_dir: &std::path::Path, salespeople: &str, contacts: &str) {
    let files = data_dir.join("import");
    std::fs::create_dir_all(&files).expect("mkdir");
    let (s, c) = (files.join("salespeople.csv"), files.join("contacts.csv"));
    std::fs::write(&s, salespeople).expect("write");
    std::fs::write(&c, contacts).expect("write");
    let data_dir = data_dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let (s, c) = (s.display().to_string(), c.display().to_string());
        crate::support::mailjournal(
            &["directory", "import", "--salespeople", &s, "--contacts", &c],
            &data_dir,
        )
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "directory import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const RENAME_SALESPEOPLE: &str = "code,name,email\nAS,Alice Seller,alice@contoso.com\n\
                                      BM,Bob Manager,bob@contoso.com\n";
/// Bob Müller (mail with Alice) and Dan Dealer (mail with Bob Manager only), at Example Net.
pub const RENAME_BEFORE: &str = "number,name,company,emails\n\
                                 2001,Bob Müller,Example Net,bob.mueller@example.net\n\
                                 2002,Dan Dealer,Example Net,dan@example.net\n";
/// The company renamed, Bob's name spelt anew.
pub const RENAME_AFTER: &str = "number,name,company,emails\n\
                                2001,Bob Mueller,Example Net GmbH,bob.mueller@example.net\n\
                                2002,Dan Dealer,Example Net GmbH,dan@example.net\n";
pub const FROM_BOB_MUELLER: &[u8] = b"From: bob.mueller@example.net\r\nTo: alice@contoso.com\r\n\
Subject: offer\r\nMessage-ID: <rename-1@example.net>\r\n\r\nthe offer\r\n";
pub const TO_BOB_MUELLER: &[u8] = b"From: alice@contoso.com\r\nTo: bob.mueller@example.net\r\n\
Subject: Re: offer\r\nMessage-ID: <rename-2@contoso.com>\r\n\r\nthanks\r\n";
pub const FROM_DAN: &[u8] = b"From: dan@example.net\r\nTo: bob@contoso.com\r\n\
Subject: dan's\r\nMessage-ID: <rename-3@example.net>\r\n\r\nfor bob\r\n";

#[tokio::test]
async fn a_renamed_contact_folder_keeps_opening_under_its_old_path() {
    let (dir, server) = server_with(&[FROM_BOB_MUELLER, TO_BOB_MUELLER, FROM_DAN]).await;
    import_directory(dir.path(), RENAME_SALESPEOPLE, RENAME_BEFORE).await;
    // "Bob Müller": ü is U+00FC, "APw" in modified base64.
    const OLD: &str = "Contacts/Example Net/Bob M&APw-ller";
    const NEW: &str = "Contacts/Example Net GmbH/Bob Mueller";
    const OLD_DAN: &str = "Contacts/Example Net/Dan Dealer";
    let mut s = login(&server).await;
    assert!(
        folder_names(&mut s, "", "Contacts/*")
            .await
            .contains(&OLD.to_owned())
    );
    let before = s.examine(OLD).await.expect("examine");
    assert_eq!(before.exists, 2);
    let uids = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };
    let before_uids = uids(
        s.uid_search("ALL")
            .await
            .expect("search")
            .into_iter()
            .collect(),
    );

    import_directory(dir.path(), RENAME_SALESPEOPLE, RENAME_AFTER).await;
    let names = folder_names(&mut s, "", "Contacts/*").await;
    assert!(names.contains(&NEW.to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("Contacts/Example Net/")),
        "LIST shows only today's paths: {names:?}"
    );
    // The old path opens the same folder: same messages, UIDs and UIDVALIDITY.
    for name in [OLD, NEW] {
        let selected = s.select(name).await.expect("select");
        assert_eq!(selected.exists, 2, "{name}");
        assert_eq!(selected.uid_validity, before.uid_validity, "{name}");
        assert_eq!(selected.uid_next, before.uid_next, "{name}");
        let now = uids(
            s.uid_search("ALL")
                .await
                .expect("search")
                .into_iter()
                .collect(),
        );
        assert_eq!(now, before_uids, "{name}");
        let first = answers(s.uid_fetch(&now[0].to_string(), "BODY.PEEK[]").await).await;
        assert_eq!(first[0].body(), Some(FROM_BOB_MUELLER), "{name}");
        let status = s
            .status(name, "(MESSAGES UIDVALIDITY UIDNEXT)")
            .await
            .expect("status");
        assert_eq!(status.exists, 2, "{name}");
        assert_eq!(status.uid_validity, before.uid_validity, "{name}");
    }
    assert_eq!(s.examine(OLD_DAN).await.expect("Dan's old path").exists, 1);
    s.logout().await.expect("logout");

    // Alice may read Bob Müller's mail, not Dan's: Dan's old path is as unknown to her as a
    // folder that never was.
    let alice = crate::support::account("alice", PASSWORD, Role::Salesperson, Some("AS"));
    server
        .archive()
        .expect("archive")
        .put_account(&alice)
        .expect("account");
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN alice \"{PASSWORD}\"
         S: a1 OK
         C: a2 STATUS \"{OLD}\" (MESSAGES)
         S: * STATUS \"{OLD}\" (MESSAGES 2)
         S: a2 OK
         C: a3 EXAMINE \"{OLD_DAN}\"
         S: a3 NO No such folder
         C: a4 STATUS \"{OLD_DAN}\" (MESSAGES)
         S: a4 NO No such folder
         C: a5 EXAMINE \"Contacts/Example Net/Nobody\"
         S: a5 NO No such folder
         C: a6 EXAMINE \"{OLD}\"
         S: * FLAGS"
    ))
    .await;
    drop(c);

    // Dan takes Bob's old path: it is Dan's folder now, not an alias of Bob's.
    let dan_there = RENAME_AFTER.replace(
        "2002,Dan Dealer,Example Net GmbH",
        "2002,Bob Müller,Example Net",
    );
    import_directory(dir.path(), RENAME_SALESPEOPLE, &dan_there).await;
    let mut s = login(&server).await;
    assert_eq!(
        s.examine(OLD).await.expect("examine").exists,
        1,
        "Dan's mail"
    );
    assert_eq!(
        s.examine(NEW).await.expect("examine").exists,
        2,
        "Bob's mail"
    );
    let mut c = Raw::connect(&server).await;
    c.play(&format!(
        "C: a1 LOGIN alice \"{PASSWORD}\"
         S: a1 OK
         C: a2 EXAMINE \"{OLD}\"
         S: a2 NO No such folder"
    ))
    .await;
    s.logout().await.expect("logout");
    server.stop().await;
}

/// Issue 18: the time zone of an mbox `From ` line counts, wherever the writer put it; the
/// line's date is the message's INTERNALDATE (and, without a `Date:` header, its date).
#[tokio::test]
async fn mbox_from_line_zones_make_the_internaldate() {
    let src = tempfile::tempdir().expect("tempdir");
    let mbox = "From a@fabrikam.com Sat Mar 24 23:00:00 2007 +0200\n\
From: a@fabrikam.com\nTo: alice@contoso.com\nSubject: after the year\nMessage-ID: <tz1@f>\n\nx\n\n\
From b@fabrikam.com Sat Mar 24 23:00:00 -0500 2007\n\
From: b@fabrikam.com\nTo: alice@contoso.com\nSubject: before the year\nMessage-ID: <tz2@f>\n\nx\n\n\
From c@fabrikam.com Sat Mar 24 23:00:00 2007\n\
From: c@fabrikam.com\nTo: alice@contoso.com\nSubject: no zone\nMessage-ID: <tz3@f>\n\nx\n\n\
From d@fabrikam.com Sat Mar 24 23:00:00 GMT 2007\n\
From: d@fabrikam.com\nTo: alice@contoso.com\nSubject: named zone\nMessage-ID: <tz4@f>\n\nx\n";
    let file = src.path().join("old.mbox");
    std::fs::write(&file, mbox).expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let out = crate::support::mailjournal(&["ingest", file.to_str().expect("utf-8")], data.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2007-03-24T23:00:00Z
    const UTC: i64 = 1_174_777_200;
    let want = [
        ("after the year", UTC - 2 * 3600, "2007-03-24T21:00:00Z"),
        ("before the year", UTC + 5 * 3600, "2007-03-25T04:00:00Z"),
        ("no zone", UTC, "2007-03-24T23:00:00Z"),
        ("named zone", UTC, "2007-03-24T23:00:00Z"),
    ];
    let listed = crate::support::mailjournal(&["list", "--json"], data.path());
    let dates: Vec<(String, String)> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["subject"].as_str().unwrap_or_default().to_owned(),
                v["date"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want_dates: Vec<(String, String)> = want
        .iter()
        .map(|(s, _, d)| ((*s).to_owned(), (*d).to_owned()))
        .collect();
    assert_eq!(dates, want_dates, "list --json");

    let server = Server::start(
        &crate::support::server_settings(data.path()),
        Arc::new(SystemClock),
    )
    .await
    .expect("server starts");
    server
        .archive()
        .expect("archive")
        .put_account(&crate::support::account(
            "auditor",
            PASSWORD,
            Role::Auditor,
            None,
        ))
        .expect("account");
    let mut s = login(&server).await;
    s.select("INBOX").await.expect("select");
    let fetched = answers(s.fetch("1:*", "(INTERNALDATE)").await).await;
    let got: Vec<Option<i64>> = fetched
        .iter()
        .map(|f| f.internal_date().map(|d| d.timestamp()))
        .collect();
    let want_internal: Vec<Option<i64>> = want.iter().map(|(_, t, _)| Some(*t)).collect();
    assert_eq!(got, want_internal, "INTERNALDATE");
    s.logout().await.expect("logout");
    server.stop().await;
}

/// Issue 12, access defect 1 over IMAP: SEARCH BCC finds a message by its blind copy only
/// for the blind recipient's own salesperson (and accounts that see everything), never for
/// another salesperson who may read the message.
#[tokio::test]
async fn transcript_search_bcc_does_not_reveal_another_salespersons_blind_copy() {
    let (_dir, server) = server_with_people(
        &[crate::http::BLIND_COPY_REPORT],
        &[
            ("alice", Role::Salesperson, Some("AS")),
            ("bob", Role::Salesperson, Some("BM")),
        ],
    )
    .await;
    for (user, bcc_bob) in [("alice", ""), ("bob", " 1"), ("auditor", " 1")] {
        let mut c = Raw::connect(&server).await;
        c.examine_one(user).await;
        c.play("C: a3 SEARCH BCC bob").await;
        // The whole line: a transcript line is a prefix, and `* SEARCH` is one of
        // `* SEARCH 1`.
        assert_eq!(c.line().await, format!("* SEARCH{bcc_bob}\r\n"), "{user}");
        c.play(
            "S: a3 OK SEARCH completed
             C: a4 SEARCH TO alice
             S: * SEARCH 1
             S: a4 OK SEARCH completed
             C: a5 LOGOUT
             S: * BYE
             S: a5 OK",
        )
        .await;
    }
    server.stop().await;
}
