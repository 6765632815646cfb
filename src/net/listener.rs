//! The accept loop shared by the listeners: a cap on simultaneous connections, a cap on new
//! connections per source address per minute, and back-off when accepting fails (out of file
//! descriptors), so a flood costs the server neither memory nor a busy loop.

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
    /// This source opened `max_per_minute` connections in the last minute.
    RateLimited,
}

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_minute: u32,
    /// Sources the per-minute limit does not apply to (the organization's own servers).
    pub exempt: Vec<ipnet::IpNet>,
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
    S: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit) -> SF + Send + 'static,
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
            let exempt = limits.exempt.iter().any(|n| n.contains(&peer.ip()));
            if !exempt && !rate.allow(peer.ip(), limits.max_per_minute) {
                tracing::info!(%peer, "connection refused: rate limit");
                inner.spawn(refuse(stream, Refusal::RateLimited));
                continue;
            }
            match Arc::clone(&semaphore).try_acquire_owned() {
                Ok(permit) => {
                    inner.spawn(session(stream, peer, permit));
                }
                Err(_) => {
                    tracing::info!(%peer, "connection refused: too many connections");
                    inner.spawn(refuse(stream, Refusal::TooManyConnections));
                }
            }
        }
    });
    gauge
}
