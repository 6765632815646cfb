//! One SMTP session: the I/O loop around smtp-proto's parsers and our policy.
//!
//! smtp-proto turns bytes into commands (`RequestReceiver`), message data with
//! dot-unstuffing (`DataReceiver`) and BDAT chunks (`BdatReceiver`); this module decides what
//! to answer. Replies are buffered while pipelined commands keep coming and flushed when the
//! input runs dry, so PIPELINING costs one write per batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_proto::request::receiver::{
    BdatReceiver, DataReceiver, DummyDataReceiver, LineReceiver, RequestReceiver,
};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::reply::Reply;
use crate::archive::Archive;
use crate::auth::{self, Login, Logins};
use crate::clock::Clock;
use crate::config::{Logging, SmtpSettings};
use crate::ingest::{self, Envelope, Ingestor, Outcome};
use crate::net::stream::Conn;
use crate::runtime::LoggingSwitch;

/// Everything sessions share.
pub struct Context {
    pub settings: SmtpSettings,
    pub max_message_size: u64,
    pub ingestor: Ingestor,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub logging: Arc<LoggingSwitch>,
    /// Every password check, shared with IMAP and HTTP.
    pub logins: Arc<Logins>,
    pub clock: Arc<dyn Clock>,
    /// Bytes of message data all sessions together may hold in memory, in KiB permits.
    pub data_budget: Arc<Semaphore>,
    /// Cancelled when the server stops accepting: idle sessions say goodbye.
    pub shutdown: CancellationToken,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the shutdown grace period is over: every session ends.
    pub hard_stop: CancellationToken,
}

/// Consecutive protocol errors a client may make before it is disconnected.
const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts a session may make.
const MAX_AUTH_FAILURES: u32 = 3;
/// The longest command line accepted (RFC 5321 allows 512 octets; extensions add to it).
const MAX_COMMAND_LINE: usize = 4096;
/// Messages up to this size are analyzed on the session's own task.
const INLINE_ANALYSIS: usize = 128 * 1024;
/// Size of one read.
const READ_CHUNK: usize = 16 * 1024;
/// The data budget's unit.
const KIB: usize = 1024;

/// Why the loop stops.
enum Stop {
    /// The client said QUIT, or we closed after a final reply.
    Closed,
    /// Upgrade to TLS now (the 220 was sent).
    StartTls,
}

/// A mail transaction in progress.
#[derive(Default)]
struct Transaction {
    mail_from: String,
    recipients: Vec<String>,
}

/// Where incoming bytes go.
enum Mode {
    Command,
    /// A command line over the limit: dropped up to its end, then refused.
    LongLine,
    Data(DataReceiver),
    /// Message data past the size limit or the memory budget: read and dropped, then `reply`.
    Discard(DummyDataReceiver, Reply),
    /// A BDAT chunk being read: its receiver, its size, and the body length before it.
    Bdat(BdatReceiver, usize, usize),
    /// A BDAT chunk that cannot be accepted: read and dropped, then `reply`.
    BdatDiscard(DummyDataReceiver, Reply),
    /// Waiting for a SASL response line.
    AuthLine(LineReceiver<AuthStep>),
}

#[derive(Default)]
enum AuthStep {
    #[default]
    Plain,
    LoginUser,
    LoginPassword(String),
}

