//! The SMTP journal receiver: the address mail-flow rules blind-copy to.

pub mod reply;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::net::listener::{self, Gauge, Limits, Refusal};
pub use session::Context;
use session::Session;

/// Starts accepting on `listener`; `implicit_tls` for the SMTPS listener.
pub fn spawn(
    listener: TcpListener,
    ctx: Arc<Context>,
    implicit_tls: bool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> Gauge {
    // Journaling servers may open a connection per message: only strangers are limited, a
    // fifth of the slots is theirs alone, and no stranger holds more than a tenth.
    let mut limits = Limits::new(
        ctx.settings.max_connections,
        ctx.settings.max_connections_per_minute,
        ctx.settings.allow_networks.clone(),
    );
    limits.max_per_source = Some((ctx.settings.max_connections / 10).max(1));
    let session_ctx = Arc::clone(&ctx);
    listener::spawn(
        listener,
        limits,
        shutdown,
        tracker,
        move |stream: TcpStream, peer: SocketAddr, permit| {
            let ctx = Arc::clone(&session_ctx);
            let span = tracing::info_span!("smtp", %peer, tls = implicit_tls);
            async move {
                tracing::debug!("connected");
                Session::new(ctx, stream, peer).run(implicit_tls).await;
                tracing::debug!("disconnected");
                drop(permit);
            }
            .instrument(span)
        },
        move |mut stream: TcpStream, why: Refusal| async move {
            if implicit_tls {
                // Nothing readable can be said before the handshake.
                return;
            }
            let text: &[u8] = match why {
                Refusal::TooManyConnections => {
                    b"421 4.7.0 Too many connections, try again later\r\n"
                }
                Refusal::RateLimited => {
                    b"421 4.7.0 Too many connections from your address, try again later\r\n"
                }
            };
            let _ = stream.write_all(text).await;
            let _ = stream.shutdown().await;
        },
    )
}
