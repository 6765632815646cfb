//! `mailjournal serve`: the archive, the ingest pipeline and the listeners, started and
//! stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{self, Archive};
use crate::clock::Clock;
use crate::config::Settings;
use crate::ingest::{self, Ingestor};
use crate::net::listener::Gauge;
use crate::net::tls;
use crate::runtime::LoggingSwitch;
use crate::smtp;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Archive(#[from] archive::Error),
    #[error("{0}")]
    Ingest(#[from] ingest::Error),
    #[error("{0}")]
    Admin(#[from] crate::admin::Error),
    #[error("{0}")]
    LinkKey(#[from] crate::http::KeyError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::Error),
    #[error("cannot create the admin socket {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Message data all SMTP sessions together may hold in memory while receiving.
const DATA_BUDGET_BYTES: usize = 1024 * 1024 * 1024;

/// A running gateway.
pub struct Server {
    pub smtp_addr: Option<SocketAddr>,
    pub smtps_addr: Option<SocketAddr>,
    pub imap_addr: Option<SocketAddr>,
    pub imaps_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub logging: Arc<LoggingSwitch>,
    pub tls_fingerprint: String,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The pull sources (shared with the admin socket for `status`).
    /// (Taken in `stop`: its pipeline handle must go before the committer can finish.)
    pub pull: Option<Arc<std::sync::Mutex<crate::pull::Sources>>>,
    smtp_sessions: Vec<Gauge>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    committer: Option<std::thread::JoinHandle<()>>,
    ingestor: Option<Ingestor>,
    /// For the transparency log's checkpoint at shutdown.
    tlog_archive: Arc<Archive>,
}

impl Server {
    /// Opens the archive and starts every configured listener.
    pub async fn start(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let archive = Arc::new(Archive::open(&settings.data_dir)?);
        archive.set_tlog_name(&settings.transparency.name);
        let (ingestor, committer) = crate::admin::start_pipeline(&archive, settings)?;
        let tls = tls::load(&settings.tls, &settings.data_dir, &settings.smtp.hostname)?;
        tracing::info!(fingerprint = %tls.fingerprint, source = %tls.source, "TLS certificate (SHA-256)");

        let shutdown = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let logging = Arc::new(LoggingSwitch::new(settings.logging));
        let metrics = Arc::new(crate::metrics::Metrics::default());
        // One gate for every password check (IMAP, SMTP AUTH, HTTP).
        let logins = Arc::new(crate::auth::Logins::remembering(settings.logins.remember));
        let ctx = Arc::new(smtp::Context {
            settings: settings.smtp.clone(),
            max_message_size: settings.ingest.max_message_size,
            ingestor: ingestor.clone(),
            tls: Some(Arc::clone(&tls.config)),
            logging: Arc::clone(&logging),
            logins: Arc::clone(&logins),
            clock: Arc::clone(&clock),
            data_budget: Arc::new(Semaphore::new(DATA_BUDGET_BYTES / 1024)),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            metrics: Arc::clone(&metrics),
        });

        let pull = Arc::new(std::sync::Mutex::new(crate::pull::Sources::start(
            &settings.pull,
            ingestor.clone(),
            crate::pull::Options {
                logging: Some(Arc::clone(&logging)),
                ..Default::default()
            },
            &tracker,
            &shutdown,
        )));
        let mut admin = crate::admin::socket::State {
            archive: Arc::clone(&archive),
            settings: settings.clone(),
            ingestor: ingestor.clone(),
            logging: Arc::clone(&logging),
            clock: Arc::clone(&clock),
            pull: Some(Arc::clone(&pull)),
        };
        let mut server = Server {
            smtp_addr: None,
            smtps_addr: None,
            imap_addr: None,
            imaps_addr: None,
            http_addr: None,
            https_addr: None,
            logging,
            tls_fingerprint: tls.fingerprint.clone(),
            metrics: Arc::clone(&metrics),
            pull: Some(pull),
            smtp_sessions: Vec::new(),
            shutdown,
            hard_stop,
            tracker,
            grace: settings.smtp.shutdown_grace,
            committer: Some(committer),
            ingestor: Some(ingestor),
            tlog_archive: Arc::clone(&archive),
        };
        server.tracker.spawn(checkpoints(
            Arc::clone(&archive),
            settings.transparency.clone(),
            server.shutdown.clone(),
        ));
        // Bind every listener before anything runs, so a port in use fails cleanly.
        let mut listeners = Vec::new();
        for (addr, implicit, what) in [
            (settings.smtp.listen, false, "smtp.listen"),
            (settings.smtp.tls_listen, true, "smtp.tls_listen"),
            (settings.imap.listen, false, "imap.listen"),
            (settings.imap.tls_listen, true, "imap.tls_listen"),
            (settings.http.listen, false, "http.listen"),
            (settings.http.tls_listen, true, "http.tls_listen"),
        ] {
            let Some(addr) = addr else { continue };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, what, source })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, what, source })?;
            listeners.push((listener, local, implicit, what));
        }
        let mut http_settings = settings.http.clone();
        // Links name the address really bound (a configured port 0 is for tests).
        for (_, local, implicit, what) in &listeners {
            if what.starts_with("http") && http_settings.base_url.ends_with(":0") {
                let scheme = if *implicit { "https" } else { "http" };
                http_settings.base_url = format!("{scheme}://{local}");
            }
        }
        admin.settings.http = http_settings.clone();
        let socket =
            crate::admin::socket::spawn(Arc::new(admin), &server.tracker, server.shutdown.clone())
                .map_err(|source| Error::Socket {
                    path: crate::admin::socket::path(&settings.data_dir),
                    source,
                })?;
        tracing::info!(path = %socket.display(), "admin socket listening");
        let imap_ctx = Arc::new(crate::imap::Context {
            settings: settings.imap.clone(),
            archive: Arc::clone(&archive),
            tls: Some(Arc::clone(&tls.config)),
            logins: Arc::clone(&logins),
            shutdown: server.shutdown.clone(),
            metrics: Arc::clone(&metrics),
        });
        let http_ctx = Arc::new(crate::http::Context {
            settings: http_settings,
            archive: Arc::clone(&archive),
            metrics: Arc::clone(&metrics),
            logins: Arc::clone(&logins),
            tokens: crate::http::Tokens::load(&settings.data_dir)?,
            clock: Arc::clone(&clock),
        });
        for (listener, local, implicit, what) in listeners {
            if what.starts_with("http") {
                tracing::info!(addr = %local, tls = implicit, "HTTP listening");
                crate::http::spawn(
                    listener,
                    Arc::clone(&http_ctx),
                    implicit.then(|| Arc::clone(&tls.config)),
                    server.tracker.clone(),
                    server.shutdown.clone(),
                );
                if implicit {
                    server.https_addr = Some(local);
                } else {
                    server.http_addr = Some(local);
                }
                continue;
            }
            if what.starts_with("imap") {
                tracing::info!(addr = %local, implicit_tls = implicit, "IMAP listening");
                crate::imap::spawn(
                    listener,
                    Arc::clone(&imap_ctx),
                    implicit,
                    server.tracker.clone(),
                    server.shutdown.clone(),
                );
                if implicit {
                    server.imaps_addr = Some(local);
                } else {
                    server.imap_addr = Some(local);
                }
                continue;
            }
            tracing::info!(addr = %local, implicit_tls = implicit, "SMTP listening");
            let gauge = smtp::spawn(
                listener,
                Arc::clone(&ctx),
                implicit,
                server.tracker.clone(),
                server.shutdown.clone(),
            );
            server.smtp_sessions.push(gauge);
            if implicit {
                server.smtps_addr = Some(local);
            } else {
                server.smtp_addr = Some(local);
            }
        }
        Ok(server)
    }

    /// The archive the server holds open (for tests and the admin socket).
    pub fn archive(&self) -> Option<&Arc<Archive>> {
        self.ingestor.as_ref().map(Ingestor::archive)
    }

    /// Resolves once the archive's storage failed (see `Archive::storage_failed`); never
    /// while it works.
    pub async fn storage_failed(&self) {
        match self.archive() {
            Some(archive) => archive.failure().clone().cancelled_owned().await,
            None => std::future::pending().await,
        }
    }

    /// Open SMTP sessions across listeners.
    pub fn smtp_sessions(&self) -> usize {
        self.smtp_sessions.iter().map(Gauge::open).sum()
    }

    /// Stops accepting, lets messages being received finish within the grace period, answers
    /// `421` to everything else, commits, and returns once the archive is closed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over: closing the remaining sessions");
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
        // Every pipeline handle must be gone for the committer to finish: ours, and the
        // pull sources'.
        self.pull = None;
        self.ingestor = None;
        if let Some(committer) = self.committer.take() {
            let _ = tokio::task::spawn_blocking(move || committer.join()).await;
        }
        // Everything is committed: a checkpoint of the whole tree.
        let archive = Arc::clone(&self.tlog_archive);
        match tokio::task::spawn_blocking(move || archive.checkpoint_log()).await {
            Ok(Ok((_, size))) => tracing::info!(size, "transparency log checkpoint"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the shutdown checkpoint failed"),
            Err(e) => tracing::warn!(error = %e, "the shutdown checkpoint failed"),
        }
        tracing::info!("stopped");
    }
}

