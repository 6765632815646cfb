//! The admin socket: how CLI commands reach a running gateway.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Request, Target, execute};
use crate::archive::Archive;
use crate::clock::Clock;
use crate::config::Settings;
use crate::ingest::Ingestor;
use crate::runtime::LoggingSwitch;

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// The longest request accepted (a request is a command line, never message data).
const MAX_REQUEST: u64 = 1024 * 1024;

const STDOUT: u8 = b'o';
const STDERR: u8 = b'e';
const EXIT: u8 = b'x';

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// What the socket's commands run against.
pub struct State {
    pub archive: Arc<Archive>,
    pub settings: Settings,
    pub ingestor: Ingestor,
    pub logging: Arc<LoggingSwitch>,
    pub clock: Arc<dyn Clock>,
    pub pull: Option<Arc<std::sync::Mutex<crate::pull::Sources>>>,
}

/// Binds the socket (owner-only) and serves it until `shutdown`. The caller holds the
/// archive, so a socket file left by a crashed gateway is stale and replaced.
pub fn spawn(
    state: Arc<State>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> io::Result<PathBuf> {
    let path = path(&state.settings.data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let inner = tracker.clone();
    let socket_path = path.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let state = Arc::clone(&state);
            inner.spawn_blocking(move || {
                if let Err(e) = serve_one(stream, &state) {
                    tracing::info!(error = %e, "admin connection ended early");
                }
            });
        }
        let _ = std::fs::remove_file(&socket_path);
    });
    Ok(path)
}

fn serve_one(stream: UnixStream, state: &State) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, Framed(&stream, STDOUT));
    let mut err = io::BufWriter::new(Framed(&stream, STDERR));
    let code = match serde_json::from_str::<Request>(&line) {
        Err(e) => {
            writeln!(err, "mailjournal: bad admin request: {e}")?;
            2
        }
        Ok(request) => {
            tracing::info!(
                kind = request.kind(),
                target = request.target(),
                "admin command"
            );
            let target = Target {
                archive: &state.archive,
                settings: &state.settings,
                ingestor: Some(&state.ingestor),
                logging: Some(&state.logging),
                clock: state.clock.as_ref(),
                progress: false,
                pull: state.pull.as_deref(),
            };
            match execute(request, &target, &mut out, &mut err) {
                Ok(code) => code,
                Err(e) => {
                    writeln!(err, "mailjournal: {e}")?;
                    1
                }
            }
        }
    };
    out.flush()?;
    err.flush()?;
    drop((out, err));
    frame(&stream, EXIT, &code.to_be_bytes())
}

fn frame(mut stream: &UnixStream, tag: u8, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
    stream.write_all(&[tag])?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(bytes)
}

/// Turns writes into frames of one kind.
struct Framed<'a>(&'a UnixStream, u8);

impl Write for Framed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(16 * 1024 * 1024);
        frame(self.0, self.1, &buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `request` to the gateway listening at `path`, copies its output to `out` and `err`,
/// and returns its exit status.
pub fn call(
    path: &Path,
    request: &Request,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let mut stream = UnixStream::connect(path)?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = [0u8; 5];
        reader.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        match head[0] {
            STDOUT => out.write_all(&body)?,
            STDERR => err.write_all(&body)?,
            EXIT => {
                let code: [u8; 4] = body
                    .try_into()
                    .map_err(|_| io::Error::other("bad exit frame"))?;
                out.flush()?;
                return Ok(i32::from_be_bytes(code));
            }
            other => return Err(io::Error::other(format!("bad frame tag {other}"))),
        }
    }
}
