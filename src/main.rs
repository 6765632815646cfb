//! The `mailjournal` command line: parses arguments and runs a command, locally or through
//! the running gateway's admin socket.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use mailjournal::admin::{
    self, EngagementArgs, ExportArgs, ListArgs, LogArgs, Request, Target, socket,
};
use mailjournal::archive::{self, Archive, Role};
use mailjournal::clock::SystemClock;
use mailjournal::config::{Logging, Settings};
use mailjournal::server::Server;

/// jemalloc, with its background thread purging freed pages after a few seconds, hands
/// memory back to the system also while the gateway is idle. glibc's malloc keeps it: each
/// argon2 check frees 19 MiB that its per-thread arenas hold on to, and the load of a busy
/// hour stays in the process long after (scripts/bench-memory measures both; mimalloc, also
/// tried, kept three times the fresh figure after load).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "mailjournal",
    version,
    about = "On-premises mail journaling gateway"
)]
struct Cli {
    /// Configuration file (default: the embedded config/mailjournal.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the SMTP journal receiver on the archive.
    Serve,
    /// Check a configuration file (or --config, or the default) and report every problem.
    CheckConfig {
        /// The file to check (default: --config, else the embedded default).
        file: Option<PathBuf>,
    },
    /// Ingest message files: .eml files, directories, mbox files, Maildirs.
    Ingest {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List archived messages, oldest first.
    List(ListArgs),
    /// Write messages out byte for byte, as .eml files, an mbox or a Maildir; `ingest` reads
    /// them back. Run again after an interruption, it goes on where it stopped.
    Export(ExportArgs),
    /// Write a message's original bytes to standard output.
    Show {
        /// The message's stable id, or its UID.
        id: String,
        /// Print its metadata as JSON instead (with its copies).
        #[arg(long, conflicts_with = "copy")]
        meta: bool,
        /// Write copy N instead: every distinct copy that arrived is kept byte for byte,
        /// numbered from 1 (the first copy, the default) in the order they arrived.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        copy: Option<u32>,
    },
    /// Counts and sizes.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Check every message's stored bytes against its hash; exit non-zero on any problem.
    Verify {
        /// Also remove orphan blob files (left by an interrupted commit; never referenced).
        #[arg(long)]
        repair: bool,
    },
    /// Show or switch the running gateway's logging: on, pause, off.
    Logging {
        /// on, pause (or paused), off; without it, show the current state.
        state: Option<Logging>,
    },
    /// Salespeople and contacts.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Check the whole setup before going live: configuration, certificate, directory,
    /// pull sources.
    Validate,
    /// The running gateway's state: the logging switch and each pull source (last success,
    /// backlog, last error).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a signed, expiring link to a message, for a CRM record.
    Link {
        /// The message's stable id, or its UID.
        id: String,
        /// How long the link stays valid (e.g. "90d"; default: http.link_ttl).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// The interaction log: one entry per salesperson–contact exchange.
    Log(LogArgs),
    /// Engagement measured from the journal: sent, received, replied, reply rates, response
    /// times, mail awaiting an answer; `rebuild` recomputes it all from the archive.
    Engagement {
        /// summary, contacts, salespeople, companies, awaiting-us, awaiting-them, rebuild.
        #[arg(value_enum, default_value = "summary")]
        what: EngagementWhat,
        #[command(flatten)]
        args: EngagementArgs,
    },
    /// Sales opportunities made from log entries.
    Opportunity {
        #[command(subcommand)]
        command: OpportunityCommand,
    },
    /// Print the transparency log's verifier key (name+keyid+base64, C2SP signed-note).
    LogKey,
    /// Print the transparency log's latest signed checkpoint (signed now if the log grew):
    /// keep it to check later that nothing before it changed.
    LogCheckpoint,
    /// Print the inclusion proof of a message in the transparency log (JSON).
    Prove {
        /// The message's stable id, or its UID.
        id: String,
    },
    /// Print a consistency proof between two sizes of the transparency log (JSON).
    LogConsistency {
        /// The tree size of the older checkpoint.
        from: u64,
        /// The newer tree size (default: the latest checkpoint's).
        to: Option<u64>,
    },
    /// Check a proof made by `prove` or `log-consistency` (or the HTTP API), without the
    /// archive: exit 0 when it holds.
    VerifyProof {
        /// The proof (JSON).
        file: PathBuf,
        /// The log's verifier key (what `log-key` prints), or a file holding it.
        #[arg(long)]
        key: String,
        /// For a consistency proof: the older checkpoint you kept (a file).
        #[arg(long, value_name = "FILE")]
        old: Option<PathBuf>,
        /// For a consistency proof: the newer checkpoint (default: the proof's own).
        #[arg(long, value_name = "FILE")]
        new: Option<PathBuf>,
    },
    /// Accounts (SMTP AUTH sources, and later IMAP and HTTP readers).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EngagementWhat {
    Summary,
    Contacts,
    Salespeople,
    Companies,
    AwaitingUs,
    AwaitingThem,
    Rebuild,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Import (add or update) salespeople and contacts from CSV files. Bad lines are
    /// reported by file and line and not imported.
    Import {
        /// CSV with columns code, name, email, alt_emails.
        #[arg(long, value_name = "FILE")]
        salespeople: Option<PathBuf>,
        /// CSV with columns number, name, company, emails, log_email.
        #[arg(long, value_name = "FILE")]
        contacts: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Match every archived message against the directory again (no entry is duplicated).
    Rematch,
}

#[derive(Subcommand)]
enum OpportunityCommand {
    /// Turn a log entry into an opportunity.
    Add {
        /// The entry's number (see `mailjournal log`).
        entry: u64,
        #[arg(long)]
        description: String,
    },
    /// A contact's opportunities.
    List {
        /// The contact's number.
        #[arg(long)]
        contact: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add or replace an account. The password is read from the terminal, or from standard
    /// input when it is not a terminal (first line); never from the command line.
    Add {
        name: String,
        /// source (may send journal mail over SMTP AUTH), admin, auditor (read everything),
        /// salesperson (read their own mail). Repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// For a salesperson account: the salesperson's code in the directory.
        #[arg(long)]
        salesperson: Option<String>,
    },
    /// Let an account read another salesperson's mail.
    Grant {
        name: String,
        /// The salesperson's code.
        #[arg(long)]
        salesperson: String,
        /// Take the grant back instead.
        #[arg(long)]
        revoke: bool,
    },
    /// Remove an account.
    Remove { name: String },
    /// List accounts and their roles.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILJOURNAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`mailjournal list | head`): stop quietly, as `ls` does.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailjournal: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Whether the error comes from writing to standard output after its reader went away
/// (and not from, say, the admin socket).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.get_ref().is_some_and(|inner| inner.is::<StdoutClosed>()))
    })
}

/// The reader of standard output has gone (`EPIPE`).
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output, whose broken-pipe errors say that they are (see [`is_broken_pipe`]).
struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    fn mark(e: std::io::Error) -> std::io::Error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
        } else {
            e
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(Self::mark)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(Self::mark)
    }
}

