//! The HTTP API and permalinks (axum on hyper's HTTP/1.1).
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /m/{id}` | an account that may read it (Basic), or a signed link (`?token=`) | the raw message, `message/rfc822`, byte-exact |
//! | `GET /m/{id}.json` | the same | its metadata (`Record::view`) and its interaction-log entries |
//! | `GET /api/interactions` | accounts | entries, filtered and paged, of the messages the account may read |
//! | `POST /api/interactions/{no}/opportunity` | admin and salesperson accounts | turns an entry into an opportunity |
//! | `GET /api/contacts/{number}/opportunities` | accounts | a contact's opportunities (of messages the account may read) |
//! | `POST /api/links` | accounts | a signed link to a message the account may read |
//! | `GET /m/{id}/proof` | who may read the message | its transparency-log inclusion proof (JSON) |
//! | `GET /log/checkpoint` | accounts | the latest signed checkpoint (text) |
//! | `GET /log/consistency?from=N&to=M` | admin and auditor accounts | a consistency proof (JSON) |
//! | `GET /healthz` | anyone | `{"status":"ok"}` |
//! | `GET /metrics` | loopback peers; elsewhere admin and auditor accounts | Prometheus text |
//!
//! Plain HTTP is served to loopback peers only (the configuration refuses other plain
//! addresses, and each connection's peer is checked again); HTTPS uses the certificate of
//! `[tls]`, like SMTP and IMAP. A message an account may not read answers 404 exactly like
//! one that does not exist. Errors are JSON `{"error": "…"}`.

mod error;
mod login;
mod prometheus;
mod routes;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::archive::Archive;
use crate::auth::Logins;
use crate::clock::Clock;
use crate::config::HttpSettings;
use crate::metrics::Metrics;
use crate::net::listener::{self, Gauge, Limits, Refusal};
use error::ApiError;
pub use token::{KeyError, TokenError, Tokens, link};

/// Simultaneous connections per listener.
pub const MAX_CONNECTIONS: usize = 256;
/// New connections per source address per minute (loopback is exempt: a local reverse
/// proxy or CRM connector is one address for many users).
pub const MAX_CONNECTIONS_PER_MINUTE: u32 = 600;
/// A client must finish the TLS handshake within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a request's header within this, and an idle keep-alive connection
/// is closed after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, requests in progress get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the HTTP listeners share.
pub struct Context {
    pub settings: HttpSettings,
    pub archive: Arc<Archive>,
    pub metrics: Arc<Metrics>,
    /// Every password check, shared with IMAP and SMTP.
    pub logins: Arc<Logins>,
    pub tokens: Tokens,
    pub clock: Arc<dyn Clock>,
}

/// The handlers' state.
struct Shared {
    ctx: Arc<Context>,
}

/// The connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: SocketAddr,
}

impl Peer {
    fn ip(&self) -> std::net::IpAddr {
        self.addr.ip()
    }

    fn is_loopback(&self) -> bool {
        is_loopback(&self.addr)
    }
}

/// Whether `peer` is this machine (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(peer: &SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// A complete response written by hand to a connection hyper never serves.
fn canned(status: &str, extra_headers: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answered to a plain connection from elsewhere than loopback.
fn plain_refused() -> Vec<u8> {
    canned(
        "403 Forbidden",
        "",
        "plain HTTP is for loopback only; use HTTPS",
    )
}

/// Answered to a plain connection over a limit.
fn busy() -> Vec<u8> {
    canned(
        "503 Service Unavailable",
        "Retry-After: 10\r\n",
        "too many connections, try again later",
    )
}

/// Starts accepting on `listener`: HTTPS with `tls`, plain HTTP (loopback peers only)
/// without. Runs on `tracker` until `shutdown`, then lets requests in progress finish.
pub fn spawn(
    listener: TcpListener,
    ctx: Arc<Context>,
    tls: Option<Arc<rustls::ServerConfig>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> Gauge {
    let shared = Arc::new(Shared { ctx });
    let app = routes::router(shared);
    let implicit_tls = tls.is_some();
    let limits = Limits::new(
        MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_MINUTE,
        listener::loopback(),
    );
    let stop = shutdown.clone();
    listener::spawn(
        listener,
        limits,
        shutdown,
        tracker,
        move |stream: TcpStream, peer: SocketAddr, permit| {
            let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
            let span = tracing::info_span!("http", %peer, tls = implicit_tls);
            async move {
                connection(app, stream, peer, tls, stop).await;
                drop(permit);
            }
            .instrument(span)
        },
        move |mut stream: TcpStream, _why: Refusal| async move {
            if !implicit_tls {
                let _ = stream.write_all(&busy()).await;
                let _ = stream.shutdown().await;
            }
        },
    )
}

async fn connection(
    app: axum::Router,
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let Some(config) = tls else {
        if is_loopback(&peer) {
            serve(app, stream, peer, shutdown).await;
        } else {
            tracing::warn!("plain HTTP connection from a non-loopback address refused");
            let _ = stream.write_all(&plain_refused()).await;
            let _ = stream.shutdown().await;
        }
        return;
    };
    let handshake = tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(config).accept(stream),
    );
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
    };
    serve(app, stream, peer, shutdown).await;
}

/// Serves HTTP/1.1 requests on one connection until the client closes it, it idles out, or
/// `shutdown` (then the request in progress, if any, gets [`SHUTDOWN_GRACE`]).
async fn serve<I>(app: axum::Router, io: I, peer: SocketAddr, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(Peer { addr: peer });
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // A client that shuts down its side after the request still gets the answer.
        .half_close(true)
        .max_headers(64);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::info!("closing an HTTP connection still busy at shutdown");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// One connection from `peer` over `io`, served until the client closes it: the fuzz
/// harness's way in (`crate::fuzzing::http_session`).
#[cfg(any(test, fuzzing))]
pub async fn serve_connection<I>(ctx: Arc<Context>, io: I, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = routes::router(Arc::new(Shared { ctx }));
    serve(app, io, peer, CancellationToken::new()).await;
}

/// Runs archive work (redb reads, blob reads, argon2) off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_are_loopback() {
        for peer in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(&peer.parse().expect("addr")), "{peer}");
        }
        for peer in [
            "10.0.0.1:1",
            "[::ffff:10.0.0.1]:1",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!is_loopback(&peer.parse().expect("addr")), "{peer}");
        }
    }

    #[test]
    fn canned_responses_have_the_right_lengths() {
        for canned in [plain_refused(), busy()] {
            let text = String::from_utf8(canned).expect("ascii");
            let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.parse().ok())
                .expect("length");
            assert_eq!(length, body.len(), "{head}");
            assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
        }
    }
}
