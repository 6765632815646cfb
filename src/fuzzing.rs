//! What the fuzz targets in `fuzz/` run (`scripts/fuzz`), and what the tests replay over
//! the seed corpora in `fuzz/seeds/` on every `cargo test`: each entry point takes arbitrary
//! bytes and panics only when the code under test breaks a promise (a panic of its own, a
//! wrong answer, a message not kept byte for byte).
//!
//! Built only for the tests and under `cargo fuzz` (`--cfg fuzzing`); not part of the
//! product's interface.

use std::sync::{Arc, OnceLock};

use crate::archive::{Account, Archive, Role};
use crate::config::{DEFAULT_CONFIG, Settings};
use crate::ingest::{self, Analyzed, Envelope, Policy};

/// The embedded default configuration, with the data directory (if any) set.
fn settings(data_dir: Option<&std::path::Path>) -> Settings {
    let dir = data_dir.map(|d| d.display().to_string());
    Settings::from_toml(DEFAULT_CONFIG, "fuzz", |name| {
        (name == "MAILJOURNAL_DATA_DIR")
            .then(|| dir.clone())
            .flatten()
    })
    .unwrap_or_else(|e| panic!("the embedded default configuration is valid: {e}"))
}

/// Folder names and LIST patterns: modified UTF-7 decoding never panics and round-trips,
/// and the wildcard matcher (linear, iterative) agrees with a plain recursive one on short
/// inputs. The first line is the pattern, the rest the name.
pub fn imap_names(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, ""));
    for s in [pattern, name] {
        if let Ok(decoded) = crate::mutf7::decode(s) {
            let again = crate::mutf7::encode(&decoded);
            assert_eq!(
                crate::mutf7::decode(&again).ok().as_deref(),
                Some(decoded.as_str()),
                "encode then decode of {decoded:?} (from {s:?})"
            );
        }
        let encoded = crate::mutf7::encode(s);
        assert_eq!(
            crate::mutf7::decode(&encoded).ok().as_deref(),
            Some(s),
            "decode of encode({s:?}) = {encoded:?}"
        );
    }
    let got = crate::imap::mailbox::matches(pattern, name);
    if pattern.chars().count() <= 12 && name.chars().count() <= 24 {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        assert_eq!(got, naive_match(&p, &n), "{pattern:?} against {name:?}");
    }
}

/// RFC 3501's `*` (anything) and `%` (anything but the hierarchy delimiter), the obvious
/// exponential way: only for short inputs, as the reference.
fn naive_match(p: &[char], n: &[char]) -> bool {
    let delimiter = crate::imap::mailbox::DELIMITER;
    match p.split_first() {
        None => n.is_empty(),
        Some(('*', rest)) => (0..=n.len()).any(|i| naive_match(rest, &n[i..])),
        Some(('%', rest)) => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != delimiter)
            .any(|i| naive_match(rest, &n[i..])),
        Some((c, rest)) => n.first() == Some(c) && naive_match(rest, &n[1..]),
    }
}

/// The ACL command reader: never a panic, and a wire name (printable US-ASCII, as modified
/// UTF-7 is) that it quotes reads back as itself.
pub fn imap_acl(data: &[u8]) {
    let _ = crate::imap::acl::parse(data);
    let name: String = String::from_utf8_lossy(data)
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .collect();
    let line = format!("a MYRIGHTS {}\r\n", crate::imap::acl::quoted(&name));
    if let Ok(command) = crate::imap::acl::parse(line.as_bytes()) {
        assert_eq!(
            command.mailbox(),
            name.as_bytes(),
            "quoted({name:?}) = {line:?}"
        );
    }
}

/// The configuration loader: a problem list, never a panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Settings::from_toml(&text, "fuzz.toml", |_| None);
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::from_settings(&settings(None)))
}

