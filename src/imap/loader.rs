//! FETCH answers, built in batches of about [`BATCH_BYTES`] of messages. A batch is read,
//! decoded and turned into data items by the session's task itself, right before it is
//! written: decoding is cheap (LZ4, or nothing for attachments), a hand-off to another
//! thread costs more than it saves, and on a small server the client needs the other core.
//! A batch above that size (one large message) is built on tokio's blocking pool, a few
//! batches ahead, so a session never holds its worker thread for long. What a session holds
//! is bounded by the batches in flight, not by the size of the answer.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

use tokio::task::JoinHandle;

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::flag::{Flag, FlagFetch};

use super::fetch;
use crate::archive::{Archive, FLAG_FLAGGED, FLAG_SEEN, Location};

/// Messages of this many bytes (raw) make a batch.
pub const BATCH_BYTES: u64 = 256 * 1024;
/// Records are looked up this many at a time (one read transaction).
pub const LOCATE_CHUNK: usize = 64;

/// The FETCH flags of a message's flag bits.
pub fn flag_fetch(bits: u8) -> Vec<FlagFetch<'static>> {
    let mut flags = Vec::new();
    if bits & FLAG_SEEN != 0 {
        flags.push(FlagFetch::Flag(Flag::Seen));
    }
    if bits & FLAG_FLAGGED != 0 {
        flags.push(FlagFetch::Flag(Flag::Flagged));
    }
    flags
}

/// One message of a FETCH answer, decided by the session (sequence number, flags after the
/// fetch, whether this fetch set `\Seen`).
pub struct Planned {
    pub seq: NonZeroU32,
    pub uid: u32,
    pub bits: u8,
    pub newly_seen: bool,
}

/// A FETCH command's work: what to answer for which messages.
pub struct Job {
    archive: Arc<Archive>,
    items: Vec<MessageDataItemName<'static>>,
    plan: Vec<Planned>,
    needs_raw: bool,
}

/// The answers for a run of planned messages, in plan order.
pub struct Batch {
    pub answers: Vec<(NonZeroU32, Vec1<MessageDataItem<'static>>)>,
    /// A `BINARY` item could not be decoded (the command answers `NO [UNKNOWN-CTE]`).
    pub unknown_cte: bool,
}

/// A planned message (its index in the plan) and where it is; `None` when it is not in the
/// archive (any more).
pub type Located = (usize, Option<Location>);

impl Job {
    pub fn new(
        archive: Arc<Archive>,
        items: Vec<MessageDataItemName<'static>>,
        plan: Vec<Planned>,
    ) -> Self {
        let needs_raw = fetch::needs_raw(&items);
        Self {
            archive,
            items,
            plan,
            needs_raw,
        }
    }

    /// The data items asked for.
    pub fn items(&self) -> &[MessageDataItemName<'static>] {
        &self.items
    }

    /// Whether answering needs more than the session's own state (UID and FLAGS).
    pub fn needs_archive(&self) -> bool {
        !self
            .items
            .iter()
            .all(|i| matches!(i, MessageDataItemName::Uid | MessageDataItemName::Flags))
    }

    /// Where `plan[from..]` are, [`LOCATE_CHUNK`] at most, in one read transaction. A
    /// failed lookup is logged and leaves those messages out of the answer.
    pub fn locate(&self, from: usize) -> Vec<Located> {
        let part = self.plan.get(from..).unwrap_or_default();
        let part = part.get(..LOCATE_CHUNK).unwrap_or(part);
        let uids: Vec<u32> = part.iter().map(|p| p.uid).collect();
        let found = self.archive.locations(&uids).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read message records for FETCH");
            vec![None; uids.len()]
        });
        (from..).zip(found).collect()
    }

    /// Builds the answers for `part`. Messages that cannot be read are left out (and
    /// logged); the rest of the answer goes on.
    pub fn load(&self, part: Vec<Located>) -> Batch {
        let wants_flags = self.items.contains(&MessageDataItemName::Flags);
        let wants_size = self.items.contains(&MessageDataItemName::Rfc822Size);
        let mut batch = Batch {
            answers: Vec::with_capacity(part.len()),
            unknown_cte: false,
        };
        for (index, loc) in part {
            let (Some(planned), Some(loc)) = (self.plan.get(index), loc) else {
                continue;
            };
            // RFC822.SIZE alone needs the bytes only for a bare-LF message recorded before
            // served sizes were kept.
            let needs_raw = self.needs_raw || (wants_size && loc.served_size().is_none());
            let raw = if needs_raw {
                match self.archive.raw_at(&loc) {
                    // IMAP wants CRLF: bare LFs go out as CRLF (the archive keeps them), and
                    // every size and offset below counts what is sent.
                    Ok(raw) => Some(crate::crlf::to_crlf(raw)),
                    Err(e) => {
                        tracing::error!(uid = loc.uid, error = %e, "cannot read a message for FETCH");
                        continue;
                    }
                }
            } else {
                None
            };
            let src = fetch::FetchSource {
                uid: loc.uid,
                received_at: loc.received_at,
                size: raw
                    .as_ref()
                    .map(|r| r.len() as u64)
                    .or(loc.served_size())
                    .unwrap_or(loc.size),
                raw,
                flags: flag_fetch(planned.bits),
            };
            let mut out = match fetch::fetch_items(&self.items, src) {
                Ok(out) => out,
                Err(fetch::Error::UnknownCte) => {
                    batch.unknown_cte = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(uid = loc.uid, error = %e, "FETCH failed");
                    continue;
                }
            };
            // RFC 3501: a FETCH that sets \Seen reports the new flags.
            if planned.newly_seen && !wants_flags {
                out.push(MessageDataItem::Flags(flag_fetch(planned.bits)));
            }
            if let Ok(items) = Vec1::try_from(out) {
                batch.answers.push((planned.seq, items));
            }
        }
        batch
    }

    /// Answers from the session's own state, for items that need nothing else.
    pub fn cheap(&self) -> impl Iterator<Item = (NonZeroU32, Vec1<MessageDataItem<'static>>)> {
        self.plan.iter().filter_map(|p| {
            let items: Vec<MessageDataItem<'static>> = self
                .items
                .iter()
                .map(|i| match i {
                    MessageDataItemName::Uid => {
                        MessageDataItem::Uid(NonZeroU32::new(p.uid).unwrap_or(NonZeroU32::MIN))
                    }
                    _ => MessageDataItem::Flags(flag_fetch(p.bits)),
                })
                .collect();
            Vec1::try_from(items).ok().map(|items| (p.seq, items))
        })
    }
}