/// The error and its causes, `outer: inner: …`, each reason once: most of our errors
/// already say their cause in their own text (`cannot listen on …: Address already in
/// use`), so a cause whose text ends the line so far is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    let request = match cli.command {
        Command::CheckConfig { file } => return check_config(file.as_deref().or(config)),
        Command::Serve => return serve(config),
        Command::VerifyProof {
            file,
            key,
            old,
            new,
        } => return verify_proof(&file, &key, old.as_deref(), new.as_deref()),
        Command::LogKey => Request::LogKey,
        Command::LogCheckpoint => Request::LogCheckpoint,
        Command::Prove { id } => Request::Prove { id },
        Command::LogConsistency { from, to } => Request::LogConsistency { from, to },
        Command::Ingest { paths, json } => {
            // Absolute paths: a running gateway resolves them from its own directory.
            let cwd = std::env::current_dir().context("the current directory")?;
            let paths = paths.into_iter().map(|p| cwd.join(p)).collect();
            Request::Ingest { paths, json }
        }
        Command::List(mut args) => {
            args.header = std::io::stdout().is_terminal();
            Request::List(args)
        }
        Command::Export(mut args) => {
            // Absolute: a running gateway resolves paths from its own directory.
            args.dest = std::env::current_dir()
                .context("the current directory")?
                .join(&args.dest);
            Request::Export(args)
        }
        Command::Show { id, meta, copy } => Request::Show { id, meta, copy },
        Command::Stats { json } => Request::Stats { json },
        Command::Verify { repair } => Request::Verify { repair },
        Command::Logging { state } => Request::Logging { state },
        Command::Log(mut args) => {
            args.header = std::io::stdout().is_terminal();
            Request::Log(args)
        }
        Command::Engagement { what, mut args } => {
            use mailjournal::engagement::report::View;
            args.header = std::io::stdout().is_terminal();
            args.view = match what {
                EngagementWhat::Rebuild => View::Summary,
                EngagementWhat::Summary => View::Summary,
                EngagementWhat::Contacts => View::Contacts,
                EngagementWhat::Salespeople => View::Salespeople,
                EngagementWhat::Companies => View::Companies,
                EngagementWhat::AwaitingUs => View::AwaitingUs,
                EngagementWhat::AwaitingThem => View::AwaitingThem,
            };
            match what {
                EngagementWhat::Rebuild => Request::EngagementRebuild,
                _ => Request::Engagement(args),
            }
        }
        Command::Validate => Request::Validate,
        Command::Status { json } => Request::Status { json },
        Command::Link { id, ttl } => Request::Link {
            id,
            ttl_seconds: ttl.map(|d| d.as_secs()),
        },
        Command::Directory { command } => match command {
            DirectoryCommand::Import {
                salespeople,
                contacts,
                json,
            } => {
                let cwd = std::env::current_dir().context("the current directory")?;
                Request::DirectoryImport {
                    salespeople: salespeople.map(|p| cwd.join(p)),
                    contacts: contacts.map(|p| cwd.join(p)),
                    json,
                }
            }
            DirectoryCommand::Rematch => Request::DirectoryRematch,
        },
        Command::Opportunity { command } => match command {
            OpportunityCommand::Add { entry, description } => {
                Request::OpportunityAdd { entry, description }
            }
            OpportunityCommand::List { contact, json } => {
                Request::OpportunityList { contact, json }
            }
        },
        Command::User { command } => match command {
            UserCommand::Add {
                name,
                roles,
                salesperson,
            } => {
                mailjournal::auth::check_name(&name)?;
                let password = read_password(&name)?;
                Request::UserAdd {
                    name,
                    password_hash: mailjournal::auth::hash_password(&password)?,
                    roles,
                    salesperson,
                }
            }
            UserCommand::Grant {
                name,
                salesperson,
                revoke,
            } => Request::UserGrant {
                name,
                salesperson,
                revoke,
            },
            UserCommand::Remove { name } => Request::UserRemove { name },
            UserCommand::List => Request::UserList,
        },
    };
    let settings = Settings::load(config)?;
    let code = dispatch(&settings, request)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Runs a command here, or in the running gateway if it holds the archive.
