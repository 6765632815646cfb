//! The administrative commands (`list`, `show`, `stats`, `verify`, `ingest`, `logging`,
//! `user …`), written once and run in one of two places:
//!
//! - in the CLI process itself, when no gateway holds the archive;
//! - inside the running gateway, through its admin socket (`DATA_DIR/admin.sock`), when one
//!   does. Only one process ever opens the archive, so two can never corrupt it.
//!
//! The socket protocol: the client sends one JSON [`Request`] line; the server answers with
//! frames (`o` standard output, `e` standard error, `x` exit status), each a tag byte, a
//! big-endian u32 length and the bytes.

pub mod socket;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::{self, Account, Archive, Filter, Record, Role, StableId};
use crate::classify::Direction;
use crate::clock::{self, Clock};
use crate::config::{Logging, Settings};
use crate::directory::{self, Directory};
use crate::ingest::{self, Ingestor, Policy, bulk};
use crate::runtime::LoggingSwitch;
use crate::sources;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Archive(#[from] archive::Error),
    #[error("{0}")]
    Ingest(#[from] ingest::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Export(#[from] crate::export::Error),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Which messages `list` and `export` take, shared by the command line and the admin socket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
pub struct FilterArgs {
    /// inbound, outbound, internal or external.
    #[arg(long)]
    pub direction: Option<Direction>,
    /// On or after this date (2026-11-01) or time (RFC 3339).
    #[arg(long, value_parser = clock::parse_date)]
    pub since: Option<i64>,
    /// Before this date or time.
    #[arg(long, value_parser = clock::parse_date)]
    pub until: Option<i64>,
    /// Messages this address sent or received.
    #[arg(long)]
    pub address: Option<String>,
    /// Quarantined junk instead.
    #[arg(long)]
    pub junk: bool,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl FilterArgs {
    /// The archive's filter (the address normalized).
    pub fn filter(&self) -> Result<Filter, Error> {
        let address = match &self.address {
            Some(a) => Some(
                crate::address::normalize(a)
                    .ok_or_else(|| Error::Usage(format!("{a:?} is not an e-mail address")))?,
            ),
            None => None,
        };
        Ok(Filter {
            direction: self.direction,
            since: self.since,
            until: self.until,
            address,
            junk: self.junk,
            limit: self.limit,
        })
    }
}

/// The arguments of `list`, shared by the command line and the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: FilterArgs,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Print a header row first (set by the CLI when its standard output is a terminal).
    #[arg(skip)]
    #[serde(default)]
    pub header: bool,
}

/// The arguments of `export`.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: FilterArgs,
    /// eml (a directory of .eml files), mbox (one file) or maildir.
    #[arg(long, default_value = "eml")]
    pub format: crate::export::Format,
    /// Where to write: a directory (eml, maildir) or a file (mbox). An absolute path when
    /// it comes over the admin socket.
    pub dest: PathBuf,
    /// Also write each message's inclusion proof in the transparency log, with its signed
    /// checkpoint, to DEST.proofs/ID.json (an evidence bundle `verify-proof` checks).
    #[arg(long)]
    #[serde(default)]
    pub with_proofs: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command, as the CLI parsed it. Its `Debug` form is [`Request::describe`]: what a log
/// may show (the kind and the target), never a password hash or other argument.
#[derive(Clone, Serialize, Deserialize)]
pub enum Request {
    Ingest {
        paths: Vec<PathBuf>,
        json: bool,
    },
    List(ListArgs),
    /// Write messages out byte for byte (eml, mbox, Maildir).
    Export(ExportArgs),
    Show {
        id: String,
        meta: bool,
        /// Copy N (1: the first copy, the default).
        #[serde(default)]
        copy: Option<u32>,
    },
    Stats {
        json: bool,
    },
    Verify {
        repair: bool,
    },
    /// Show (`None`) or set the logging switch of the running gateway.
    Logging {
        state: Option<Logging>,
    },
    UserAdd {
        name: String,
        /// Hashed by the client: a password never travels, not even over the socket.
        password_hash: String,
        roles: Vec<Role>,
        /// The salesperson (code) of a `salesperson` account.
        salesperson: Option<String>,
    },
    /// Let an account read another salesperson's mail (or stop it).
    UserGrant {
        name: String,
        salesperson: String,
        revoke: bool,
    },
    UserRemove {
        name: String,
    },
    UserList,
    /// Import salespeople and/or contacts from CSV files.
    DirectoryImport {
        salespeople: Option<PathBuf>,
        contacts: Option<PathBuf>,
        json: bool,
    },
    /// Match every logged message against the directory again.
    DirectoryRematch,
    /// Check the whole setup before going live.
    Validate,
    /// The running gateway's state: logging switch and pull sources.
    Status {
        json: bool,
    },
    /// A signed, expiring permalink for a message.
    Link {
        id: String,
        ttl_seconds: Option<u64>,
    },
    /// The interaction log.
    Log(LogArgs),
    /// Turn an entry into a sales opportunity.
    OpportunityAdd {
        entry: u64,
        description: String,
    },
    /// A contact's opportunities.
    OpportunityList {
        contact: String,
        json: bool,
    },
    /// The transparency log's verifier key.
    LogKey,
    /// The latest signed checkpoint of the transparency log (signed now if it grew).
    LogCheckpoint,
    /// A message's inclusion proof (JSON).
    Prove {
        id: String,
    },
    /// A consistency proof between two tree sizes (JSON).
    LogConsistency {
        from: u64,
        to: Option<u64>,
    },
    /// Engagement figures.
    Engagement(EngagementArgs),
    /// Recompute every engagement figure from the archive.
    EngagementRebuild,
}

impl Request {
    /// The command's name, as typed on the command line.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ingest { .. } => "ingest",
            Request::List(_) => "list",
            Request::Export(_) => "export",
            Request::Show { .. } => "show",
            Request::Stats { .. } => "stats",
            Request::Verify { .. } => "verify",
            Request::Logging { .. } => "logging",
            Request::UserAdd { .. } => "user add",
            Request::UserGrant { .. } => "user grant",
            Request::UserRemove { .. } => "user remove",
            Request::UserList => "user list",
            Request::DirectoryImport { .. } => "directory import",
            Request::DirectoryRematch => "directory rematch",
            Request::Validate => "validate",
            Request::Status { .. } => "status",
            Request::Link { .. } => "link",
            Request::Log(_) => "log",
            Request::OpportunityAdd { .. } => "opportunity add",
            Request::OpportunityList { .. } => "opportunity list",
            Request::LogKey => "log-key",
            Request::LogCheckpoint => "log-checkpoint",
            Request::Prove { .. } => "prove",
            Request::LogConsistency { .. } => "log-consistency",
            Request::Engagement(_) => "engagement",
            Request::EngagementRebuild => "engagement rebuild",
        }
    }

    /// What the command acts on (an account, a message), if it names one; never a secret.
    pub fn target(&self) -> Option<String> {
        match self {
            Request::UserAdd { name, .. }
            | Request::UserGrant { name, .. }
            | Request::UserRemove { name } => Some(name.clone()),
            Request::Show { id, .. } | Request::Link { id, .. } | Request::Prove { id } => {
                Some(id.clone())
            }
            Request::OpportunityAdd { entry, .. } => Some(entry.to_string()),
            Request::OpportunityList { contact, .. } => Some(contact.clone()),
            Request::Logging { state } => state.map(|s| s.to_string()),
            _ => None,
        }
    }

    /// `kind target`, or `kind`: the form logs show.
    pub fn describe(&self) -> String {
        match self.target() {
            Some(t) => format!("{} {t}", self.kind()),
            None => self.kind().to_owned(),
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The arguments of `log`, shared by the command line and the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct LogArgs {
    /// Entries with this contact (number).
    #[arg(long)]
    pub contact: Option<String>,
    /// Entries with this salesperson (code).
    #[arg(long)]
    pub salesperson: Option<String>,
    /// inbound, outbound, internal or external.
    #[arg(long)]
    pub direction: Option<Direction>,
    /// Messages dated on or after this date (2026-11-01) or time (RFC 3339).
    #[arg(long, value_parser = clock::parse_date)]
    pub since: Option<i64>,
    /// Messages dated before this date or time.
    #[arg(long, value_parser = clock::parse_date)]
    pub until: Option<i64>,
    /// Entries numbered above this one (the next page).
    #[arg(long)]
    pub after: Option<u64>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Print a header row first (set by the CLI when its standard output is a terminal).
    #[arg(skip)]
    #[serde(default)]
    pub header: bool,
}

/// The arguments of `engagement`, shared by the command line and the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct EngagementArgs {
    /// Which figures (set from the CLI's positional argument).
    #[arg(skip = crate::engagement::report::View::Summary)]
    pub view: crate::engagement::report::View,
    /// One row per day, week (ISO) or month (UTC) of the messages' dates.
    #[arg(long)]
    pub period: Option<crate::engagement::Period>,
    /// Messages dated on or after this date (2026-11-01) or time (RFC 3339).
    #[arg(long, value_parser = clock::parse_date)]
    pub since: Option<i64>,
    /// Messages dated before this date or time.
    #[arg(long, value_parser = clock::parse_date)]
    pub until: Option<i64>,
    /// This contact's figures (number).
    #[arg(long)]
    pub contact: Option<String>,
    /// This salesperson's figures (code).
    #[arg(long)]
    pub salesperson: Option<String>,
    /// Inbound mail awaits us once this old (default: engagement.awaiting_after).
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub awaiting_after: Option<std::time::Duration>,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Print a header row first (set by the CLI when its standard output is a terminal).
    #[arg(skip)]
    #[serde(default)]
    pub header: bool,
}

/// What a command runs against.
pub struct Target<'a> {
    pub archive: &'a Arc<Archive>,
    pub settings: &'a Settings,
    /// The running gateway's pipeline, when there is one.
    pub ingestor: Option<&'a Ingestor>,
    /// The running gateway's logging switch, when there is one.
    pub logging: Option<&'a LoggingSwitch>,
    pub clock: &'a dyn Clock,
    /// Show progress bars (a local command on a terminal).
    pub progress: bool,
    /// The running gateway's pull sources, when there is one.
    pub pull: Option<&'a std::sync::Mutex<crate::pull::Sources>>,
}

/// Runs a command; returns the exit status. Problems the user should read go to `err`.
pub fn execute(
    request: Request,
    target: &Target<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Error> {
    match request {
        Request::Ingest { paths, json } => ingest(target, &paths, json, out, err),
        Request::List(ListArgs {
            filter,
            json,
            header,
        }) => {
            let filter = filter.filter()?;
            if header && !json {
                writeln!(
                    out,
                    "{:>7}  {:<20}  {:<9}  {:<30}  {:<24}  SUBJECT",
                    "UID", "DATE", "DIRECTION", "FROM", "ID"
                )?;
            }
            list(target.archive, &filter, json, out)
        }
        Request::Export(args) => export(target, &args, out),
        Request::Show { id, meta, copy } => show(target.archive, &id, meta, copy, out),
        Request::Stats { json } => stats(target.archive, json, out),
        Request::Verify { repair } => verify(target, repair, out),
        Request::Logging { state } => logging(target, state, out),
        Request::UserGrant {
            name,
            salesperson,
            revoke,
        } => {
            let Some(mut account) = target.archive.account(&name)? else {
                return Err(Error::Usage(format!("no account {name}")));
            };
            if !revoke
                && load_directory(target.archive)?
                    .salesperson_by_code(&salesperson)
                    .is_none()
            {
                return Err(Error::Usage(format!(
                    "no salesperson {salesperson} in the directory"
                )));
            }
            account.grants.retain(|g| *g != salesperson);
            if !revoke {
                account.grants.push(salesperson.clone());
            }
            target.archive.put_account(&account)?;
            let verb = if revoke {
                "may no longer read"
            } else {
                "may read"
            };
            writeln!(out, "{name} {verb} the mail of salesperson {salesperson}")?;
            Ok(0)
        }
        Request::UserAdd {
            name,
            password_hash,
            roles,
            salesperson,
        } => {
            crate::auth::check_name(&name).map_err(|e| Error::Usage(e.to_string()))?;
            if roles.is_empty() {
                return Err(Error::Usage("give the account at least one --role".into()));
            }
            let existed = target.archive.account(&name)?.is_some();
            if roles.contains(&Role::Salesperson) {
                let Some(code) = &salesperson else {
                    return Err(Error::Usage(
                        "a salesperson account needs --salesperson CODE".into(),
                    ));
                };
                if load_directory(target.archive)?
                    .salesperson_by_code(code)
                    .is_none()
                {
                    return Err(Error::Usage(format!(
                        "no salesperson {code} in the directory (import it first)"
                    )));
                }
            }
            let old = target.archive.account(&name)?;
            target.archive.put_account(&Account {
                name: name.clone(),
                password_hash,
                roles,
                created: target.clock.now(),
                salesperson,
                // A password change keeps what an administrator granted.
                grants: old.map(|a| a.grants).unwrap_or_default(),
            })?;
            let verb = if existed { "updated" } else { "added" };
            writeln!(out, "account {name} {verb}")?;
            Ok(0)
        }
        Request::UserRemove { name } => {
            if target.archive.remove_account(&name)? {
                writeln!(out, "account {name} removed")?;
                Ok(0)
            } else {
                writeln!(err, "no account {name}")?;
                Ok(1)
            }
        }
        Request::DirectoryImport {
            salespeople,
            contacts,
            json,
        } => directory_import(target, salespeople, contacts, json, out, err),
        Request::DirectoryRematch => {
            let state = target
                .logging
                .map_or(target.settings.logging, LoggingSwitch::get);
            if state != Logging::On {
                return Err(Error::Usage(format!(
                    "logging is {state}: no new entries are made until it is on"
                )));
            }
            let directory = load_directory(target.archive)?;
            let (made, unmatched) = target.archive.rematch(&|record: &archive::Record| {
                pairs_of(
                    &directory,
                    record.meta.sender.as_deref(),
                    &record.meta.recipients,
                )
            })?;
            writeln!(
                out,
                "rematched: {made} new entries; {unmatched} logged messages match no salesperson-contact pair"
            )?;
            Ok(0)
        }
        Request::Validate => validate(target, out),
        Request::Engagement(args) => engagement(target, &args, out),
        Request::EngagementRebuild => {
            let state = target
                .logging
                .map_or(target.settings.logging, LoggingSwitch::get);
            if state != Logging::On {
                return Err(Error::Usage(format!(
                    "logging is {state}: engagement figures are kept as they are until it is on"
                )));
            }
            let directory = load_directory(target.archive)?;
            target.archive.set_engagement(&target.settings.engagement);
            let counted = target.archive.rebuild_engagement(
                &|record: &Record| {
                    pairs_of(
                        &directory,
                        record.meta.sender.as_deref(),
                        &record.meta.recipients,
                    )
                },
                &|archive: &Archive, record: &Record| match archive.raw(record) {
                    Ok(raw) => ingest::auto_of_raw(&raw, &record.meta),
                    Err(e) => {
                        tracing::warn!(uid = record.uid, error = %e, "unreadable: judged a person's");
                        (None, None)
                    }
                },
            )?;
            writeln!(
                out,
                "engagement rebuilt: {counted} messages between salespeople and contacts counted"
            )?;
            Ok(0)
        }
        Request::Status { json } => {
            let Some(pull) = target.pull else {
                writeln!(
                    out,
                    "the gateway is not running: no pull source is running ({} configured)",
                    target.settings.pull.len()
                )?;
                return Ok(0);
            };
            let statuses = pull.lock().unwrap_or_else(|e| e.into_inner()).statuses();
            let logging = target
                .logging
                .map_or(target.settings.logging, LoggingSwitch::get);
            if json {
                let v = serde_json::json!({ "logging": logging.to_string(), "pull": statuses });
                serde_json::to_writer_pretty(&mut *out, &v).map_err(std::io::Error::other)?;
                writeln!(out)?;
            } else {
                writeln!(out, "logging: {logging}")?;
                if statuses.is_empty() {
                    writeln!(out, "pull sources: none configured")?;
                }
                for s in statuses {
                    writeln!(out, "{}", s.render())?;
                }
            }
            Ok(0)
        }
        Request::Link { id, ttl_seconds } => {
            let settings = &target.settings.http;
            if settings.base_url.is_empty() {
                return Err(Error::Usage(
                    "no HTTP listener and no http.base_url: links would lead nowhere".into(),
                ));
            }
            let record = find(target.archive, &id)?;
            let ttl = ttl_seconds.unwrap_or(settings.link_ttl.as_secs());
            let expires_at = target
                .clock
                .now()
                .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            let tokens = crate::http::Tokens::load(&target.settings.data_dir)
                .map_err(|e| Error::Usage(e.to_string()))?;
            let stable: StableId = record.id.parse().map_err(Error::Usage)?;
            let token = tokens.issue(&stable, expires_at);
            writeln!(
                out,
                "{}",
                crate::http::link(&settings.base_url, &stable, &token)
            )?;
            writeln!(err, "valid until {}", clock::rfc3339(expires_at))?;
            Ok(0)
        }
        Request::Log(args) => {
            if args.contact.is_some() || args.salesperson.is_some() {
                let directory = load_directory(target.archive)?;
                if let Some(c) = &args.contact
                    && directory.contact_by_number(c).is_none()
                {
                    return Err(Error::Usage(format!("no contact {c} in the directory")));
                }
                if let Some(c) = &args.salesperson
                    && directory.salesperson_by_code(c).is_none()
                {
                    return Err(Error::Usage(format!("no salesperson {c} in the directory")));
                }
            }
            if args.header && !args.json {
                writeln!(
                    out,
                    "{:>6}  {:<20}  {:<9}  {:<11}  {:<10}  {:<24}  SUBJECT",
                    "ENTRY", "DATE", "DIRECTION", "SALESPERSON", "CONTACT", "ID"
                )?;
            }
            let filter = archive::EntryFilter {
                contact: args.contact,
                salesperson: args.salesperson,
                direction: args.direction,
                since: args.since,
                until: args.until,
                after: args.after,
                limit: args.limit,
            };
            for e in target.archive.entries(&filter)? {
                if args.json {
                    // Dates in RFC 3339, as `list --json` shows them.
                    let mut value = serde_json::to_value(&e).map_err(std::io::Error::other)?;
                    value["date"] = clock::rfc3339(e.date).into();
                    serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{:>6}  {}  {:<9}  {:<11}  {:<10}  {}  {}",
                        e.no,
                        clock::rfc3339(e.date),
                        e.direction.as_str(),
                        e.salesperson,
                        e.contact,
                        e.id,
                        e.subject.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(0)
        }
        Request::OpportunityAdd { entry, description } => {
            if description.trim().is_empty() {
                return Err(Error::Usage("give the opportunity a description".into()));
            }
            match target
                .archive
                .add_opportunity(entry, description.trim(), target.clock.now())?
            {
                Some(o) => {
                    writeln!(
                        out,
                        "opportunity {} for contact {} (salesperson {}), message {}",
                        o.no, o.contact, o.salesperson, o.message
                    )?;
                    Ok(0)
                }
                None => Err(Error::Usage(format!("no entry {entry} in the log"))),
            }
        }
        Request::LogKey => {
            writeln!(out, "{}", target.archive.tlog_verifier_key()?)?;
            Ok(0)
        }
        Request::LogCheckpoint => {
            let (note, _) = target.archive.checkpoint_log()?;
            out.write_all(note.as_bytes())?;
            Ok(0)
        }
        Request::Prove { id } => {
            let record = find(target.archive, &id)?;
            let proof = target.archive.prove(record.uid)?.ok_or_else(|| {
                Error::Usage(format!(
                    "message {id} was archived before the transparency log began: no proof"
                ))
            })?;
            serde_json::to_writer_pretty(&mut *out, &proof).map_err(std::io::Error::other)?;
            writeln!(out)?;
            Ok(0)
        }
        Request::LogConsistency { from, to } => {
            let proof = target.archive.prove_consistency(from, to)?.ok_or_else(|| {
                Error::Usage(
                    "want 1 <= FROM <= TO <= the tree size of the latest checkpoint".into(),
                )
            })?;
            serde_json::to_writer_pretty(&mut *out, &proof).map_err(std::io::Error::other)?;
            writeln!(out)?;
            Ok(0)
        }
        Request::OpportunityList { contact, json } => {
            for o in target.archive.opportunities(&contact)? {
                if json {
                    let mut value = serde_json::to_value(&o).map_err(std::io::Error::other)?;
                    value["created"] = clock::rfc3339(o.created).into();
                    serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{:>5}  {}  entry {}  {}  {}  {}",
                        o.no,
                        clock::rfc3339(o.created),
                        o.entry,
                        o.salesperson,
                        o.message,
                        o.description
                    )?;
                }
            }
            Ok(0)
        }
        Request::UserList => {
            for a in target.archive.accounts()? {
                let roles: Vec<String> = a
                    .roles
                    .iter()
                    .map(|r| format!("{r:?}").to_lowercase())
                    .collect();
                match &a.salesperson {
                    Some(code) => {
                        writeln!(out, "{}\t{}\tsalesperson {code}", a.name, roles.join(","))?
                    }
                    None => writeln!(out, "{}\t{}", a.name, roles.join(","))?,
                }
            }
            Ok(0)
        }
    }
}

fn ingest(
    target: &Target<'_>,
    paths: &[PathBuf],
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Error> {
    let (files, scan_errors) = sources::scan(paths);
    // Through the running gateway's pipeline when there is one (so its group commits and
    // policy apply), else through a pipeline of our own.
    let local = match target.ingestor {
        Some(_) => None,
        None => Some(start_pipeline(target.archive, target.settings)?),
    };
    let ingestor = match (&local, target.ingestor) {
        (Some((i, _)), _) | (None, Some(i)) => i,
        (None, None) => return Err(Error::Usage("no ingest pipeline".into())),
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = if target.progress {
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
    let mut summary = bulk::ingest_files(ingestor, &files, target.clock, |done, s| {
        bar.set_position(done);
        bar.set_message(format!("{} messages", s.messages));
    });
    bar.finish_and_clear();
    if let Some((ingestor, handle)) = local {
        drop(ingestor);
        let _ = handle.join();
    }
    summary
        .errors
        .splice(0..0, scan_errors.iter().map(ToString::to_string));
    if json {
        serde_json::to_writer(&mut *out, &summary).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        for e in &summary.errors {
            writeln!(err, "error: {e}")?;
        }
        writeln!(
            out,
            "{} {}: {} stored, {} duplicate, {} junk quarantined, {} junk dropped, {} unparsed or malformed (stored and flagged), {} errors",
            summary.messages,
            if summary.messages == 1 {
                "message"
            } else {
                "messages"
            },
            summary.stored,
            summary.duplicates,
            summary.junk,
            summary.junk_dropped,
            summary.unparsed,
            summary.errors.len()
        )?;
    }
    Ok(if summary.errors.is_empty() { 0 } else { 1 })
}

fn list(archive: &Archive, filter: &Filter, json: bool, out: &mut dyn Write) -> Result<i32, Error> {
    let records = archive.list(filter)?;
    let copies = if json {
        archive.copies_of(&records)?
    } else {
        Vec::new()
    };
    for (i, r) in records.iter().enumerate() {
        if json {
            let copies = copies.get(i).map_or(&[][..], Vec::as_slice);
            serde_json::to_writer(&mut *out, &r.view(copies)).map_err(std::io::Error::other)?;
            writeln!(out)?;
        } else {
            let m = &r.meta;
            let from = m.from.as_ref().map_or("-", |f| f.address.as_str());
            writeln!(
                out,
                "{:>7}  {}  {:<9}  {:<30}  {}  {}",
                r.uid,
                clock::rfc3339(m.date),
                m.direction.as_str(),
                from,
                r.id,
                m.subject.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(0)
}

fn export(target: &Target<'_>, args: &ExportArgs, out: &mut dyn Write) -> Result<i32, Error> {
    use crate::export::{Exporter, Item, Written};
    let filter = args.filter.filter()?;
    // What a resumed export must share with the one it finishes.
    let arguments =
        serde_json::to_string(&(args.format, &args.filter)).map_err(std::io::Error::other)?;
    let records = target.archive.list(&filter)?;
    let mut exporter = Exporter::open(args.format, &args.dest, &arguments)?;
    let bar = if target.progress {
        let bar = indicatif::ProgressBar::new(records.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} messages [{bar:30}] {msg} ({eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut exported, mut already, mut bytes) = (0u64, 0u64, 0u64);
    let proofs_dir = args
        .with_proofs
        .then(|| crate::export::proofs_dir(&args.dest));
    let (mut proved, mut unproved) = (0u64, 0u64);
    let copies = target.archive.copies_of(&records)?;
    for (record, copies) in records.iter().zip(copies) {
        if let Some(dir) = &proofs_dir {
            match target.archive.prove(record.uid)? {
                Some(proof) => {
                    let json = serde_json::to_vec_pretty(&proof).map_err(std::io::Error::other)?;
                    crate::export::write_evidence(dir, &format!("{}.json", record.id), &json)?;
                    proved += 1;
                }
                // Archived before the transparency log began.
                None => unproved += 1,
            }
        }
        // Every kept copy, the first as the record has it.
        for copy in copies {
            let raw = if copy.n <= 1 {
                target.archive.raw(record)?
            } else {
                match target.archive.copy_raw(record.uid, copy.n)? {
                    Some(raw) => raw,
                    None => continue,
                }
            };
            let item = Item {
                id: &record.id,
                uid: record.uid,
                copy: copy.n,
                received_at: copy.received_at,
                sender: record.meta.sender.as_deref(),
                raw: &raw,
            };
            match exporter.write(&item)? {
                Written::New => {
                    exported += 1;
                    bytes += raw.len() as u64;
                }
                Written::AlreadyThere => already += 1,
            }
        }
        bar.inc(1);
        bar.set_message(bytesize(bytes));
    }
    let unterminated = exporter.finish()?;
    bar.finish_and_clear();
    if args.json {
        let v = serde_json::json!({
            "format": args.format,
            "dest": args.dest,
            "exported": exported,
            "already_there": already,
            "bytes": bytes,
            "without_final_line_break": unterminated,
            "proofs": proofs_dir.as_ref().map(|d| serde_json::json!({
                "dir": d, "written": proved, "before_the_log": unproved,
            })),
        });
        serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "exported {exported} messages ({}) to {} as {}; {already} were there already",
            bytesize(bytes),
            args.dest.display(),
            args.format
        )?;
        if let Some(dir) = &proofs_dir {
            writeln!(
                out,
                "{proved} inclusion proofs (each with its signed checkpoint) in {}{}",
                dir.display(),
                if unproved > 0 {
                    format!(
                        "; {unproved} messages were archived before the transparency log began and have none"
                    )
                } else {
                    String::new()
                }
            )?;
        }
        if unterminated > 0 {
            writeln!(
                out,
                "{unterminated} of them did not end with a line break and got one in the mbox                  (an mbox cannot hold that; --format eml or maildir keep it exactly)"
            )?;
        }
    }
    Ok(0)
}

/// A message by stable id or UID.
pub fn find(archive: &Archive, key: &str) -> Result<Record, Error> {
    let record = if let Ok(uid) = key.parse::<u32>() {
        archive.get(uid)?
    } else {
        let id: StableId = key.parse().map_err(Error::Usage)?;
        archive.get_by_id(&id)?
    };
    record.ok_or_else(|| Error::Usage(format!("no message {key} in the archive")))
}

fn show(
    archive: &Archive,
    key: &str,
    meta: bool,
    copy: Option<u32>,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let record = find(archive, key)?;
    if meta {
        let copies = archive.copies(record.uid)?;
        serde_json::to_writer_pretty(&mut *out, &record.view(&copies))
            .map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else if let Some(n) = copy.filter(|&n| n != 1) {
        let Some(raw) = archive.copy_raw(record.uid, n)? else {
            let kept = archive.copies(record.uid)?.len();
            return Err(Error::Usage(format!(
                "message {key} has no copy {n}: {kept} kept (numbered from 1)"
            )));
        };
        out.write_all(&raw)?;
    } else {
        out.write_all(&archive.raw(&record)?)?;
    }
    Ok(0)
}

fn bytesize(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

fn stats(archive: &Archive, json: bool, out: &mut dyn Write) -> Result<i32, Error> {
    let s = archive.stats()?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &s).map_err(std::io::Error::other)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(out, "archive:        {}", archive.dir().display())?;
    writeln!(out, "messages:       {}", s.messages)?;
    writeln!(
        out,
        "  inbound {}, outbound {}, internal {}, external {}, junk in quarantine {}",
        s.inbound, s.outbound, s.internal, s.external, s.junk_quarantined_now
    )?;
    writeln!(out, "later copies:   {}", s.later_copies)?;
    writeln!(out, "uidvalidity:    {}", s.uidvalidity)?;
    writeln!(out, "next uid:       {}", s.next_uid)?;
    writeln!(
        out,
        "size:           {} raw, {} stored, {} on disk",
        bytesize(s.raw_bytes),
        bytesize(s.stored_bytes),
        bytesize(s.disk_bytes)
    )?;
    for (name, n) in &s.counters {
        writeln!(out, "{:<15} {n}", format!("{name}:"))?;
    }
    Ok(0)
}

fn verify(target: &Target<'_>, repair: bool, out: &mut dyn Write) -> Result<i32, Error> {
    let bar = if target.progress {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = target.archive.verify(repair, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for p in &report.problems {
        writeln!(out, "problem: {p}")?;
    }
    for o in &report.orphans {
        let verb = if repair {
            "removed"
        } else {
            "orphan (harmless; --repair removes it)"
        };
        writeln!(out, "{verb}: {}", o.display())?;
    }
    writeln!(
        out,
        "verified {} messages: {} problems, {} orphan files, {} log frames",
        report.records,
        report.problems.len(),
        report.orphans.len(),
        report.frames_checked
    )?;
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

/// `engagement`: the figures as a table (or JSON lines), as an admin sees them.
fn engagement(
    target: &Target<'_>,
    args: &EngagementArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    use crate::engagement::report::{self, Rows, View, Visibility};
    let directory = load_directory(target.archive)?;
    if let Some(c) = &args.contact
        && directory.contact_by_number(c).is_none()
    {
        return Err(Error::Usage(format!("no contact {c} in the directory")));
    }
    if let Some(s) = &args.salesperson
        && directory.salesperson_by_code(s).is_none()
    {
        return Err(Error::Usage(format!("no salesperson {s} in the directory")));
    }
    let query = report::Query {
        view: args.view,
        period: args.period,
        since: args.since,
        until: args.until,
        contact: args.contact.clone(),
        salesperson: args.salesperson.clone(),
        awaiting_after: args
            .awaiting_after
            .map_or(target.settings.engagement.awaiting_after, |d| {
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
            }),
        now: target.clock.now(),
        offset: 0,
        limit: args.limit,
    };
    let report = report::build(target.archive, &directory, &Visibility::All, &query)?;
    let json_line = |out: &mut dyn Write, v: &dyn erased::Json| -> Result<(), Error> {
        v.write(out)?;
        writeln!(out)?;
        Ok(())
    };
    match &report.rows {
        Rows::Awaiting(rows) => {
            if args.header && !args.json {
                writeln!(
                    out,
                    "{:<20}  {:>6}  {:<11}  {:<10}  {:<24}  SUBJECT",
                    "DATE", "HOURS", "SALESPERSON", "CONTACT", "ID"
                )?;
            }
            for w in rows {
                if args.json {
                    json_line(out, w)?;
                } else {
                    writeln!(
                        out,
                        "{}  {:>6}  {:<11}  {:<10}  {:<24}  {}",
                        w.date,
                        w.age_hours,
                        w.salespeople.join(","),
                        w.contacts.join(","),
                        w.id,
                        w.subject.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        Rows::Figures(rows) => {
            let what = match args.view {
                View::Salespeople => "SALESPERSON",
                View::Contacts => "CONTACT",
                View::Companies => "COMPANY",
                _ => "",
            };
            if args.header && !args.json {
                writeln!(
                    out,
                    "{:<10}  {:<24}  {:>6}  {:>6}  {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>5}  {:>5}  {:>5}  {:>5}  LAST",
                    "PERIOD",
                    what,
                    "SENT",
                    "RECV",
                    "REPLIED",
                    "RATE",
                    "THEM-MED",
                    "THEM-P90",
                    "US-MED",
                    "US-P90",
                    "AW-US",
                    "AW-TH",
                    "AUTO",
                    "BOUNCE"
                )?;
            }
            for r in rows {
                if args.json {
                    json_line(out, r)?;
                    continue;
                }
                let f = &r.figures;
                let who = match args.view {
                    View::Salespeople => r.salesperson.clone(),
                    View::Contacts => r.contact.clone(),
                    View::Companies => r.company.clone(),
                    _ => None,
                };
                let who = match (who, &r.name) {
                    (Some(w), Some(n)) if args.view != View::Companies => format!("{w} {n}"),
                    (Some(w), _) => w,
                    (None, _) => String::new(),
                };
                let rate = f
                    .reply_rate
                    .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0));
                writeln!(
                    out,
                    "{:<10}  {:<24}  {:>6}  {:>6}  {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>5}  {:>5}  {:>5}  {:>5}  {}",
                    r.period.as_deref().unwrap_or("all"),
                    who,
                    f.sent,
                    f.received,
                    f.replied,
                    rate,
                    duration(f.their_reply_median_secs),
                    duration(f.their_reply_p90_secs),
                    duration(f.our_reply_median_secs),
                    duration(f.our_reply_p90_secs),
                    f.awaiting_us,
                    f.awaiting_them,
                    f.auto_replies,
                    f.bounces,
                    f.last_interaction.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(0)
}

/// A response time for a table: `3h25m`, `2d4h`, `45s`; `-` when there is none.
fn duration(secs: Option<u32>) -> String {
    let Some(s) = secs else {
        return "-".to_owned();
    };
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// Writing any serializable value as one JSON line.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(out, self).map_err(std::io::Error::other)
        }
    }
}

fn logging(target: &Target<'_>, state: Option<Logging>, out: &mut dyn Write) -> Result<i32, Error> {
    let Some(switch) = target.logging else {
        return Err(Error::Usage(
            "the gateway is not running: set ingest.logging in the configuration instead".into(),
        ));
    };
    match state {
        None => writeln!(out, "logging is {}", switch.get())?,
        Some(state) => {
            let old = switch.set(state);
            writeln!(
                out,
                "logging is {state} (was {old}); a restart or SIGHUP reload applies the configuration again"
            )?;
        }
    }
    Ok(0)
}

/// Starts the ingest pipeline on `archive`, logging entries with its stored directory.
pub fn start_pipeline(
    archive: &Arc<Archive>,
    settings: &Settings,
) -> Result<(Ingestor, std::thread::JoinHandle<()>), Error> {
    let matcher = crate::ingest::Matcher::default();
    matcher.set(matcher_for(load_directory(archive)?));
    archive.set_engagement(&settings.engagement);
    Ok(Ingestor::start_with(
        Arc::clone(archive),
        Policy::from_settings(settings),
        matcher,
    )?)
}

/// Files what the archive's log holds beyond its database (after an unclean stop of the
/// gateway), with the same policy and directory the gateway would use. Commands that open
/// the archive themselves call this first, so they see every acknowledged message.
pub fn recover(archive: &Arc<Archive>, settings: &Settings) -> Result<(), Error> {
    if archive.needs_recovery() {
        let (ingestor, handle) = start_pipeline(archive, settings)?;
        drop(ingestor);
        let _ = handle.join();
    }
    Ok(())
}

/// The directory as stored in the archive.
pub fn load_directory(archive: &Archive) -> Result<Directory, Error> {
    let (salespeople, contacts) = archive.load_directory()?;
    Ok(Directory::new(salespeople, contacts))
}

fn pairs_of(
    directory: &Directory,
    sender: Option<&str>,
    recipients: &crate::ingest::recipients::Recipients,
) -> Vec<(String, String)> {
    directory
        .pairs(sender, recipients)
        .into_iter()
        .map(|p| (p.salesperson, p.contact))
        .collect()
}

/// The interaction-log matcher for a directory.
pub fn matcher_for(directory: Directory) -> Arc<crate::ingest::PairFn> {
    Arc::new(move |sender, recipients| pairs_of(&directory, sender, recipients))
}

fn directory_import(
    target: &Target<'_>,
    salespeople: Option<PathBuf>,
    contacts: Option<PathBuf>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Error> {
    if salespeople.is_none() && contacts.is_none() {
        return Err(Error::Usage(
            "give --salespeople FILE, --contacts FILE, or both".into(),
        ));
    }
    let open = |path: &PathBuf| {
        std::fs::File::open(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
    };
    let files = u64::from(salespeople.is_some()) + u64::from(contacts.is_some());
    let bar = if target.progress {
        let bar = indicatif::ProgressBar::new(files + 1);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:20}]") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut problems = Vec::new();
    let mut people = Vec::new();
    bar.set_message("reading salespeople");
    if let Some(path) = &salespeople {
        let (p, mut found) = directory::parse_salespeople(open(path)?, &path.display().to_string());
        people = p;
        problems.append(&mut found);
    }
    let mut firms = Vec::new();
    if salespeople.is_some() {
        bar.inc(1);
    }
    bar.set_message("reading contacts");
    if let Some(path) = &contacts {
        let (c, mut found) = directory::parse_contacts(open(path)?, &path.display().to_string());
        firms = c;
        problems.append(&mut found);
    }
    bar.inc(1);
    // Notes (which column was taken for which) reject nothing.
    let (notes, problems): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| p.note);
    bar.set_message("storing the directory");
    let counts = target.archive.put_directory(&people, &firms)?;
    bar.finish_and_clear();
    let directory = load_directory(target.archive)?;
    let warnings = directory::validate(
        directory.salespeople(),
        directory.contacts(),
        &target.settings.org,
    );
    if let Some(ingestor) = target.ingestor {
        // The running pipeline logs with the new directory from its next commit on.
        ingestor.matcher().set(matcher_for(directory));
    }
    if json {
        let summary = serde_json::json!({
            "imported": counts,
            "notes": notes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut *out, &summary).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        for n in &notes {
            writeln!(err, "note: {n}")?;
        }
        for p in &problems {
            writeln!(err, "not imported: {p}")?;
        }
        for w in &warnings {
            writeln!(err, "warning: {w}")?;
        }
        writeln!(
            out,
            "salespeople: {} added, {} updated; contacts: {} added, {} updated; {} lines not imported; {} warnings",
            counts.salespeople_added,
            counts.salespeople_updated,
            counts.contacts_added,
            counts.contacts_updated,
            problems.len(),
            warnings.len()
        )?;
        writeln!(
            out,
            "run `mailjournal directory rematch` to log mail already archived"
        )?;
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

fn validate(target: &Target<'_>, out: &mut dyn Write) -> Result<i32, Error> {
    let mut problems = Vec::new();
    let settings = target.settings;
    writeln!(out, "configuration: {} (valid)", settings.source_name)?;
    match crate::net::tls::load(&settings.tls, &settings.data_dir, &settings.smtp.hostname) {
        Ok(tls) => writeln!(
            out,
            "TLS certificate: {} (SHA-256 {})",
            tls.source, tls.fingerprint
        )?,
        Err(e) => problems.push(format!("TLS certificate: {e}")),
    }
    let directory = load_directory(target.archive)?;
    writeln!(
        out,
        "directory: {} salespeople, {} contacts",
        directory.salespeople().len(),
        directory.contacts().len()
    )?;
    if directory.is_empty() {
        problems.push("directory: empty; import it with `mailjournal directory import`".to_owned());
    }
    for p in directory::validate(directory.salespeople(), directory.contacts(), &settings.org) {
        problems.push(format!("directory: {p}"));
    }
    for p in loose_permissions(&settings.data_dir) {
        problems.push(format!("permissions: {p}"));
    }
    for source in &settings.pull {
        match crate::pull::check_blocking(source) {
            Ok(line) => writeln!(out, "pull source {}: {line}", source.name)?,
            Err(e) => problems.push(format!("pull source {}: {e}", source.name)),
        }
    }
    for p in &problems {
        writeln!(out, "problem: {p}")?;
    }
    writeln!(out, "{} problem(s)", problems.len())?;
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// Whether `data_dir` holds an archive (commands other than `serve` and `ingest` never
/// create one).
pub fn archive_exists(data_dir: &Path) -> bool {
    data_dir.join("archive.redb").is_file()
}

/// What the archive keeps in its data directory that group or others may read, write or
/// enter: the directory itself, `archive.redb`, `packs/`, `objects/`, `tls/`, `link-key`
/// and `admin.sock` (everything mailjournal makes is owner-only; files of one's own in the
/// directory are left alone).
fn loose_permissions(data_dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(path: &Path, found: &mut Vec<String>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let fix = if meta.is_dir() { 700 } else { 600 };
            found.push(format!(
                "{} is mode {mode:04o}: group or others have access (chmod {fix} it)",
                path.display()
            ));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                walk(&p, found);
            }
        }
    }
    let mut found = Vec::new();
    if let Ok(meta) = std::fs::metadata(data_dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push(format!(
                "{} is mode {mode:04o}: group or others have access (chmod 700 it)",
                data_dir.display()
            ));
        }
    }
    for name in [
        "archive.redb",
        "packs",
        "objects",
        "tls",
        "link-key",
        "admin.sock",
    ] {
        walk(&data_dir.join(name), &mut found);
    }
    found
}