/// Signs a checkpoint of the transparency log every `checkpoint_interval` while the tree
/// grows (the archive signs only when there are new leaves), until shutdown, and hands each
/// new one to the witness command (the last one also at shutdown).
async fn checkpoints(
    archive: Arc<Archive>,
    settings: crate::config::TransparencySettings,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut witnessed = None;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let a = Arc::clone(&archive);
        match tokio::task::spawn_blocking(move || a.checkpoint_log()).await {
            Ok(Ok((note, size))) => {
                if !settings.witness_command.is_empty() && witnessed != Some(size) {
                    witness(&settings.witness_command, &note).await;
                    witnessed = Some(size);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "signing a transparency-log checkpoint failed")
            }
            Err(e) => tracing::warn!(error = %e, "signing a transparency-log checkpoint failed"),
        }
        if stopping {
            break;
        }
    }
}

/// How long the witness command may take.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the witness command with `note` on its standard input (on a blocking thread: the
/// child is waited for, and killed after [`WITNESS_TIMEOUT`]).
async fn witness(command: &[String], note: &str) {
    let command = command.to_vec();
    let note = note.to_owned();
    let program = command.first().cloned().unwrap_or_default();
    let run = tokio::task::spawn_blocking(move || run_witness(&command, &note)).await;
    match run {
        Ok(Ok(status)) if status.success() => tracing::debug!("checkpoint handed to the witness"),
        Ok(Ok(status)) => tracing::warn!(%status, program, "the witness command failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, program, "the witness command did not run"),
        Err(e) => tracing::warn!(error = %e, program, "the witness command did not run"),
    }
}

fn run_witness(command: &[String], note: &str) -> std::io::Result<std::process::ExitStatus> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some((program, args)) = command.split_first() else {
        return Err(std::io::Error::other("no witness command"));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A witness that exits without reading everything is its own business.
        let _ = stdin.write_all(note.as_bytes());
    }
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > WITNESS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the witness command took too long: stopped",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
