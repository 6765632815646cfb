//! One IMAP session: our own I/O loop around imap-next's sans-IO `Server`, the state machine
//! (not authenticated, authenticated, selected), and one handler per command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::Charset;
use imap_next::imap_types::core::{IString, Tag, Text, Vec1};
use imap_next::imap_types::extensions::namespace::Namespace;
use imap_next::imap_types::extensions::sort::{SortAlgorithm, SortCriterion};
use imap_next::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_next::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm, StoreResponse, StoreType};
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::{
    Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, Status,
};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_next::server::{Error as ServerError, Event, Options, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::loader::{self, flag_fetch};
use super::{acl, esearch, fetch, liststatus, mailbox, search, sort, thread};
use crate::access::Access;
use crate::archive::{Account, Archive, FLAG_FLAGGED, FLAG_SEEN, FolderQuery};
use crate::auth::{self, Login, Logins};
use crate::config::ImapSettings;
use crate::directory::{Directory, PersonId};
use crate::net::stream::Conn;

/// Everything sessions share.
pub struct Context {
    pub settings: ImapSettings,
    pub archive: Arc<Archive>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Every password check, shared with SMTP and HTTP.
    pub logins: Arc<Logins>,
    /// Cancelled when the server stops: every session says BYE.
    pub shutdown: CancellationToken,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The largest literal a client may send (LOGIN passwords, SEARCH strings): nothing we accept
/// needs more, and APPEND is refused anyway.
const MAX_LITERAL: u32 = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// A client must log in within this of connecting (`* BYE` after it), however it trickles
/// its bytes: the idle timeout (at least 30 minutes, RFC 9051) is for logged-in clients.
pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Output is written once this much is queued (and whenever the session waits for input).
const OUT_BUFFER: usize = 64 * 1024;

enum State {
    NotAuthenticated,
    Authenticated { user: String },
    Selected { user: String, folder: Selected },
}

/// What the account sees, and the folders it has, as of the last look.
struct View {
    access: Access,
    folders: Vec<mailbox::Folder>,
}

/// The selected folder: its UID list (the only per-folder state a session keeps) and the
/// user's flags.
struct Selected {
    query: FolderQuery,
    uids: Vec<u32>,
    read_only: bool,
    flags: BTreeMap<u32, u8>,
    /// The account's access when the folder was opened (what SEARCH may reveal of a
    /// message's recipients).
    access: Arc<Access>,
}

/// A folder opened for SELECT, EXAMINE or STATUS.
struct Opened {
    folder: mailbox::Folder,
    query: FolderQuery,
    /// Its messages the account may read.
    uids: Vec<u32>,
    flags: BTreeMap<u32, u8>,
    /// UIDNEXT as the account sees it.
    next: u32,
    access: Arc<Access>,
}

enum Flow {
    Continue,
    Stop,
}

pub struct Session<S> {
    ctx: Arc<Context>,
    peer: SocketAddr,
    conn: Conn<S>,
    server: Server,
    state: State,
    /// Set when a STARTTLS OK is on its way: upgrade once it is sent.
    starttls: Option<ResponseHandle>,
    /// Set when the tagged OK of LOGOUT is on its way: close once it is sent.
    logout: Option<ResponseHandle>,
    /// The tag of a running IDLE.
    idle: Option<Tag<'static>>,
    /// The tag of a running AUTHENTICATE.
    authenticate: Option<Tag<'static>>,
    new_mail: tokio::sync::watch::Receiver<u32>,
    /// Output not written yet.
    out: Vec<u8>,
    /// When a client that has not logged in is logged out.
    login_deadline: tokio::time::Instant,
}

fn status_ok(tag: Tag<'static>, code: Option<Code<'static>>, t: &str) -> Status<'static> {
    Status::ok(Some(tag), code, t.to_owned()).unwrap_or_else(|_| fallback_status())
}

fn status_no(tag: Tag<'static>, code: Option<Code<'static>>, t: &str) -> Status<'static> {
    Status::no(Some(tag), code, t.to_owned()).unwrap_or_else(|_| fallback_status())
}

fn status_bad(tag: Option<Tag<'static>>, t: &str) -> Status<'static> {
    Status::bad(tag, None, t.to_owned()).unwrap_or_else(|_| fallback_status())
}

fn fallback_status() -> Status<'static> {
    Status::Untagged(imap_next::imap_types::response::StatusBody {
        kind: imap_next::imap_types::response::StatusKind::Bad,
        code: None,
        text: Text::unvalidated("error"),
    })
}

