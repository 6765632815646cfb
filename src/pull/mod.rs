//! Pull mode: log in to a mailbox over IMAP, archive what waits in its queue folder through
//! the one [`ingest`](crate::ingest) pipeline, and move each message to the storage folder
//! once, and only once, its commit is durable.
//!
//! - Only the queue folder is ever selected; every other folder (Junk included) is never
//!   read. Messages are fetched with `BODY.PEEK[]`, so not even `\Seen` changes.
//! - A message leaves the queue folder (`UID MOVE`, or `UID COPY` + `\Deleted` + `UID
//!   EXPUNGE`) only after the archive acknowledged it as durable. A crash between the commit
//!   and the move leaves it in the queue: it is fetched again, the archive recognizes it
//!   (same stable id) as a duplicate, and it is moved then. Nothing is lost, nothing is
//!   archived twice.
//! - A message the pipeline refuses (empty, over `ingest.max_message_size`) stays in the
//!   queue folder and is reported in the source's [`SourceStatus`]; it is never deleted.
//! - Errors back off exponentially (1 s to 5 min). A refused login stops the source with a
//!   clear message until the configuration is reloaded (or, for a secret kept in a file,
//!   until the file changes).
//!
//! [`Sources`] runs every configured source; [`check`] is what `mailjournal validate` asks.

mod conn;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use conn::{PullClientTls, SYSTEM_CA_FILE};

use crate::clock::{Clock, SystemClock};
use crate::config::{PullSettings, PullTls};
use crate::ingest::{self, Ingestor};
use crate::runtime::LoggingSwitch;

/// Why a pull source could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("TLS: {0}")]
    TlsSetup(String),
    #[error("the secret: {0}")]
    Secret(String),
    #[error("authentication failed for {account} at {host}: {reply}")]
    Auth {
        account: String,
        host: String,
        reply: String,
    },
    #[error("{what}: {reason}")]
    Imap { what: String, reason: String },
    #[error("{what}: no answer within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the {key} {folder:?} does not exist on {host}{hint}")]
    MissingFolder {
        key: &'static str,
        folder: String,
        host: String,
        hint: &'static str,
    },
    #[error("archiving: {0}")]
    Ingest(#[from] ingest::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The server refused the credentials: retrying would only lock the account.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }
}

/// A message left in the queue folder because the pipeline refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Its UID in the queue folder (under the status's `uid_validity`).
    pub uid: u32,
    /// Its size as the server reported it.
    pub size: Option<u32>,
    /// Why it was refused.
    pub error: String,
}

/// What `mailjournal status` shows about one pull source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub account: String,
    pub queue_folder: String,
    pub storage_folder: String,
    /// `starting`, `connecting`, `running`, `idle`, `backing off`, `paused: logging is
    /// paused`, `stopped`, or `stopped: authentication failed for … — fix the configuration
    /// and reload`.
    pub state: String,
    /// When the queue folder was last emptied of everything that could be archived (Unix
    /// seconds).
    pub last_success: Option<i64>,
    /// Messages waiting in the queue folder at the last look (refused ones not counted).
    pub backlog: Option<u32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// When the next attempt is due while backing off (Unix seconds).
    pub retry_at: Option<i64>,
    /// Messages archived (committed) since the source started, duplicates included.
    pub archived: u64,
    /// Of those, copies the archive already had (fetched again after an interruption).
    pub duplicates: u64,
    /// Messages moved to the storage folder since the source started.
    pub moved: u64,
    /// Messages the pipeline refused: they stay in the queue folder.
    pub rejected: Vec<Rejected>,
    /// The queue folder's UIDVALIDITY.
    pub uid_validity: Option<u32>,
    /// What the server offers (`MOVE UIDPLUS IDLE`).
    pub server: Option<String>,
    /// How new mail is noticed: `IDLE`, or `polling every 1m`.
    pub waiting_with: Option<String>,
}

/// A source's status, shared between its task and whoever reports it.
pub type SharedStatus = Arc<Mutex<SourceStatus>>;

/// The state of a source stopped by a refused login.
pub fn auth_stopped_state(account: &str, host: &str) -> String {
    format!(
        "stopped: authentication failed for {account} at {host} — fix the configuration and reload"
    )
}

