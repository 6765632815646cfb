//! One pull source's loop: connect, log in, archive the queue folder batch by batch, move
//! what is durable, wait for new mail (IDLE or polling), back off on errors, stop on a
//! refused login.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_imap::types::{Flag, UnsolicitedResponse};
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::conn::{self, COMMAND_TIMEOUT, Caps, PullClientTls, Session, timed};
use super::{Error, Options, Rejected, SharedStatus, SourceStatus, lock, mailbox_wire};
use crate::config::{Logging, PullSecret, PullSettings, PullTls};
use crate::ingest::{self, Envelope, Ingestor, Outcome};

/// At most this many messages are fetched, archived and moved together.
const BATCH_MESSAGES: usize = 50;
/// … and at most about this many bytes (a larger message goes alone).
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
/// How long fetching one batch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// IDLE is re-issued after this long without any word from the server …
const IDLE_SILENCE: Duration = Duration::from_secs(10 * 60);
/// … and at the latest after this long (RFC 2177: at least every 29 minutes).
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);
/// Polling less often than this disconnects between polls (servers drop idle sessions).
const LONG_POLL: Duration = Duration::from_secs(10 * 60);
/// Backoff after errors: from this …
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// … doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
/// After shutdown is requested, how long the source may take to finish what it is doing
/// (the batch being moved, LOGOUT) before it is simply dropped (which is safe: an
/// interrupted move is redone as a duplicate at the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a paused source looks at the logging switch again.
const RECHECK: Duration = Duration::from_secs(1);
/// How often a source stopped by a refused login looks whether its secret file changed.
const SECRET_RECHECK: Duration = Duration::from_secs(2);

/// The delay before attempt `failures + 1`.
pub(crate) fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(1u32 << shift).min(BACKOFF_MAX)
}

/// `1:3,5,7:8` for sorted UIDs.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// What the source remembers about its queue folder, valid for one UIDVALIDITY.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    uid_validity: Option<u32>,
    /// Refused by the pipeline: left in the folder, not tried again.
    rejected: BTreeMap<u32, Rejected>,
    /// Handled in this session (moved, or found gone): not fetched again while listed.
    done: HashSet<u32>,
}

impl QueueState {
    /// Records the UIDVALIDITY of a fresh SELECT; `true` if it changed (everything
    /// remembered is forgotten: the UIDs name other messages now).
    pub fn selected(&mut self, uid_validity: u32) -> bool {
        self.done.clear();
        let changed = self.uid_validity.is_some_and(|v| v != uid_validity);
        if changed {
            self.rejected.clear();
        }
        self.uid_validity = Some(uid_validity);
        changed
    }

    /// Forgets UIDs no longer in the folder.
    pub fn retain_listed(&mut self, listed: &HashSet<u32>) {
        self.rejected.retain(|uid, _| listed.contains(uid));
        self.done.retain(|uid| listed.contains(uid));
    }

    pub fn wants(&self, uid: u32) -> bool {
        !self.rejected.contains_key(&uid) && !self.done.contains(&uid)
    }

    pub fn reject(&mut self, uid: u32, size: Option<u32>, error: String) {
        self.rejected.insert(uid, Rejected { uid, size, error });
    }

    pub fn finished(&mut self, uid: u32) {
        self.done.insert(uid);
    }

    pub fn rejected(&self) -> Vec<Rejected> {
        self.rejected.values().cloned().collect()
    }
}

/// One message in the queue folder, as listed.
#[derive(Debug, Clone, Copy)]
struct Entry {
    uid: u32,
    size: Option<u32>,
    deleted: bool,
}

/// How a session ended without an error.
enum End {
    Shutdown,
    Paused,
    /// Reconnect after this long (long poll intervals).
    Sleep(Duration),
}

/// How waiting for new mail ended.
enum Wake {
    Mail,
    Shutdown,
}

pub(crate) struct Worker {
    settings: PullSettings,
    ingestor: Ingestor,
    status: SharedStatus,
    options: Options,
    shutdown: CancellationToken,
    tls: Option<PullClientTls>,
    queue: QueueState,
    failures: u32,
    /// The secret file's fingerprint when it was last read for a login.
    secret_seen: Option<[u8; 32]>,
}

