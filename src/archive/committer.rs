//! Group commit: every message waiting to be stored goes into one append to the write-ahead
//! log (one fsync) and one database transaction, so many concurrent senders share the work.
//! Two threads form a pipeline: the staging thread logs the next batches while the commit
//! thread files the ones before in the database, and every batch logged during a commit
//! goes into the next one. Commits skip the database's fsync between checkpoints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Archive, Error, Hooks, NewMessage, PutOutcome, Staged};

/// Messages per commit at most: bounds the transaction and the latency of its first member.
pub(super) const MAX_BATCH: usize = 512;
/// Compressed bytes per commit at most.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Jobs that may wait for the committer; submitters block beyond that (back-pressure).
const QUEUE: usize = 4096;
/// Compressed bytes that may wait for the committer; submitters block beyond that, so a burst
/// of large messages cannot pile up in memory. A single larger message still goes through.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// How long a batch may wait for messages that are on their way (see [`Arrival`]): each
/// commit costs about the same whatever it holds, so under load half a millisecond spent
/// gathering saves many commits.
const GATHER: Duration = Duration::from_micros(500);
/// While gathering, how often to look whether anything is still on its way.
const GATHER_POLL: Duration = Duration::from_micros(100);

/// A message on its way to the committer: held by a session from the start of a message's
/// data until it is submitted. While any is held, the staging thread waits (up to
/// [`GATHER`]) for more messages before it closes a batch, so concurrent senders share one
/// commit instead of each paying for their own; a lone sender never waits.
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes queued for the committer, with a condition to wait for room.
#[derive(Default)]
struct Queued {
    bytes: Mutex<usize>,
    room: Condvar,
}

impl Queued {
    fn reserve(&self, n: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *bytes > 0 && *bytes + n > MAX_QUEUED_BYTES {
            bytes = self.room.wait(bytes).unwrap_or_else(|e| e.into_inner());
        }
        *bytes += n;
    }

    fn release(&self, n: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *bytes = bytes.saturating_sub(n);
        self.room.notify_all();
    }
}

type Reply = oneshot::Sender<Result<PutOutcome, Arc<Error>>>;

struct Job {
    item: NewMessage,
    reply: Reply,
}

/// A handle to the committer thread. Cloning is cheap; the thread stops when every handle is
/// dropped, after committing what it holds.
#[derive(Clone)]
pub struct Committer {
    tx: SyncSender<Job>,
    archive: Arc<Archive>,
    queued: Arc<Queued>,
    arriving: Arc<AtomicUsize>,
}

/// A pending put: resolves once the commit holding it is durable (or failed).
pub type Pending = oneshot::Receiver<Result<PutOutcome, Arc<Error>>>;

impl Committer {
    /// Files what the log holds beyond the database first (after an unclean stop), then
    /// starts the threads.
    pub fn start(
        archive: Arc<Archive>,
        hooks: Box<dyn Hooks>,
    ) -> Result<(Self, JoinHandle<()>), Error> {
        archive.recover(&*hooks)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let worker = Arc::clone(&archive);
        let queued = Arc::new(Queued::default());
        let worker_queued = Arc::clone(&queued);
        let arriving = Arc::new(AtomicUsize::new(0));
        let worker_arriving = Arc::clone(&arriving);
        let handle = std::thread::Builder::new()
            .name("mailjournal-stage".into())
            .spawn(move || run(worker, hooks, rx, worker_queued, &worker_arriving))
            .map_err(|source| Error::Io {
                what: "starting the commit threads".into(),
                source,
            })?;
        Ok((
            Self {
                tx,
                archive,
                queued,
                arriving,
            },
            handle,
        ))
    }

    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// Announces a message that is on its way (its data is being received); drop the
    /// guard once it is submitted, or abandoned.
    pub fn arriving(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(Arc::clone(&self.arriving))
    }

    /// Queues a message; await (or `blocking_recv`) the result. Blocks while the queue is
    /// full (by count or by bytes): call it off the async runtime.
    pub fn submit(&self, item: NewMessage) -> Result<Pending, Error> {
        self.queued.reserve(item.stored_size());
        let (reply, pending) = oneshot::channel();
        self.tx
            .send(Job { item, reply })
            .map_err(|_| Error::CommitterGone)?;
        Ok(pending)
    }
}

/// A staged batch on its way to the database commit.
struct StagedBatch {
    staged: Staged,
    replies: Vec<Reply>,
    bytes: usize,
}

/// Staged batches waiting for the commit thread, merged into one: whatever the staging thread
/// finishes while a commit runs goes into the next commit, so each commit takes everything
/// that is ready and its cost is shared by as many messages as the load brings.
#[derive(Default)]
struct Handoff {
    state: Mutex<HandoffState>,
    changed: Condvar,
}

enum Next {
    Batch(StagedBatch),
    Idle,
    Closed,
}

