//! Configuration: a TOML file (the embedded default or `--config FILE`), overridden by
//! environment variables, validated into [`Settings`] with every problem named by its key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use bytesize::ByteSize;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::address::{DomainRule, OrgDomains};
use crate::ingest::junk::JunkRules;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../config/mailjournal.toml");

/// The name under which the embedded default is reported.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded config/mailjournal.toml>";

/// Environment variables that override the file, with the key each one replaces.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("MAILJOURNAL_DATA_DIR", "storage.data_dir"),
    ("MAILJOURNAL_ORG_DOMAINS", "organization.domains"),
    ("MAILJOURNAL_SMTP_LISTEN", "smtp.listen"),
    ("MAILJOURNAL_SMTPS_LISTEN", "smtp.tls_listen"),
    ("MAILJOURNAL_JOURNAL_ADDRESSES", "smtp.journal_addresses"),
    ("MAILJOURNAL_IMAP_LISTEN", "imap.listen"),
    ("MAILJOURNAL_IMAPS_LISTEN", "imap.tls_listen"),
    ("MAILJOURNAL_HTTP_LISTEN", "http.listen"),
    ("MAILJOURNAL_HTTPS_LISTEN", "http.tls_listen"),
];

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key (`junk.action`), or the environment variable, the problem is about.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// A configuration that cannot be used, with every problem found in it.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    /// The file (or the embedded default) the problems are in.
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem(s):",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            // A reason of several lines (a syntax error's excerpt and caret) stays
            // aligned under its first line.
            write!(f, "\n  {}", p.to_string().replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

/// What to do with mail flagged as spam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JunkAction {
    Quarantine,
    Drop,
}

/// The organization-wide logging switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Logging {
    /// Accept and archive.
    On,
    /// Refuse with a temporary error (451) so mail waits in the sender's queue.
    Paused,
    /// Accept and discard: nothing is archived.
    Off,
}

impl std::str::FromStr for Logging {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "on" => Ok(Logging::On),
            "paused" | "pause" => Ok(Logging::Paused),
            "off" => Ok(Logging::Off),
            _ => Err(format!("{s:?} is not one of on, paused, off")),
        }
    }
}