pub struct Session<S> {
    ctx: Arc<Context>,
    peer: SocketAddr,
    /// Peer in `allow_networks`.
    allowed: bool,
    conn: Conn<S>,
    out: Vec<u8>,
    mode: Mode,
    requests: RequestReceiver,
    /// Bytes of the current, unfinished command line seen so far.
    line_len: usize,
    helo: Option<String>,
    authenticated: Option<String>,
    auth_failures: u32,
    errors: u32,
    tx: Option<Transaction>,
    body: Vec<u8>,
    /// Data-budget permits held for `body`.
    held: Option<OwnedSemaphorePermit>,
    /// Set once the client is mid-message (DATA or BDAT): shutdown waits for it.
    in_message: bool,
    /// Held while a message's data is coming in: lets concurrent messages share a commit.
    arriving: Option<crate::archive::Arrival>,
    /// When the command being read must be complete (`command_timeout` after the previous
    /// one ended), however slowly its bytes come.
    command_deadline: Instant,
    /// When the message being read must be complete (`data_timeout` after DATA or the
    /// first BDAT), chunks and the commands between them included.
    message_deadline: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(ctx: Arc<Context>, stream: S, peer: SocketAddr) -> Self {
        let allowed = ctx
            .settings
            .allow_networks
            .iter()
            .any(|n| n.contains(&peer.ip()));
        Self {
            ctx,
            peer,
            allowed,
            conn: Conn::Plain(stream),
            out: Vec::with_capacity(512),
            mode: Mode::Command,
            requests: RequestReceiver::default(),
            line_len: 0,
            helo: None,
            authenticated: None,
            auth_failures: 0,
            errors: 0,
            tx: None,
            body: Vec::new(),
            held: None,
            in_message: false,
            arriving: None,
            command_deadline: Instant::now(),
            message_deadline: None,
        }
    }

    /// Runs the session to its end. With `implicit_tls`, TLS is negotiated before the greeting.
    pub async fn run(mut self, implicit_tls: bool) {
        self.ctx.metrics.smtp_sessions.inc();
        self.serve_session(implicit_tls).await;
        self.ctx.metrics.smtp_sessions.dec();
    }

    async fn serve_session(&mut self, implicit_tls: bool) {
        if implicit_tls && !self.upgrade().await {
            return;
        }
        self.push(Reply::greeting(&self.ctx.settings.hostname));
        loop {
            match self.serve().await {
                Ok(Stop::Closed) | Err(()) => break,
                Ok(Stop::StartTls) => {
                    if !self.upgrade().await {
                        break;
                    }
                }
            }
        }
        let _ = self.conn.shutdown().await;
    }

