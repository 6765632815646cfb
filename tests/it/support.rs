//! Shared test harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailjournal::archive::Archive;
use mailjournal::config::Settings;
use mailjournal::ingest::{Ingestor, Policy};

/// The organization every test uses.
pub const TEST_CONFIG: &str = r#"
[organization]
domains = ["contoso.com", "*.contoso.eu"]

[junk]
action = "quarantine"
"#;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures")
}

pub fn settings(data_dir: &Path) -> Settings {
    let mut s = Settings::from_toml(TEST_CONFIG, "test", |_| None).expect("test config is valid");
    s.data_dir = data_dir.to_path_buf();
    s
}

pub fn policy() -> Policy {
    Policy::from_settings(&settings(Path::new("unused")))
}

/// A fresh archive in a temporary directory, with an ingestor on it.
pub struct TestArchive {
    pub dir: tempfile::TempDir,
    pub ingestor: Option<Ingestor>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl TestArchive {
    pub fn new() -> Self {
        Self::with_policy(policy())
    }

    pub fn with_policy(policy: Policy) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = Arc::new(Archive::open(dir.path()).expect("open archive"));
        let (ingestor, committer) = Ingestor::start(archive, policy).expect("start ingestor");
        Self {
            dir,
            ingestor: Some(ingestor),
            committer: Some(committer),
        }
    }

    pub fn ingestor(&self) -> &Ingestor {
        self.ingestor.as_ref().expect("running")
    }

    pub fn archive(&self) -> &Arc<Archive> {
        self.ingestor().archive()
    }

    /// Stops the committer and releases the archive (so another process may open it).
    pub fn close(self) -> tempfile::TempDir {
        let TestArchive {
            dir,
            ingestor,
            committer,
        } = self;
        drop(ingestor);
        if let Some(c) = committer {
            c.join().expect("committer thread");
        }
        dir
    }
}

/// The real binary with `args`, on `data_dir` with the test configuration.
fn command(args: &[&str], data_dir: &Path) -> std::process::Command {
    let config = data_dir.join("test-config.toml");
    if !config.exists() {
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(&config, TEST_CONFIG).expect("write config");
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailjournal"));
    command
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("MAILJOURNAL_DATA_DIR", data_dir)
        .env_remove("MAILJOURNAL_ORG_DOMAINS");
    command
}

/// Runs the real binary.
pub fn mailjournal(args: &[&str], data_dir: &Path) -> std::process::Output {
    command(args, data_dir).output().expect("run mailjournal")
}

/// Runs the real binary with `input` on its standard input (a password, say).
pub fn mailjournal_with_input(
    args: &[&str],
    data_dir: &Path,
    input: &[u8],
) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command(args, data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailjournal");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write standard input");
    child.wait_with_output().expect("run mailjournal")
}

/// Settings for an in-process server: every listener on a free loopback port.
pub fn server_settings(data_dir: &Path) -> Settings {
    let mut s = settings(data_dir);
    s.smtp.listen = Some("127.0.0.1:0".parse().expect("addr"));
    s.smtp.tls_listen = Some("127.0.0.1:0".parse().expect("addr"));
    s.imap.listen = Some("127.0.0.1:0".parse().expect("addr"));
    s.imap.tls_listen = Some("127.0.0.1:0".parse().expect("addr"));
    s.http.listen = Some("127.0.0.1:0".parse().expect("addr"));
    s.smtp.journal_addresses = vec!["journal@contoso.com".into()];
    s.smtp.hostname = "mx.test".into();
    s.smtp.shutdown_grace = std::time::Duration::from_secs(5);
    s
}

/// A certificate for `localhost` made in memory, written as PEM files into `dir`; returns
/// the settings that use it and the certificate PEM (for clients to trust).
pub fn test_certificate(dir: &Path) -> (mailjournal::config::TlsSettings, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("generate certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    // Owner-only, as the gateway requires of a private key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    (
        mailjournal::config::TlsSettings::Files { cert, key },
        generated.cert.pem(),
    )
}

/// An account with one role and a password (hashed here).
pub fn account(
    name: &str,
    password: &str,
    role: mailjournal::archive::Role,
    salesperson: Option<&str>,
) -> mailjournal::archive::Account {
    mailjournal::archive::Account {
        name: name.into(),
        password_hash: mailjournal::auth::hash_password(password).expect("hash"),
        roles: vec![role],
        created: 0,
        salesperson: salesperson.map(str::to_owned),
        grants: Vec::new(),
    }
}

/// `n` pseudo-random bytes (xorshift, fixed seed): stands for already compressed data
/// (a PDF, a JPEG), the same on every run.
pub fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// splitmix64: a deterministic generator, so that a seed rebuilds a test's input byte for
/// byte (the crash and property tests).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// In `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + usize::try_from(self.below((hi - lo) as u64)).expect("small number")
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).expect("index");
            items.swap(i, j);
        }
    }
}