/// `NO [CANNOT]`: the archive is read-only.
fn cannot(tag: Tag<'static>, what: &str) -> Status<'static> {
    no_cannot(
        tag,
        &format!("{what}: the archive is read-only (only \\Seen and \\Flagged can be set)"),
    )
}

/// `NO [CANNOT]` to CREATE, DELETE and RENAME.
fn cannot_folders(tag: Tag<'static>) -> Status<'static> {
    no_cannot(
        tag,
        "The folders are fixed: they are views of the read-only archive",
    )
}

fn no_cannot(tag: Tag<'static>, text: &str) -> Status<'static> {
    let code = CodeOther::unvalidated(b"CANNOT".as_slice());
    status_no(tag, Some(Code::Other(code)), text)
}

/// A folder name as the client wrote it, decoded from modified UTF-7 (RFC 3501 § 5.1.3).
fn mailbox_name(m: &Mailbox<'_>) -> Result<String, crate::mutf7::Invalid> {
    match m {
        Mailbox::Inbox => Ok("INBOX".to_owned()),
        Mailbox::Other(other) => crate::mutf7::decode(&String::from_utf8_lossy(other.as_ref())),
    }
}

fn list_pattern(m: &ListMailbox<'_>) -> Result<String, crate::mutf7::Invalid> {
    let raw = match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    };
    crate::mutf7::decode(&raw)
}

/// The answer to a folder name that is not valid modified UTF-7 (Dovecot's words).
const INVALID_NAME: &str = "Mailbox name is not valid mUTF-7";

/// A folder name for the wire: modified UTF-7, so non-ASCII names reach every client.
fn to_mailbox(name: &str) -> Option<Mailbox<'static>> {
    Mailbox::try_from(crate::mutf7::encode(name)).ok()
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Whether a message sequence set names only messages that exist (RFC 3501 § 9: a number
/// beyond the mailbox, or `*` in an empty one, is an error). UID sets may name anything.
fn sequence_set_valid(set: &SequenceSet, exists: usize) -> bool {
    use imap_next::imap_types::sequence::{SeqOrUid, Sequence};
    let ok = |n: &SeqOrUid| match n {
        SeqOrUid::Value(v) => usize::try_from(v.get()).is_ok_and(|v| v <= exists),
        SeqOrUid::Asterisk => exists > 0,
    };
    set.0.as_ref().iter().all(|s| match s {
        Sequence::Single(n) => ok(n),
        Sequence::Range(a, b) => ok(a) && ok(b),
    })
}

/// The tag at the start of bytes imap-codec could not parse, if it is one.
fn leading_tag(bytes: &[u8]) -> Option<Tag<'static>> {
    let end = bytes
        .iter()
        .position(|b| *b == b' ' || *b == b'\r' || *b == b'\n')?;
    Tag::try_from(bytes[..end].to_vec()).ok()
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(ctx: Arc<Context>, stream: S, peer: SocketAddr) -> Self {
        let new_mail = ctx.archive.subscribe();
        Self {
            ctx,
            peer,
            conn: Conn::Plain(stream),
            server: Server::new(
                Options::default(),
                Greeting::ok(None, "x").unwrap_or_else(|_| unreachable_greeting()),
            ),
            state: State::NotAuthenticated,
            starttls: None,
            logout: None,
            idle: None,
            authenticate: None,
            new_mail,
            out: Vec::new(),
            login_deadline: tokio::time::Instant::now() + LOGIN_TIMEOUT,
        }
    }

    fn options() -> Options {
        let mut options = Options::default();
        options.max_literal_size = MAX_LITERAL;
        options.max_command_size = MAX_LITERAL + 64 * 1024;
        options
    }

    fn greeting(&self) -> Greeting<'static> {
        let code = Code::capability(self.capabilities()).ok();
        Greeting::ok(code, "mailjournal IMAP ready (read-only archive)")
            .map(Greeting::into_static)
            .unwrap_or_else(|_| unreachable_greeting())
    }

    fn is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
    }

    /// Plain-text passwords only over TLS or on loopback.
    fn login_allowed(&self) -> bool {
        self.conn.is_tls() || self.is_loopback()
    }

    fn capabilities(&self) -> Vec<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        match &self.state {
            State::NotAuthenticated => {
                if !self.conn.is_tls() && self.ctx.tls.is_some() {
                    caps.push(Capability::StartTls);
                }
                if self.login_allowed() {
                    caps.push(Capability::Auth(AuthMechanism::Plain));
                    caps.push(Capability::SaslIr);
                } else {
                    caps.push(Capability::LoginDisabled);
                }
            }
            _ => {
                caps.extend([
                    Capability::Idle,
                    Capability::Namespace,
                    Capability::Unselect,
                    Capability::Enable,
                    Capability::Binary,
                    Capability::Sort(None),
                    Capability::Sort(Some(SortAlgorithm::Display)),
                    Capability::Thread(ThreadingAlgorithm::OrderedSubject),
                    Capability::Thread(ThreadingAlgorithm::References),
                ]);
                // RFC 4731 and 5267: SEARCH RETURN and SORT RETURN (src/imap/esearch.rs);
                // RFC 3348 and 6154: LIST marks folders with children and the Junk folder;
                // RFC 8438: STATUS SIZE.
                // RFC 5819: LIST … RETURN (STATUS (…)) (src/imap/liststatus.rs).
                for name in [
                    "ESEARCH",
                    "ESORT",
                    "CHILDREN",
                    "SPECIAL-USE",
                    "STATUS=SIZE",
                    "LIST-STATUS",
                ] {
                    if let Ok(atom) = imap_next::imap_types::core::Atom::try_from(name) {
                        caps.push(Capability::from(atom));
                    }
                }
            }
        }
        caps.push(Capability::Id);
        caps.push(Capability::LiteralPlus);
        // RFC 4314: what an account may do in each folder (MYRIGHTS), so that clients
        // grey out Delete and Move.
        for name in ["ACL".to_owned(), format!("RIGHTS={}", acl::EXTRA_RIGHTS)] {
            if let Ok(atom) = imap_next::imap_types::core::Atom::try_from(name) {
                caps.push(Capability::from(atom));
            }
        }
        caps
    }

    /// Runs the session to its end.
    pub async fn run(self, implicit_tls: bool) {
        let metrics = Arc::clone(&self.ctx.metrics);
        metrics.imap_sessions.inc();
        self.serve_session(implicit_tls).await;
        metrics.imap_sessions.dec();
    }

    async fn serve_session(mut self, implicit_tls: bool) {
        if implicit_tls && !self.upgrade().await {
            return;
        }
        self.server = Server::new(Self::options(), self.greeting());
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match self.server.next() {
                Ok(event) => match self.on_event(event).await {
                    Flow::Continue => {}
                    Flow::Stop => break,
                },
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    if self.write(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => match self.read(&mut buf).await {
                    Some(n) => {
                        let chunk = buf.get(..n).unwrap_or_default();
                        self.server.enqueue_input(chunk);
                    }
                    None => break,
                },
                Err(Interrupt::Error(e)) => {
                    if self.on_protocol_error(e).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = self.conn.shutdown().await;
    }

    /// Queues output; it is written when the buffer fills or before the session waits for
    /// input, so a FETCH of many small items costs a few writes, not one per message. A
    /// large piece (a message) goes out as it is, after what is queued, not copied again.
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.len() >= OUT_BUFFER {
            self.flush_out().await?;
            return self.write_now(bytes).await;
        }
        self.out.extend_from_slice(bytes);
        if self.out.len() >= OUT_BUFFER {
            self.flush_out().await?;
        }
        Ok(())
    }

    async fn flush_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let result = self.write_now(&out).await;
        // Keep the allocation for the next responses.
        self.out = out;
        self.out.clear();
        result
    }

    /// Writes `bytes` to the client, within the idle timeout.
    async fn write_now(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let timeout = self.ctx.settings.idle_timeout;
        let result = tokio::time::timeout(timeout, async {
            self.conn.write_all(bytes).await?;
            self.conn.flush().await
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other("write timed out")),
        }
    }

    /// Reads more input; `None` when the session must end (EOF, timeout, shutdown). While
    /// IDLE or selected, new mail is announced as it is committed.
    async fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.flush_out().await.is_err() {
            return None;
        }
        loop {
            let mut timeout = self.ctx.settings.idle_timeout;
            let logging_in = matches!(self.state, State::NotAuthenticated);
            if logging_in {
                let left = self
                    .login_deadline
                    .saturating_duration_since(tokio::time::Instant::now());
                timeout = timeout.min(left);
            }
            let shutdown = self.ctx.shutdown.clone();
            let watching = self.idle.is_some();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.say_bye("server shutting down").await;
                    return None;
                }
                changed = self.new_mail.changed(), if watching => {
                    if changed.is_err() {
                        return None;
                    }
                    self.announce_new_mail();
                    // Send what was enqueued, then keep waiting.
                    if self.drain().await.is_err() || self.flush_out().await.is_err() {
                        return None;
                    }
                }
                r = tokio::time::timeout(timeout, self.conn.read(buf)) => {
                    return match r {
                        Ok(Ok(0)) | Ok(Err(_)) => None,
                        Ok(Ok(n)) => Some(n),
                        Err(_) if logging_in => {
                            self.say_bye("autologout: no login in time").await;
                            None
                        }
                        Err(_) => {
                            self.say_bye("autologout: idle for too long").await;
                            None
                        }
                    };
                }
            }
        }
    }

    async fn say_bye(&mut self, why: &str) {
        if let Ok(bye) = Status::bye(None, why.to_owned()) {
            self.server.enqueue_status(bye);
            let _ = self.drain().await;
            let _ = self.flush_out().await;
        }
    }

    /// Writes every enqueued response (and nothing else).
    async fn drain(&mut self) -> std::io::Result<()> {
        loop {
            match self.server.next() {
                Err(Interrupt::Io(Io::Output(bytes))) => self.write(&bytes).await?,
                Ok(Event::ResponseSent { .. }) => {}
                // Nothing left to send: it wants input or has an event we handle later.
                _ => return Ok(()),
            }
        }
    }

    /// Enqueues a response and writes it before going on, so that a long FETCH never holds
    /// more than one message's response in memory.
    async fn send_data(&mut self, data: Data<'static>) -> std::io::Result<()> {
        let handle = self.server.enqueue_data(data);
        loop {
            match self.server.next() {
                Err(Interrupt::Io(Io::Output(bytes))) => self.write(&bytes).await?,
                Ok(Event::ResponseSent { handle: h, .. }) if h == handle => return Ok(()),
                Ok(Event::ResponseSent { .. }) => {}
                _ => return Ok(()),
            }
        }
    }

    fn status(&mut self, status: Status<'static>) -> ResponseHandle {
        self.server.enqueue_status(status)
    }

    /// Input imap-codec could not parse: an ACL command (imap-codec has none), or a BAD.
    /// `Err`: the connection failed.
    async fn on_protocol_error(&mut self, e: ServerError) -> std::io::Result<()> {
        match e {
            ServerError::LiteralTooLong { .. } => {
                // imap-next has already answered.
            }
            ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                let tag = leading_tag(discarded_bytes.declassify());
                self.status(status_bad(tag, "Lines must end with CRLF"));
            }
            ServerError::MalformedMessage { discarded_bytes } => {
                let bytes = discarded_bytes.declassify();
                let tag = leading_tag(bytes);
                if self.idle.is_none() && self.authenticate.is_none() {
                    match (tag.clone(), esearch::split(bytes)) {
                        (Some(tag), Ok((options, plain))) => {
                            self.handle_return(tag, options, &plain).await;
                            return Ok(());
                        }
                        (Some(tag), Err(esearch::Error::BadOption)) => {
                            self.status(status_bad(
                                Some(tag),
                                "Unknown or malformed RETURN option",
                            ));
                            return Ok(());
                        }
                        _ => {}
                    }
                    match (tag.clone(), liststatus::split(bytes)) {
                        (Some(tag), Ok(split)) => {
                            self.handle_list_return(tag, &split).await;
                            return Ok(());
                        }
                        (Some(tag), Err(liststatus::Error::BadOption)) => {
                            self.status(status_bad(
                                Some(tag),
                                "Unknown or malformed RETURN option",
                            ));
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                // Only a command line (not the DONE of an IDLE, nor an AUTHENTICATE
                // response) can be an ACL command.
                let in_command = self.idle.is_none() && self.authenticate.is_none();
                match (tag, acl::parse(bytes)) {
                    (Some(tag), Ok(command)) if in_command => {
                        return self.handle_acl(tag, command).await;
                    }
                    (Some(tag), Err(acl::Error::Syntax)) if in_command => {
                        self.status(status_bad(Some(tag), "Invalid ACL command arguments"));
                    }
                    (tag, _) => {
                        self.status(status_bad(tag, "Unknown command or bad syntax"));
                    }
                }
            }
            ServerError::CommandTooLong { discarded_bytes } => {
                let tag = leading_tag(discarded_bytes.declassify());
                self.status(status_bad(tag, "Command line too long"));
            }
        }
        Ok(())
    }

    /// `SEARCH RETURN (…)` and `SORT RETURN (…)` (ESEARCH, ESORT): `plain` is the command
    /// without its RETURN options, which imap-codec parses.
    async fn handle_return(&mut self, tag: Tag<'static>, options: esearch::Options, plain: &[u8]) {
        use imap_codec::CommandCodec;
        use imap_codec::decode::Decoder;
        if !matches!(self.state, State::Selected { .. }) {
            self.status(status_bad(Some(tag), "Select a folder first"));
            return;
        }
        let Ok((_, command)) = CommandCodec::default().decode(plain) else {
            self.status(status_bad(Some(tag), "Unknown command or bad syntax"));
            return;
        };
        let body = command.into_static().body;
        if matches!(body, CommandBody::Search { .. } | CommandBody::Sort { .. }) {
            self.search_or_sort(tag, body, Some(options)).await;
        } else {
            self.status(status_bad(Some(tag), "Unknown command or bad syntax"));
        }
    }

    /// SEARCH or SORT (any other command is ignored: callers match first), with the
    /// RETURN options of ESEARCH/ESORT when there were any.
    async fn search_or_sort(
        &mut self,
        tag: Tag<'static>,
        body: CommandBody<'static>,
        options: Option<esearch::Options>,
    ) {
        match body {
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                self.handle_search(tag, charset.as_ref(), criteria.as_ref(), uid, options)
                    .await
            }
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                self.handle_sort(
                    tag,
                    sort_criteria.as_ref(),
                    &charset,
                    search_criteria.as_ref(),
                    uid,
                    options,
                )
                .await
            }
            _ => {}
        }
    }

    /// `LIST … RETURN (…)` (LIST-STATUS): the LIST and STATUS parts parsed by imap-codec.
    async fn handle_list_return(&mut self, tag: Tag<'static>, split: &liststatus::Split) {
        use imap_codec::CommandCodec;
        use imap_codec::decode::Decoder;
        if matches!(self.state, State::NotAuthenticated) {
            self.status(status_bad(Some(tag), "Log in first"));
            return;
        }
        let codec = CommandCodec::default();
        let list = codec.decode(&split.list).map(|(_, c)| c.into_static().body);
        let items = match split.status.as_deref().map(|s| codec.decode(s)) {
            None => Some(Vec::new()),
            Some(Ok((_, command))) => match command.into_static().body {
                CommandBody::Status { item_names, .. } => Some(item_names.into_owned()),
                _ => None,
            },
            Some(Err(_)) => None,
        };
        match (list, items) {
            (
                Ok(CommandBody::List {
                    reference,
                    mailbox_wildcard,
                }),
                Some(items),
            ) => match (mailbox_name(&reference), list_pattern(&mailbox_wildcard)) {
                (Ok(reference), Ok(pattern)) => {
                    let status = split.status.is_some().then_some(items.as_slice());
                    self.list(tag, &reference, &pattern, false, status).await;
                }
                _ => {
                    self.status(status_ok(tag, None, "LIST completed"));
                }
            },
            _ => {
                self.status(status_bad(Some(tag), "Unknown command or bad syntax"));
            }
        }
    }

    /// MYRIGHTS, GETACL, LISTRIGHTS, SETACL, DELETEACL (RFC 4314). The folder is found as
    /// SELECT and STATUS find it: one the account cannot see does not exist. Every account
    /// has `lrsw` in a folder it can open and `l` in one that only holds folders; nobody has
    /// `a`, so reading or changing ACLs is refused, as a read-only Dovecot does.
    async fn handle_acl(
        &mut self,
        tag: Tag<'static>,
        command: acl::Command,
    ) -> std::io::Result<()> {
        if matches!(self.state, State::NotAuthenticated) {
            self.status(status_bad(Some(tag), "Log in first"));
            return Ok(());
        }
        let name = match crate::mutf7::decode(&String::from_utf8_lossy(command.mailbox())) {
            Ok(name) => name,
            Err(_) => {
                self.status(status_no(tag, None, INVALID_NAME));
                return Ok(());
            }
        };
        let folders = self.view().await.folders;
        let Some(folder) = self.find_folder(&name, folders).await else {
            let code = CodeOther::unvalidated(b"NONEXISTENT".as_slice());
            self.status(status_no(tag, Some(Code::Other(code)), "No such folder"));
            return Ok(());
        };
        match command {
            acl::Command::MyRights { .. } => {
                let rights = if folder.query.is_some() {
                    acl::SELECTABLE
                } else {
                    acl::PARENT
                };
                // imap-next reports bad input only once everything enqueued before it is
                // out (it sends before it reads), so this line goes out in order. Draining
                // here could instead consume the next pipelined command.
                let line = acl::myrights_line(&crate::mutf7::encode(&name), rights);
                self.write(&line).await?;
                self.status(status_ok(tag, None, "MYRIGHTS completed"));
            }
            acl::Command::GetAcl { .. }
            | acl::Command::ListRights { .. }
            | acl::Command::SetAcl { .. }
            | acl::Command::DeleteAcl { .. } => {
                let code = CodeOther::unvalidated(b"NOPERM".as_slice());
                self.status(status_no(
                    tag,
                    Some(Code::Other(code)),
                    "Access rights are fixed by the administrator (MYRIGHTS tells yours)",
                ));
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::GreetingSent { .. } => Flow::Continue,
            Event::ResponseSent { handle, .. } => {
                if self.logout == Some(handle) {
                    let _ = self.flush_out().await;
                    return Flow::Stop;
                }
                if self.starttls == Some(handle) {
                    self.starttls = None;
                    if self.flush_out().await.is_err() {
                        return Flow::Stop;
                    }
                    if !self.upgrade().await {
                        return Flow::Stop;
                    }
                    // A fresh protocol state: plaintext pipelined after STARTTLS is dropped
                    // with the old one, and no second greeting is sent.
                    self.server = Server::new(Self::options(), self.greeting());
                    loop {
                        match self.server.next() {
                            Ok(Event::GreetingSent { .. }) => break,
                            Err(Interrupt::Io(Io::Output(_))) => {}
                            _ => break,
                        }
                    }
                }
                Flow::Continue
            }
            Event::CommandReceived { command } => {
                self.on_command(command).await;
                Flow::Continue
            }
            Event::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                let tag = command_authenticate.tag;
                if !matches!(self.state, State::NotAuthenticated) {
                    let _ = self
                        .server
                        .authenticate_finish(status_bad(Some(tag), "Already authenticated"));
                    return Flow::Continue;
                }
                if !self.login_allowed() {
                    let _ = self.server.authenticate_finish(status_no(
                        tag,
                        None,
                        "Plain-text authentication needs TLS: use STARTTLS first",
                    ));
                    return Flow::Continue;
                }
                if command_authenticate.mechanism != AuthMechanism::Plain {
                    let _ = self.server.authenticate_finish(status_no(
                        tag,
                        None,
                        "Unsupported authentication mechanism",
                    ));
                    return Flow::Continue;
                }
                match command_authenticate.initial_response {
                    Some(response) => {
                        let data = response.declassify().to_vec();
                        self.finish_plain(tag, &data).await;
                    }
                    None => {
                        self.authenticate = Some(tag);
                        let ccr = CommandContinuationRequest::base64(b"".as_slice());
                        let _ = self.server.authenticate_continue(ccr);
                    }
                }
                Flow::Continue
            }
            Event::AuthenticateDataReceived { authenticate_data } => {
                let Some(tag) = self.authenticate.take() else {
                    return Flow::Continue;
                };
                match authenticate_data {
                    AuthenticateData::Continue(data) => {
                        let data = data.declassify().to_vec();
                        self.finish_plain(tag, &data).await;
                    }
                    AuthenticateData::Cancel => {
                        let _ = self
                            .server
                            .authenticate_finish(status_bad(Some(tag), "Authentication cancelled"));
                    }
                }
                Flow::Continue
            }
            Event::IdleCommandReceived { tag } => {
                if matches!(self.state, State::NotAuthenticated) {
                    let _ = self
                        .server
                        .idle_reject(status_bad(Some(tag), "Log in first"));
                } else {
                    self.new_mail.mark_unchanged();
                    self.idle = Some(tag);
                    if let Ok(ccr) = CommandContinuationRequest::basic(None, "idling") {
                        let _ = self.server.idle_accept(ccr);
                    }
                    // Mail that arrived before IDLE started.
                    self.announce_new_mail();
                }
                Flow::Continue
            }
            Event::IdleDoneReceived => {
                if let Some(tag) = self.idle.take() {
                    self.status(status_ok(tag, None, "IDLE terminated"));
                }
                Flow::Continue
            }
        }
    }

    async fn upgrade(&mut self) -> bool {
        let Some(config) = self.ctx.tls.clone() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(60), self.conn.upgrade(config)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    /// SASL PLAIN: authzid NUL authcid NUL password.
    async fn finish_plain(&mut self, tag: Tag<'static>, data: &[u8]) {
        let mut parts = data.splitn(3, |b| *b == 0);
        let (Some(authz), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next())
        else {
            let _ = self
                .server
                .authenticate_finish(status_bad(Some(tag), "Invalid PLAIN response"));
            return;
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        let checked = if authz.is_empty() || authz == user.as_bytes() {
            self.check_login(&user, &pass).await
        } else {
            Err("Authentication failed")
        };
        let status = match checked {
            Ok(()) => {
                self.state = State::Authenticated { user };
                status_ok(tag, None, "Logged in")
            }
            Err(why) => status_no(tag, None, why),
        };
        let _ = self.server.authenticate_finish(status);
    }

    /// Checks a name and password (one argon2 check at most, in turn); delays failures.
    async fn check_login(&mut self, user: &str, pass: &str) -> Result<(), &'static str> {
        let ip = self.peer.ip();
        match self
            .ctx
            .logins
            .login(&self.ctx.archive, ip, user, pass, auth::reader)
            .await
        {
            Login::Accepted(_) => {
                tracing::info!(account = %user, "IMAP login");
                Ok(())
            }
            Login::Refused { delay } => {
                tracing::info!(account = %user, "IMAP login failed");
                tokio::time::sleep(delay).await;
                Err("Authentication failed")
            }
            Login::Throttled => {
                tracing::info!(account = %user, "IMAP login refused: too many failures");
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err("Authentication failed")
            }
            Login::Busy => Err("Too many logins at once, try again later"),
        }
    }

    fn sequence_valid(&self, set: &SequenceSet) -> bool {
        match &self.state {
            State::Selected { folder, .. } => sequence_set_valid(set, folder.uids.len()),
            _ => true,
        }
    }

    /// Back to the authenticated state, if a folder is selected.
    fn deselect(&mut self) {
        if let State::Selected { user, .. } = &mut self.state {
            let user = std::mem::take(user);
            self.state = State::Authenticated { user };
        }
    }

    fn user(&self) -> Option<&str> {
        match &self.state {
            State::NotAuthenticated => None,
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
        }
    }

    /// New messages in the selected folder: appended to its UID list and announced.
    fn announce_new_mail(&mut self) {
        if !matches!(self.state, State::Selected { .. }) {
            return;
        }
        let access = self.access();
        let State::Selected { folder, .. } = &mut self.state else {
            return;
        };
        let Ok(mut uids) = self.ctx.archive.folder_uids(&folder.query) else {
            return;
        };
        access.filter(&mut uids);
        let max = folder.uids.last().copied().unwrap_or(0);
        let before = folder.uids.len();
        folder.uids.extend(uids.into_iter().filter(|u| *u > max));
        if folder.uids.len() != before {
            let n = u32::try_from(folder.uids.len()).unwrap_or(u32::MAX);
            self.server.enqueue_data(Data::Exists(n));
        }
    }

    async fn on_command(&mut self, command: Command<'static>) {
        let tag = command.tag;
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        let selected = matches!(self.state, State::Selected { .. });
        match command.body {
            CommandBody::Capability => {
                if let Ok(caps) = Vec1::try_from(self.capabilities()) {
                    let _ = self.send_data(Data::Capability(caps)).await;
                }
                self.status(status_ok(tag, None, "CAPABILITY completed"));
            }
            CommandBody::Noop | CommandBody::Check => {
                self.announce_new_mail();
                self.status(status_ok(tag, None, "NOOP completed"));
            }
            CommandBody::Logout => {
                self.say_bye("logging out").await;
                self.logout = Some(self.status(status_ok(tag, None, "LOGOUT completed")));
            }
            CommandBody::Id { .. } => {
                let params = vec![
                    (IString::try_from("name").ok(), "mailjournal"),
                    (IString::try_from("version").ok(), env!("CARGO_PKG_VERSION")),
                ]
                .into_iter()
                .filter_map(|(k, v)| {
                    Some((k?, imap_next::imap_types::core::NString::try_from(v).ok()?))
                })
                .collect();
                let _ = self
                    .send_data(Data::Id {
                        parameters: Some(params),
                    })
                    .await;
                self.status(status_ok(tag, None, "ID completed"));
            }
            CommandBody::StartTLS => {
                if self.conn.is_tls() || authenticated {
                    self.status(status_bad(Some(tag), "STARTTLS is not possible now"));
                } else if self.ctx.tls.is_none() {
                    self.status(status_no(tag, None, "TLS is not available"));
                } else {
                    self.starttls =
                        Some(self.status(status_ok(tag, None, "Begin TLS negotiation now")));
                }
            }
            CommandBody::Login { username, password } => {
                if authenticated {
                    self.status(status_bad(Some(tag), "Already authenticated"));
                } else if !self.login_allowed() {
                    self.status(status_no(
                        tag,
                        None,
                        "LOGIN is disabled without TLS: use STARTTLS first",
                    ));
                } else {
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                    match self.check_login(&user, &pass).await {
                        Ok(()) => {
                            self.state = State::Authenticated { user };
                            let code = Code::capability(self.capabilities()).ok();
                            self.status(status_ok(tag, code, "Logged in"));
                        }
                        Err(why) => {
                            self.status(status_no(tag, None, why));
                        }
                    }
                }
            }
            _ if !authenticated => {
                self.status(status_bad(Some(tag), "Log in first"));
            }
            CommandBody::Namespace => {
                let personal = vec![Namespace::new(
                    IString::try_from("").unwrap_or_else(|_| unreachable_istring()),
                    imap_next::imap_types::core::QuotedChar::try_from(mailbox::DELIMITER).ok(),
                )];
                let _ = self
                    .send_data(Data::Namespace {
                        personal,
                        other: Vec::new(),
                        shared: Vec::new(),
                    })
                    .await;
                self.status(status_ok(tag, None, "NAMESPACE completed"));
            }
            CommandBody::Enable { .. } => {
                let _ = self
                    .send_data(Data::Enabled {
                        capabilities: Vec::new(),
                    })
                    .await;
                self.status(status_ok(tag, None, "ENABLE completed"));
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.list_named(tag, &reference, &mailbox_wildcard, false)
                    .await
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.list_named(tag, &reference, &mailbox_wildcard, true)
                    .await
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => match mailbox_name(&mailbox) {
                Ok(name) => self.handle_status(tag, &name, &item_names).await,
                Err(_) => {
                    self.status(status_no(tag, None, INVALID_NAME));
                }
            },
            CommandBody::Select { mailbox, .. } => self.select_named(tag, &mailbox, false).await,
            CommandBody::Examine { mailbox, .. } => self.select_named(tag, &mailbox, true).await,
            CommandBody::Subscribe { .. } | CommandBody::Unsubscribe { .. } => {
                // Every folder is always subscribed; nothing to remember.
                self.status(status_ok(
                    tag,
                    None,
                    "Subscriptions are fixed: every folder is subscribed",
                ));
            }
            CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. } => {
                self.status(cannot_folders(tag));
            }
            CommandBody::Append { .. } => {
                self.status(cannot(tag, "APPEND"));
            }
            _ if !selected => {
                self.status(status_bad(Some(tag), "Select a folder first"));
            }
            CommandBody::Close | CommandBody::Unselect => {
                self.deselect();
                self.status(status_ok(
                    tag,
                    None,
                    "Closed (nothing is expunged from the archive)",
                ));
            }
            CommandBody::Expunge | CommandBody::ExpungeUid { .. } => {
                self.status(cannot(tag, "EXPUNGE"));
            }
            CommandBody::Copy { .. } => {
                self.status(cannot(tag, "COPY"));
            }
            CommandBody::Move { .. } => {
                self.status(cannot(tag, "MOVE"));
            }
            CommandBody::Fetch {
                sequence_set, uid, ..
            }
            | CommandBody::Store {
                sequence_set, uid, ..
            } if !uid && !self.sequence_valid(&sequence_set) => {
                self.status(status_bad(Some(tag), "Invalid message sequence number"));
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.handle_fetch(tag, &sequence_set, macro_or_item_names, uid)
                    .await
            }
            body @ (CommandBody::Search { .. } | CommandBody::Sort { .. }) => {
                self.search_or_sort(tag, body, None).await
            }
            CommandBody::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => {
                self.handle_thread(tag, &algorithm, &charset, search_criteria.as_ref(), uid)
                    .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.handle_store(tag, &sequence_set, kind, response, &flags, uid)
                    .await
            }
            _ => {
                self.status(status_bad(Some(tag), "Command not supported"));
            }
        }
    }

    /// The account's access and folders, computed afresh (see [`view_of`]) on the blocking
    /// pool: for an account that sees only some mail it reads every contact's folder.
    /// The folder of this account's `folders` named `name`, or a person's folder under a
    /// path the directory has since renamed.
    async fn find_folder(
        &self,
        name: &str,
        folders: Vec<mailbox::Folder>,
    ) -> Option<mailbox::Folder> {
        if let Some(folder) = mailbox::find(name, &folders) {
            return Some(folder);
        }
        let archive = Arc::clone(&self.ctx.archive);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || mailbox::find_renamed(&archive, &name, &folders))
            .await
            .ok()
            .flatten()
    }

    async fn view(&self) -> View {
        let archive = Arc::clone(&self.ctx.archive);
        let user = self.user().map(str::to_owned);
        tokio::task::spawn_blocking(move || view_of(&archive, user.as_deref()))
            .await
            .unwrap_or_else(|_| View {
                access: Access::nothing(),
                folders: Vec::new(),
            })
    }

    /// What the account may read, as of now.
    fn access(&self) -> Access {
        access_of(&self.ctx.archive, self.user()).2
    }

    /// LIST or LSUB (every folder is subscribed, so both name the same folders, each in
    /// its own response).
    async fn list_named(
        &mut self,
        tag: Tag<'static>,
        reference: &Mailbox<'_>,
        wildcard: &ListMailbox<'_>,
        lsub: bool,
    ) {
        match (mailbox_name(reference), list_pattern(wildcard)) {
            (Ok(reference), Ok(pattern)) => self.list(tag, &reference, &pattern, lsub, None).await,
            // A pattern that is not valid modified UTF-7 names no folder (every folder's
            // name is valid): the answer is an empty list, as Dovecot's (imaptest `atoms`).
            _ => {
                let verb = if lsub {
                    "LSUB completed"
                } else {
                    "LIST completed"
                };
                self.status(status_ok(tag, None, verb));
            }
        }
    }

    /// LIST or LSUB of `reference` + `pattern`; with `status`, each selectable folder's
    /// STATUS after its LIST line (LIST-STATUS, RFC 5819).
    async fn list(
        &mut self,
        tag: Tag<'static>,
        reference: &str,
        pattern: &str,
        lsub: bool,
        status: Option<&[StatusDataItemName]>,
    ) {
        let verb = if lsub {
            "LSUB completed"
        } else {
            "LIST completed"
        };
        let delimiter = imap_next::imap_types::core::QuotedChar::try_from(mailbox::DELIMITER).ok();
        let response = |items, mailbox| {
            if lsub {
                Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter,
                    mailbox,
                }
            }
        };
        if pattern.is_empty() {
            // The hierarchy delimiter and root.
            let data = response(
                vec![FlagNameAttribute::Noselect],
                to_mailbox("").unwrap_or(Mailbox::Inbox),
            );
            let _ = self.send_data(data).await;
            self.status(status_ok(tag, None, verb));
            return;
        }
        let full = format!("{reference}{pattern}");
        if full.chars().count() > mailbox::MAX_PATTERN {
            self.status(status_bad(Some(tag), "Mailbox pattern too long"));
            return;
        }
        for folder in self.view().await.folders {
            if !mailbox::matches(&full, &folder.name) {
                continue;
            }
            let Some(mailbox) = to_mailbox(&folder.name) else {
                continue;
            };
            let mut items = Vec::new();
            if folder.query.is_none() {
                items.push(FlagNameAttribute::Noselect);
            }
            let child = if folder.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            };
            items.extend(attribute(child));
            if let Some(special) = folder.special_use {
                items.extend(attribute(special));
            }
            let data = response(items, mailbox);
            if self.send_data(data).await.is_err() {
                return;
            }
            if let (Some(items), Some(_)) = (status, &folder.query)
                && let Ok(Some(data)) = self.status_data(&folder.name, items).await
                && self.send_data(data).await.is_err()
            {
                return;
            }
        }
        self.status(status_ok(tag, None, verb));
    }

    /// A folder by name with its content, the account's flags and UIDNEXT; or why not.
    async fn open_folder(&self, name: &str, user: &str) -> Result<Opened, &'static str> {
        let view = self.view().await;
        let folder = self
            .find_folder(name, view.folders)
            .await
            .ok_or("No such folder")?;
        let query = folder
            .query
            .clone()
            .ok_or("That folder only holds other folders")?;
        let archive = &self.ctx.archive;
        match (
            archive.folder_uids(&query),
            archive.account_flags(user),
            archive.next_uid(),
        ) {
            (Ok(mut uids), Ok(flags), Ok(next)) => {
                // The one place a folder's content meets the account's access.
                view.access.filter(&mut uids);
                // The archive's UIDNEXT tells how much mail the organization has: an
                // account that sees only some gets the UID after the last one it sees,
                // which still grows whenever its folder gets a message (RFC 3501 § 2.3.1.1).
                let next = if view.access.sees_all() {
                    next
                } else {
                    uids.last().map_or(1, |u| u.saturating_add(1))
                };
                Ok(Opened {
                    folder,
                    query,
                    uids,
                    flags,
                    next,
                    access: Arc::new(view.access),
                })
            }
            _ => Err("The archive cannot be read right now"),
        }
    }

    async fn handle_status(&mut self, tag: Tag<'static>, name: &str, items: &[StatusDataItemName]) {
        match self.status_data(name, items).await {
            Ok(data) => {
                if let Some(data) = data {
                    let _ = self.send_data(data).await;
                }
                self.status(status_ok(tag, None, "STATUS completed"));
            }
            Err(why) => {
                self.status(status_no(tag, None, why));
            }
        }
    }

    /// The STATUS response of folder `name` (`None` if its name cannot go on the wire), or
    /// why there is none.
    async fn status_data(
        &self,
        name: &str,
        items: &[StatusDataItemName],
    ) -> Result<Option<Data<'static>>, &'static str> {
        let user = self.user().unwrap_or_default().to_owned();
        let Opened {
            folder,
            uids,
            flags,
            next,
            ..
        } = self.open_folder(name, &user).await?;
        let count = u32::try_from(uids.len()).unwrap_or(u32::MAX);
        let unseen = uids
            .iter()
            .filter(|u| flags.get(u).is_none_or(|b| b & FLAG_SEEN == 0))
            .count();
        // RFC 8438: the folder's size, what RFC822.SIZE of every message adds up to.
        let size = if items.contains(&StatusDataItemName::Size) {
            let archive = Arc::clone(&self.ctx.archive);
            let uids = uids.clone();
            tokio::task::spawn_blocking(move || {
                uids.iter()
                    .filter_map(|&uid| archive.get(uid).ok().flatten())
                    .map(|record| record.served_size())
                    .sum::<u64>()
            })
            .await
            .unwrap_or_default()
        } else {
            0
        };
        let mut out = Vec::new();
        for item in items {
            out.push(match item {
                StatusDataItemName::Messages => StatusDataItem::Messages(count),
                StatusDataItemName::Recent => StatusDataItem::Recent(0),
                StatusDataItemName::UidNext => StatusDataItem::UidNext(nz(next)),
                StatusDataItemName::UidValidity => {
                    StatusDataItem::UidValidity(nz(self.ctx.archive.uidvalidity()))
                }
                StatusDataItemName::Unseen => {
                    StatusDataItem::Unseen(u32::try_from(unseen).unwrap_or(u32::MAX))
                }
                StatusDataItemName::Deleted => StatusDataItem::Deleted(0),
                StatusDataItemName::DeletedStorage => StatusDataItem::DeletedStorage(0),
                StatusDataItemName::Size => StatusDataItem::Size(size),
                #[allow(unreachable_patterns)]
                _ => continue,
            });
        }
        Ok(to_mailbox(&folder.name).map(|mailbox| Data::Status {
            mailbox,
            items: out.into(),
        }))
    }

    async fn select_named(&mut self, tag: Tag<'static>, mailbox: &Mailbox<'_>, read_only: bool) {
        match mailbox_name(mailbox) {
            Ok(name) => self.select(tag, &name, read_only).await,
            Err(_) => {
                // Selecting closes any selected folder first, even if the new one fails.
                self.deselect();
                self.status(status_no(tag, None, INVALID_NAME));
            }
        }
    }

    async fn select(&mut self, tag: Tag<'static>, name: &str, read_only: bool) {
        let user = self.user().unwrap_or_default().to_owned();
        // Selecting closes any selected folder first, even if the new one fails.
        self.state = State::Authenticated { user: user.clone() };
        let Opened {
            folder,
            query,
            uids,
            flags,
            next,
            access,
        } = match self.open_folder(name, &user).await {
            Ok(opened) => opened,
            Err(why) => {
                self.status(status_no(tag, None, why));
                return;
            }
        };
        let exists = u32::try_from(uids.len()).unwrap_or(u32::MAX);
        let _ = self
            .send_data(Data::Flags(vec![Flag::Seen, Flag::Flagged]))
            .await;
        let _ = self.send_data(Data::Exists(exists)).await;
        let _ = self.send_data(Data::Recent(0)).await;
        let untagged = |code: Code<'static>, t: &str| {
            Status::ok(None, Some(code), t.to_owned()).unwrap_or_else(|_| fallback_status())
        };
        if let Some(first_unseen) = uids
            .iter()
            .position(|u| flags.get(u).is_none_or(|b| b & FLAG_SEEN == 0))
        {
            let seq = u32::try_from(first_unseen + 1).unwrap_or(u32::MAX);
            self.status(untagged(Code::Unseen(nz(seq)), "First unseen"));
        }
        self.status(untagged(
            Code::UidValidity(nz(self.ctx.archive.uidvalidity())),
            "UIDs valid forever",
        ));
        self.status(untagged(Code::UidNext(nz(next)), "Predicted next UID"));
        let permanent = if read_only {
            Vec::new()
        } else {
            vec![FlagPerm::Flag(Flag::Seen), FlagPerm::Flag(Flag::Flagged)]
        };
        self.status(untagged(Code::PermanentFlags(permanent), "Flags permitted"));
        self.new_mail.mark_unchanged();
        tracing::debug!(folder = %folder.name, exists, "selected");
        self.state = State::Selected {
            user,
            folder: Selected {
                query,
                uids,
                read_only,
                flags,
                access,
            },
        };
        let (code, verb) = if read_only {
            (Code::ReadOnly, "EXAMINE")
        } else {
            (Code::ReadWrite, "SELECT")
        };
        self.status(status_ok(tag, Some(code), &format!("{verb} completed")));
    }

    async fn handle_fetch(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        by_uid: bool,
    ) {
        let mut items: Vec<MessageDataItemName<'static>> = match names {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|i| i.into_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if by_uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let State::Selected { folder, user } = &mut self.state else {
            return;
        };
        let user = user.clone();
        // Decide sequence numbers and flags here, in order; the answers are built from this.
        let marks_seen = fetch::sets_seen(&items) && !folder.read_only;
        let mut seen_now = Vec::new();
        let plan: Vec<loader::Planned> = search::resolve(set, &folder.uids, by_uid)
            .into_iter()
            .filter_map(|i| {
                let uid = *folder.uids.get(i)?;
                let mut bits = folder.flags.get(&uid).copied().unwrap_or(0);
                let newly_seen = marks_seen && bits & FLAG_SEEN == 0;
                if newly_seen {
                    bits |= FLAG_SEEN;
                    folder.flags.insert(uid, bits);
                    seen_now.push((uid, bits));
                }
                let seq = nz(u32::try_from(i + 1).unwrap_or(u32::MAX));
                Some(loader::Planned {
                    seq,
                    uid,
                    bits,
                    newly_seen,
                })
            })
            .collect();
        let job = loader::Job::new(Arc::clone(&self.ctx.archive), items, plan);
        let outcome = if job.needs_archive() {
            self.send_loaded(job).await
        } else {
            self.send_cheap(&job).await
        };
        let Some(unknown_cte) = outcome else {
            return; // the connection is gone
        };
        if let Err(e) = self.ctx.archive.set_account_flags(&user, &seen_now) {
            tracing::error!(error = %e, "cannot store \\Seen flags");
        }
        if unknown_cte {
            self.status(status_no(
                tag,
                Some(Code::UnknownCte),
                "A part has a transfer encoding BINARY cannot decode",
            ));
        } else {
            self.status(status_ok(tag, None, "FETCH completed"));
        }
    }

    /// Answers UID and FLAGS from the session's own state. `None`: the connection failed.
    async fn send_cheap(&mut self, job: &loader::Job) -> Option<bool> {
        for (seq, items) in job.cheap() {
            self.send_data(Data::Fetch { seq, items }).await.ok()?;
        }
        Some(false)
    }

    /// Answers from the archive, batches loading while earlier ones are written. `None`:
    /// the connection failed; else whether a BINARY part had an unknown transfer encoding.
    async fn send_loaded(&mut self, job: loader::Job) -> Option<bool> {
        // A partial BINARY answer names its origin, which imap-types cannot say: such
        // responses are encoded here and written as they are. Nothing of imap-next's is
        // queued meanwhile (it sends everything before it hands over a command), so they
        // go out in order.
        let requested = fetch::has_partial_binary(job.items()).then(|| job.items().to_vec());
        let mut pipeline = loader::Pipeline::new(job);
        let mut unknown_cte = false;
        while let Some(batch) = pipeline.next_batch().await {
            unknown_cte |= batch.unknown_cte;
            for (seq, items) in batch.answers {
                match &requested {
                    Some(requested) => {
                        let bytes = fetch::encode_fetch(seq, items, requested);
                        self.write(&bytes).await.ok()?;
                    }
                    None => self.send_data(Data::Fetch { seq, items }).await.ok()?,
                }
            }
        }
        Some(unknown_cte)
    }

    /// SEARCH and UID SEARCH; with `ret`, their ESEARCH form (`SEARCH RETURN (…)`).
    async fn handle_search(
        &mut self,
        tag: Tag<'static>,
        charset: Option<&Charset<'static>>,
        criteria: &[SearchKey<'static>],
        by_uid: bool,
        ret: Option<esearch::Options>,
    ) {
        if let Some(charset) = charset
            && !self.charset_supported(&tag, charset)
        {
            return;
        }
        let State::Selected { folder, .. } = &self.state else {
            return;
        };
        // Reading and matching every message is the client's to ask for and can take long:
        // it runs on the blocking pool, never on the threads that serve other sessions.
        let archive = Arc::clone(&self.ctx.archive);
        let (uids, flags) = (folder.uids.clone(), folder.flags.clone());
        // BCC must not find a message by a blind copy the account may not know of.
        let access = Arc::clone(&folder.access);
        let criteria = criteria.to_vec();
        let hits = tokio::task::spawn_blocking(move || {
            search_folder(&archive, &access, &uids, &flags, &criteria, by_uid)
        })
        .await
        .unwrap_or_default();
        self.send_hits(&tag, hits, by_uid, ret, Data::Search).await;
        self.status(status_ok(tag, None, "SEARCH completed"));
    }

    /// The matches of SEARCH or SORT: as `plain` (`* SEARCH`, `* SORT`), or as `* ESEARCH`
    /// with what `ret` asked for. The ESEARCH line is written as it is (imap-types has no
    /// ESEARCH response); it is only asked for from [`Self::on_protocol_error`], after
    /// everything enqueued before has gone out, so it goes out in order.
    async fn send_hits(
        &mut self,
        tag: &Tag<'static>,
        hits: Vec<NonZeroU32>,
        by_uid: bool,
        ret: Option<esearch::Options>,
        plain: fn(Vec<NonZeroU32>) -> Data<'static>,
    ) {
        match ret {
            None => {
                let _ = self.send_data(plain(hits)).await;
            }
            Some(options) => {
                let line = esearch::response(tag.as_ref(), by_uid, options, &hits);
                let _ = self.write(&line).await;
            }
        }
    }

    /// Whether SEARCH, SORT or THREAD can read strings in `charset`; answers `NO
    /// [BADCHARSET]` when not.
    fn charset_supported(&mut self, tag: &Tag<'static>, charset: &Charset<'_>) -> bool {
        let name = charset.as_ref().to_ascii_uppercase();
        if name == "UTF-8" || name == "US-ASCII" {
            return true;
        }
        let code = Code::badcharset(vec![
            Charset::try_from("UTF-8").unwrap_or_else(|_| unreachable_charset()),
            Charset::try_from("US-ASCII").unwrap_or_else(|_| unreachable_charset()),
        ]);
        self.status(status_no(tag.clone(), Some(code), "Unsupported charset"));
        false
    }

    /// SORT and UID SORT (RFC 5256, with RFC 5957's DISPLAYFROM and DISPLAYTO): SEARCH's
    /// matches, ordered as [`sort`] says.
    async fn handle_sort(
        &mut self,
        tag: Tag<'static>,
        sort_criteria: &[SortCriterion],
        charset: &Charset<'static>,
        criteria: &[SearchKey<'static>],
        by_uid: bool,
        ret: Option<esearch::Options>,
    ) {
        if !self.charset_supported(&tag, charset) {
            return;
        }
        let State::Selected { folder, .. } = &self.state else {
            return;
        };
        let archive = Arc::clone(&self.ctx.archive);
        let (uids, flags) = (folder.uids.clone(), folder.flags.clone());
        let access = Arc::clone(&folder.access);
        let criteria = criteria.to_vec();
        let sort_criteria = sort_criteria.to_vec();
        let sorted = tokio::task::spawn_blocking(move || {
            let needs_header = sort::needs_header(&sort_criteria);
            let mut keys: Vec<sort::Keys> =
                matching_records(&archive, &access, &uids, &flags, &criteria)
                    .into_iter()
                    .map(|(seq, uid, record)| {
                        let raw = needs_header.then(|| archive.raw(&record).ok()).flatten();
                        sort::Keys::new(seq, uid, &record, raw.as_deref())
                    })
                    .collect();
            sort::sort(&mut keys, &sort_criteria);
            keys.iter()
                .map(|k| nz(if by_uid { k.uid } else { k.seq }))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        self.send_hits(&tag, sorted, by_uid, ret, Data::Sort).await;
        self.status(status_ok(tag, None, "SORT completed"));
    }

    /// THREAD and UID THREAD (RFC 5256): SEARCH's matches, threaded as [`thread`] says.
    async fn handle_thread(
        &mut self,
        tag: Tag<'static>,
        algorithm: &ThreadingAlgorithm<'static>,
        charset: &Charset<'static>,
        criteria: &[SearchKey<'static>],
        by_uid: bool,
    ) {
        let references = match algorithm {
            ThreadingAlgorithm::References => true,
            ThreadingAlgorithm::OrderedSubject => false,
            ThreadingAlgorithm::Other(_) => {
                self.status(status_bad(Some(tag), "Unknown threading algorithm"));
                return;
            }
        };
        if !self.charset_supported(&tag, charset) {
            return;
        }
        let State::Selected { folder, .. } = &self.state else {
            return;
        };
        let archive = Arc::clone(&self.ctx.archive);
        let (uids, flags) = (folder.uids.clone(), folder.flags.clone());
        let access = Arc::clone(&folder.access);
        let criteria = criteria.to_vec();
        let threads = tokio::task::spawn_blocking(move || {
            let messages: Vec<thread::Message> =
                matching_records(&archive, &access, &uids, &flags, &criteria)
                    .into_iter()
                    .map(|(seq, uid, record)| {
                        let meta = record.meta;
                        thread::Message {
                            id: if by_uid { uid } else { seq },
                            seq,
                            date: meta.date,
                            subject: meta.subject.unwrap_or_default(),
                            message_id: meta.message_id,
                            references: meta.references,
                            in_reply_to: meta.in_reply_to,
                        }
                    })
                    .collect();
            if references {
                thread::references(&messages)
            } else {
                thread::ordered_subject(&messages)
            }
        })
        .await
        .unwrap_or_default();
        let _ = self.send_data(Data::Thread(threads)).await;
        self.status(status_ok(tag, None, "THREAD completed"));
    }

    async fn handle_store(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'static>],
        by_uid: bool,
    ) {
        let State::Selected { folder, user } = &mut self.state else {
            return;
        };
        if folder.read_only {
            self.status(status_no(
                tag,
                None,
                "The folder is open read-only (EXAMINE)",
            ));
            return;
        }
        let mut bits = 0u8;
        for flag in flags {
            match flag {
                Flag::Seen => bits |= FLAG_SEEN,
                Flag::Flagged => bits |= FLAG_FLAGGED,
                _ => {
                    self.status(cannot(
                        tag,
                        "STORE of flags other than \\Seen and \\Flagged",
                    ));
                    return;
                }
            }
        }
        let user = user.clone();
        let mut changes = Vec::new();
        let mut responses = Vec::new();
        for i in search::resolve(set, &folder.uids, by_uid) {
            let Some(&uid) = folder.uids.get(i) else {
                continue;
            };
            let old = folder.flags.get(&uid).copied().unwrap_or(0);
            let new = match kind {
                StoreType::Replace => bits,
                StoreType::Add => old | bits,
                StoreType::Remove => old & !bits,
            };
            if new != old {
                changes.push((uid, new));
                if new == 0 {
                    folder.flags.remove(&uid);
                } else {
                    folder.flags.insert(uid, new);
                }
            }
            if response == StoreResponse::Answer {
                let mut items = vec![MessageDataItem::Flags(flag_fetch(new))];
                if by_uid {
                    items.insert(0, MessageDataItem::Uid(nz(uid)));
                }
                if let Ok(items) = Vec1::try_from(items) {
                    let seq = nz(u32::try_from(i + 1).unwrap_or(u32::MAX));
                    responses.push(Data::Fetch { seq, items });
                }
            }
        }
        if let Err(e) = self.ctx.archive.set_account_flags(&user, &changes) {
            tracing::error!(error = %e, "cannot store flags");
            self.status(status_no(tag, None, "The flags cannot be stored right now"));
            return;
        }
        for data in responses {
            if self.send_data(data).await.is_err() {
                return;
            }
        }
        self.status(status_ok(tag, None, "STORE completed"));
    }
}

/// The messages of a folder that match `criteria`, as UIDs or sequence numbers.
fn search_folder(
    archive: &Archive,
    access: &Access,
    uids: &[u32],
    flags: &BTreeMap<u32, u8>,
    criteria: &[SearchKey<'static>],
    by_uid: bool,
) -> Vec<NonZeroU32> {
    let needs_raw = criteria.iter().any(search::needs_raw);
    let dims = search::Folder::of(uids);
    let mut hits = Vec::new();
    for (i, &uid) in uids.iter().enumerate() {
        let Ok(Some(mut record)) = archive.get(uid) else {
            continue;
        };
        access.redact(&mut record);
        let bits = flags.get(&uid).copied().unwrap_or(0);
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let mut src = search::SearchSource {
            seq,
            uid,
            record: &record,
            raw: None,
            seen: bits & FLAG_SEEN != 0,
            flagged: bits & FLAG_FLAGGED != 0,
        };
        // Load the bytes only when the other keys have not decided already.
        let raw;
        let hit = match (needs_raw, search::decide_without_raw(criteria, &src, dims)) {
            (_, Some(decided)) => decided,
            (false, None) => search::matches_all(criteria, &src, dims),
            (true, None) => {
                raw = archive.raw(&record).ok();
                src.raw = raw.as_deref();
                search::matches_all(criteria, &src, dims)
            }
        };
        if hit {
            hits.push(nz(if by_uid { uid } else { seq }));
        }
    }
    hits
}

/// The messages of a folder that match `criteria` (as [`search_folder`] finds them), each
/// with its sequence number, UID and record as the account may see it: what SORT and THREAD
/// order.
fn matching_records(
    archive: &Archive,
    access: &Access,
    uids: &[u32],
    flags: &BTreeMap<u32, u8>,
    criteria: &[SearchKey<'static>],
) -> Vec<(u32, u32, crate::archive::Record)> {
    search_folder(archive, access, uids, flags, criteria, false)
        .into_iter()
        .filter_map(|seq| {
            let seq = seq.get();
            let uid = *uids.get(usize::try_from(seq).ok()?.checked_sub(1)?)?;
            let mut record = archive.get(uid).ok()??;
            access.redact(&mut record);
            Some((seq, uid, record))
        })
        .collect()
}

/// The account, the directory and what the account may read, as of now; nothing for an
/// account that vanished.
fn access_of(archive: &Archive, user: Option<&str>) -> (Option<Account>, Directory, Access) {
    let account = user.and_then(|u| archive.account(u).ok().flatten());
    let (salespeople, contacts) = archive.load_directory().unwrap_or_default();
    let directory = Directory::new(salespeople, contacts);
    let access = account
        .as_ref()
        .and_then(|a| Access::of(a, &directory, archive).ok())
        .unwrap_or_else(Access::nothing);
    (account, directory, access)
}

/// The access and folders of `user`, computed afresh: the directory, the grants and the
/// archive change while a session lasts. An account that vanished sees nothing.
fn view_of(archive: &Archive, user: Option<&str>) -> View {
    let (account, directory, access) = access_of(archive, user);
    let mut people = Vec::new();
    let visible_salespeople: Option<Vec<&String>> = match (&access, &account) {
        (Access::All, _) => None,
        (_, Some(a)) => Some(a.salesperson.iter().chain(&a.grants).collect()),
        (_, None) => Some(Vec::new()),
    };
    for p in directory.salespeople() {
        if visible_salespeople
            .as_ref()
            .is_some_and(|codes| !codes.contains(&&p.code))
        {
            continue;
        }
        if let Some(path) = directory.folder(&PersonId::Salesperson(p.code.clone())) {
            people.push(mailbox::PersonFolder {
                path: path.to_vec(),
                addresses: p.addresses().map(str::to_owned).collect(),
            });
        }
    }
    // An account that sees only some mail sees only the contact and month folders that
    // hold some of it: the others' names and months are not its business.
    let visible = |query: FolderQuery| {
        access.sees_all()
            || archive
                .folder_uids(&query)
                .is_ok_and(|uids| uids.iter().any(|u| access.may_read(*u)))
    };
    for c in directory.contacts() {
        if let Some(path) = directory.folder(&PersonId::Contact(c.number.clone())) {
            let addresses: Vec<String> = c.addresses().map(str::to_owned).collect();
            if visible(FolderQuery::Addresses(addresses.clone())) {
                people.push(mailbox::PersonFolder {
                    path: path.to_vec(),
                    addresses,
                });
            }
        }
    }
    let mut months = archive.months().unwrap_or_default();
    months.retain(|&(year, month)| visible(FolderQuery::Month { year, month }));
    let folders = mailbox::folders(&months, access.sees_all(), &people);
    View { access, folders }
}

fn attribute(name: &str) -> Option<FlagNameAttribute<'static>> {
    imap_next::imap_types::core::Atom::try_from(name.trim_start_matches('\\').to_owned())
        .ok()
        .map(FlagNameAttribute::from)
}

fn unreachable_greeting() -> Greeting<'static> {
    Greeting {
        kind: imap_next::imap_types::response::GreetingKind::Ok,
        code: None,
        text: Text::unvalidated("ready"),
    }
}

fn unreachable_charset() -> Charset<'static> {
    Charset::Atom(imap_next::imap_types::core::Atom::unvalidated("UTF-8"))
}

fn unreachable_istring() -> IString<'static> {
    IString::Quoted(imap_next::imap_types::core::Quoted::unvalidated(""))
}