    fn is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
    }

    /// TLS handshake on the current plain stream; state starts afresh (RFC 3207).
    async fn upgrade(&mut self) -> bool {
        let Some(config) = self.ctx.tls.clone() else {
            return false;
        };
        let timeout = self.ctx.settings.command_timeout;
        match tokio::time::timeout(timeout, self.conn.upgrade(config)).await {
            Ok(Ok(())) => {
                self.helo = None;
                self.authenticated = None;
                self.tx = None;
                self.requests = RequestReceiver::default();
                self.line_len = 0;
                self.mode = Mode::Command;
                true
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                false
            }
        }
    }

    fn push(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// How long the next read may wait: until the current message or command must be
    /// complete. A byte now and then does not keep a slot: the deadline is for the whole
    /// command line, or the whole message.
    fn time_left(&mut self, now: Instant) -> Duration {
        let in_data = self.in_message
            || matches!(
                self.mode,
                Mode::Data(_) | Mode::Discard(..) | Mode::Bdat(..) | Mode::BdatDiscard(..)
            );
        let deadline = if in_data {
            *self
                .message_deadline
                .get_or_insert(now + self.ctx.settings.data_timeout)
        } else {
            self.message_deadline = None;
            if matches!(self.mode, Mode::Command) && self.line_len == 0 {
                // Nothing of a command has come yet: its time starts now.
                self.command_deadline = now + self.ctx.settings.command_timeout;
            }
            self.command_deadline
        };
        deadline.saturating_duration_since(now)
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.ctx.settings.command_timeout;
        let result = tokio::time::timeout(timeout, async {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await
        })
        .await;
        self.out.clear();
        match result {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Reads and answers until the session ends or STARTTLS is accepted.
    async fn serve(&mut self) -> Result<Stop, ()> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            self.flush().await?;
            let idle = matches!(self.mode, Mode::Command) && !self.in_message;
            let timeout = self.time_left(Instant::now());
            let shutdown = self.ctx.shutdown.clone();
            let hard_stop = self.ctx.hard_stop.clone();
            let read = tokio::select! {
                _ = shutdown.cancelled(), if idle => {
                    self.push(Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                    let _ = self.flush().await;
                    return Ok(Stop::Closed);
                }
                _ = hard_stop.cancelled() => {
                    self.push(Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                    let _ = self.flush().await;
                    return Ok(Stop::Closed);
                }
                r = tokio::time::timeout(timeout, self.conn.read(&mut buf)) => r,
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(()),
                Ok(Ok(n)) => n,
                Err(_) => {
                    let host = self.ctx.settings.hostname.clone();
                    self.push(Reply::new(
                        421,
                        "4.4.2",
                        &format!("{host} Timeout, closing connection"),
                    ));
                    let _ = self.flush().await;
                    return Ok(Stop::Closed);
                }
            };
            let chunk = buf[..n].to_vec();
            let mut bytes = chunk.iter();
            while bytes.len() > 0 {
                match self.step(&mut bytes).await {
                    Step::Continue => {}
                    Step::NeedMore => break,
                    Step::Stop(stop) => {
                        self.flush().await?;
                        // Anything pipelined after STARTTLS is plaintext and dropped.
                        return Ok(stop);
                    }
                }
            }
        }
    }

    /// Consumes bytes in the current mode.
    async fn step(&mut self, bytes: &mut std::slice::Iter<'_, u8>) -> Step {
        match &mut self.mode {
            Mode::Command => {
                // smtp-proto bounds a line only when it arrives in pieces: bound it here.
                let rest = bytes.as_slice();
                let line_end = memchr::memchr(b'\n', rest);
                let pending = self.line_len + line_end.map_or(rest.len(), |p| p + 1);
                if pending > MAX_COMMAND_LINE {
                    self.requests = RequestReceiver::default();
                    self.line_len = 0;
                    return match line_end {
                        Some(p) => {
                            *bytes = rest[p + 1..].iter();
                            self.error(Reply::new(500, "5.5.2", "Line too long"))
                        }
                        None => {
                            *bytes = [].iter();
                            self.mode = Mode::LongLine;
                            Step::NeedMore
                        }
                    };
                }
                match self.requests.ingest(bytes) {
                    Ok(request) => {
                        self.line_len = 0;
                        self.command_deadline = Instant::now() + self.ctx.settings.command_timeout;
                        let request = request.into_owned();
                        self.errors = 0;
                        self.handle(request).await
                    }
                    Err(ProtoError::NeedsMoreData { .. }) => {
                        self.line_len = pending;
                        Step::NeedMore
                    }
                    Err(e) => {
                        self.line_len = 0;
                        let reply = syntax_reply(&e);
                        self.error(reply)
                    }
                }
            }
            Mode::LongLine => {
                let rest = bytes.as_slice();
                match memchr::memchr(b'\n', rest) {
                    Some(p) => {
                        *bytes = rest[p + 1..].iter();
                        self.mode = Mode::Command;
                        self.error(Reply::new(500, "5.5.2", "Line too long"))
                    }
                    None => {
                        *bytes = [].iter();
                        Step::NeedMore
                    }
                }
            }
            Mode::Data(receiver) => {
                let before = self.body.len();
                let done = receiver.ingest(bytes, &mut self.body);
                let grown = self.body.len() - before;
                if let Err(reply) = self.reserve(grown) {
                    // Over a limit: stop keeping the data, read the rest of it, then refuse.
                    let Mode::Data(receiver) = std::mem::replace(&mut self.mode, Mode::Command)
                    else {
                        return Step::Continue;
                    };
                    self.drop_body();
                    if done {
                        self.end_message();
                        self.push(reply);
                        return Step::Continue;
                    }
                    self.mode = Mode::Discard(DummyDataReceiver::new_data(&receiver), reply);
                    return Step::Continue;
                }
                if done {
                    self.mode = Mode::Command;
                    let reply = self.deliver().await;
                    self.push(reply);
                    Step::Continue
                } else {
                    Step::NeedMore
                }
            }
            Mode::Discard(receiver, _) | Mode::BdatDiscard(receiver, _) => {
                if receiver.ingest(bytes) {
                    let (Mode::Discard(_, reply) | Mode::BdatDiscard(_, reply)) =
                        std::mem::replace(&mut self.mode, Mode::Command)
                    else {
                        return Step::Continue;
                    };
                    self.end_message();
                    self.push(reply);
                    Step::Continue
                } else {
                    Step::NeedMore
                }
            }
            Mode::Bdat(receiver, chunk_size, start) => {
                let (chunk_size, start) = (*chunk_size, *start);
                let before = self.body.len();
                let done = receiver.ingest(bytes, &mut self.body);
                let is_last = receiver.is_last;
                let grown = self.body.len() - before;
                if let Err(reply) = self.reserve(grown) {
                    // The rest of this chunk is still on the wire: read and drop it, then
                    // refuse the message.
                    let left = chunk_size.saturating_sub(self.body.len() - start);
                    self.drop_body();
                    self.mode = if done {
                        self.end_message();
                        self.push(reply);
                        Mode::Command
                    } else {
                        Mode::BdatDiscard(DummyDataReceiver::new_bdat(left), reply)
                    };
                    return Step::Continue;
                }
                if !done {
                    return Step::NeedMore;
                }
                self.mode = Mode::Command;
                self.chunk_done(is_last).await;
                Step::Continue
            }
            Mode::AuthLine(receiver) => {
                if !receiver.ingest(bytes) {
                    return Step::NeedMore;
                }
                let Mode::AuthLine(receiver) = std::mem::replace(&mut self.mode, Mode::Command)
                else {
                    return Step::Continue;
                };
                let line = String::from_utf8_lossy(&receiver.buf).trim().to_owned();
                self.auth_response(receiver.state, &line).await
            }
        }
    }

    /// Answers a BDAT chunk read whole: the last one delivers the message.
    async fn chunk_done(&mut self, is_last: bool) {
        let reply = if is_last {
            self.deliver().await
        } else {
            let len = self.body.len();
            Reply::new(250, "2.0.0", &format!("{len} octets received"))
        };
        self.push(reply);
    }

    /// Takes budget for `grown` more bytes of message data. Refuses past the message size
    /// limit (552) or when all sessions together hold too much (452).
    fn reserve(&mut self, grown: usize) -> Result<(), Reply> {
        if self.body.len() as u64 > self.ctx.max_message_size {
            return Err(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ));
        }
        let want = self.body.len().div_ceil(KIB);
        let have = self.held.as_ref().map_or(0, |p| p.num_permits());
        if want > have && grown > 0 {
            let extra = u32::try_from(want - have).unwrap_or(u32::MAX);
            match Arc::clone(&self.ctx.data_budget).try_acquire_many_owned(extra) {
                Ok(permit) => match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                },
                Err(_) => {
                    return Err(Reply::new(
                        452,
                        "4.3.1",
                        "Insufficient system resources, try again later",
                    ));
                }
            }
        }
        Ok(())
    }

    fn drop_body(&mut self) {
        self.body = Vec::new();
        self.held = None;
    }

    fn end_message(&mut self) {
        self.drop_body();
        self.tx = None;
        self.in_message = false;
        self.arriving = None;
        self.message_deadline = None;
    }

    fn error(&mut self, reply: Reply) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.push(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ));
            return Step::Stop(Stop::Closed);
        }
        self.push(reply);
        Step::Continue
    }

    async fn handle(&mut self, request: Request<String>) -> Step {
        match request {
            Request::Ehlo { host } => {
                self.helo = Some(host.clone());
                self.end_message();
                let reply = self.ehlo_reply(&host);
                self.push(reply);
            }
            Request::Helo { host } => {
                let name = self.ctx.settings.hostname.clone();
                self.helo = Some(host);
                self.end_message();
                self.push(Reply::new(250, "", &name));
            }
            Request::Lhlo { .. } => {
                return self.error(Reply::new(500, "5.5.1", "LHLO is for LMTP, this is SMTP"));
            }
            Request::Mail { from } => {
                let reply = self.mail(from.address, from.size);
                self.push(reply);
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(&to.address);
                self.push(reply);
            }
            Request::Data if self.in_message => {
                // RFC 3030 § 2: DATA cannot follow BDAT in one transaction; the chunks
                // received so far are kept for the BDAT that ends it (or RSET).
                return self.error(Reply::new(
                    503,
                    "5.5.1",
                    "DATA cannot be used after BDAT in the same transaction",
                ));
            }
            Request::Data => match self.tx.as_ref().map(|t| t.recipients.is_empty()) {
                Some(false) => {
                    self.mode = Mode::Data(DataReceiver::new());
                    self.in_message = true;
                    self.arriving = Some(self.ctx.ingestor.arriving());
                    self.body = Vec::new();
                    self.push(Reply::new(
                        354,
                        "",
                        "Start mail input; end with <CRLF>.<CRLF>",
                    ));
                }
                Some(true) => return self.error(Reply::new(554, "5.5.1", "No valid recipients")),
                None => return self.error(Reply::new(503, "5.5.1", "Send MAIL FROM first")),
            },
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                let refusal = match self.tx.as_ref().map(|t| t.recipients.is_empty()) {
                    Some(false) => None,
                    Some(true) => Some(Reply::new(554, "5.5.1", "No valid recipients")),
                    None => Some(Reply::new(503, "5.5.1", "Send MAIL FROM first")),
                };
                let over =
                    self.body.len().saturating_add(chunk_size) as u64 > self.ctx.max_message_size;
                match refusal {
                    Some(reply) => {
                        self.errors += 1;
                        self.mode =
                            Mode::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), reply);
                    }
                    None if over => {
                        let reply = Reply::new(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed maximum message size",
                        );
                        self.drop_body();
                        self.mode =
                            Mode::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), reply);
                    }
                    None => {
                        if !self.in_message {
                            self.body = Vec::new();
                            self.in_message = true;
                            self.arriving = Some(self.ctx.ingestor.arriving());
                        }
                        if chunk_size == 0 {
                            // No bytes follow: answer now (`BDAT 0 LAST` ends the message).
                            self.chunk_done(is_last).await;
                            return Step::Continue;
                        }
                        let start = self.body.len();
                        self.mode =
                            Mode::Bdat(BdatReceiver::new(chunk_size, is_last), chunk_size, start);
                    }
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, initial_response).await,
            Request::Noop { .. } => self.push(Reply::new(250, "2.0.0", "OK")),
            Request::Vrfy { .. } => self.push(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message for journal addresses",
            )),
            Request::Expn { .. } => {
                return self.error(Reply::new(502, "5.5.1", "EXPN is not supported"));
            }
            Request::Help { .. } => self.push(Reply::new(
                214,
                "2.0.0",
                "mailjournal receives journal copies: EHLO, MAIL, RCPT, DATA, BDAT, RSET, QUIT",
            )),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                return self.error(Reply::new(502, "5.5.1", "Command not implemented"));
            }
            Request::StartTls => {
                if self.conn.is_tls() {
                    return self.error(Reply::new(503, "5.5.1", "TLS is already active"));
                }
                if self.ctx.tls.is_none() {
                    return self.error(Reply::new(454, "4.7.0", "TLS not available"));
                }
                self.push(Reply::new(220, "2.0.0", "Ready to start TLS"));
                return Step::Stop(Stop::StartTls);
            }
            Request::Rset => {
                // Chunks of an unfinished BDAT message go with the transaction.
                self.end_message();
                self.push(Reply::new(250, "2.0.0", "OK"));
            }
            Request::Quit => {
                self.push(Reply::new(221, "2.0.0", "Bye"));
                return Step::Stop(Stop::Closed);
            }
        }
        Step::Continue
    }

    fn may_auth(&self) -> bool {
        self.ctx.settings.auth && (self.conn.is_tls() || self.is_loopback())
    }

    fn ehlo_reply(&self, host: &str) -> Reply {
        let mut lines = vec![format!("{} greets {host}", self.ctx.settings.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.ctx.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("CHUNKING".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if !self.conn.is_tls() && self.ctx.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if self.may_auth() && self.authenticated.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        Reply::multiline(250, lines)
    }

    fn mail(&mut self, from: String, size: usize) -> Reply {
        if self.helo.is_none() {
            self.errors += 1;
            return Reply::new(503, "5.5.1", "Send EHLO or HELO first");
        }
        if self.tx.is_some() {
            self.errors += 1;
            return Reply::new(503, "5.5.1", "Nested MAIL command");
        }
        if !self.allowed && self.authenticated.is_none() {
            self.errors += 1;
            tracing::info!(peer = %self.peer, "refused: not an allowed journal source");
            return Reply::new(550, "5.7.1", "Not authorized to send journal mail here");
        }
        if size as u64 > self.ctx.max_message_size {
            return Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            );
        }
        if self.ctx.logging.get() == Logging::Paused {
            return Reply::new(451, "4.3.2", "Journaling is paused, try again later");
        }
        self.tx = Some(Transaction {
            mail_from: from,
            recipients: Vec::new(),
        });
        Reply::new(250, "2.1.0", "OK")
    }

    fn rcpt(&mut self, to: &str) -> Reply {
        let max = self.ctx.settings.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            self.errors += 1;
            return Reply::new(503, "5.5.1", "Send MAIL FROM first");
        };
        let accepted = crate::address::normalize(to)
            .filter(|a| self.ctx.settings.journal_addresses.contains(a));
        let Some(address) = accepted else {
            self.errors += 1;
            return Reply::new(550, "5.1.1", "No such recipient here");
        };
        if tx.recipients.len() >= max {
            return Reply::new(452, "4.5.3", "Too many recipients");
        }
        if !tx.recipients.contains(&address) {
            tx.recipients.push(address);
        }
        Reply::new(250, "2.1.5", "OK")
    }

    /// Hands a complete message to the pipeline and answers only once it is durable.
    async fn deliver(&mut self) -> Reply {
        let body = std::mem::take(&mut self.body);
        let tx = self.tx.take();
        self.in_message = false;
        self.message_deadline = None;
        let _permit = self.held.take();
        let Some(tx) = tx else {
            return Reply::new(503, "5.5.1", "Send MAIL FROM first");
        };
        if self.ctx.logging.get() == Logging::Off {
            tracing::info!(
                bytes = body.len(),
                "logging is off: message accepted and discarded"
            );
            return Reply::new(250, "2.0.0", "OK, not logged (journaling is off)");
        }
        let envelope = Envelope {
            mail_from: (!tx.mail_from.is_empty()).then_some(tx.mail_from),
            received_at: self.ctx.clock.now(),
        };
        let ingestor = self.ctx.ingestor.clone();
        let size = body.len();
        let started = std::time::Instant::now();
        // Parsing and compressing a large message takes milliseconds: off the async workers
        // with it. A small one costs less than the hand-off to another thread would.
        let arrival = self.arriving.take();
        let submitted = if size <= INLINE_ANALYSIS {
            let submitted = ingestor.submit(&body, &envelope);
            drop(arrival);
            Ok(submitted)
        } else {
            tokio::task::spawn_blocking(move || {
                let submitted = ingestor.submit(&body, &envelope);
                drop(arrival);
                submitted
            })
            .await
        };
        let result = match submitted {
            Ok(Ok(pending)) => pending.wait().await,
            Ok(Err(e)) => Err(e),
            Err(_) => {
                tracing::error!("ingest task failed");
                return Reply::new(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message, try again later",
                );
            }
        };
        self.ctx.metrics.ingest_latency.observe(started.elapsed());
        match result {
            Ok(Outcome::Stored { id, uid, .. })
            | Ok(Outcome::Duplicate { id, uid })
            | Ok(Outcome::Junk { id, uid }) => {
                tracing::info!(%id, uid, size, "message stored");
                Reply::new(250, "2.0.0", &format!("OK {id}"))
            }
            Ok(Outcome::JunkDropped) => Reply::new(250, "2.0.0", "OK"),
            Err(ingest::Error::Empty) => Reply::new(554, "5.6.0", "Empty message"),
            Err(ingest::Error::TooLarge { .. }) => Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            Err(e) if e.is_disk_full() => {
                tracing::error!(error = %e, "the archive's disk is full; answered 452");
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a message failed; answered 451");
                Reply::new(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message, try again later",
                )
            }
        }
    }

    async fn auth(&mut self, mechanism: u64, initial: String) -> Step {
        if !self.ctx.settings.auth {
            return self.error(Reply::new(502, "5.5.1", "AUTH is not offered"));
        }
        if self.authenticated.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a transaction",
            ));
        }
        if !self.may_auth() {
            return self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.ctx.logins.throttle().blocked(self.peer.ip()) {
            return self.error(Reply::new(
                454,
                "4.7.0",
                "Too many failed attempts, try again later",
            ));
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.push(Reply::new(334, "", ""));
                self.mode = Mode::AuthLine(LineReceiver::new(AuthStep::Plain));
                Step::Continue
            }
            AUTH_PLAIN => self.auth_response(AuthStep::Plain, &initial).await,
            AUTH_LOGIN if initial.is_empty() => {
                self.push(Reply::new(334, "", "VXNlcm5hbWU6"));
                self.mode = Mode::AuthLine(LineReceiver::new(AuthStep::LoginUser));
                Step::Continue
            }
            AUTH_LOGIN => self.auth_response(AuthStep::LoginUser, &initial).await,
            _ => self.error(Reply::new(504, "5.5.4", "Unrecognized authentication type")),
        }
    }

    async fn auth_response(&mut self, step: AuthStep, line: &str) -> Step {
        if line == "*" {
            return self.error(Reply::new(501, "5.0.0", "Authentication cancelled"));
        }
        let Some(decoded) = decode_base64(line) else {
            return self.error(Reply::new(501, "5.5.2", "Invalid base64 data"));
        };
        let (name, password) = match step {
            AuthStep::Plain => {
                // authzid NUL authcid NUL password
                let mut parts = decoded.splitn(3, |b| *b == 0);
                let (Some(authz), Some(user), Some(pass)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return self.error(Reply::new(501, "5.5.2", "Invalid PLAIN response"));
                };
                if !authz.is_empty() && authz != user {
                    let delay = (self.ctx.logins.throttle())
                        .failed_unchecked(self.peer.ip())
                        .unwrap_or(Duration::from_secs(16));
                    return self.auth_failed(delay).await;
                }
                (
                    String::from_utf8_lossy(user).into_owned(),
                    String::from_utf8_lossy(pass).into_owned(),
                )
            }
            AuthStep::LoginUser => {
                self.push(Reply::new(334, "", "UGFzc3dvcmQ6"));
                let user = String::from_utf8_lossy(&decoded).into_owned();
                self.mode = Mode::AuthLine(LineReceiver::new(AuthStep::LoginPassword(user)));
                return Step::Continue;
            }
            AuthStep::LoginPassword(user) => (user, String::from_utf8_lossy(&decoded).into_owned()),
        };
        let archive: &Arc<Archive> = self.ctx.ingestor.archive();
        let ip = self.peer.ip();
        match self
            .ctx
            .logins
            .login(archive, ip, &name, &password, auth::source)
            .await
        {
            Login::Accepted(_) => {
                tracing::info!(account = %name, "authenticated");
                self.authenticated = Some(name);
                self.push(Reply::new(235, "2.7.0", "Authentication successful"));
                Step::Continue
            }
            Login::Refused { delay } => {
                tracing::info!(account = %name, "authentication failed");
                self.auth_failed(delay).await
            }
            Login::Throttled => {
                tracing::info!(account = %name, "authentication refused: too many failures");
                self.error(Reply::new(
                    454,
                    "4.7.0",
                    "Too many failed attempts, try again later",
                ))
            }
            Login::Busy => self.error(Reply::new(454, "4.7.0", "Temporary authentication failure")),
        }
    }

    async fn auth_failed(&mut self, delay: Duration) -> Step {
        self.auth_failures += 1;
        self.flush().await.ok();
        tokio::time::sleep(delay.min(Duration::from_secs(16))).await;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.push(Reply::new(
                421,
                "4.7.0",
                "Too many failed attempts, closing connection",
            ));
            return Step::Stop(Stop::Closed);
        }
        self.error(Reply::new(
            535,
            "5.7.8",
            "Authentication credentials invalid",
        ))
    }
}

enum Step {
    Continue,
    NeedMore,
    Stop(Stop),
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text == "=" {
        return Some(Vec::new());
    }
    data_encoding::BASE64.decode(text.trim().as_bytes()).ok()
}

/// The reply to a command smtp-proto could not parse.
fn syntax_reply(e: &ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => {
            Reply::new(500, "5.5.2", "Syntax error, command unrecognized")
        }
        ProtoError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        ProtoError::SyntaxError { syntax } => {
            Reply::new(501, "5.5.4", &format!("Syntax: {syntax}"))
        }
        ProtoError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", &format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { .. } => {
            Reply::new(555, "5.5.4", "Unsupported parameter")
        }
        ProtoError::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Syntax error")
        }
    }
}