fn batch_bytes(part: &[Located]) -> u64 {
    part.iter()
        .map(|(_, loc)| loc.as_ref().map_or(0, |l| l.size))
        .sum()
}

/// Splits located messages into batches of about [`BATCH_BYTES`] (a larger message makes a
/// batch of its own).
fn take_batch(located: &mut VecDeque<Located>) -> Vec<Located> {
    let mut part = Vec::new();
    let mut bytes = 0u64;
    while let Some((_, loc)) = located.front() {
        let size = loc.as_ref().map_or(0, |l| l.size);
        if !part.is_empty() && bytes + size > BATCH_BYTES {
            break;
        }
        bytes += size;
        part.extend(located.pop_front());
    }
    part
}

/// How many batches are planned ahead (large ones loading on the blocking pool meanwhile).
const IN_FLIGHT: usize = 3;

/// A FETCH's batches in order, planned [`IN_FLIGHT`] ahead.
pub struct Pipeline {
    job: Arc<Job>,
    /// Located, not yet in a batch.
    located: VecDeque<Located>,
    /// The next plan index to locate.
    next: usize,
    loading: VecDeque<Slot>,
}

/// A batch to build when its turn comes, one being built on the blocking pool, or one built
/// already.
enum Slot {
    Part(Vec<Located>),
    Loading(JoinHandle<Batch>),
    Ready(Batch),
}

impl Pipeline {
    pub fn new(job: Job) -> Self {
        Self {
            job: Arc::new(job),
            located: VecDeque::new(),
            next: 0,
            loading: VecDeque::new(),
        }
    }

    /// The next batch of answers; `None` when all are out. A batch whose task failed is
    /// logged and skipped.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        loop {
            self.fill().await;
            let loaded = match self.loading.pop_front()? {
                Slot::Part(part) => Ok(self.job.load(part)),
                Slot::Ready(batch) => Ok(batch),
                Slot::Loading(task) => task.await,
            };
            match loaded {
                Ok(batch) => {
                    // Keep loading while the caller writes this one.
                    self.fill().await;
                    return Some(batch);
                }
                Err(e) => tracing::error!(error = %e, "a FETCH batch failed"),
            }
        }
    }

    /// Plans batches until [`IN_FLIGHT`] are ahead. Looking records up is quick (one read
    /// transaction for [`LOCATE_CHUNK`] records) and done here, and so are answers that need
    /// no message bytes; a batch larger than [`BATCH_BYTES`] starts loading on the blocking
    /// pool.
    async fn fill(&mut self) {
        while self.loading.len() < IN_FLIGHT {
            if self.located.is_empty() && self.next < self.job.plan.len() {
                let from = self.next;
                self.next = from.saturating_add(LOCATE_CHUNK).min(self.job.plan.len());
                self.located.extend(self.job.locate(from));
            }
            if self.located.is_empty() {
                return;
            }
            let job = Arc::clone(&self.job);
            if job.needs_raw {
                let part = take_batch(&mut self.located);
                if batch_bytes(&part) <= BATCH_BYTES {
                    self.loading.push_back(Slot::Part(part));
                } else {
                    let task = tokio::task::spawn_blocking(move || job.load(part));
                    self.loading.push_back(Slot::Loading(task));
                }
            } else {
                let part: Vec<Located> = self.located.drain(..).collect();
                self.loading.push_back(Slot::Ready(job.load(part)));
            }
        }
    }
}
