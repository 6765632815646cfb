//! Connecting to a pull source: TCP, TLS (implicit or STARTTLS), the greeting, the secret
//! (read afresh at every login) and LOGIN or AUTHENTICATE XOAUTH2.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_imap::imap_proto::{Response, ResponseCode, Status};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Error;
use crate::config::{PullSecret, PullSettings, PullTls};

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one IMAP command (other than fetching message data) may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a `password_command` or `xoauth2_token_command` may run.
const SECRET_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian (and most distributions) keep the trusted CA certificates.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An IMAP session with a pull source.
pub(crate) type Session = async_imap::Session<Stream>;

/// The connection under a session: plain TCP (loopback only, or before STARTTLS) or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(_) => f.write_str("Stream::Plain"),
            Stream::Tls(_) => f.write_str("Stream::Tls"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The trust roots pull sources verify servers against.
///
/// By default ([`PullClientTls::system`]) the system's CA bundle
/// (`/etc/ssl/certs/ca-certificates.crt`, or the file named by `SSL_CERT_FILE`); tests and
/// private CAs use [`PullClientTls::from_pem_file`] or [`PullClientTls::from_certificates`].
#[derive(Clone)]
pub struct PullClientTls {
    config: Arc<rustls::ClientConfig>,
    source: String,
}

impl fmt::Debug for PullClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullClientTls")
            .field("roots", &self.source)
            .finish()
    }
}

impl PullClientTls {
    /// The system's CA certificates: `SSL_CERT_FILE` if set, else
    /// `/etc/ssl/certs/ca-certificates.crt` (Debian's `ca-certificates` package).
    pub fn system() -> Result<Self, Error> {
        let path = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
        if !path.exists() {
            return Err(Error::TlsSetup(format!(
                "no trusted CA certificates: {} does not exist (install Debian's ca-certificates package, or set SSL_CERT_FILE)",
                path.display()
            )));
        }
        Self::from_pem_file(&path)
    }

    /// The CA certificates in a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, Error> {
        let bad = |e: rustls_pki_types::pem::Error| {
            Error::TlsSetup(format!(
                "reading CA certificates from {}: {e}",
                path.display()
            ))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(bad)?
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        Self::build(certs, path.display().to_string())
    }

    /// Exactly these trust roots (a private CA, or a test's self-signed certificate).
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        Self::build(certs, "certificates given".to_owned())
    }

    fn build(certs: Vec<CertificateDer<'static>>, source: String) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::TlsSetup(format!(
                "no usable CA certificate in {source}"
            )));
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::TlsSetup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            source,
        })
    }
}

/// What the server offers once logged in, as far as pull mode cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    pub move_: bool,
    pub uidplus: bool,
    pub idle: bool,
}

impl Caps {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, has) in [
            ("MOVE", self.move_),
            ("UIDPLUS", self.uidplus),
            ("IDLE", self.idle),
        ] {
            if has {
                parts.push(name);
            }
        }
        if parts.is_empty() {
            "none of MOVE, UIDPLUS, IDLE".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// Runs `fut` with a time limit, turning IMAP errors into [`Error::Imap`] naming `what`.
pub(crate) async fn timed<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Imap {
            what: what.to_owned(),
            reason: server_text(&e),
        }),
        Err(_) => Err(Error::Timeout {
            what: what.to_owned(),
            secs: limit.as_secs(),
        }),
    }
}

/// An IMAP error as a person wants to read it: for `NO` and `BAD`, the server's own words
/// (async-imap wraps them in `code: …, info: Some("…")`).
pub(crate) fn server_text(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error as E;
    match e {
        E::No(text) => format!("NO {}", unwrap_reply(text)),
        E::Bad(text) => format!("BAD {}", unwrap_reply(text)),
        E::ConnectionLost => "the server closed the connection".to_owned(),
        other => other.to_string(),
    }
}

