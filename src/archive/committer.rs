//! Group commit: one thread owns the write path and commits every message waiting for it in
//! one durable transaction, so many concurrent senders share one fsync.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Archive, Error, NewMessage, PutOutcome, Reclassify};

/// Messages per commit at most: bounds the transaction and the latency of its first member.
const MAX_BATCH: usize = 512;
/// Compressed bytes per commit at most.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Jobs that may wait for the committer; submitters block beyond that (back-pressure).
const QUEUE: usize = 4096;
/// Compressed bytes that may wait for the committer; submitters block beyond that, so a burst
/// of large messages cannot pile up in memory. A single larger message still goes through.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

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
}

/// A pending put: resolves once the commit holding it is durable (or failed).
pub type Pending = oneshot::Receiver<Result<PutOutcome, Arc<Error>>>;

impl Committer {
    pub fn start(
        archive: Arc<Archive>,
        reclassify: Box<Reclassify>,
    ) -> Result<(Self, JoinHandle<()>), Error> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let worker = Arc::clone(&archive);
        let queued = Arc::new(Queued::default());
        let worker_queued = Arc::clone(&queued);
        let handle = std::thread::Builder::new()
            .name("mailjournal-commit".into())
            .spawn(move || run(&worker, &*reclassify, rx, &worker_queued))
            .map_err(|source| Error::Io {
                what: "starting the commit thread".into(),
                source,
            })?;
        Ok((
            Self {
                tx,
                archive,
                queued,
            },
            handle,
        ))
    }

    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// Queues a message; await (or `blocking_recv`) the result. Blocks while the queue is
    /// full (by count or by bytes): call it off the async runtime.
    pub fn submit(&self, item: NewMessage) -> Result<Pending, Error> {
        self.queued.reserve(item.compressed_size());
        let (reply, pending) = oneshot::channel();
        self.tx
            .send(Job { item, reply })
            .map_err(|_| Error::CommitterGone)?;
        Ok(pending)
    }
}

fn run(archive: &Archive, reclassify: &Reclassify, rx: Receiver<Job>, queued: &Queued) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.item.compressed_size();
        let mut jobs = vec![first];
        // Take whatever else is already waiting; wait a hair for stragglers only when the
        // queue is busy enough that they are likely (a lone message commits at once).
        loop {
            if jobs.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.item.compressed_size();
                    jobs.push(job);
                }
                Err(_) if jobs.len() > 1 => match rx.recv_timeout(Duration::from_micros(200)) {
                    Ok(job) => {
                        bytes += job.item.compressed_size();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
        let span = tracing::debug_span!("commit", messages = items.len());
        let _guard = span.enter();
        let result = archive.put_batch(items, reclassify);
        queued.release(bytes);
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch is not stored");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}