/// The ingest pipeline's pure part (MIME, journal-report unwrapping, classification,
/// junk rules) on arbitrary bytes: never a panic, the same result twice, and what it would
/// archive is the input byte for byte.
pub fn analyze(data: &[u8]) {
    let envelope = Envelope {
        mail_from: Some("journal-sender@example.com".into()),
        received_at: 1_700_000_000,
    };
    let first = ingest::analyze(data, &envelope, policy());
    if !data.is_empty() && data.len() as u64 <= policy().max_message_size {
        assert!(
            first.is_ok(),
            "a non-empty message within the size limit is archived, parseable or not"
        );
    }
    let second = ingest::analyze(data, &envelope, policy());
    match (first, second) {
        (Ok(Analyzed::Store(a)), Ok(Analyzed::Store(b))) => {
            assert_eq!(a.id, b.id, "the stable id is a function of the bytes");
            let kept = a.decoded().expect("what is stored decodes");
            assert_eq!(a.size, kept.len() as u64);
            assert_eq!(a.blob, crate::archive::BlobHash::of(&kept));
            // A journal report is archived as the original message it carries (its bytes
            // as they are in the report); anything else as it came.
            if !a.meta.flags.contains(&crate::archive::Flag::JournalReport) {
                assert!(kept == data, "the stored form gives back the input");
            }
        }
        (Ok(Analyzed::DropJunk { .. }), Ok(Analyzed::DropJunk { .. })) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("two answers for the same bytes: {a:?} and {b:?}"),
    }
}

/// One archive, runtime and SMTP context for every input of the SMTP session target.
struct SmtpFixture {
    runtime: tokio::runtime::Runtime,
    ctx: Arc<crate::smtp::Context>,
}

fn smtp_fixture() -> &'static SmtpFixture {
    static FIXTURE: OnceLock<SmtpFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fixture_dir("smtp");
        let settings = settings(Some(&dir));
        let archive = Arc::new(Archive::open(&dir).expect("open the fuzz archive"));
        let (ingestor, _committer) =
            ingest::Ingestor::start(archive, policy().clone()).expect("ingestor");
        let ctx = Arc::new(crate::smtp::Context {
            settings: settings.smtp.clone(),
            // Small: what the fuzzer sends is small, and the archive stays small too.
            max_message_size: 64 * 1024,
            ingestor,
            tls: None,
            logging: Arc::new(crate::runtime::LoggingSwitch::new(settings.logging)),
            logins: Arc::new(crate::auth::Logins::standard()),
            clock: Arc::new(crate::clock::SystemClock),
            data_budget: Arc::new(tokio::sync::Semaphore::new(16 * 1024)),
            shutdown: tokio_util::sync::CancellationToken::new(),
            metrics: Arc::default(),
            hard_stop: tokio_util::sync::CancellationToken::new(),
        });
        SmtpFixture {
            runtime: paused_runtime(),
            ctx,
        }
    })
}

