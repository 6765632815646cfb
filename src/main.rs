//! The `mailjournal` command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use mailjournal::archive::{Archive, Filter, Record, StableId};
use mailjournal::classify::Direction;
use mailjournal::clock::{self, SystemClock};
use mailjournal::config::Settings;
use mailjournal::ingest::{Ingestor, Policy, bulk};
use mailjournal::server::Server;
use mailjournal::{address, sources};

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
    List {
        /// inbound, outbound, internal or external.
        #[arg(long)]
        direction: Option<Direction>,
        /// On or after this date (2026-11-01) or time (RFC 3339).
        #[arg(long, value_parser = clock::parse_date)]
        since: Option<i64>,
        /// Before this date or time.
        #[arg(long, value_parser = clock::parse_date)]
        until: Option<i64>,
        /// Messages this address sent or received.
        #[arg(long)]
        address: Option<String>,
        /// List quarantined junk instead.
        #[arg(long)]
        junk: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write a message's original bytes to standard output.
    Show {
        /// The message's stable id, or its UID.
        id: String,
        /// Print its metadata as JSON instead.
        #[arg(long)]
        meta: bool,
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
        Err(e) => {
            eprintln!("mailjournal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = || Settings::load(cli.config.as_deref());
    match cli.command {
        Command::CheckConfig { file } => check_config(file.as_ref().or(cli.config.as_ref())),
        Command::Serve => serve(cli.config.as_deref()),
        Command::Ingest { paths, json } => ingest(&load()?, &paths, json),
        Command::List {
            direction,
            since,
            until,
            address,
            junk,
            limit,
            json,
        } => {
            let address = match address {
                Some(a) => Some(
                    address::normalize(&a)
                        .with_context(|| format!("{a:?} is not an e-mail address"))?,
                ),
                None => None,
            };
            let filter = Filter {
                direction,
                since,
                until,
                address,
                junk,
                limit,
            };
            list(&open(&load()?)?, &filter, json)
        }
        Command::Show { id, meta } => show(&open(&load()?)?, &id, meta),
        Command::Stats { json } => stats(&open(&load()?)?, json),
        Command::Verify { repair } => verify(&open(&load()?)?, repair),
    }
}

fn serve(config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
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
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match Settings::load(config) {
                    Ok(new) => {
                        server.logging.set(new.logging);
                        tracing::info!(logging = %new.logging, "configuration reloaded");
                    }
                    Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                },
            }
        }
        tracing::info!("shutting down");
        server.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn open(settings: &Settings) -> anyhow::Result<Archive> {
    Ok(Archive::open(&settings.data_dir)?)
}

fn check_config(file: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    match Settings::load(file.map(PathBuf::as_path)) {
        Ok(s) => {
            let domains: Vec<String> = s.org.rules().iter().map(ToString::to_string).collect();
            println!("{}: OK", s.source_name);
            println!("  organization domains: {}", domains.join(", "));
            println!("  data directory: {}", s.data_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn ingest(settings: &Settings, paths: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let archive = Arc::new(open(settings)?);
    let (files, scan_errors) = sources::scan(paths);
    let (ingestor, committer) = Ingestor::start(archive, Policy::from_settings(settings))?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {msg} ({eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut summary = bulk::ingest_files(&ingestor, &files, &SystemClock, |done, s| {
        bar.set_position(done);
        bar.set_message(format!("{} messages", s.messages));
    });
    bar.finish_and_clear();
    drop(ingestor);
    let _ = committer.join();
    summary
        .errors
        .splice(0..0, scan_errors.iter().map(ToString::to_string));
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        for e in &summary.errors {
            eprintln!("error: {e}");
        }
        println!(
            "{} messages: {} stored, {} duplicate, {} junk quarantined, {} junk dropped, {} unparsed or malformed (stored and flagged), {} errors",
            summary.messages,
            summary.stored,
            summary.duplicates,
            summary.junk,
            summary.junk_dropped,
            summary.unparsed,
            summary.errors.len()
        );
    }
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn list(archive: &Archive, filter: &Filter, json: bool) -> anyhow::Result<ExitCode> {
    let records = archive.list(filter)?;
    let mut out = std::io::stdout().lock();
    for r in &records {
        if json {
            serde_json::to_writer(&mut out, &r.view())?;
            writeln!(out)?;
        } else {
            let m = &r.meta;
            let from = m.from.as_ref().map_or("-", |f| f.address.as_str());
            writeln!(
                out,
                "{:>7}  {}  {:<8}  {:<30}  {}  {}",
                r.uid,
                clock::rfc3339(m.date),
                m.direction.as_str(),
                from,
                r.id,
                m.subject.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find(archive: &Archive, key: &str) -> anyhow::Result<Record> {
    let record = if let Ok(uid) = key.parse::<u32>() {
        archive.get(uid)?
    } else {
        let id: StableId = key.parse().map_err(anyhow::Error::msg)?;
        archive.get_by_id(&id)?
    };
    record.with_context(|| format!("no message {key} in the archive"))
}

fn show(archive: &Archive, key: &str, meta: bool) -> anyhow::Result<ExitCode> {
    let record = find(archive, key)?;
    let mut out = std::io::stdout().lock();
    if meta {
        serde_json::to_writer_pretty(&mut out, &record.view())?;
        writeln!(out)?;
    } else {
        out.write_all(&archive.raw(&record)?)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn stats(archive: &Archive, json: bool) -> anyhow::Result<ExitCode> {
    let s = archive.stats()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("archive:        {}", archive.dir().display());
    println!("messages:       {}", s.messages);
    println!(
        "  inbound {}, outbound {}, internal {}, external {}, junk in quarantine {}",
        s.inbound, s.outbound, s.internal, s.external, s.junk_quarantined_now
    );
    println!("uidvalidity:    {}", s.uidvalidity);
    println!("next uid:       {}", s.next_uid);
    println!(
        "size:           {} raw, {} compressed, {} on disk",
        bytesize(s.raw_bytes),
        bytesize(s.stored_bytes),
        bytesize(s.disk_bytes)
    );
    for (name, n) in &s.counters {
        println!("{:<15} {n}", format!("{name}:"));
    }
    Ok(ExitCode::SUCCESS)
}

fn bytesize(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

fn verify(archive: &Archive, repair: bool) -> anyhow::Result<ExitCode> {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = archive.verify(repair, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for p in &report.problems {
        println!("problem: {p}");
    }
    for o in &report.orphans {
        let verb = if repair {
            "removed"
        } else {
            "orphan (harmless; --repair removes it)"
        };
        println!("{verb}: {}", o.display());
    }
    println!(
        "verified {} messages: {} problems, {} orphan files",
        report.records,
        report.problems.len(),
        report.orphans.len()
    );
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{} problem(s) found", report.problems.len())
    }
}