/// `code: Some(TryCreate), info: Some("Mailbox doesn't exist")` → `[TryCreate] Mailbox
/// doesn't exist`; anything else is returned as it is.
fn unwrap_reply(text: &str) -> String {
    let Some(rest) = text.strip_prefix("code: ") else {
        return text.to_owned();
    };
    let Some((code, info)) = rest.split_once(", info: ") else {
        return text.to_owned();
    };
    let code = code
        .strip_prefix("Some(")
        .and_then(|c| c.strip_suffix(')'))
        .map(|c| format!("[{c}] "))
        .unwrap_or_default();
    let info = match info
        .strip_prefix("Some(\"")
        .and_then(|i| i.strip_suffix("\")"))
    {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None if info == "None" => String::new(),
        None => info.to_owned(),
    };
    format!("{code}{info}").trim().to_owned()
}

/// The secret, read just now.
pub(crate) enum Credential {
    Password(String),
    Bearer(String),
}

/// Reads the secret the way the configuration says: a file (trimmed) or a command's standard
/// output (trimmed), so it can change without a restart.
pub(crate) async fn read_secret(secret: &PullSecret) -> Result<Credential, Error> {
    let secret = secret.clone();
    tokio::task::spawn_blocking(move || read_secret_blocking(&secret))
        .await
        .map_err(|e| Error::Secret(format!("reading the secret failed: {e}")))?
}

fn read_secret_blocking(secret: &PullSecret) -> Result<Credential, Error> {
    Ok(match secret {
        PullSecret::Password(p) => Credential::Password(p.clone()),
        PullSecret::PasswordFile(path) => Credential::Password(read_secret_file(path)?),
        PullSecret::PasswordCommand(cmd) => Credential::Password(run_secret_command(cmd)?),
        PullSecret::Xoauth2File(path) => Credential::Bearer(read_secret_file(path)?),
        PullSecret::Xoauth2Command(cmd) => Credential::Bearer(run_secret_command(cmd)?),
    })
}

fn read_secret_file(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Secret(format!("cannot read {}: {e}", path.display())))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Secret(format!("{} is empty", path.display())));
    }
    Ok(text.to_owned())
}

/// A fingerprint of a secret file's contents (not the secret), to notice it changed.
pub(crate) fn secret_file_fingerprint(secret: &PullSecret) -> Option<[u8; 32]> {
    let path = match secret {
        PullSecret::PasswordFile(p) | PullSecret::Xoauth2File(p) => p,
        _ => return None,
    };
    let bytes = std::fs::read(path).ok()?;
    Some(*blake3::hash(&bytes).as_bytes())
}

/// Runs `sh -c CMD` with a time limit; its trimmed standard output is the secret.
fn run_secret_command(cmd: &str) -> Result<String, Error> {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Secret(format!("cannot run `{cmd}`: {e}")))?;
    // Read both pipes on their own threads, so a chatty command cannot block on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel::<(bool, Vec<u8>)>();
    for (is_out, pipe) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(64 * 1024).read_to_end(&mut buf);
            }
            let _ = tx.send((is_out, buf));
        });
    }
    drop(tx);
    let deadline = Instant::now() + SECRET_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Secret(format!(
                    "`{cmd}` did not finish within {} s",
                    SECRET_COMMAND_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Error::Secret(format!("waiting for `{cmd}`: {e}"))),
        }
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        // A background process the command left behind may hold a pipe open: do not wait
        // for it for long.
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((true, b)) => stdout = b,
            Ok((false, b)) => stderr = b,
            Err(_) => break,
        }
    }
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        let err = err.trim();
        return Err(Error::Secret(format!(
            "`{cmd}` failed ({status}){}{}",
            if err.is_empty() { "" } else { ": " },
            err.chars().take(300).collect::<String>()
        )));
    }
    let out = String::from_utf8(stdout)
        .map_err(|_| Error::Secret(format!("`{cmd}` printed something that is not UTF-8")))?;
    let out = out.trim();
    if out.is_empty() {
        return Err(Error::Secret(format!("`{cmd}` printed nothing")));
    }
    Ok(out.to_owned())
}