impl SourceStatus {
    pub fn new(settings: &PullSettings) -> Self {
        Self {
            name: settings.name.clone(),
            host: settings.host.clone(),
            port: settings.port,
            account: settings.account.clone(),
            queue_folder: settings.queue_folder.clone(),
            storage_folder: settings.storage_folder.clone(),
            state: "starting".to_owned(),
            last_success: None,
            backlog: None,
            last_error: None,
            last_error_at: None,
            retry_at: None,
            archived: 0,
            duplicates: 0,
            moved: 0,
            rejected: Vec::new(),
            uid_validity: None,
            server: None,
            waiting_with: None,
        }
    }

    /// A new shared status for `settings`.
    pub fn shared(settings: &PullSettings) -> SharedStatus {
        Arc::new(Mutex::new(Self::new(settings)))
    }

    /// Whether the source stopped because the server refused its login.
    pub fn is_auth_stopped(&self) -> bool {
        self.state.starts_with("stopped: authentication failed")
    }

    /// Human-readable lines for `mailjournal status`.
    pub fn render(&self) -> String {
        let time = |t: Option<i64>| {
            t.map(crate::clock::rfc3339)
                .unwrap_or_else(|| "never".to_owned())
        };
        let mut out = format!(
            "pull source {}: {} ({} at {}:{}, {} → {})\n",
            self.name,
            self.state,
            self.account,
            self.host,
            self.port,
            self.queue_folder,
            self.storage_folder
        );
        out.push_str(&format!(
            "  last success: {}; backlog: {}; archived: {} ({} already archived), moved: {}\n",
            time(self.last_success),
            self.backlog
                .map(|b| b.to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
            self.archived,
            self.duplicates,
            self.moved
        ));
        if let Some(w) = &self.waiting_with {
            out.push_str(&format!("  new mail noticed by: {w}\n"));
        }
        if let Some(retry) = self.retry_at {
            out.push_str(&format!("  next attempt: {}\n", time(Some(retry))));
        }
        match &self.last_error {
            Some(e) => out.push_str(&format!(
                "  last error ({}): {e}\n",
                time(self.last_error_at)
            )),
            None => out.push_str("  last error: none\n"),
        }
        for r in &self.rejected {
            out.push_str(&format!(
                "  refused, left in {}: UID {}{}: {}\n",
                self.queue_folder,
                r.uid,
                r.size.map(|s| format!(" ({s} bytes)")).unwrap_or_default(),
                r.error
            ));
        }
        out
    }
}

/// Locks a status, even one a panicking task left poisoned.
pub(crate) fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, SourceStatus> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a source runs with besides its settings and the pipeline.
#[derive(Clone)]
pub struct Options {
    /// Trust roots for TLS; `None`: the system's ([`PullClientTls::system`]), loaded at the
    /// first TLS connection.
    pub tls: Option<PullClientTls>,
    /// The gateway's logging switch: `paused` leaves mail in the queue folder (the source
    /// disconnects and waits), `off` moves it to the storage folder without archiving it
    /// (as SMTP accepts and discards it).
    pub logging: Option<Arc<LoggingSwitch>>,
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            logging: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("tls", &self.tls)
            .field("logging", &self.logging)
            .finish_non_exhaustive()
    }
}

/// Starts one source with default [`Options`] (system trust roots, no logging switch).
/// The task ends when `shutdown` is cancelled (within a few seconds).
pub fn spawn(
    settings: PullSettings,
    ingestor: Ingestor,
    status: SharedStatus,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    spawn_with(
        settings,
        ingestor,
        status,
        Options::default(),
        tracker,
        shutdown,
    )
}

/// Starts one source.
pub fn spawn_with(
    settings: PullSettings,
    ingestor: Ingestor,
    status: SharedStatus,
    options: Options,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    launch(settings, ingestor, status, options, tracker, shutdown, None)
}

fn launch(
    settings: PullSettings,
    ingestor: Ingestor,
    status: SharedStatus,
    options: Options,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    previous: Option<JoinHandle<()>>,
) -> JoinHandle<()> {
    tracker.spawn(async move {
        // A restarted source waits for its predecessor, so two never work one queue.
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        worker::Worker::new(settings, ingestor, status, options, shutdown)
            .run()
            .await;
    })
}

