//! The accept loop shared by the listeners: a cap on simultaneous connections, a cap on new
//! connections per source address per minute, and back-off when accepting fails (out of file
//! descriptors), so a flood costs the server neither memory nor a busy loop.
//!
//! Trusted sources (the journaling servers for SMTP, loopback for IMAP and HTTP) are not
//! rate-limited and may use slots kept back from everyone else, so that a stranger who opens
//! every connection it can still leaves room for the mail that must get in.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a connection was turned away before its session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    TooManyConnections,
    /// This source opened `max_per_minute` connections in the last minute, or holds
    /// `max_per_source` open ones.
    RateLimited,
}

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_minute: u32,
    /// Trusted sources: no per-minute or per-source limit, and the reserved slots are
    /// theirs (the organization's own servers; loopback).
    pub exempt: Vec<ipnet::IpNet>,
    /// Slots of `max_connections` only trusted sources may take.
    pub reserved: usize,
    /// Connections one untrusted address may hold open at once (`None`: no limit of its own).
    pub max_per_source: Option<usize>,
}

impl Limits {
    /// Limits with a fifth of the slots reserved for trusted sources and no per-source
    /// cap.
    pub fn new(max_connections: usize, max_per_minute: u32, exempt: Vec<ipnet::IpNet>) -> Self {
        Self {
            max_connections,
            max_per_minute,
            exempt,
            reserved: max_connections / 5,
            max_per_source: None,
        }
    }
}

/// Loopback, as networks.
pub fn loopback() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// A session's hold on its listener: its slot, and its place in its address's count.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Option<(Arc<OpenCounts>, IpAddr)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((counts, ip)) = self.open.take() {
            counts.release(ip);
        }
    }
}

/// Open connections per untrusted address.
#[derive(Debug, Default)]
struct OpenCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl OpenCounts {
    fn take(&self, ip: IpAddr, max: usize) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Counts connections per source address over a sliding minute.
#[derive(Debug, Default)]
struct RateLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    fn allow(&self, ip: IpAddr, max: u32) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 50_000 {
            seen.retain(|_, (start, _)| start.elapsed() < Duration::from_secs(60));
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= max
    }
}

/// Counts of one listener's open sessions, for metrics and tests.
#[derive(Debug, Clone)]
pub struct Gauge {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl Gauge {
    pub fn open(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }
}

/// Accepts connections until `shutdown`, running `session` for each on `tracker` (holding a
/// permit for its lifetime) and `refuse` for those over a limit.
pub fn spawn<S, SF, R, RF>(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    session: S,
    refuse: R,
) -> Gauge
where
    S: Fn(TcpStream, SocketAddr, Slot) -> SF + Send + 'static,
    SF: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream, Refusal) -> RF + Send + 'static,
    RF: Future<Output = ()> + Send + 'static,
{
    let semaphore = Arc::new(Semaphore::new(limits.max_connections));
    let gauge = Gauge {
        semaphore: Arc::clone(&semaphore),
        max: limits.max_connections,
    };
    let rate = RateLimiter::default();
    let counts = Arc::new(OpenCounts::default());
    let inner = tracker.clone();
    tracker.spawn(async move {
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    // EMFILE and friends: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let ip = peer.ip().to_canonical();
            let trusted = limits.exempt.iter().any(|n| n.contains(&ip));
            if !trusted && !rate.allow(ip, limits.max_per_minute) {
                tracing::info!(%peer, "connection refused: rate limit");
                inner.spawn(refuse(stream, Refusal::RateLimited));
                continue;
            }
            // Strangers leave the reserved slots free (this loop is the only taker).
            if !trusted && semaphore.available_permits() <= limits.reserved {
                tracing::info!(%peer, "connection refused: the free slots are reserved");
                inner.spawn(refuse(stream, Refusal::TooManyConnections));
                continue;
            }
            let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() else {
                tracing::info!(%peer, "connection refused: too many connections");
                inner.spawn(refuse(stream, Refusal::TooManyConnections));
                continue;
            };
            let open = match limits.max_per_source {
                Some(max) if !trusted => {
                    if !counts.take(ip, max) {
                        tracing::info!(%peer, "connection refused: too many from this address");
                        inner.spawn(refuse(stream, Refusal::RateLimited));
                        continue;
                    }
                    Some((Arc::clone(&counts), ip))
                }
                _ => None,
            };
            let slot = Slot {
                _permit: permit,
                open,
            };
            inner.spawn(session(stream, peer, slot));
        }
    });
    gauge
}