/// SASL XOAUTH2: `user=…^Aauth=Bearer …^A^A`. A second challenge is the server's error
/// report (JSON), answered with an empty response as the mechanism requires.
struct XOAuth2 {
    payload: String,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if self.sent {
            Vec::new()
        } else {
            self.sent = true;
            self.payload.as_bytes().to_vec()
        }
    }
}

/// `NO` to LOGIN/AUTHENTICATE that is not about the credentials (RFC 5530): retry later.
fn is_temporary_refusal(text: &str) -> bool {
    ["UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT"]
        .iter()
        .any(|code| text.contains(&format!("[{code}]")))
}

/// Connects, sets up TLS as configured, reads the greeting and logs in. Returns the session
/// and what the server offers.
pub(crate) async fn open(
    settings: &PullSettings,
    tls: Option<&PullClientTls>,
) -> Result<(Session, Caps), Error> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((settings.host.as_str(), settings.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(Error::Connect { addr, source }),
        Err(_) => {
            return Err(Error::Timeout {
                what: format!("connecting to {addr}"),
                secs: CONNECT_TIMEOUT.as_secs(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls_config = || {
        tls.ok_or_else(|| Error::TlsSetup("no TLS trust roots".to_owned()))
            .map(|t| Arc::clone(&t.config))
    };
    let (client, greeting_caps) = match settings.tls {
        PullTls::Implicit => {
            let stream = handshake(tcp, &settings.host, tls_config()?).await?;
            let mut client = async_imap::Client::new(Stream::Tls(Box::new(stream)));
            let caps = greeting(&mut client, &settings.host).await?;
            (client, caps)
        }
        PullTls::None => {
            let mut client = async_imap::Client::new(Stream::Plain(tcp));
            let caps = greeting(&mut client, &settings.host).await?;
            (client, caps)
        }
        PullTls::Starttls => {
            let mut client = async_imap::Client::new(Stream::Plain(tcp));
            greeting(&mut client, &settings.host).await?;
            timed(
                "STARTTLS",
                COMMAND_TIMEOUT,
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            // Whatever the server sent after its OK is dropped with the buffer: no plaintext
            // injected before the handshake can reach the TLS session.
            let Stream::Plain(tcp) = client.into_inner() else {
                return Err(Error::TlsSetup("STARTTLS on a TLS connection".to_owned()));
            };
            let stream = handshake(tcp, &settings.host, tls_config()?).await?;
            (
                async_imap::Client::new(Stream::Tls(Box::new(stream))),
                Vec::new(),
            )
        }
    };
    let credential = read_secret(&settings.secret).await?;
    let auth_error = |e: async_imap::error::Error| {
        let reply = server_text(&e);
        match e {
            async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)
                if !is_temporary_refusal(&reply) =>
            {
                Error::Auth {
                    account: settings.account.clone(),
                    host: settings.host.clone(),
                    reply,
                }
            }
            _ => Error::Imap {
                what: "logging in".to_owned(),
                reason: reply,
            },
        }
    };
    let login = match credential {
        Credential::Password(password) => {
            if greeting_caps.iter().any(|c| c == "LOGINDISABLED") {
                return Err(Error::Auth {
                    account: settings.account.clone(),
                    host: settings.host.clone(),
                    reply: "the server disables LOGIN on this connection (LOGINDISABLED): use tls = \"implicit\" or \"starttls\"".to_owned(),
                });
            }
            tokio::time::timeout(COMMAND_TIMEOUT, client.login(&settings.account, &password)).await
        }
        Credential::Bearer(token) => {
            let auth = XOAuth2 {
                payload: format!("user={}\x01auth=Bearer {token}\x01\x01", settings.account),
                sent: false,
            };
            tokio::time::timeout(COMMAND_TIMEOUT, client.authenticate("XOAUTH2", auth)).await
        }
    };
    let mut session = match login {
        Ok(Ok(session)) => session,
        Ok(Err((e, _client))) => return Err(auth_error(e)),
        Err(_) => {
            return Err(Error::Timeout {
                what: "logging in".to_owned(),
                secs: COMMAND_TIMEOUT.as_secs(),
            });
        }
    };
    let caps = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
    let caps = Caps {
        move_: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
        idle: caps.has_str("IDLE"),
    };
    Ok((session, caps))
}

async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::Tls {
        host: host.to_owned(),
        reason: format!("not a valid server name: {e}"),
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Error::Tls {
            host: host.to_owned(),
            reason: e.to_string(),
        }),
        Err(_) => Err(Error::Timeout {
            what: format!("TLS handshake with {host}"),
            secs: CONNECT_TIMEOUT.as_secs(),
        }),
    }
}

/// Reads the server's greeting; returns the capabilities it announced in it, if any.
async fn greeting(
    client: &mut async_imap::Client<Stream>,
    host: &str,
) -> Result<Vec<String>, Error> {
    let response = match tokio::time::timeout(COMMAND_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            return Err(Error::Imap {
                what: "reading the greeting".to_owned(),
                reason: format!("{host} closed the connection"),
            });
        }
        Ok(Err(e)) => {
            return Err(Error::Imap {
                what: "reading the greeting".to_owned(),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(Error::Timeout {
                what: "waiting for the greeting".to_owned(),
                secs: COMMAND_TIMEOUT.as_secs(),
            });
        }
    };
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            outcome,
        } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(caps)) => caps
                .iter()
                .map(|c| match c {
                    async_imap::imap_proto::Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
                    async_imap::imap_proto::Capability::Auth(m) => format!("AUTH={m}"),
                    async_imap::imap_proto::Capability::Atom(a) => a.to_uppercase(),
                })
                .collect(),
            _ => Vec::new(),
        }),
        Response::Data { status, outcome } => Err(Error::Imap {
            what: "reading the greeting".to_owned(),
            reason: format!(
                "{host} answered {status:?} {}",
                outcome.information.as_deref().unwrap_or("")
            ),
        }),
        other => Err(Error::Imap {
            what: "reading the greeting".to_owned(),
            reason: format!("{host} sent {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_replies_are_unwrapped() {
        assert_eq!(
            unwrap_reply(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            unwrap_reply(r#"code: Some(TryCreate), info: Some("Mailbox \"A\" doesn't exist")"#),
            r#"[TryCreate] Mailbox "A" doesn't exist"#
        );
        assert_eq!(unwrap_reply("code: None, info: None"), "");
        assert_eq!(unwrap_reply("something else"), "something else");
    }

    #[test]
    fn temporary_refusals_are_not_authentication_failures() {
        assert!(is_temporary_refusal(
            "[UNAVAILABLE] Temporary authentication failure"
        ));
        assert!(!is_temporary_refusal(
            "[AUTHENTICATIONFAILED] Authentication failed."
        ));
    }

    #[test]
    fn xoauth2_answers_an_error_challenge_with_nothing() {
        use async_imap::Authenticator;
        let mut a = XOAuth2 {
            payload: "user=a@b\x01auth=Bearer t\x01\x01".to_owned(),
            sent: false,
        };
        assert_eq!(
            a.process(b""),
            b"user=a@b\x01auth=Bearer t\x01\x01".to_vec()
        );
        assert_eq!(a.process(b"{\"status\":\"401\"}"), Vec::<u8>::new());
    }

    #[test]
    fn secret_files_and_commands_are_trimmed() {
        let dir = std::env::temp_dir().join(format!("mj-pull-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        std::fs::write(&file, "  s3cret\n").expect("write");
        assert_eq!(read_secret_file(&file).expect("read"), "s3cret");
        std::fs::write(&file, "\n").expect("write");
        assert!(read_secret_file(&file).is_err());
        assert_eq!(run_secret_command("printf ' tok\\n'").expect("run"), "tok");
        let err = run_secret_command("echo nope >&2; exit 3")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nope"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