/// Every configured pull source of a running gateway.
pub struct Sources {
    ingestor: Ingestor,
    options: Options,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Vec<Running>,
}

struct Running {
    settings: PullSettings,
    status: SharedStatus,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Sources {
    /// Starts every source in `list`. Each stops when `shutdown` is cancelled.
    pub fn start(
        list: &[PullSettings],
        ingestor: Ingestor,
        options: Options,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Self {
        let mut sources = Self {
            ingestor,
            options,
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            running: Vec::new(),
        };
        sources.reload(list);
        sources
    }

    /// Every source's status, in configuration order.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.running
            .iter()
            .map(|r| lock(&r.status).clone())
            .collect()
    }

    /// Applies a reloaded configuration: sources that are new start, removed ones stop,
    /// changed ones restart, and ones stopped by a refused login try again. Unchanged
    /// running ones go on undisturbed.
    pub fn reload(&mut self, list: &[PullSettings]) {
        let mut old = std::mem::take(&mut self.running);
        for settings in list {
            let previous = old
                .iter()
                .position(|r| r.settings.name == settings.name)
                .map(|i| old.remove(i));
            match previous {
                Some(mut r)
                    if r.settings == *settings
                        && !lock(&r.status).is_auth_stopped()
                        && !r.stop.is_cancelled() =>
                {
                    r.settings = settings.clone();
                    self.running.push(r);
                }
                previous => {
                    let handle = previous.and_then(|mut r| {
                        r.stop.cancel();
                        r.handle.take()
                    });
                    self.running.push(self.start_one(settings, handle));
                }
            }
        }
        for r in old {
            tracing::info!(source = %r.settings.name, "pull source removed from the configuration: stopping it");
            r.stop.cancel();
        }
    }

    fn start_one(&self, settings: &PullSettings, previous: Option<JoinHandle<()>>) -> Running {
        let status = SourceStatus::shared(settings);
        let stop = self.shutdown.child_token();
        let handle = launch(
            settings.clone(),
            self.ingestor.clone(),
            Arc::clone(&status),
            self.options.clone(),
            &self.tracker,
            stop.clone(),
            previous,
        );
        Running {
            settings: settings.clone(),
            status,
            stop,
            handle: Some(handle),
        }
    }
}

/// Quotes a mailbox name for IMAP, in modified UTF-7 (RFC 3501) when it is not ASCII.
pub(crate) fn mailbox_arg(name: &str) -> String {
    let encoded = crate::mutf7::encode(name);
    format!("\"{}\"", encoded.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The name as the server spells it on the wire (modified UTF-7), unquoted.
pub(crate) fn mailbox_wire(name: &str) -> String {
    crate::mutf7::encode(name)
}

/// Whether `name` exists as a selectable folder (LIST, which reads no message).
pub(crate) async fn folder_exists(session: &mut conn::Session, name: &str) -> Result<bool, Error> {
    use async_imap::imap_proto::NameAttribute;
    let pattern = mailbox_arg(name);
    let wire = mailbox_wire(name);
    let names: Vec<async_imap::types::Name> =
        conn::timed(&format!("LIST {name:?}"), conn::COMMAND_TIMEOUT, async {
            session
                .list(Some(""), Some(&pattern))
                .await?
                .try_collect()
                .await
        })
        .await?;
    Ok(names.iter().any(|n| {
        let same = if wire.eq_ignore_ascii_case("INBOX") {
            n.name().eq_ignore_ascii_case("INBOX")
        } else {
            n.name() == wire
        };
        same && !n.attributes().iter().any(|a| {
            matches!(a, NameAttribute::NoSelect)
                || matches!(a, NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent"))
        })
    }))
}

/// Logs in to the source and checks that both folders exist (for `mailjournal validate`).
/// Returns a one-line description of what was found.
pub async fn check(settings: &PullSettings) -> Result<String, Error> {
    check_with(settings, None).await
}

/// [`check`] with given trust roots (`None`: the system's).
pub async fn check_with(
    settings: &PullSettings,
    tls: Option<&PullClientTls>,
) -> Result<String, Error> {
    let system;
    let tls = match (settings.tls, tls) {
        (PullTls::None, _) => None,
        (_, Some(t)) => Some(t),
        (_, None) => {
            system = PullClientTls::system()?;
            Some(&system)
        }
    };
    let (mut session, caps) = conn::open(settings, tls).await?;
    let result = check_folders(settings, &mut session).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    let waiting = result?;
    let tls = match settings.tls {
        PullTls::Implicit => "TLS",
        PullTls::Starttls => "STARTTLS",
        PullTls::None => "no TLS (loopback)",
    };
    let notice = if caps.idle && settings.idle {
        "IDLE".to_owned()
    } else {
        format!(
            "polling every {}",
            humantime::format_duration(settings.poll_interval)
        )
    };
    let removal = if caps.move_ {
        "MOVE"
    } else if caps.uidplus {
        "COPY + UID EXPUNGE"
    } else {
        "COPY + EXPUNGE (no UIDPLUS: expunges only when nothing else is marked \\Deleted)"
    };
    Ok(format!(
        "pull source {}: logged in to {}:{} as {} ({tls}); queue folder {:?} ({waiting} waiting), storage folder {:?}; server offers {}; moves with {removal}; new mail by {notice}",
        settings.name,
        settings.host,
        settings.port,
        settings.account,
        settings.queue_folder,
        settings.storage_folder,
        caps.describe(),
    ))
}

/// [`check`] for synchronous callers (`validate` runs on a blocking thread in the gateway,
/// and without any runtime in the CLI): runs it on a thread of its own with its own
/// runtime, so it works from anywhere.
pub fn check_blocking(settings: &PullSettings) -> Result<String, Error> {
    let settings = settings.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting a runtime: {e}")))?;
        runtime.block_on(check(&settings))
    })
    .join()
    .map_err(|_| Error::Internal("the check panicked".to_owned()))?
}

async fn check_folders(settings: &PullSettings, session: &mut conn::Session) -> Result<u32, Error> {
    if !folder_exists(session, &settings.queue_folder).await? {
        return Err(Error::MissingFolder {
            key: "queue_folder",
            folder: settings.queue_folder.clone(),
            host: settings.host.clone(),
            hint: "",
        });
    }
    if !folder_exists(session, &settings.storage_folder).await? {
        return Err(Error::MissingFolder {
            key: "storage_folder",
            folder: settings.storage_folder.clone(),
            host: settings.host.clone(),
            hint: " (create it, or check its spelling: the gateway would create it at start)",
        });
    }
    let mailbox = conn::timed(
        "STATUS",
        conn::COMMAND_TIMEOUT,
        session.status(mailbox_wire(&settings.queue_folder), "(MESSAGES)"),
    )
    .await?;
    Ok(mailbox.exists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names_are_quoted_and_utf7_encoded() {
        assert_eq!(mailbox_arg("Archive"), "\"Archive\"");
        assert_eq!(mailbox_arg("a\"b"), "\"a\\\"b\"");
        assert_eq!(mailbox_arg("Archiv/Übersee"), "\"Archiv/&ANw-bersee\"");
        assert_eq!(mailbox_wire("R&D"), "R&-D");
    }

    #[test]
    fn status_renders_every_field_a_person_needs() {
        let settings = PullSettings {
            name: "exchange".into(),
            host: "mail.contoso.com".into(),
            port: 993,
            tls: PullTls::Implicit,
            account: "journal@contoso.com".into(),
            secret: crate::config::PullSecret::Password("x".into()),
            queue_folder: "INBOX".into(),
            storage_folder: "Archive".into(),
            poll_interval: Duration::from_secs(60),
            idle: true,
        };
        let mut s = SourceStatus::new(&settings);
        s.state = auth_stopped_state(&s.account, &s.host);
        s.last_error = Some("authentication failed".into());
        s.rejected.push(Rejected {
            uid: 7,
            size: Some(0),
            error: "the message is empty".into(),
        });
        assert!(s.is_auth_stopped());
        let text = s.render();
        assert!(text.contains("stopped: authentication failed for journal@contoso.com at mail.contoso.com — fix the configuration and reload"), "{text}");
        assert!(
            text.contains("UID 7 (0 bytes): the message is empty"),
            "{text}"
        );
        let json = serde_json::to_string(&s).expect("json");
        let back: SourceStatus = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, s);
    }
}