impl fmt::Display for Logging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Logging::On => "on",
            Logging::Paused => "paused",
            Logging::Off => "off",
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OrganizationSection {
    domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct StorageSection {
    data_dir: PathBuf,
    compression: crate::archive::Codec,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            compression: crate::archive::Codec::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct IngestSection {
    max_message_size: ByteSize,
    logging: Logging,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            max_message_size: ByteSize::mib(64),
            logging: Logging::On,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct EngagementSection {
    #[serde(with = "humantime_serde")]
    subject_window: Duration,
    #[serde(with = "humantime_serde")]
    awaiting_after: Duration,
}

impl Default for EngagementSection {
    fn default() -> Self {
        Self {
            subject_window: Duration::from_secs(
                crate::engagement::DEFAULT_SUBJECT_WINDOW.unsigned_abs(),
            ),
            awaiting_after: Duration::from_secs(
                crate::engagement::DEFAULT_AWAITING_AFTER.unsigned_abs(),
            ),
        }
    }
}

/// How engagement is measured (`[engagement]`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngagementSettings {
    /// How far back a reply subject (`Re: …`) without Message-IDs finds what it answers.
    pub subject_window: i64,
    /// How old an unanswered inbound message is before it awaits us.
    pub awaiting_after: i64,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct SmtpSection {
    listen: String,
    tls_listen: String,
    hostname: String,
    journal_addresses: Vec<String>,
    allow_networks: Vec<String>,
    auth: bool,
    max_recipients: usize,
    #[serde(with = "humantime_serde")]
    command_timeout: Duration,
    #[serde(with = "humantime_serde")]
    data_timeout: Duration,
    #[serde(with = "humantime_serde")]
    shutdown_grace: Duration,
    max_connections: usize,
    max_connections_per_minute: u32,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            tls_listen: String::new(),
            hostname: "localhost".into(),
            journal_addresses: vec!["journal@example.com".into()],
            allow_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            auth: true,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 500,
            max_connections_per_minute: 600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct ImapSection {
    listen: String,
    tls_listen: String,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    max_connections: usize,
    max_connections_per_minute: u32,
    trusted_networks: Vec<String>,
}

impl Default for ImapSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:1143".into(),
            tls_listen: "127.0.0.1:1993".into(),
            idle_timeout: Duration::from_secs(30 * 60),
            max_connections: 2000,
            max_connections_per_minute: 600,
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

/// The IMAP view, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSettings {
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    /// A client silent this long is logged out (RFC 3501: at least 30 minutes).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_minute: u32,
    /// Sources (a webmail, a proxy, the office network) with no per-minute or per-source
    /// limit, which may use the fifth of the slots kept from everyone else.
    pub trusted_networks: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct HttpSection {
    listen: String,
    tls_listen: String,
    base_url: String,
    #[serde(with = "humantime_serde")]
    link_ttl: Duration,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            tls_listen: String::new(),
            base_url: String::new(),
            link_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The HTTP API and permalinks, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Plain HTTP: loopback addresses only (passwords and mail never cross a network in
    /// the clear).
    pub listen: Option<SocketAddr>,
    /// HTTPS, with the certificate of `[tls]`.
    pub tls_listen: Option<SocketAddr>,
    /// The address links are made with (`https://journal.contoso.com`), without a
    /// trailing slash.
    pub base_url: String,
    /// How long a signed link stays valid by default.
    pub link_ttl: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct LoginsSection {
    #[serde(with = "humantime_serde")]
    remember: Duration,
}

impl Default for LoginsSection {
    fn default() -> Self {
        Self {
            remember: crate::auth::REMEMBER,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct TransparencySection {
    name: String,
    #[serde(with = "humantime_serde")]
    checkpoint_interval: Duration,
    witness_command: Vec<String>,
}

impl Default for TransparencySection {
    fn default() -> Self {
        Self {
            name: String::new(),
            checkpoint_interval: Duration::from_secs(60),
            witness_command: Vec::new(),
        }
    }
}

/// The transparency log (`[transparency]`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransparencySettings {
    /// The first part of the log's origin and key name, `<name>/mailjournal/<uidvalidity>`
    /// (default: `smtp.hostname`).
    pub name: String,
    /// While new leaves arrive, a checkpoint is signed at least this often.
    pub checkpoint_interval: Duration,
    /// A program and its arguments that gets each new checkpoint on its standard input
    /// (empty: none).
    pub witness_command: Vec<String>,
}

/// The longest `logins.remember` accepted.
const MAX_REMEMBER: Duration = Duration::from_secs(3600);

/// Password checks (IMAP, SMTP AUTH, HTTP), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// How long a verified login is remembered for the same source, name and password, so
    /// that a client logging in again and again costs one argon2 check. Zero: never.
    pub remember: Duration,
}

/// How a pull source connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullTls {
    /// TLS from the first byte (IMAPS, usually port 993).
    Implicit,
    /// Plain, then STARTTLS before logging in (usually port 143).
    Starttls,
    /// No TLS: allowed only for a loopback host.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullSection {
    name: String,
    host: String,
    port: Option<u16>,
    #[serde(default = "default_pull_tls")]
    tls: PullTls,
    account: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_command: Option<String>,
    #[serde(default)]
    xoauth2_token_file: Option<PathBuf>,
    #[serde(default)]
    xoauth2_token_command: Option<String>,
    #[serde(default = "default_queue_folder")]
    queue_folder: String,
    #[serde(default = "default_storage_folder")]
    storage_folder: String,
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "default_true")]
    idle: bool,
}

fn default_pull_tls() -> PullTls {
    PullTls::Implicit
}
fn default_queue_folder() -> String {
    "INBOX".into()
}
fn default_storage_folder() -> String {
    "Archive".into()
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}

/// Where a pull source's secret comes from: read afresh at every login, so a token can be
/// renewed without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullSecret {
    Password(String),
    PasswordFile(PathBuf),
    PasswordCommand(String),
    Xoauth2File(PathBuf),
    Xoauth2Command(String),
}

/// One shared mailbox to pull journaled mail from, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: PullTls,
    pub account: String,
    pub secret: PullSecret,
    pub queue_folder: String,
    pub storage_folder: String,
    pub poll_interval: Duration,
    pub idle: bool,
}

fn validate_pull(list: Vec<PullSection>, problems: &mut Vec<Problem>) -> Vec<PullSettings> {
    let mut out: Vec<PullSettings> = Vec::new();
    for (i, p) in list.into_iter().enumerate() {
        let key = |field: &str| format!("pull[{i}].{field}");
        let mut problem = |field: &str, reason: String| {
            problems.push(Problem {
                key: key(field),
                reason,
            })
        };
        if p.name.trim().is_empty() {
            problem("name", "must not be empty".into());
        } else if out.iter().any(|o| o.name == p.name) {
            problem("name", format!("{:?} is used by two sources", p.name));
        }
        if p.host.trim().is_empty() {
            problem("host", "must not be empty".into());
        }
        let loopback = p.host == "localhost"
            || p.host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if p.tls == PullTls::None && !loopback {
            problem(
                "tls",
                format!(
                    "\"none\" is allowed only for a loopback host, not {:?}: the password would cross the network in the clear",
                    p.host
                ),
            );
        }
        let secrets: Vec<PullSecret> = [
            p.password.map(PullSecret::Password),
            p.password_file.map(PullSecret::PasswordFile),
            p.password_command.map(PullSecret::PasswordCommand),
            p.xoauth2_token_file.map(PullSecret::Xoauth2File),
            p.xoauth2_token_command.map(PullSecret::Xoauth2Command),
        ]
        .into_iter()
        .flatten()
        .collect();
        let secret = match secrets.len() {
            1 => secrets.into_iter().next(),
            0 => {
                problem(
                    "password",
                    "give one of password, password_file, password_command, xoauth2_token_file, xoauth2_token_command".into(),
                );
                None
            }
            _ => {
                problem("password", "give only one way to get the secret".into());
                None
            }
        };
        if p.queue_folder.trim().is_empty() || p.storage_folder.trim().is_empty() {
            problem("queue_folder", "folders must not be empty".into());
        } else if p.queue_folder == p.storage_folder {
            problem(
                "storage_folder",
                "must differ from queue_folder: processed mail is moved there".into(),
            );
        }
        if p.poll_interval < Duration::from_secs(1) {
            problem("poll_interval", "at least one second".into());
        }
        let port = p.port.unwrap_or(match p.tls {
            PullTls::Implicit => 993,
            PullTls::Starttls | PullTls::None => 143,
        });
        if let Some(secret) = secret {
            out.push(PullSettings {
                name: p.name,
                host: p.host,
                port,
                tls: p.tls,
                account: p.account,
                secret,
                queue_folder: p.queue_folder,
                storage_folder: p.storage_folder,
                poll_interval: p.poll_interval,
                idle: p.idle,
            });
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// TLS certificate source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// A PEM certificate chain and private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate generated into the data directory on first start.
    SelfSigned,
}

/// The SMTP receiver, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// Normalized journal addresses: the only recipients accepted.
    pub journal_addresses: Vec<String>,
    /// Sources that may send without authenticating.
    pub allow_networks: Vec<IpNet>,
    /// Whether SMTP AUTH is offered (for sources outside `allow_networks`).
    pub auth: bool,
    pub max_recipients: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_connections_per_minute: u32,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct JunkSection {
    action: JunkAction,
    spam_flag: bool,
    spam_status: bool,
    scl: bool,
    scl_threshold: i64,
}

impl Default for JunkSection {
    fn default() -> Self {
        Self {
            action: JunkAction::Quarantine,
            spam_flag: true,
            spam_status: true,
            scl: true,
            scl_threshold: 5,
        }
    }
}

/// Junk handling, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JunkSettings {
    pub action: JunkAction,
    pub rules: JunkRules,
}

/// Ingest limits, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    pub max_message_size: u64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it came from (a path or the embedded default), for messages.
    pub source_name: String,
    pub org: OrgDomains,
    pub data_dir: PathBuf,
    /// How new messages are compressed (`storage.compression`).
    pub compression: crate::archive::Codec,
    pub ingest: IngestSettings,
    pub junk: JunkSettings,
    pub logging: Logging,
    pub smtp: SmtpSettings,
    pub imap: ImapSettings,
    pub http: HttpSettings,
    pub logins: LoginSettings,
    pub transparency: TransparencySettings,
    pub pull: Vec<PullSettings>,
    pub tls: TlsSettings,
    pub engagement: EngagementSettings,
}

/// The smallest `ingest.max_message_size` accepted: anything smaller refuses ordinary mail.
const MIN_MESSAGE_SIZE: u64 = 64 * 1024;
/// The largest `ingest.max_message_size` accepted: one message is held in memory while stored.
const MAX_MESSAGE_SIZE: u64 = 1024 * 1024 * 1024;

impl Settings {
    /// Loads `path`, or the embedded default when `None`, with the process environment applied.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let env = |name: &str| std::env::var(name).ok();
        match path {
            None => Self::from_toml(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, env),
            Some(path) => {
                let source_name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| Error {
                    source_name: source_name.clone(),
                    problems: vec![Problem {
                        key: "(file)".into(),
                        reason: format!("cannot read it: {e}"),
                    }],
                })?;
                Self::from_toml(&text, &source_name, env)
            }
        }
    }

    /// Parses and validates `text`; `env` looks up the override variables.
    pub fn from_toml(
        text: &str,
        source_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut problems = Vec::new();
        let fail = |problems| Error {
            source_name: source_name.to_owned(),
            problems,
        };
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    key: "(syntax)".into(),
                    // Kept on several lines: toml's excerpt of the line with a caret
                    // under the spot.
                    reason: e.to_string().trim_end().to_owned(),
                });
                return Err(fail(problems));
            }
        };
        let organization: OrganizationSection = section(&mut table, "organization", &mut problems);
        let storage: StorageSection = section(&mut table, "storage", &mut problems);
        let ingest: IngestSection = section(&mut table, "ingest", &mut problems);
        let junk: JunkSection = section(&mut table, "junk", &mut problems);
        let smtp: SmtpSection = section(&mut table, "smtp", &mut problems);
        let tls: TlsSection = section(&mut table, "tls", &mut problems);
        let imap: ImapSection = section(&mut table, "imap", &mut problems);
        let http: HttpSection = section(&mut table, "http", &mut problems);
        let logins: LoginsSection = section(&mut table, "logins", &mut problems);
        let transparency: TransparencySection = section(&mut table, "transparency", &mut problems);
        let engagement: EngagementSection = section(&mut table, "engagement", &mut problems);
        let pull: Vec<PullSection> = match table.remove("pull") {
            None => Vec::new(),
            Some(value) => match Vec::<PullSection>::deserialize(value) {
                Ok(list) => list,
                Err(e) => {
                    problems.push(Problem {
                        key: "pull".into(),
                        reason: e
                            .to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" "),
                    });
                    Vec::new()
                }
            },
        };
        let pull = validate_pull(pull, &mut problems);
        for unknown in table.keys() {
            problems.push(Problem {
                key: unknown.clone(),
                reason: "unknown section or key".into(),
            });
        }

        // Environment overrides.
        let mut domains = (organization.domains, "organization.domains");
        if let Some(value) = env("MAILJOURNAL_ORG_DOMAINS") {
            domains = (split_list(&value), "MAILJOURNAL_ORG_DOMAINS");
        }
        let mut data_dir = (storage.data_dir, "storage.data_dir");
        if let Some(value) = env("MAILJOURNAL_DATA_DIR") {
            data_dir = (PathBuf::from(value), "MAILJOURNAL_DATA_DIR");
        }

        let smtp_listen = env("MAILJOURNAL_SMTP_LISTEN")
            .map(|v| (v, "MAILJOURNAL_SMTP_LISTEN"))
            .unwrap_or((smtp.listen.clone(), "smtp.listen"));
        let smtps_listen = env("MAILJOURNAL_SMTPS_LISTEN")
            .map(|v| (v, "MAILJOURNAL_SMTPS_LISTEN"))
            .unwrap_or((smtp.tls_listen.clone(), "smtp.tls_listen"));
        let journal_addresses = match env("MAILJOURNAL_JOURNAL_ADDRESSES") {
            Some(v) => (split_list(&v), "MAILJOURNAL_JOURNAL_ADDRESSES"),
            None => (smtp.journal_addresses.clone(), "smtp.journal_addresses"),
        };

        // Semantic checks.
        let mut rules = Vec::new();
        if domains.0.is_empty() {
            problems.push(Problem {
                key: domains.1.into(),
                reason: "at least one organization domain is needed to tell inbound from outbound"
                    .into(),
            });
        }
        for d in &domains.0 {
            match DomainRule::parse(d) {
                Ok(rule) if rules.contains(&rule) => problems.push(Problem {
                    key: domains.1.into(),
                    reason: format!("{d:?} is listed twice"),
                }),
                Ok(rule) => rules.push(rule),
                Err(reason) => problems.push(Problem {
                    key: domains.1.into(),
                    reason,
                }),
            }
        }
        if data_dir.0.as_os_str().is_empty() {
            problems.push(Problem {
                key: data_dir.1.into(),
                reason: "must not be empty".into(),
            });
        }
        let max = ingest.max_message_size.as_u64();
        if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&max) {
            problems.push(Problem {
                key: "ingest.max_message_size".into(),
                reason: format!(
                    "{} is outside the sane range {} to {}",
                    ingest.max_message_size,
                    ByteSize(MIN_MESSAGE_SIZE),
                    ByteSize(MAX_MESSAGE_SIZE)
                ),
            });
        }
        if !(0..=9).contains(&junk.scl_threshold) {
            problems.push(Problem {
                key: "junk.scl_threshold".into(),
                reason: format!(
                    "{} is not a spam confidence level (0 to 9)",
                    junk.scl_threshold
                ),
            });
        }

        let imap_listen = env("MAILJOURNAL_IMAP_LISTEN")
            .map(|v| (v, "MAILJOURNAL_IMAP_LISTEN"))
            .unwrap_or((imap.listen.clone(), "imap.listen"));
        let imaps_listen = env("MAILJOURNAL_IMAPS_LISTEN")
            .map(|v| (v, "MAILJOURNAL_IMAPS_LISTEN"))
            .unwrap_or((imap.tls_listen.clone(), "imap.tls_listen"));
        if imap.idle_timeout < Duration::from_secs(30 * 60) {
            problems.push(Problem {
                key: "imap.idle_timeout".into(),
                reason: "RFC 3501 requires at least 30 minutes".into(),
            });
        }
        if !(1..=100_000).contains(&imap.max_connections) {
            problems.push(Problem {
                key: "imap.max_connections".into(),
                reason: format!("{} is outside 1 to 100000", imap.max_connections),
            });
        }
        if imap.max_connections_per_minute == 0 {
            problems.push(Problem {
                key: "imap.max_connections_per_minute".into(),
                reason: "must be at least 1".into(),
            });
        }
        let (trusted_networks, bad) = parse_networks(&imap.trusted_networks);
        for n in bad {
            problems.push(Problem {
                key: "imap.trusted_networks".into(),
                reason: format!("{n:?} is not a network (10.0.0.0/8) or an address"),
            });
        }
        let imap = ImapSettings {
            listen: listen_addr(&imap_listen, &mut problems),
            tls_listen: listen_addr(&imaps_listen, &mut problems),
            idle_timeout: imap.idle_timeout,
            max_connections: imap.max_connections,
            max_connections_per_minute: imap.max_connections_per_minute,
            trusted_networks,
        };
        let http_listen = env("MAILJOURNAL_HTTP_LISTEN")
            .map(|v| (v, "MAILJOURNAL_HTTP_LISTEN"))
            .unwrap_or((http.listen.clone(), "http.listen"));
        let https_listen = env("MAILJOURNAL_HTTPS_LISTEN")
            .map(|v| (v, "MAILJOURNAL_HTTPS_LISTEN"))
            .unwrap_or((http.tls_listen.clone(), "http.tls_listen"));
        let plain = listen_addr(&http_listen, &mut problems);
        if let Some(addr) = plain.filter(|a| !a.ip().is_loopback()) {
            problems.push(Problem {
                key: http_listen.1.into(),
                reason: format!(
                    "{addr} is not a loopback address: plain HTTP would carry passwords and mail in the clear; use http.tls_listen"
                ),
            });
        }
        let tls_addr = listen_addr(&https_listen, &mut problems);
        let base_url = if http.base_url.trim().is_empty() {
            match (tls_addr, plain) {
                (Some(a), _) => format!("https://{a}"),
                (None, Some(a)) => format!("http://{a}"),
                (None, None) => String::new(),
            }
        } else {
            http.base_url.trim().trim_end_matches('/').to_owned()
        };
        let scheme_ok = base_url.starts_with("http://") || base_url.starts_with("https://");
        if !(base_url.is_empty() || scheme_ok) {
            problems.push(Problem {
                key: "http.base_url".into(),
                reason: format!("{base_url:?} must start with https:// or http://"),
            });
        }
        if http.link_ttl < Duration::from_secs(60) {
            problems.push(Problem {
                key: "http.link_ttl".into(),
                reason: "at least a minute".into(),
            });
        }
        let http = HttpSettings {
            listen: plain,
            tls_listen: tls_addr,
            base_url,
            link_ttl: http.link_ttl,
        };
        if logins.remember > MAX_REMEMBER {
            problems.push(Problem {
                key: "logins.remember".into(),
                reason: "at most an hour (0 turns it off)".into(),
            });
        }
        let logins = LoginSettings {
            remember: logins.remember,
        };
        let interval = transparency.checkpoint_interval;
        if interval < Duration::from_secs(1) || interval > Duration::from_secs(24 * 3600) {
            problems.push(Problem {
                key: "transparency.checkpoint_interval".into(),
                reason: format!(
                    "{} is outside 1s to 24h",
                    humantime::format_duration(interval)
                ),
            });
        }
        let name_problem = (!transparency.name.is_empty()
            && !crate::tlog::note::valid_key_name(&transparency.name))
        .then(|| Problem {
            key: "transparency.name".into(),
            reason: "a name without spaces or '+' (such as journal.contoso.com)".into(),
        });
        problems.extend(name_problem);
        if transparency
            .witness_command
            .first()
            .is_some_and(|p| p.trim().is_empty())
        {
            problems.push(Problem {
                key: "transparency.witness_command".into(),
                reason: "the first element is the program to run".into(),
            });
        }
        let smtp = validate_smtp(
            smtp,
            smtp_listen,
            smtps_listen,
            journal_addresses,
            &mut problems,
        );
        let tls = match (tls.cert, tls.key) {
            (None, None) => TlsSettings::SelfSigned,
            (Some(cert), Some(key)) => TlsSettings::Files { cert, key },
            (Some(_), None) => {
                problems.push(Problem {
                    key: "tls.key".into(),
                    reason: "tls.cert is set, so tls.key (its private key) is needed too".into(),
                });
                TlsSettings::SelfSigned
            }
            (None, Some(_)) => {
                problems.push(Problem {
                    key: "tls.cert".into(),
                    reason: "tls.key is set, so tls.cert (its certificate chain) is needed too"
                        .into(),
                });
                TlsSettings::SelfSigned
            }
        };

        const YEAR: Duration = Duration::from_secs(366 * 86_400);
        if engagement.subject_window < Duration::from_secs(3600) || engagement.subject_window > YEAR
        {
            problems.push(Problem {
                key: "engagement.subject_window".into(),
                reason: format!(
                    "{} is outside 1h to 366d",
                    humantime::format_duration(engagement.subject_window)
                ),
            });
        }
        if engagement.awaiting_after > YEAR {
            problems.push(Problem {
                key: "engagement.awaiting_after".into(),
                reason: format!(
                    "{} is over 366d",
                    humantime::format_duration(engagement.awaiting_after)
                ),
            });
        }

        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let transparency = TransparencySettings {
            name: if transparency.name.is_empty() {
                smtp.hostname.clone()
            } else {
                transparency.name
            },
            checkpoint_interval: interval,
            witness_command: transparency.witness_command,
        };
        Ok(Settings {
            engagement: EngagementSettings {
                subject_window: engagement.subject_window.as_secs() as i64,
                awaiting_after: engagement.awaiting_after.as_secs() as i64,
            },
            source_name: source_name.to_owned(),
            org: OrgDomains::new(rules),
            data_dir: data_dir.0,
            compression: storage.compression,
            ingest: IngestSettings {
                max_message_size: max,
            },
            logging: ingest.logging,
            smtp,
            imap,
            http,
            logins,
            transparency,
            pull,
            tls,
            junk: JunkSettings {
                action: junk.action,
                rules: JunkRules {
                    spam_flag: junk.spam_flag,
                    spam_status: junk.spam_status,
                    scl_threshold: junk.scl.then_some(junk.scl_threshold as i32),
                },
            },
        })
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Networks (`10.0.0.0/8`) or single addresses; what is neither comes back apart.
fn parse_networks(list: &[String]) -> (Vec<IpNet>, Vec<&str>) {
    let mut networks = Vec::new();
    let mut bad = Vec::new();
    for n in list {
        let parsed = n
            .parse::<IpNet>()
            .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => networks.push(net),
            Err(_) => bad.push(n.as_str()),
        }
    }
    (networks, bad)
}