fn dispatch(settings: &Settings, request: Request) -> anyhow::Result<i32> {
    let mut out = Stdout(std::io::stdout().lock());
    let mut err = std::io::stderr().lock();
    // Only `serve` and `ingest` make a new archive: any other command run in the wrong
    // place (or with the wrong configuration) says so instead of leaving an empty one.
    if !matches!(request, Request::Ingest { .. }) && !admin::archive_exists(&settings.data_dir) {
        bail!(
            "no archive in {} (`mailjournal serve` or `mailjournal ingest` creates one; \
             is --config or MAILJOURNAL_DATA_DIR right?)",
            settings.data_dir.display()
        );
    }
    match Archive::open(&settings.data_dir) {
        Ok(archive) => {
            let archive = Arc::new(archive);
            archive.set_tlog_name(&settings.transparency.name);
            admin::recover(&archive, settings)?;
            let ingest = matches!(request, Request::Ingest { .. });
            let target = Target {
                archive: &archive,
                settings,
                ingestor: None,
                logging: None,
                clock: &SystemClock,
                progress: std::io::stderr().is_terminal(),
                pull: None,
            };
            let code = admin::execute(request, &target, &mut out, &mut err)?;
            if ingest {
                // What was ingested is in a signed checkpoint before the command returns.
                archive
                    .checkpoint_log()
                    .context("signing a transparency-log checkpoint")?;
            }
            out.flush().context("writing output")?;
            Ok(code)
        }
        Err(archive::Error::Locked(dir)) => {
            let path = socket::path(&dir);
            socket::call(&path, &request, &mut out, &mut err).with_context(|| {
                format!(
                    "the archive in {} is held by another process, and its admin socket {} does not answer",
                    dir.display(),
                    path.display()
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut text = String::new();
        std::io::stdin().take(64 * 1024).read_to_string(&mut text)?;
        text.lines().next().unwrap_or_default().to_owned()
    };
    if password.chars().count() < 8 {
        bail!("the password is too short (at least 8 characters)");
    }
    Ok(password)
}

fn serve(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mailjournal")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let server = Server::start(&settings, Arc::new(SystemClock))
            .await
            .with_context(|| format!("starting the gateway on {}", settings.data_dir.display()))?;
        tracing::info!(data_dir = %settings.data_dir.display(), "mailjournal is running");
        let mut exit = ExitCode::SUCCESS;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = server.storage_failed() => {
                    // redb refuses every write after an I/O error until it is opened again:
                    // stop (every later message would get 451) and let the supervisor
                    // (systemd's Restart=on-failure) start a fresh process, which files
                    // what the log holds.
                    tracing::error!("storage failed: stopping so that the gateway is started afresh");
                    exit = ExitCode::from(75);
                    break;
                }
                _ = hup.recv() => match Settings::load(config) {
                    Ok(new) => {
                        server.logging.set(new.logging);
                        if let Some(pull) = &server.pull {
                            pull.lock().unwrap_or_else(|e| e.into_inner()).reload(&new.pull);
                        }
                        tracing::info!(logging = %new.logging, "configuration reloaded");
                    }
                    Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                },
            }
        }
        tracing::info!("shutting down");
        server.stop().await;
        Ok(exit)
    })
}