/// A runtime on paused time: login delays and timeouts pass at once, not in seconds.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// An SMTP session from a journaling source (loopback, so no AUTH needed) on a real
/// archive: the input is what the client sends. Never a panic, the greeting always comes,
/// and every reply line is a well-formed SMTP reply.
pub fn smtp_session(data: &[u8]) {
    let fixture = smtp_fixture();
    let ctx = Arc::clone(&fixture.ctx);
    let out = converse(&fixture.runtime, data.to_vec(), move |server, peer| {
        crate::smtp::session::Session::new(ctx, server, peer).run(false)
    });
    assert!(
        out.starts_with(b"220 "),
        "no greeting: {:?}",
        String::from_utf8_lossy(&out)
    );
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let ok = line.len() >= 5
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line[3], b' ' | b'-')
            && line.ends_with(b"\r");
        assert!(
            ok,
            "not an SMTP reply line: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// The directory's CSV readers (salespeople and contacts): problems with line numbers,
/// never a panic.
pub fn directory_csv(data: &[u8]) {
    let _ = crate::directory::parse_salespeople(data, "fuzz.csv");
    let _ = crate::directory::parse_contacts(data, "fuzz.csv");
}

/// A fresh directory for a fixture of this process, under the system's temporary one.
/// Statics are never dropped: each run removes what runs that ended left behind.
fn fixture_dir(what: &str) -> std::path::PathBuf {
    let prefix = "mailjournal-fuzz-";
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.split('-').next());
        if pid.is_some_and(|p| !std::path::Path::new("/proc").join(p).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("{prefix}{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One archive, runtime and IMAP context for every input of the session target.
struct ImapFixture {
    runtime: tokio::runtime::Runtime,
    ctx: Arc<crate::imap::Context>,
}

/// The accounts of the session fixture and their passwords.
pub const IMAP_ACCOUNTS: [(&str, &str); 2] = [("admin", "fuzz-admin"), ("alice", "fuzz-alice")];

fn imap_fixture() -> &'static ImapFixture {
    static FIXTURE: OnceLock<ImapFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fixture_dir("imap");
        let settings = settings(Some(&dir));
        let archive = Arc::new(Archive::open(&dir).expect("open the fuzz archive"));
        let (ingestor, _committer) =
            ingest::Ingestor::start(Arc::clone(&archive), policy().clone()).expect("ingestor");
        for (i, raw) in SEED_MESSAGES.iter().enumerate() {
            let envelope = Envelope {
                mail_from: None,
                received_at: 1_700_000_000 + i as i64 * 86_400,
            };
            ingestor
                .ingest_blocking(raw, &envelope)
                .expect("store a seed message");
        }
        // Kept for the process's life: the session's STOREs commit through it.
        std::mem::forget(ingestor);
        // A directory, so that the salesperson account sees her own folders and mail.
        let (salespeople, _) = crate::directory::parse_salespeople(
            b"code,name,email\nAS,Alice Seller,alice@example.com\nBO,Bob Other,bob@example.com\n"
                .as_slice(),
            "fuzz",
        );
        let (contacts, _) = crate::directory::parse_contacts(
            b"number,name,company,emails\n1,Marta Buyer,Fabrikam,marta@fabrikam.com\n2,Buyer,Fabrikam,buyer@fabrikam.com\n"
                .as_slice(),
            "fuzz",
        );
        archive
            .put_directory(&salespeople, &contacts)
            .expect("directory");
        for ((name, password), role) in IMAP_ACCOUNTS.iter().zip([Role::Admin, Role::Salesperson]) {
            let account = Account {
                name: (*name).to_owned(),
                password_hash: crate::auth::hash_password(password).expect("hash"),
                roles: vec![role],
                created: 0,
                salesperson: (role == Role::Salesperson).then(|| "AS".to_owned()),
                grants: Vec::new(),
            };
            archive.put_account(&account).expect("account");
        }
        let ctx = Arc::new(crate::imap::Context {
            settings: settings.imap.clone(),
            archive,
            tls: None,
            logins: Arc::new(crate::auth::Logins::standard()),
            shutdown: tokio_util::sync::CancellationToken::new(),
            metrics: Arc::default(),
        });
        ImapFixture {
            runtime: paused_runtime(),
            ctx,
        }
    })
}

const SEED_MESSAGES: [&[u8]; 3] = [
    b"From: Marta <marta@fabrikam.com>\r\nTo: alice@example.com\r\nSubject: price list\r\nDate: Mon, 6 Nov 2023 10:00:00 +0100\r\nMessage-ID: <fuzz-1@fabrikam.com>\r\n\r\nHello Alice\r\n",
    b"From: alice@example.com\r\nTo: buyer@fabrikam.com, Bob <bob@example.com>\r\nCc: =?utf-8?q?M=C3=BCller?= <mueller@contoso.com>\r\nSubject: Re: price list\r\nMessage-ID: <fuzz-2@example.com>\r\nIn-Reply-To: <fuzz-1@fabrikam.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsee attached =C3=A4\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n--b--\r\n",
    b"From: bob@example.com\nTo: carol@example.com\nSubject: internal, bare LF\n\nlunch?\n",
];