#[derive(Default)]
struct HandoffState {
    waiting: Option<StagedBatch>,
    /// No more batches will come.
    closed: bool,
    /// The commit thread has ended (it never does unless something panicked).
    gone: bool,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a staged batch to what waits for the commit thread; blocks while a full batch
    /// is already waiting (back-pressure on the staging thread). Gives the batch back if the
    /// commit thread is gone.
    fn put(&self, batch: StagedBatch) -> Result<(), StagedBatch> {
        let mut state = self.lock();
        while !state.gone
            && state
                .waiting
                .as_ref()
                .is_some_and(|w| w.staged.len() >= MAX_BATCH || w.bytes >= MAX_BATCH_BYTES)
        {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.gone {
            return Err(batch);
        }
        match state.waiting.as_mut() {
            Some(waiting) => {
                waiting.staged.absorb(batch.staged);
                waiting.replies.extend(batch.replies);
                waiting.bytes += batch.bytes;
            }
            None => state.waiting = Some(batch),
        }
        self.changed.notify_all();
        Ok(())
    }

    /// Everything waiting, once there is something (or `Idle` after `idle` with nothing).
    fn take(&self, idle: Duration) -> Next {
        let deadline = Instant::now() + idle;
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.waiting.take() {
                self.changed.notify_all();
                return Next::Batch(batch);
            }
            if state.closed {
                return Next::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::Idle;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Held by the commit thread: when it ends, however it ends, whatever still waits for it is
/// answered with an error instead of waiting forever.
struct CommitThread<'a> {
    handoff: &'a Handoff,
    queued: &'a Queued,
}

impl Drop for CommitThread<'_> {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.handoff.lock();
            state.gone = true;
            state.waiting.take()
        };
        self.handoff.changed.notify_all();
        if let Some(batch) = waiting {
            self.queued.release(batch.bytes);
            fail(batch.replies, Error::CommitterGone);
        }
    }
}

/// The staging thread: gathers waiting jobs into a batch, logs it (durably), and hands it
/// to the commit thread, which files earlier batches meanwhile; batches logged during one
/// commit share the next.
fn run(
    archive: Arc<Archive>,
    hooks: Box<dyn Hooks>,
    rx: Receiver<Job>,
    queued: Arc<Queued>,
    arriving: &AtomicUsize,
) {
    let handoff = Arc::new(Handoff::default());
    let committer = {
        let archive = Arc::clone(&archive);
        let queued = Arc::clone(&queued);
        let handoff = Arc::clone(&handoff);
        std::thread::Builder::new()
            .name("mailjournal-commit".into())
            .spawn(move || commit_loop(&archive, &*hooks, &handoff, &queued))
    };
    let committer = match committer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the commit thread");
            return;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut bytes = first.item.stored_size();
        let mut jobs = vec![first];
        // Take whatever else is waiting, and what is on its way (a lone message goes at once).
        let deadline = Instant::now() + GATHER;
        loop {
            while jobs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.item.stored_size();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let full = jobs.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES;
            let now = Instant::now();
            if full || now >= deadline || arriving.load(Ordering::Acquire) == 0 {
                break;
            }
            match rx.recv_timeout((deadline - now).min(GATHER_POLL)) {
                Ok(job) => {
                    bytes += job.item.stored_size();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
        match archive.stage(items) {
            Ok(staged) => {
                let batch = StagedBatch {
                    staged,
                    replies,
                    bytes,
                };
                if let Err(batch) = handoff.put(batch) {
                    queued.release(batch.bytes);
                    fail(batch.replies, Error::CommitterGone);
                }
            }
            Err(e) => {
                queued.release(bytes);
                archive.storage_failed(&e);
                fail(replies, e);
            }
        }
    }
    handoff.close();
    let _ = committer.join();
}

/// How long commits may go without the database's fsync. Batches are durable in the log
/// when they are staged, so this bounds only how much a restart after a crash files again
/// (a fraction of a second of traffic) and how long the database holds pages in memory.
const CHECKPOINT: Duration = Duration::from_millis(200);

fn commit_loop(archive: &Archive, hooks: &dyn Hooks, handoff: &Handoff, queued: &Queued) {
    let _thread = CommitThread { handoff, queued };
    let mut last_durable = Instant::now();
    // Commits since the last durable one; after a failed commit, the next is durable, so
    // that a crash never files the failed batch (answered 4xx) before later ones.
    let mut pending = false;
    let mut must_sync = false;
    loop {
        let batch = match handoff.take(CHECKPOINT) {
            Next::Batch(batch) => batch,
            Next::Idle if pending => {
                match archive.checkpoint() {
                    Ok(()) => {
                        pending = false;
                        last_durable = Instant::now();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint failed; the log keeps every message");
                        archive.storage_failed(&e);
                    }
                }
                continue;
            }
            Next::Idle => continue,
            Next::Closed => break,
        };
        let span = tracing::debug_span!("commit", messages = batch.staged.len());
        let _guard = span.enter();
        let durable = must_sync || last_durable.elapsed() >= CHECKPOINT;
        let result = archive.commit_staged(batch.staged, hooks, durable);
        queued.release(batch.bytes);
        match result {
            Ok(outcomes) => {
                if durable {
                    last_durable = Instant::now();
                    pending = false;
                    must_sync = false;
                } else {
                    pending = true;
                }
                for (reply, outcome) in batch.replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                must_sync = true;
                archive.storage_failed(&e);
                fail(batch.replies, e);
            }
        }
    }
    if pending && let Err(e) = archive.checkpoint() {
        tracing::warn!(error = %e, "final checkpoint failed; the log keeps every message");
    }
}

fn fail(replies: Vec<Reply>, e: Error) {
    tracing::error!(error = %e, "commit failed; the batch is not stored");
    let e = Arc::new(e);
    for reply in replies {
        let _ = reply.send(Err(Arc::clone(&e)));
    }
}
