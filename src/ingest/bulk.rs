//! Bulk ingest of message files (the `ingest` command): every file goes through the same
//! pipeline as SMTP mail; one bad file is reported and the run goes on.

use std::collections::VecDeque;

use serde::Serialize;

use super::{Envelope, Ingestor, Outcome, PendingIngest};
use crate::clock::Clock;
use crate::sources::{self, SourceFile};

/// Messages analyzed but not yet committed, at most: enough to fill group commits while the
/// next messages are parsed, small enough to bound memory.
const IN_FLIGHT: usize = 256;

/// What a bulk ingest did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Messages read.
    pub messages: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Junk stored in quarantine.
    pub junk: u64,
    pub junk_dropped: u64,
    /// Stored, but flagged as malformed (unparsed, broken MIME, NUL bytes, ...).
    pub unparsed: u64,
    /// Each names the file (and message) and what was wrong.
    pub errors: Vec<String>,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Stored { malformed, .. } => {
                self.stored += 1;
                if *malformed {
                    self.unparsed += 1;
                }
            }
            Outcome::Duplicate { .. } => self.duplicates += 1,
            Outcome::Junk { .. } => self.junk += 1,
            Outcome::JunkDropped => self.junk_dropped += 1,
        }
    }
}

/// Ingests `files`. `progress` is called with the bytes of files finished so far.
pub fn ingest_files(
    ingestor: &Ingestor,
    files: &[SourceFile],
    clock: &dyn Clock,
    mut progress: impl FnMut(u64, &Summary),
) -> Summary {
    let mut summary = Summary::default();
    let mut in_flight: VecDeque<(String, PendingIngest)> = VecDeque::new();
    let max_size = ingestor.policy().max_message_size;
    let mut done_bytes = 0;

    let settle = |summary: &mut Summary, origin: String, pending: PendingIngest| match pending
        .wait_blocking()
    {
        Ok(outcome) => summary.count(&outcome),
        Err(e) => summary.errors.push(format!("{origin}: {e}")),
    };

    for file in files {
        for item in sources::read(file, max_size) {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    summary.errors.push(e.to_string());
                    continue;
                }
            };
            summary.messages += 1;
            let envelope = Envelope {
                mail_from: item.mail_from,
                received_at: item.received_at.unwrap_or_else(|| clock.now()),
            };
            match ingestor.submit(&item.raw, &envelope) {
                Ok(pending) => in_flight.push_back((item.origin, pending)),
                Err(e) => summary.errors.push(format!("{}: {e}", item.origin)),
            }
            while in_flight.len() >= IN_FLIGHT {
                if let Some((origin, pending)) = in_flight.pop_front() {
                    settle(&mut summary, origin, pending);
                }
            }
        }
        done_bytes += file.size;
        progress(done_bytes, &summary);
    }
    for (origin, pending) in in_flight {
        settle(&mut summary, origin, pending);
    }
    summary
}