/// `verify-proof`: checks an inclusion or consistency proof against a verifier key.
fn verify_proof(
    file: &Path,
    key: &str,
    old: Option<&Path>,
    new: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    use mailjournal::tlog::{ConsistencyProof, InclusionProof, Verifier};
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let key_text = if Path::new(key).is_file() {
        read(Path::new(key))?
    } else {
        key.to_owned()
    };
    let verifier = Verifier::parse(&key_text)?;
    let text = read(file)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    let outcome = if format == mailjournal::tlog::proof::INCLUSION_FORMAT {
        let proof: InclusionProof = serde_json::from_value(value)?;
        proof.verify(&verifier).map(|(leaf, checkpoint)| {
            let mailjournal::tlog::Leaf::Copy { uid, id, .. } = leaf;
            format!(
                "OK: message {id} (UID {uid}) is leaf {} of the log {} of {} leaves",
                proof.leaf_index, checkpoint.origin, checkpoint.size
            )
        })
    } else if format == mailjournal::tlog::proof::CONSISTENCY_FORMAT {
        let Some(old) = old else {
            bail!(
                "a consistency proof is checked against the older checkpoint you kept: --old FILE"
            );
        };
        let old = read(old)?;
        let new = new.map(read).transpose()?;
        let proof: ConsistencyProof = serde_json::from_value(value)?;
        proof
            .verify(&verifier, &old, new.as_deref())
            .map(|(old, new)| {
                format!(
                    "OK: the log {} of {} leaves is a prefix of its tree of {} leaves",
                    new.origin, old.size, new.size
                )
            })
    } else {
        bail!(
            "{} is not a mailjournal proof (format {format:?})",
            file.display()
        );
    };
    match outcome {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_config(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    match Settings::load(file) {
        Ok(s) => {
            let mut out = Stdout(std::io::stdout().lock());
            write_summary(&mut out, &s)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `check-config` prints for a valid configuration.
fn write_summary(out: &mut impl Write, s: &Settings) -> std::io::Result<()> {
    let domains: Vec<String> = s.org.rules().iter().map(ToString::to_string).collect();
    let listen = |a: Option<std::net::SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
    writeln!(out, "{}: OK", s.source_name)?;
    writeln!(out, "  organization domains: {}", domains.join(", "))?;
    writeln!(out, "  data directory: {}", s.data_dir.display())?;
    writeln!(
        out,
        "  SMTP: {} (implicit TLS: {})",
        listen(s.smtp.listen),
        listen(s.smtp.tls_listen)
    )?;
    writeln!(
        out,
        "  journal addresses: {}",
        s.smtp.journal_addresses.join(", ")
    )?;
    writeln!(
        out,
        "  IMAP: {} (implicit TLS: {})",
        listen(s.imap.listen),
        listen(s.imap.tls_listen)
    )?;
    writeln!(
        out,
        "  HTTP: {} (HTTPS: {}); links: {}",
        listen(s.http.listen),
        listen(s.http.tls_listen),
        s.http.base_url
    )?;
    let remember = if s.logins.remember.is_zero() {
        "never".to_owned()
    } else {
        humantime::format_duration(s.logins.remember).to_string()
    };
    writeln!(out, "  verified logins remembered: {remember}")?;
    writeln!(
        out,
        "  transparency log: origin {}/mailjournal/<uidvalidity>, a checkpoint at least every {}",
        s.transparency.name,
        humantime::format_duration(s.transparency.checkpoint_interval)
    )?;
    writeln!(out, "  pull sources: {}", s.pull.len())?;
    writeln!(out, "  logging: {}", s.logging)
}