/// An optional listen address: empty means "no listener".
fn listen_addr(value: &(String, &str), problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    let text = value.0.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(Problem {
                key: value.1.into(),
                reason: format!(
                    "{text:?} is not an address:port such as 127.0.0.1:2525 or [::1]:2525"
                ),
            });
            None
        }
    }
}

fn validate_smtp(
    smtp: SmtpSection,
    listen: (String, &str),
    tls_listen: (String, &str),
    journal_addresses: (Vec<String>, &str),
    problems: &mut Vec<Problem>,
) -> SmtpSettings {
    let mut problem = |key: &str, reason: String| {
        problems.push(Problem {
            key: key.into(),
            reason,
        })
    };
    let mut addresses = Vec::new();
    for a in &journal_addresses.0 {
        match crate::address::normalize(a) {
            Some(n) if !addresses.contains(&n) => addresses.push(n),
            Some(_) => problem(journal_addresses.1, format!("{a:?} is listed twice")),
            None => problem(
                journal_addresses.1,
                format!("{a:?} is not an e-mail address"),
            ),
        }
    }
    if addresses.is_empty() {
        problem(
            journal_addresses.1,
            "at least one journal address is needed: it is what mail-flow rules copy to".into(),
        );
    }
    let (networks, bad) = parse_networks(&smtp.allow_networks);
    for n in bad {
        problem(
            "smtp.allow_networks",
            format!("{n:?} is not a network (10.0.0.0/8) or an address"),
        );
    }
    if smtp.hostname.trim().is_empty() || smtp.hostname.contains(char::is_whitespace) {
        problem(
            "smtp.hostname",
            format!("{:?} is not a host name", smtp.hostname),
        );
    }
    if !(1..=10_000).contains(&smtp.max_recipients) {
        problem(
            "smtp.max_recipients",
            format!("{} is outside 1 to 10000", smtp.max_recipients),
        );
    }
    if !(1..=100_000).contains(&smtp.max_connections) {
        problem(
            "smtp.max_connections",
            format!("{} is outside 1 to 100000", smtp.max_connections),
        );
    }
    if smtp.max_connections_per_minute == 0 {
        problem(
            "smtp.max_connections_per_minute",
            "must be at least 1".into(),
        );
    }
    for (key, d) in [
        ("smtp.command_timeout", smtp.command_timeout),
        ("smtp.data_timeout", smtp.data_timeout),
    ] {
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            problem(
                key,
                format!("{} is outside 1s to 1h", humantime::format_duration(d)),
            );
        }
    }
    SmtpSettings {
        listen: listen_addr(&listen, problems),
        tls_listen: listen_addr(&tls_listen, problems),
        hostname: smtp.hostname.trim().to_owned(),
        journal_addresses: addresses,
        allow_networks: networks,
        auth: smtp.auth,
        max_recipients: smtp.max_recipients,
        command_timeout: smtp.command_timeout,
        data_timeout: smtp.data_timeout,
        shutdown_grace: smtp.shutdown_grace,
        max_connections: smtp.max_connections,
        max_connections_per_minute: smtp.max_connections_per_minute,
    }
}

