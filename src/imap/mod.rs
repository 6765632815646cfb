//! The IMAP view of the archive: read-only virtual folders any IMAP client can read.
//! Every `imap_types` use stays inside this module.

pub mod acl;
pub mod esearch;
pub mod fetch;
pub mod liststatus;
mod loader;
pub mod mailbox;
pub mod search;
pub mod session;
pub mod sort;
pub mod thread;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::net::listener::{self, Gauge, Limits, Refusal};
pub use session::Context;

/// Starts accepting on `listener`; `implicit_tls` for the IMAPS listener.
pub fn spawn(
    listener: TcpListener,
    ctx: Arc<Context>,
    implicit_tls: bool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> Gauge {
    // Trusted sources (loopback by default: a local proxy, webmail, the admin's own tools)
    // are not rate-limited and keep a fifth of the slots; no stranger holds more than a
    // tenth, so a flood from a few addresses leaves room for everyone else.
    let mut limits = Limits::new(
        ctx.settings.max_connections,
        ctx.settings.max_connections_per_minute,
        ctx.settings.trusted_networks.clone(),
    );
    limits.max_per_source = Some((ctx.settings.max_connections / 10).max(1));
    listener::spawn(
        listener,
        limits,
        shutdown,
        tracker,
        move |stream: TcpStream, peer: SocketAddr, permit| {
            let ctx = Arc::clone(&ctx);
            let span = tracing::info_span!("imap", %peer, tls = implicit_tls);
            async move {
                session::Session::new(ctx, stream, peer)
                    .run(implicit_tls)
                    .await;
                drop(permit);
            }
            .instrument(span)
        },
        move |mut stream: TcpStream, _why: Refusal| async move {
            if !implicit_tls {
                use tokio::io::AsyncWriteExt;
                let _ = stream
                    .write_all(b"* BYE Too many connections, try again later\r\n")
                    .await;
            }
        },
    )
}