impl Worker {
    pub fn new(
        settings: PullSettings,
        ingestor: Ingestor,
        status: SharedStatus,
        options: Options,
        shutdown: CancellationToken,
    ) -> Self {
        let tls = options.tls.clone();
        Self {
            settings,
            ingestor,
            status,
            options,
            shutdown,
            tls,
            queue: QueueState::default(),
            failures: 0,
            secret_seen: None,
        }
    }

    fn now(&self) -> i64 {
        self.options.clock.now()
    }

    fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut lock(&self.status));
    }

    fn set_state(&self, state: &str) {
        self.update(|s| state.clone_into(&mut s.state));
    }

    fn record_error(&self, message: String) {
        let now = self.now();
        self.update(|s| {
            s.last_error = Some(message);
            s.last_error_at = Some(now);
        });
    }

    fn logging(&self) -> Logging {
        self.options
            .logging
            .as_ref()
            .map(|l| l.get())
            .unwrap_or(Logging::On)
    }

    /// Sleeps, or returns `false` at once when shutdown is requested.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    pub async fn run(mut self) {
        let name = self.settings.name.clone();
        tracing::info!(source = %name, host = %self.settings.host, account = %self.settings.account, "pull source started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            if self.logging() == Logging::Paused {
                self.set_state("paused: logging is paused");
                self.update(|s| s.waiting_with = None);
                if !self.sleep(RECHECK).await {
                    break;
                }
                continue;
            }
            let shutdown = self.shutdown.clone();
            let result = tokio::select! {
                r = self.session() => r,
                _ = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => {
                    tracing::warn!(source = %name, "pull source did not stop within the grace period: dropped (anything not moved yet is moved at the next start)");
                    Ok(End::Shutdown)
                }
            };
            match result {
                Ok(End::Shutdown) => break,
                Ok(End::Paused) => continue,
                Ok(End::Sleep(d)) => {
                    self.set_state("idle");
                    if !self.sleep(d).await {
                        break;
                    }
                }
                Err(e) if e.is_auth() => {
                    tracing::error!(source = %name, error = %e, "pull source stopped: its login was refused; fix the configuration and reload");
                    self.record_error(e.to_string());
                    let state =
                        super::auth_stopped_state(&self.settings.account, &self.settings.host);
                    self.update(|s| {
                        s.state = state;
                        s.retry_at = None;
                        s.waiting_with = None;
                    });
                    if !self.wait_for_new_secret().await {
                        return self.stopped(&name, true);
                    }
                    self.failures = 0;
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let delay = backoff(self.failures);
                    tracing::warn!(source = %name, error = %e, retry_in = ?delay, "pull source failed");
                    self.record_error(e.to_string());
                    let retry = self
                        .now()
                        .saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX));
                    self.update(|s| {
                        "backing off".clone_into(&mut s.state);
                        s.retry_at = Some(retry);
                        s.waiting_with = None;
                    });
                    if !self.sleep(delay).await {
                        break;
                    }
                }
            }
        }
        self.stopped(&name, false);
    }

    fn stopped(&self, name: &str, keep_state: bool) {
        if !keep_state {
            self.update(|s| {
                "stopped".clone_into(&mut s.state);
                s.retry_at = None;
                s.waiting_with = None;
            });
        }
        tracing::info!(source = %name, "pull source stopped");
    }

    /// After a refused login: waits for shutdown (a reload restarts the source), or, for a
    /// secret kept in a file, for the file to change (a renewed token or password).
    async fn wait_for_new_secret(&self) -> bool {
        let secret = self.settings.secret.clone();
        let before = self.secret_seen;
        loop {
            if !self.sleep(SECRET_RECHECK).await {
                return false;
            }
            if !matches!(
                secret,
                PullSecret::PasswordFile(_) | PullSecret::Xoauth2File(_)
            ) {
                continue;
            }
            let s = secret.clone();
            let now = tokio::task::spawn_blocking(move || conn::secret_file_fingerprint(&s))
                .await
                .ok()
                .flatten();
            if now.is_some() && now != before {
                tracing::info!(source = %self.settings.name, "the secret file changed: logging in again");
                return true;
            }
        }
    }

    fn tls_roots(&mut self) -> Result<Option<PullClientTls>, Error> {
        if self.settings.tls == PullTls::None {
            return Ok(None);
        }
        if self.tls.is_none() {
            self.tls = Some(PullClientTls::system()?);
        }
        Ok(self.tls.clone())
    }

    async fn logout(&self, mut session: Session) {
        let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    }

    /// One connection, from login to an error, a shutdown or a pause.
    async fn session(&mut self) -> Result<End, Error> {
        self.set_state("connecting");
        let tls = self.tls_roots()?;
        self.secret_seen = conn::secret_file_fingerprint(&self.settings.secret);
        let (mut session, caps) = conn::open(&self.settings, tls.as_ref()).await?;
        tracing::info!(source = %self.settings.name, server = %caps.describe(), "pull source logged in");
        let waiting_with = if caps.idle && self.settings.idle {
            "IDLE".to_owned()
        } else {
            format!(
                "polling every {}",
                humantime::format_duration(self.settings.poll_interval)
            )
        };
        self.update(|s| {
            s.server = Some(caps.describe());
            s.waiting_with = Some(waiting_with);
            s.retry_at = None;
        });
        if !super::folder_exists(&mut session, &self.settings.storage_folder).await? {
            timed(
                "creating the storage folder",
                COMMAND_TIMEOUT,
                session.create(mailbox_wire(&self.settings.storage_folder)),
            )
            .await?;
            tracing::warn!(source = %self.settings.name, folder = %self.settings.storage_folder, "the storage folder did not exist: created it");
        }
        let mailbox = match tokio::time::timeout(
            COMMAND_TIMEOUT,
            session.select(mailbox_wire(&self.settings.queue_folder)),
        )
        .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(e @ async_imap::error::Error::No(_))) => {
                return Err(Error::Imap {
                    what: format!(
                        "selecting the queue folder {:?}",
                        self.settings.queue_folder
                    ),
                    reason: format!("{} (does it exist?)", conn::server_text(&e)),
                });
            }
            Ok(Err(e)) => {
                return Err(Error::Imap {
                    what: format!(
                        "selecting the queue folder {:?}",
                        self.settings.queue_folder
                    ),
                    reason: conn::server_text(&e),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    what: "SELECT".to_owned(),
                    secs: COMMAND_TIMEOUT.as_secs(),
                });
            }
        };
        let uid_validity = mailbox.uid_validity.unwrap_or(0);
        let previous = self.queue.uid_validity;
        if self.queue.selected(uid_validity) {
            tracing::warn!(
                source = %self.settings.name,
                old = ?previous,
                new = uid_validity,
                "the queue folder's UIDVALIDITY changed: starting over (messages archived before are recognized as duplicates)"
            );
        }
        let rejected = self.queue.rejected();
        self.update(|s| {
            s.uid_validity = Some(uid_validity);
            s.rejected = rejected;
        });

        loop {
            match self.logging() {
                Logging::Paused => {
                    tracing::info!(source = %self.settings.name, "logging is paused: mail stays in the queue folder");
                    self.logout(session).await;
                    return Ok(End::Paused);
                }
                Logging::On | Logging::Off => {}
            }
            self.set_state("running");
            if !self.drain_queue(&mut session, &caps).await? {
                self.logout(session).await;
                return Ok(End::Shutdown);
            }
            if self.logging() == Logging::Paused {
                continue;
            }
            self.failures = 0;
            let now = self.now();
            self.update(|s| {
                s.last_success = Some(now);
                s.retry_at = None;
            });
            if self.shutdown.is_cancelled() {
                self.logout(session).await;
                return Ok(End::Shutdown);
            }
            self.set_state("idle");
            if caps.idle && self.settings.idle {
                let (s, wake) = self.idle(session).await?;
                session = s;
                if matches!(wake, Wake::Shutdown) {
                    self.logout(session).await;
                    return Ok(End::Shutdown);
                }
            } else if self.settings.poll_interval >= LONG_POLL {
                self.logout(session).await;
                return Ok(End::Sleep(self.settings.poll_interval));
            } else if !self.sleep(self.settings.poll_interval).await {
                self.logout(session).await;
                return Ok(End::Shutdown);
            }
        }
    }

    /// Waits in IDLE until the server reports a change, the refresh time, or shutdown.
    async fn idle(&self, session: Session) -> Result<(Session, Wake), Error> {
        let mut handle = session.idle();
        timed("IDLE", COMMAND_TIMEOUT, handle.init()).await?;
        let wake = {
            let (wait, _interrupt) = handle.wait_with_timeout(IDLE_SILENCE);
            tokio::select! {
                r = wait => match r {
                    Ok(_) => Ok(Wake::Mail),
                    Err(e) => Err(Error::Imap { what: "IDLE".to_owned(), reason: conn::server_text(&e) }),
                },
                _ = tokio::time::sleep(IDLE_MAX) => Ok(Wake::Mail),
                _ = self.shutdown.cancelled() => Ok(Wake::Shutdown),
            }
        }?;
        let session = timed("ending IDLE", COMMAND_TIMEOUT, handle.done()).await?;
        Ok((session, wake))
    }

    /// Takes note of what the server said on the side; `true` if new mail arrived.
    fn drain_unsolicited(&self, session: &Session) -> bool {
        let mut arrived = false;
        while let Ok(r) = session.unsolicited_responses.try_recv() {
            if matches!(
                r,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            ) {
                arrived = true;
            }
        }
        arrived
    }

    /// Lists the queue folder: UID, size and whether it is marked `\Deleted`.
    async fn list(&self, session: &mut Session) -> Result<Vec<Entry>, Error> {
        let fetches: Vec<async_imap::types::Fetch> =
            timed("listing the queue folder", COMMAND_TIMEOUT, async {
                session
                    .uid_fetch("1:*", "(UID RFC822.SIZE FLAGS)")
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let mut by_uid: BTreeMap<u32, Entry> = BTreeMap::new();
        for f in &fetches {
            let Some(uid) = f.uid else { continue };
            let deleted = f.flags().any(|flag| flag == Flag::Deleted);
            let e = by_uid.entry(uid).or_insert(Entry {
                uid,
                size: None,
                deleted: false,
            });
            e.size = f.size.or(e.size);
            e.deleted |= deleted;
        }
        Ok(by_uid.into_values().collect())
    }

    /// Archives and moves everything in the queue folder, until a listing finds nothing
    /// new. `false` if it stopped for a shutdown.
    async fn drain_queue(&mut self, session: &mut Session, caps: &Caps) -> Result<bool, Error> {
        let max = self.ingestor.policy().max_message_size;
        let mut quiet_relists = 0;
        loop {
            self.drain_unsolicited(session);
            let entries = self.list(session).await?;
            let arrived = self.drain_unsolicited(session);
            let listed: HashSet<u32> = entries.iter().map(|e| e.uid).collect();
            self.queue.retain_listed(&listed);
            let mut todo = Vec::new();
            for e in entries {
                if !self.queue.wants(e.uid) {
                    continue;
                }
                match e.size {
                    // Refused without downloading it: the pipeline would refuse it anyway.
                    Some(size) if u64::from(size) > max => {
                        let err = ingest::Error::TooLarge {
                            size: u64::from(size),
                            max,
                        };
                        self.reject(e, &err);
                    }
                    _ => todo.push(e),
                }
            }
            let backlog = u32::try_from(todo.len()).unwrap_or(u32::MAX);
            let rejected = self.queue.rejected();
            self.update(|s| {
                s.backlog = Some(backlog);
                s.rejected = rejected;
            });
            if todo.is_empty() {
                if arrived && quiet_relists < 3 {
                    quiet_relists += 1;
                    continue;
                }
                return Ok(true);
            }
            quiet_relists = 0;
            for batch in batches(&todo) {
                if self.shutdown.is_cancelled() {
                    return Ok(false);
                }
                if self.logging() == Logging::Paused {
                    return Ok(true);
                }
                self.process_batch(session, caps, batch).await?;
            }
        }
    }

    fn reject(&mut self, e: Entry, err: &ingest::Error) {
        let message = format!(
            "message UID {} in {:?} was refused and stays there: {err}",
            e.uid, self.settings.queue_folder
        );
        tracing::warn!(source = %self.settings.name, uid = e.uid, error = %err, "message refused: left in the queue folder");
        self.queue.reject(e.uid, e.size, err.to_string());
        self.record_error(message);
        let rejected = self.queue.rejected();
        self.update(|s| s.rejected = rejected);
    }

    /// Fetches a batch, archives it, and moves what is durable.
    async fn process_batch(
        &mut self,
        session: &mut Session,
        caps: &Caps,
        batch: &[Entry],
    ) -> Result<(), Error> {
        let uids: Vec<u32> = batch.iter().map(|e| e.uid).collect();
        let set = uid_set(&uids);
        let mut bodies: HashMap<u32, (Option<Vec<u8>>, Option<i64>)> = HashMap::new();
        {
            let fetches: Vec<async_imap::types::Fetch> =
                timed("fetching messages", FETCH_TIMEOUT, async {
                    session
                        .uid_fetch(&set, "(UID INTERNALDATE BODY.PEEK[])")
                        .await?
                        .try_collect()
                        .await
                })
                .await?;
            for f in fetches {
                let Some(uid) = f.uid else { continue };
                if !uids.contains(&uid) {
                    continue;
                }
                let slot = bodies.entry(uid).or_insert((None, None));
                if let Some(body) = f.body() {
                    slot.0 = Some(body.to_vec());
                }
                if let Some(date) = f.internal_date() {
                    slot.1 = Some(date.timestamp());
                }
            }
        }
        let logging = self.logging();
        let mut to_move: Vec<Entry> = Vec::new();
        let mut pending = Vec::new();
        let mut transient: Option<ingest::Error> = None;
        for e in batch {
            let Some((body, date)) = bodies.remove(&e.uid) else {
                // Gone since the listing (someone else expunged it).
                self.queue.finished(e.uid);
                continue;
            };
            if logging == Logging::Off {
                tracing::info!(source = %self.settings.name, uid = e.uid, "logging is off: message moved to the storage folder without archiving");
                to_move.push(*e);
                continue;
            }
            if transient.is_some() {
                break;
            }
            // A message the server returns no data for is archived as what it is: empty
            // (which the pipeline refuses, so it stays and is reported).
            let raw = body.unwrap_or_default();
            let envelope = Envelope {
                mail_from: None,
                received_at: date.unwrap_or_else(|| self.now()),
            };
            let ingestor = self.ingestor.clone();
            let submitted = tokio::task::spawn_blocking(move || ingestor.submit(&raw, &envelope))
                .await
                .map_err(|e| Error::Internal(format!("archiving a message panicked: {e}")))?;
            match submitted {
                Ok(p) => pending.push((*e, p)),
                Err(err) if err.is_transient() => transient = Some(err),
                Err(err) => self.reject(*e, &err),
            }
        }
        for (e, p) in pending {
            match p.wait().await {
                Ok(outcome) => {
                    let duplicate = matches!(outcome, Outcome::Duplicate { .. });
                    tracing::debug!(source = %self.settings.name, uid = e.uid, ?outcome, "archived");
                    self.update(|s| {
                        s.archived += 1;
                        if duplicate {
                            s.duplicates += 1;
                        }
                    });
                    to_move.push(e);
                }
                Err(err) if err.is_transient() => {
                    transient.get_or_insert(err);
                }
                Err(err) => self.reject(e, &err),
            }
        }
        // Everything in `to_move` is durable now (or logging is off): move it.
        self.move_to_storage(session, caps, &to_move).await?;
        self.drain_unsolicited(session);
        let moved = u32::try_from(to_move.len()).unwrap_or(u32::MAX);
        self.update(|s| {
            s.moved += u64::from(moved);
            s.backlog = Some(s.backlog.unwrap_or(0).saturating_sub(moved));
        });
        match transient {
            Some(err) => Err(Error::Ingest(err)),
            None => Ok(()),
        }
    }

    /// Moves archived messages from the queue folder to the storage folder.
    async fn move_to_storage(
        &mut self,
        session: &mut Session,
        caps: &Caps,
        entries: &[Entry],
    ) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let storage = mailbox_wire(&self.settings.storage_folder);
        let all: Vec<u32> = entries.iter().map(|e| e.uid).collect();
        let all_set = uid_set(&all);
        if caps.move_ {
            timed(
                "moving messages to the storage folder",
                COMMAND_TIMEOUT,
                session.uid_mv(&all_set, &storage),
            )
            .await?;
        } else {
            // COPY, then \Deleted, then expunge. A message already marked \Deleted was
            // copied before an interruption (we mark only after copying): expunge it
            // without copying it a second time.
            let copy: Vec<u32> = entries
                .iter()
                .filter(|e| !e.deleted)
                .map(|e| e.uid)
                .collect();
            if !copy.is_empty() {
                let copy_set = uid_set(&copy);
                timed(
                    "copying messages to the storage folder",
                    COMMAND_TIMEOUT,
                    session.uid_copy(&copy_set, &storage),
                )
                .await?;
                let _: Vec<async_imap::types::Fetch> = timed(
                    "marking copied messages \\Deleted",
                    COMMAND_TIMEOUT,
                    async {
                        session
                            .uid_store(&copy_set, "+FLAGS.SILENT (\\Deleted)")
                            .await?
                            .try_collect()
                            .await
                    },
                )
                .await?;
            }
            if caps.uidplus {
                let _: Vec<u32> = timed("UID EXPUNGE", COMMAND_TIMEOUT, async {
                    session.uid_expunge(&all_set).await?.try_collect().await
                })
                .await?;
            } else {
                // Without UIDPLUS, EXPUNGE removes every \Deleted message of the folder:
                // only when ours are the only ones.
                let deleted = timed(
                    "UID SEARCH DELETED",
                    COMMAND_TIMEOUT,
                    session.uid_search("DELETED"),
                )
                .await?;
                let ours: HashSet<u32> = all.iter().copied().collect();
                if deleted.iter().all(|uid| ours.contains(uid)) {
                    let _: Vec<u32> = timed("EXPUNGE", COMMAND_TIMEOUT, async {
                        session.expunge().await?.try_collect().await
                    })
                    .await?;
                } else {
                    let message = format!(
                        "the server lacks UIDPLUS and other messages in {:?} are marked \\Deleted: not expunging, so archived messages (copied to {:?}) stay there marked \\Deleted until someone expunges the folder",
                        self.settings.queue_folder, self.settings.storage_folder
                    );
                    tracing::warn!(source = %self.settings.name, "{message}");
                    self.record_error(message);
                }
            }
        }
        for uid in all {
            self.queue.finished(uid);
        }
        Ok(())
    }
}