/// An IMAP session on an archive of a few messages: the input is what the client sends,
/// after a LOGIN as the admin (first byte even) or as a salesperson (odd) or nothing
/// (first byte a multiple of 4), so that every state is reached. Never a panic, and the
/// session ends when the client has sent everything and closed its side.
pub fn imap_session(data: &[u8]) {
    let out = session_output(data);
    assert!(
        out.starts_with(b"* OK "),
        "no greeting: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// A whole HTTP/1.1 connection from a loopback peer on the session fixture's archive,
/// directory and accounts (see [`IMAP_ACCOUNTS`]; Basic auth, signed links): hyper's
/// parser, the router and every handler. Never a panic, never a `500` (a handler's error
/// that is not the client's fault), and what is sent back are HTTP/1.1 responses.
pub fn http_session(data: &[u8]) {
    let out = http_output(data);
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 "),
        "not a response: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        memchr::memmem::find(&out, b"HTTP/1.1 500 ").is_none(),
        "an internal error: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Everything the server sent on the connection [`http_session`] runs.
fn http_output(data: &[u8]) -> Vec<u8> {
    static CTX: OnceLock<Arc<crate::http::Context>> = OnceLock::new();
    let fixture = imap_fixture();
    let ctx = Arc::clone(CTX.get_or_init(|| {
        Arc::new(crate::http::Context {
            settings: settings(None).http,
            archive: Arc::clone(&fixture.ctx.archive),
            metrics: Arc::default(),
            logins: Arc::clone(&fixture.ctx.logins),
            tokens: crate::http::Tokens::from_key(&[7; crate::http::token::KEY_LEN]),
            clock: Arc::new(crate::clock::FixedClock::new(1_700_000_000 + 10 * 86_400)),
        })
    }));
    converse(&fixture.runtime, data.to_vec(), move |server, peer| {
        crate::http::serve_connection(ctx, server, peer)
    })
}

/// Everything the server sent in the session [`imap_session`] runs.
fn session_output(data: &[u8]) -> Vec<u8> {
    let fixture = imap_fixture();
    let (first, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let mut input = Vec::with_capacity(rest.len() + 40);
    if first % 4 != 0 {
        let (name, password) = IMAP_ACCOUNTS[usize::from(first % 2)];
        input.extend_from_slice(format!("L LOGIN {name} {password}\r\n").as_bytes());
    }
    input.extend_from_slice(rest);
    let ctx = Arc::clone(&fixture.ctx);
    converse(&fixture.runtime, input, move |server, peer| {
        crate::imap::session::Session::new(ctx, server, peer).run(false)
    })
}

/// Runs the session `start` makes over an in-memory stream from a loopback peer: sends
/// `input`, closes the client's side, and returns everything the server sent until it
/// closed. A panic of the session is a panic here.
fn converse<F>(
    runtime: &tokio::runtime::Runtime,
    input: Vec<u8>,
    start: impl FnOnce(tokio::io::DuplexStream, std::net::SocketAddr) -> F,
) -> Vec<u8>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        let session = tokio::spawn(start(server, peer));
        let (mut reader, mut writer) = tokio::io::split(&mut client);
        let write = async {
            let _ = writer.write_all(&input).await;
            let _ = writer.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out).await;
            out
        };
        let ((), out) = tokio::join!(write, read);
        if let Err(e) = session.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file of the seed corpus `fuzz/seeds/NAME/` (and of `extra` directories).
    fn replay(name: &str, extra: &[&str], target: fn(&[u8])) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("fuzz/seeds").join(name)];
        dirs.extend(extra.iter().map(|d| root.join(d)));
        let mut n = 0;
        for dir in dirs {
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    target(&std::fs::read(&path).expect("read a seed"));
                    n += 1;
                }
            }
        }
        assert!(n > 0, "the seed corpus of {name} is empty");
    }

    #[test]
    fn imap_names_corpus() {
        replay("imap_names", &[], super::imap_names);
    }

    #[test]
    fn imap_acl_corpus() {
        replay("imap_acl", &[], super::imap_acl);
    }

    #[test]
    fn config_corpus() {
        replay("config", &["config"], super::config);
    }

    #[test]
    fn analyze_corpus() {
        replay("analyze", &["tests/it/fixtures"], super::analyze);
    }

    #[test]
    fn smtp_session_corpus() {
        replay("smtp_session", &[], super::smtp_session);
    }

    #[test]
    fn directory_csv_corpus() {
        replay(
            "directory_csv",
            &["tests/it/fixtures/directory"],
            super::directory_csv,
        );
    }

    #[test]
    fn imap_session_corpus() {
        replay("imap_session", &[], super::imap_session);
    }

    #[test]
    fn http_session_corpus() {
        replay("http_session", &[], super::http_session);
    }

    /// The HTTP harness really answers, and checks who asks: the admin reads a message,
    /// the salesperson gets 404 for one she may not read, a stranger 401.
    #[test]
    fn the_http_harness_serves_and_checks_access() {
        let get = |path: &str, auth: &str| {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
                data_encoding::BASE64.encode(auth.as_bytes())
            );
            String::from_utf8_lossy(&super::http_output(request.as_bytes())).into_owned()
        };
        let list = get("/api/interactions", "admin:fuzz-admin");
        assert!(list.starts_with("HTTP/1.1 200 "), "{list}");
        let fixture = super::imap_fixture();
        let records = fixture
            .ctx
            .archive
            .list(&crate::archive::Filter::default())
            .expect("list");
        let id = &records.first().expect("a message").id;
        let text = get(&format!("/m/{id}"), "admin:fuzz-admin");
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.contains("Hello Alice"), "{text}");
        let text = get(&format!("/m/{id}"), "admin:wrong");
        assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
        let unseen = records
            .iter()
            .find(|r| {
                let m = &r.meta;
                let alice = "alice@example.com";
                !m.recipients.addresses().any(|a| a == alice)
                    && m.from.as_ref().is_none_or(|f| f.address != alice)
                    && m.sender.as_deref() != Some(alice)
            })
            .map(|r| r.id.clone());
        let unseen = unseen.expect("a message Alice is no party to");
        let text = get(&format!("/m/{unseen}"), "alice:fuzz-alice");
        assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    }

    /// The SMTP harness really stores mail (one that never got past EHLO would fuzz
    /// little).
    #[test]
    fn the_smtp_harness_takes_a_message() {
        let fixture = super::smtp_fixture();
        let ctx = std::sync::Arc::clone(&fixture.ctx);
        let input = b"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<journal@example.com>\r\nDATA\r\nFrom: a@b.example\r\nSubject: x\r\n\r\nharness\r\n.\r\nQUIT\r\n";
        let out = super::converse(&fixture.runtime, input.to_vec(), move |server, peer| {
            crate::smtp::session::Session::new(ctx, server, peer).run(false)
        });
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("250 2.0.0 OK "), "{text}");
        assert!(text.contains("221 "), "{text}");
    }

    /// The seeds for SORT, THREAD, ESEARCH, unusual mailbox names and hostile input get an
    /// answer to every command, and the session goes on to the last one (none of them may
    /// take the connection down).
    #[test]
    fn hostile_and_extension_seeds_answer_every_command() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/imap_session");
        let cases: &[(&str, &[&str])] = &[
            (
                "sort-thread",
                &[
                    "a OK",
                    "* SORT",
                    "b OK",
                    "c OK",
                    "* THREAD",
                    "d OK",
                    "e OK",
                    "f BAD",
                    "g BAD",
                    "h NO [BADCHARSET",
                ],
            ),
            (
                "esearch",
                &[
                    "a OK",
                    "* ESEARCH (TAG \"b\") MIN 1",
                    "b OK",
                    "c OK",
                    "d OK",
                    "e BAD",
                    "f BAD",
                    "g OK",
                    "h OK",
                ],
            ),
            (
                "atoms",
                &[
                    "a OK", "b NO", "c NO", "d OK", "e BAD", "f BAD", "g BAD", "h BAD", "i OK",
                    "j NO",
                ],
            ),
            (
                "hostile",
                &[
                    "a OK",
                    "b OK",
                    "c OK",
                    "d OK",
                    "e BAD",
                    "f BAD",
                    "* STATUS INBOX (MESSAGES 3 SIZE",
                    "g OK",
                    "* STATUS INBOX (MESSAGES 3)",
                    "h OK",
                    "xx BAD",
                    "i OK",
                ],
            ),
        ];
        for (seed, answers) in cases {
            let data = std::fs::read(root.join(seed)).expect("read a seed");
            let out = super::session_output(&data);
            let text = String::from_utf8_lossy(&out);
            let mut rest = text.as_ref();
            for answer in *answers {
                let at = rest
                    .find(&format!("\n{answer}"))
                    .unwrap_or_else(|| panic!("{seed}: no {answer:?} after {rest:?}"));
                rest = &rest[at + 1..];
            }
        }
    }

    /// The session harness really runs commands (a harness that only saw the greeting
    /// would fuzz nothing).
    #[test]
    fn the_session_harness_logs_in_and_answers() {
        let out = super::session_output(b"\x02a SELECT INBOX\r\nb FETCH 1 (UID)\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("L OK"), "{text}");
        assert!(text.contains("a OK"), "{text}");
        assert!(text.contains("* 1 FETCH (UID 1)"), "{text}");
        // The salesperson sees her folders from the directory, not Bob's.
        let out = super::session_output(b"\x01a LIST \"\" *\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Salespeople/Alice Seller"), "{text}");
        assert!(!text.contains("Bob Other"), "{text}");
    }
}