/// Deserializes one section of the file, recording its problems (unknown keys, wrong types)
/// under their full key. A key with a wrong value is reported, then left out so that its
/// default applies and the rest of the section is still checked.
fn section<T: DeserializeOwned + Default>(
    table: &mut toml::Table,
    name: &str,
    problems: &mut Vec<Problem>,
) -> T {
    let Some(value) = table.remove(name) else {
        return T::default();
    };
    let toml::Value::Table(mut entries) = value else {
        problems.push(Problem {
            key: name.into(),
            reason: format!("must be a table ([{name}]), not a {}", value.type_str()),
        });
        return T::default();
    };
    // Each pass removes the key it failed on, so this ends after at most one pass per key.
    loop {
        let mut unknown = Vec::new();
        let result: Result<T, _> =
            serde_ignored::deserialize(toml::Value::Table(entries.clone()), |path| {
                unknown.push(format!("{name}.{path}"));
            });
        match result {
            Ok(v) => {
                problems.extend(unknown.into_iter().map(|key| Problem {
                    key,
                    reason: "unknown key".into(),
                }));
                return v;
            }
            Err(e) => {
                let message = e.to_string();
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                // toml names the offending key as "... for key `x`" or "... in `x`".
                let bad_key = message
                    .rsplit_once(" for key `")
                    .or_else(|| message.rsplit_once(" in `"))
                    .map(|(reason, key)| (reason, key.trim_end_matches('`')))
                    .filter(|(_, key)| entries.contains_key(*key));
                match bad_key {
                    Some((reason, key)) => {
                        problems.push(Problem {
                            key: format!("{name}.{key}"),
                            reason: reason.to_owned(),
                        });
                        entries.remove(key);
                    }
                    None => {
                        problems.push(Problem {
                            key: name.to_owned(),
                            reason: message,
                        });
                        return T::default();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_pull_example_of_the_default_configuration_is_valid() {
        // Uncomment the [[pull]] example as an administrator would.
        let mut text = String::new();
        let mut example = false;
        for line in DEFAULT_CONFIG.lines() {
            example |= line == "# [[pull]]";
            match line.strip_prefix("# ") {
                Some(rest) if example && !rest.starts_with(' ') => {
                    text.push_str(rest);
                }
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        assert!(
            example,
            "the default configuration shows a [[pull]] example"
        );
        let s = Settings::from_toml(&text, "default", no_env).expect("valid example");
        assert_eq!(s.pull.len(), 1);
        assert_eq!(s.pull[0].name, "exchange");
        assert!(
            Settings::from_toml(DEFAULT_CONFIG, "default", no_env)
                .expect("valid default")
                .pull
                .is_empty(),
            "commented out"
        );
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = Settings::from_toml(DEFAULT_CONFIG, "default", no_env).expect("valid default");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.org.contains_domain("example.com"));
        assert!(s.org.contains_domain("eu.example.com"));
        assert_eq!(s.junk.action, JunkAction::Quarantine);
        assert_eq!(s.junk.rules.scl_threshold, Some(5));
        assert_eq!(s.compression, crate::archive::Codec::Lz4);
    }

    #[test]
    fn compression_is_lz4_or_zstd() {
        let s = Settings::from_toml(
            &DEFAULT_CONFIG.replace("compression = \"lz4\"", "compression = \"zstd\""),
            "t.toml",
            no_env,
        )
        .expect("valid");
        assert_eq!(s.compression, crate::archive::Codec::Zstd);
        let err = Settings::from_toml(
            "[organization]\ndomains = [\"example.com\"]\n[storage]\ncompression = \"gzip\"",
            "t.toml",
            no_env,
        )
        .expect_err("invalid");
        assert!(
            err.problems.iter().any(|p| p.key == "storage.compression"),
            "{err}"
        );
    }

    #[test]
    fn the_transparency_log_is_named_after_the_host_unless_told_and_checkpoints_are_bounded() {
        let default = Settings::from_toml(DEFAULT_CONFIG, "default", no_env).expect("valid");
        assert_eq!(default.transparency.name, default.smtp.hostname);
        assert_eq!(
            default.transparency.checkpoint_interval,
            Duration::from_secs(60)
        );
        let with = |name: &str, interval: &str| {
            Settings::from_toml(
                &DEFAULT_CONFIG
                    .replace("name = \"\"", &format!("name = {name:?}"))
                    .replace(
                        "checkpoint_interval = \"60s\"",
                        &format!("checkpoint_interval = {interval:?}"),
                    ),
                "t.toml",
                no_env,
            )
        };
        let s = with("journal.contoso.com", "5m").expect("valid");
        assert_eq!(s.transparency.name, "journal.contoso.com");
        assert_eq!(s.transparency.checkpoint_interval, Duration::from_secs(300));
        let err = with("two words", "0s").expect_err("invalid");
        for key in ["transparency.name", "transparency.checkpoint_interval"] {
            assert!(err.problems.iter().any(|p| p.key == key), "{key}: {err}");
        }
    }

    #[test]
    fn logins_are_remembered_for_a_bounded_time() {
        let default = Settings::from_toml(DEFAULT_CONFIG, "default", no_env).expect("valid");
        assert_eq!(default.logins.remember, Duration::from_secs(300));
        let with = |value: &str| {
            Settings::from_toml(
                &DEFAULT_CONFIG.replace("remember = \"5m\"", &format!("remember = {value:?}")),
                "t.toml",
                no_env,
            )
        };
        assert_eq!(with("0s").expect("off").logins.remember, Duration::ZERO);
        assert_eq!(
            with("90s").expect("valid").logins.remember,
            Duration::from_secs(90)
        );
        let err = with("2h").expect_err("too long");
        assert!(
            err.problems.iter().any(|p| p.key == "logins.remember"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |name: &str| match name {
            "MAILJOURNAL_DATA_DIR" => Some("/var/lib/mj".to_owned()),
            "MAILJOURNAL_ORG_DOMAINS" => Some("contoso.com, *.contoso.eu".to_owned()),
            _ => None,
        };
        let s = Settings::from_toml(DEFAULT_CONFIG, "default", env).expect("valid");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/mj"));
        assert!(s.org.contains_domain("contoso.com"));
        assert!(!s.org.contains_domain("sub.contoso.com"));
        assert!(s.org.contains_domain("sub.contoso.eu"));
        assert!(!s.org.contains_domain("example.com"));
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let text = r#"
            colour = "blue"
            [organization]
            domains = ["exa mple.com", "*.ok.com", "*.ok.com"]
            [ingest]
            max_message_size = "10 KiB"
            [junk]
            action = "shred"
            scl_threshold = 12
            typo = 1
            [imap]
            trusted_networks = ["10.0.0.0/8", "192.0.2.7", "the office"]
        "#;
        let err = Settings::from_toml(text, "test.toml", no_env).expect_err("invalid");
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "colour",
            "organization.domains",
            "ingest.max_message_size",
            "junk.typo",
            "junk.action",
            "imap.trusted_networks",
        ] {
            assert!(keys.contains(&want), "no problem for {want}: {err}");
        }
        assert_eq!(
            keys.iter()
                .filter(|k| **k == "organization.domains")
                .count(),
            2
        );
        assert!(err.to_string().starts_with("test.toml has"));
        assert!(
            err.to_string().contains("\"the office\" is not a network"),
            "{err}"
        );
    }

    #[test]
    fn imap_trusted_networks_default_to_loopback() {
        let trusted = |toml: &str| -> Vec<String> {
            let text = format!("[organization]\ndomains = [\"contoso.com\"]\n{toml}");
            let s = Settings::from_toml(&text, "test.toml", no_env).expect("valid");
            s.imap
                .trusted_networks
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(trusted(""), ["127.0.0.0/8", "::1/128"]);
        assert_eq!(
            trusted("[imap]\ntrusted_networks = [\"10.1.0.0/16\", \"192.0.2.7\"]\n"),
            ["10.1.0.0/16", "192.0.2.7/32"]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err =
            Settings::from_toml("[storage\ndata_dir = 1", "bad.toml", no_env).expect_err("invalid");
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].reason.contains("line 1"), "{err}");
        // The excerpt keeps its caret under the spot, each line indented alike.
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let quoted = lines
            .iter()
            .position(|l| l.ends_with("| [storage"))
            .expect("the line quoted");
        let caret = lines[quoted + 1];
        assert!(caret.trim_end().ends_with('^'), "{text}");
        let column = |l: &str| l.find('|').expect("gutter");
        assert_eq!(column(caret), column(lines[quoted]), "{text}");
        assert_eq!(
            caret.find('^'),
            Some(column(caret) + 2 + "[storage".len()),
            "{text}"
        );
    }

    #[test]
    fn empty_domain_list_is_refused() {
        let env = |name: &str| (name == "MAILJOURNAL_ORG_DOMAINS").then(|| " , ".to_owned());
        let err = Settings::from_toml(DEFAULT_CONFIG, "default", env).expect_err("invalid");
        assert_eq!(err.problems[0].key, "MAILJOURNAL_ORG_DOMAINS");
    }
}

#[cfg(test)]
mod pull_tests {
    use super::*;

    #[test]
    fn pull_sources_are_validated() {
        let text = r#"
            [organization]
            domains = ["contoso.com"]
            [[pull]]
            name = "exchange"
            host = "mail.contoso.com"
            account = "journal@contoso.com"
            password_file = "/etc/mailjournal/pull.secret"
            [[pull]]
            name = "local"
            host = "127.0.0.1"
            port = 10143
            tls = "none"
            account = "journal"
            password = "x"
            storage_folder = "Done"
            poll_interval = "5s"
            idle = false
        "#;
        let s = Settings::from_toml(text, "t", |_| None).expect("valid");
        assert_eq!(s.pull.len(), 2);
        assert_eq!(s.pull[0].port, 993);
        assert_eq!(s.pull[0].queue_folder, "INBOX");
        assert_eq!(s.pull[0].storage_folder, "Archive");
        assert_eq!(s.pull[1].tls, PullTls::None);

        let bad = r#"
            [organization]
            domains = ["contoso.com"]
            [[pull]]
            name = "x"
            host = "mail.contoso.com"
            tls = "none"
            account = "a"
            queue_folder = "INBOX"
            storage_folder = "INBOX"
        "#;
        let err = Settings::from_toml(bad, "t", |_| None).expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"pull[0].tls"), "{err}");
        assert!(keys.contains(&"pull[0].password"), "{err}");
        assert!(keys.contains(&"pull[0].storage_folder"), "{err}");
    }
}