/// Splits the work into batches of at most [`BATCH_MESSAGES`] messages and about
/// [`BATCH_BYTES`].
fn batches(todo: &[Entry]) -> Vec<&[Entry]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < todo.len() && end - start < BATCH_MESSAGES {
            let size = u64::from(todo[end].size.unwrap_or(0));
            if end > start && bytes + size > BATCH_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        out.push(&todo[start..end]);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<Entry> = (1..=120)
            .map(|uid| Entry {
                uid,
                size: Some(1000),
                deleted: false,
            })
            .collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [50, 50, 20]);
        let big = [
            Entry {
                uid: 1,
                size: Some(40 << 20),
                deleted: false,
            },
            Entry {
                uid: 2,
                size: Some(1000),
                deleted: false,
            },
            Entry {
                uid: 3,
                size: Some(20 << 20),
                deleted: false,
            },
            Entry {
                uid: 4,
                size: Some(20 << 20),
                deleted: false,
            },
        ];
        let sizes: Vec<usize> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 2, 1]);
    }

    #[test]
    fn a_changed_uidvalidity_forgets_everything() {
        let mut q = QueueState::default();
        assert!(!q.selected(7));
        q.reject(3, Some(0), "the message is empty".into());
        q.finished(4);
        assert!(!q.wants(3) && !q.wants(4) && q.wants(5));
        // Reconnecting under the same UIDVALIDITY keeps the refusals, not the session's
        // progress.
        assert!(!q.selected(7));
        assert!(!q.wants(3) && q.wants(4));
        q.retain_listed(&[4, 5].into_iter().collect());
        assert!(
            q.rejected().is_empty(),
            "a refused message someone removed is forgotten"
        );
        q.reject(5, None, "x".into());
        assert!(q.selected(8), "UIDVALIDITY changed");
        assert!(q.wants(5) && q.rejected().is_empty());
    }
}
