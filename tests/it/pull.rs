//! Pull mode against a real Dovecot (Debian's `dovecot-imapd`), started for each test on a
//! free loopback port with a throwaway configuration, user and Maildir: INBOX archived
//! byte-exact and moved to the storage folder, Junk never touched, a gateway killed in the
//! middle of a batch, IDLE, a wrong password, refused messages, `validate`, TLS. Without
//! Dovecot the tests skip and say how to install it; `MAILJOURNAL_REQUIRE_DOVECOT` (set by
//! `.ci/run`) turns a missing Dovecot into a failure.
//!
//! XOAUTH2 is checked against a scripted server: Dovecot would need an OAuth2 provider.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailjournal::archive::Archive;
use mailjournal::config::{Logging, PullSecret, PullSettings, PullTls};
use mailjournal::ingest::{Envelope, Ingestor, Policy};
use mailjournal::pull::{self, Options, PullClientTls, SharedStatus, SourceStatus};
use mailjournal::runtime::LoggingSwitch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{TestArchive, policy};

const USER: &str = "journal";
const PASSWORD: &str = "pull-s3cret";
const INSTALL: &str = "apt-get install -y dovecot-imapd";

// ---------------------------------------------------------------------------------------
// The Dovecot harness.

/// A throwaway Dovecot: its own configuration, base directory, log, passwd-file with one
/// user, and Maildir, on a free loopback port. Stopped when dropped.
struct Dovecot {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    child: Child,
    /// Who owns the Maildir (Dovecot refuses mail access as root).
    owner: (u32, u32),
}

/// `dovecot` from `MAILJOURNAL_DOVECOT` (a path), else from `PATH` or the sbin directories.
fn dovecot_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MAILJOURNAL_DOVECOT") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("dovecot"))
        .find(|p| p.is_file())
}

/// Dovecot, or `None` (with a message) when it is not installed and not required.
fn dovecot(test: &str) -> Option<Dovecot> {
    dovecot_with(test, None)
}

fn dovecot_with(test: &str, tls: Option<(&Path, &Path)>) -> Option<Dovecot> {
    dovecot_configured(test, tls, &[])
}

/// Dovecot that does not announce the capabilities in `without` (`MOVE`, `UIDPLUS`).
fn dovecot_configured(
    test: &str,
    tls: Option<(&Path, &Path)>,
    without: &[&str],
) -> Option<Dovecot> {
    let Some(binary) = dovecot_binary() else {
        assert!(
            std::env::var_os("MAILJOURNAL_REQUIRE_DOVECOT").is_none(),
            "Dovecot is not installed, and MAILJOURNAL_REQUIRE_DOVECOT is set: install \
             Debian's dovecot-imapd package ({INSTALL})"
        );
        eprintln!(
            "skipped {test}: Dovecot is not installed (Debian package dovecot-imapd: {INSTALL}; \
             set MAILJOURNAL_REQUIRE_DOVECOT=1 to make this a failure)"
        );
        return None;
    };
    Some(Dovecot::start(&binary, tls, without))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `(major, minor)` of the installed Dovecot.
fn dovecot_version(binary: &Path) -> (u32, u32) {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("dovecot --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

impl Dovecot {
    fn start(binary: &Path, tls: Option<(&Path, &Path)>, without: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Dovecot's unprivileged processes must reach their sockets and files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let me = std::fs::metadata(dir.path()).expect("stat");
        let root = me.uid() == 0;
        let owner = if root {
            (65534, 65534)
        } else {
            (me.uid(), me.gid())
        };
        let home = dir.path().join("home").join(USER);
        for folder in ["", ".Junk"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(home.join("Maildir").join(folder).join(sub))
                    .expect("maildir");
            }
        }
        std::fs::write(home.join("Maildir/.Junk/maildirfolder"), b"").expect("maildirfolder");
        let users = dir.path().join("users");
        std::fs::write(&users, format!("{USER}:{{PLAIN}}{PASSWORD}:::::\n")).expect("users");
        let tls_files = tls.map(|(cert, key)| {
            let c = dir.path().join("cert.pem");
            let k = dir.path().join("key.pem");
            std::fs::copy(cert, &c).expect("copy cert");
            std::fs::copy(key, &k).expect("copy key");
            (c, k)
        });
        let instance = format!(
            "mj-pull-{}-{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let version = dovecot_version(binary);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let tls_port = tls.map(|_| free_port());
            let mut conf = config(
                version,
                dir.path(),
                &instance,
                port,
                tls_port,
                owner,
                root,
                tls_files.as_ref(),
            );
            conf.push_str(&capabilities_without(version, without));
            let conf_path = dir.path().join("dovecot.conf");
            std::fs::write(&conf_path, conf).expect("write dovecot.conf");
            chown_tree(&dir.path().join("home"), owner);
            let log = dir.path().join("dovecot.log");
            let _ = std::fs::remove_file(&log);
            let stderr = std::fs::File::create(dir.path().join("dovecot.stderr")).expect("stderr");
            let mut child = Command::new(binary)
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start dovecot");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if greets(port) {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if up {
                return Self {
                    dir,
                    port,
                    tls_port,
                    child,
                    owner,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = format!(
                "{}{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(dir.path().join("dovecot.stderr")).unwrap_or_default()
            );
        }
        panic!("Dovecot did not start; its log:\n{last_log}");
    }

    fn maildir(&self, folder: &str) -> PathBuf {
        let base = self.dir.path().join("home").join(USER).join("Maildir");
        if folder == "INBOX" {
            base
        } else {
            base.join(format!(".{folder}"))
        }
    }

    /// Delivers a message the Maildir way (tmp, then rename into new); returns its path.
    fn deliver(&self, folder: &str, bytes: &[u8]) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = self.maildir(folder);
        let name = format!(
            "{}.M{}P{}.mj-test",
            1_790_000_000 + N.fetch_add(1, Ordering::Relaxed),
            N.load(Ordering::Relaxed),
            std::process::id()
        );
        let tmp = dir.join("tmp").join(&name);
        std::fs::write(&tmp, bytes).expect("write message");
        std::os::unix::fs::chown(&tmp, Some(self.owner.0), Some(self.owner.1)).expect("chown");
        let dest = dir.join("new").join(&name);
        std::fs::rename(&tmp, &dest).expect("deliver");
        dest
    }

    /// Delivers a message straight into `cur/` with Maildir flags (`T`: \\Deleted).
    fn deliver_flagged(&self, folder: &str, bytes: &[u8], flags: &str) -> PathBuf {
        let new = self.deliver(folder, bytes);
        let name = new
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let cur = self
            .maildir(folder)
            .join("cur")
            .join(format!("{name}:2,{flags}"));
        std::fs::rename(&new, &cur).expect("move to cur");
        cur
    }

    /// Every message file in a folder (`cur/` and `new/`): file name → bytes.
    fn files(&self, folder: &str) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for sub in ["cur", "new"] {
            let Ok(entries) = std::fs::read_dir(self.maildir(folder).join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).expect("read message file");
                out.insert(format!("{sub}/{}", e.file_name().to_string_lossy()), bytes);
            }
        }
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    fn settings(&self) -> PullSettings {
        PullSettings {
            name: "dovecot".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            tls: PullTls::None,
            account: USER.into(),
            secret: PullSecret::Password(PASSWORD.into()),
            queue_folder: "INBOX".into(),
            storage_folder: "Archive".into(),
            poll_interval: Duration::from_secs(60),
            idle: true,
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL if it takes too long.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an IMAP server answers with a greeting on `port`.
fn greets(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"* OK"
}

fn set_mode_tree(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    for e in std::fs::read_dir(path).expect("read dir").flatten() {
        if e.path().is_dir() {
            set_mode_tree(&e.path(), mode);
        }
    }
}

fn chown_tree(path: &Path, owner: (u32, u32)) {
    let _ = std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1));
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&e.path(), owner);
        }
    }
}

/// The setting that keeps Dovecot from announcing `without`: 2.3 takes the whole list, 2.4
/// a boolean list.
fn capabilities_without(version: (u32, u32), without: &[&str]) -> String {
    if without.is_empty() {
        return String::new();
    }
    if version >= (2, 4) {
        let off: String = without.iter().map(|c| format!("  {c} = no\n")).collect();
        return format!("imap_capability {{\n{off}}}\n");
    }
    let kept: Vec<&str> = [
        "IMAP4rev1",
        "SASL-IR",
        "LITERAL+",
        "ID",
        "ENABLE",
        "IDLE",
        "NAMESPACE",
        "UNSELECT",
        "CHILDREN",
        "UIDPLUS",
        "MOVE",
    ]
    .into_iter()
    .filter(|c| !without.contains(c))
    .collect();
    format!("imap_capability = {}\n", kept.join(" "))
}

/// The configuration, in the syntax of the installed version (2.3, or 2.4 which renamed
/// most settings).
#[allow(clippy::too_many_arguments)]
fn config(
    version: (u32, u32),
    dir: &Path,
    instance: &str,
    port: u16,
    tls_port: Option<u16>,
    owner: (u32, u32),
    root: bool,
    tls: Option<&(PathBuf, PathBuf)>,
) -> String {
    let d = dir.display();
    let v24 = version >= (2, 4);
    let mut c = String::new();
    if v24 {
        c.push_str("dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n");
    }
    c.push_str(&format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\ninstance_name = {instance}\n\
         protocols = imap\nlisten = 127.0.0.1\nlog_path = {d}/dovecot.log\n\
         auth_mechanisms = plain login\nmail_uid = {}\nmail_gid = {}\n\
         first_valid_uid = 1\nfirst_valid_gid = 1\n",
        owner.0, owner.1
    ));
    if !root {
        // Not root: no privilege separation to do, no chroot possible.
        let id = |flag: &str| {
            Command::new("id")
                .arg(flag)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let (me, group) = (id("-un"), id("-gn"));
        c.push_str(&format!(
            "default_internal_user = {me}\ndefault_internal_group = {group}\n\
             default_login_user = {me}\n\
             service anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
        ));
    }
    if v24 {
        c.push_str(&format!(
            "auth_allow_cleartext = yes\nmail_driver = maildir\nmail_path = ~/Maildir\n\
             mail_home = {d}/home/%{{user}}\n\
             passdb users {{\n  driver = passwd-file\n  passwd_file_path = {d}/users\n}}\n\
             userdb users {{\n  driver = passwd-file\n  passwd_file_path = {d}/users\n}}\n"
        ));
        match tls {
            Some((cert, key)) => c.push_str(&format!(
                "ssl = yes\nssl_server_cert_file = {}\nssl_server_key_file = {}\n",
                cert.display(),
                key.display()
            )),
            None => c.push_str("ssl = no\n"),
        }
    } else {
        c.push_str(&format!(
            "disable_plaintext_auth = no\nmail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/users\n  default_fields = home={d}/home/%u\n}}\n"
        ));
        match tls {
            Some((cert, key)) => c.push_str(&format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            )),
            None => c.push_str("ssl = no\n"),
        }
    }
    c.push_str(&format!(
        "service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = {}\n  }}\n}}\n",
        tls_port.unwrap_or(0)
    ));
    c
}

// ---------------------------------------------------------------------------------------
// Messages and the pipeline.

fn message(n: usize, extra: &str) -> Vec<u8> {
    format!(
        "From: Marta <marta@fabrikam.com>\r\n\
         To: alice@contoso.com\r\n\
         Subject: pull test {n}\r\n\
         Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <pull-{n}@fabrikam.com>\r\n\
         {extra}\
         \r\n\
         Message number {n}.\r\n"
    )
    .into_bytes()
}

/// Every archived message's original bytes.
fn archived(archive: &Archive) -> Vec<Vec<u8>> {
    let next = archive.stats().expect("stats").next_uid;
    (1..next)
        .filter_map(|uid| archive.get(uid).expect("get"))
        .map(|r| archive.raw(&r).expect("raw"))
        .collect()
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn snapshot(status: &SharedStatus) -> SourceStatus {
    status.lock().expect("status").clone()
}

/// Waits until `ok` holds for the status; panics with the status and Dovecot's log if not.
async fn wait_for(
    status: &SharedStatus,
    dovecot: Option<&Dovecot>,
    secs: u64,
    what: &str,
    ok: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = snapshot(status);
        if ok(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status: {s:#?}\nDovecot log:\n{}",
                dovecot.map(Dovecot::log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running source, stopped (and awaited) on `stop`.
struct Running {
    status: SharedStatus,
    handle: tokio::task::JoinHandle<()>,
    token: CancellationToken,
}

impl Running {
    fn start(settings: PullSettings, ingestor: &Ingestor) -> Self {
        Self::start_with(settings, ingestor, Options::default())
    }

    fn start_with(settings: PullSettings, ingestor: &Ingestor, options: Options) -> Self {
        let status = SourceStatus::shared(&settings);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let handle = pull::spawn_with(
            settings,
            ingestor.clone(),
            Arc::clone(&status),
            options,
            &tracker,
            token.clone(),
        );
        Self {
            status,
            handle,
            token,
        }
    }

    async fn stop(self) -> SourceStatus {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the source stops within 10 s")
            .expect("the source task ends cleanly");
        snapshot(&self.status)
    }
}

fn idle_and_moved(n: u64) -> impl Fn(&SourceStatus) -> bool {
    move |s| s.moved >= n && s.state == "idle"
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_is_archived_byte_exact_and_moved_while_junk_is_never_touched() {
    let Some(dovecot) = dovecot("inbox_is_archived_byte_exact_and_moved") else {
        return;
    };
    let inbox: Vec<Vec<u8>> = vec![
        message(1, ""),
        message(2, "Cc: bob@contoso.com\r\n"),
        // No Message-ID, 8-bit body: archived all the same.
        b"From: kim@fabrikam.com\r\nTo: bob@contoso.com\r\nSubject: caf\xc3\xa9\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
            .to_vec(),
    ];
    for m in &inbox {
        dovecot.deliver("INBOX", m);
    }
    let junk = message(99, "X-Spam-Flag: YES\r\n");
    let junk_path = dovecot.deliver("Junk", &junk);

    let t = TestArchive::new();
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "3 messages moved",
        idle_and_moved(3),
    )
    .await;
    assert_eq!((s.archived, s.duplicates, s.moved), (3, 0, 3), "{s:#?}");
    assert_eq!(s.backlog, Some(0));
    assert!(s.last_success.is_some() && s.last_error.is_none(), "{s:#?}");
    assert!(s.rejected.is_empty());
    assert_eq!(s.waiting_with.as_deref(), Some("IDLE"));
    assert!(
        s.server.as_deref().unwrap_or_default().contains("MOVE"),
        "{s:#?}"
    );
    let status = source.stop().await;
    assert_eq!(status.state, "stopped");

    // Byte-exact in the archive.
    assert_eq!(sorted(archived(t.archive())), sorted(inbox.clone()));
    // Moved: the queue is empty, the storage folder holds each message once, unread
    // (BODY.PEEK[] set no \Seen flag).
    assert!(
        dovecot.files("INBOX").is_empty(),
        "{:?}",
        dovecot.files("INBOX").keys()
    );
    let stored = dovecot.files("Archive");
    assert_eq!(sorted(stored.values().cloned().collect()), sorted(inbox));
    for name in stored.keys() {
        let flags = name.rsplit_once(":2,").map(|(_, f)| f).unwrap_or("");
        assert!(!flags.contains('S'), "{name} was marked \\Seen");
    }
    // Junk: never opened (still in new/ under its name), never archived.
    assert_eq!(std::fs::read(&junk_path).expect("junk still there"), junk);
    assert_eq!(dovecot.files("Junk").len(), 1);
    assert_eq!(t.archive().stats().expect("stats").messages, 3);
    assert!(
        t.archive()
            .list(&mailjournal::archive::Filter {
                junk: true,
                ..Default::default()
            })
            .expect("list junk")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idle_a_new_message_is_archived_within_two_seconds() {
    let Some(dovecot) = dovecot("with_idle_a_new_message_is_archived_within_two_seconds") else {
        return;
    };
    let t = TestArchive::new();
    let mut settings = dovecot.settings();
    settings.poll_interval = Duration::from_secs(300);
    let source = Running::start(settings, t.ingestor());
    wait_for(&source.status, Some(&dovecot), 20, "idle", |s| {
        s.state == "idle" && s.last_success.is_some()
    })
    .await;
    // Let IDLE be under way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let raw = message(1, "");
    let delivered = Instant::now();
    dovecot.deliver("INBOX", &raw);
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        10,
        "the new message moved",
        idle_and_moved(1),
    )
    .await;
    let took = delivered.elapsed();
    eprintln!("archived {took:?} after delivery");
    assert!(
        took < Duration::from_secs(2),
        "archived {took:?} after delivery: IDLE did not pick it up (polling is every 300 s)"
    );
    assert_eq!(s.archived, 1);
    assert_eq!(archived(t.archive()), vec![raw]);
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_queue_is_polled() {
    let Some(dovecot) = dovecot("without_idle_the_queue_is_polled") else {
        return;
    };
    let t = TestArchive::new();
    let mut settings = dovecot.settings();
    settings.idle = false;
    settings.poll_interval = Duration::from_secs(1);
    let source = Running::start(settings, t.ingestor());
    wait_for(&source.status, Some(&dovecot), 20, "idle", |s| {
        s.state == "idle"
    })
    .await;
    dovecot.deliver("INBOX", &message(1, ""));
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        10,
        "moved",
        idle_and_moved(1),
    )
    .await;
    assert_eq!(s.waiting_with.as_deref(), Some("polling every 1s"));
    source.stop().await;
    assert!(dovecot.files("INBOX").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_source_with_a_clear_error_and_no_retries() {
    let Some(dovecot) = dovecot("a_wrong_password_stops_the_source") else {
        return;
    };
    dovecot.deliver("INBOX", &message(1, ""));
    let t = TestArchive::new();
    let mut settings = dovecot.settings();
    settings.secret = PullSecret::Password("wrong".into());
    let source = Running::start(settings.clone(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "stopped",
        SourceStatus::is_auth_stopped,
    )
    .await;
    assert_eq!(
        s.state,
        "stopped: authentication failed for journal at 127.0.0.1 — fix the configuration and reload"
    );
    let error = s.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("authentication failed for journal at 127.0.0.1")
            && error.contains("AUTHENTICATIONFAILED"),
        "{error}"
    );
    assert!(s.render().contains(&s.state));
    // No retry storm: backing off would have tried again after 1 s, 2 s, 4 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = dovecot.log();
    assert_eq!(
        log.matches("auth failed").count(),
        1,
        "one login attempt only:\n{log}"
    );
    assert!(snapshot(&source.status).is_auth_stopped());
    assert_eq!(t.archive().stats().expect("stats").messages, 0);
    source.stop().await;
    assert_eq!(dovecot.files("INBOX").len(), 1, "nothing was touched");

    // `validate` says the same.
    let err = pull::check(&settings).await.expect_err("wrong password");
    assert!(err.is_auth(), "{err}");
    assert!(
        err.to_string()
            .contains("authentication failed for journal at 127.0.0.1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_by_a_refused_login_resumes_when_its_password_file_changes() {
    let Some(dovecot) = dovecot("a_source_resumes_when_its_password_file_changes") else {
        return;
    };
    let secret = dovecot.dir.path().join("pull.secret");
    std::fs::write(&secret, "old-password\n").expect("write secret");
    dovecot.deliver("INBOX", &message(1, ""));
    let t = TestArchive::new();
    let mut settings = dovecot.settings();
    settings.secret = PullSecret::PasswordFile(secret.clone());
    let source = Running::start(settings, t.ingestor());
    wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "stopped",
        SourceStatus::is_auth_stopped,
    )
    .await;
    std::fs::write(&secret, format!("{PASSWORD}\n")).expect("renew secret");
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "moved after renewal",
        idle_and_moved(1),
    )
    .await;
    assert_eq!(s.archived, 1);
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_gateway_mid_batch_loses_and_duplicates_nothing() {
    let Some(dovecot) = dovecot("killing_the_gateway_mid_batch") else {
        return;
    };
    let messages: Vec<Vec<u8>> = (1..=60).map(|n| message(n, "")).collect();
    for m in &messages {
        dovecot.deliver("INBOX", m);
    }
    // First run: the storage folder refuses new messages (its directories are read-only for
    // Dovecot), so the first batch of 50 is committed but cannot be moved: the window a
    // crash between commit and MOVE hits, held open. The gateway is killed there.
    let storage = dovecot.maildir("Archive");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(storage.join(sub)).expect("mkdir");
    }
    chown_tree(&storage, dovecot.owner);
    set_mode_tree(&storage, 0o555);
    let t = TestArchive::new();
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        30,
        "the MOVE refused",
        |s| s.archived >= 50 && s.state == "backing off",
    )
    .await;
    eprintln!("MOVE refused: {:?}", s.last_error);
    source.handle.abort();
    let _ = source.handle.await;
    let dir = t.close();
    set_mode_tree(&storage, 0o755);
    let before = {
        let archive = Archive::open(dir.path()).expect("reopen");
        archive.stats().expect("stats").messages
    };
    let moved_before = dovecot.files("Archive").len() as u64;
    eprintln!(
        "killed with {before} messages committed, {moved_before} moved, {} still queued",
        dovecot.files("INBOX").len()
    );
    assert_eq!(before, 50, "the first batch was committed");
    assert!(
        moved_before <= before,
        "nothing is moved before it is committed"
    );

    // Second run, on the same archive: everything arrives once.
    let archive = Arc::new(Archive::open(dir.path()).expect("reopen"));
    let (ingestor, committer) = Ingestor::start(Arc::clone(&archive), policy()).expect("start");
    let source = Running::start(dovecot.settings(), &ingestor);
    let s = wait_for(&source.status, Some(&dovecot), 60, "the rest moved", |s| {
        s.state == "idle" && s.backlog == Some(0) && s.last_success.is_some()
    })
    .await;
    source.stop().await;
    assert_eq!(
        s.duplicates,
        before - moved_before,
        "exactly the committed-but-not-moved messages come back as duplicates: {s:#?}"
    );
    assert_eq!(s.moved + moved_before, 60);
    assert_eq!(
        sorted(archived(&archive)),
        sorted(messages.clone()),
        "each archived once"
    );
    assert!(dovecot.files("INBOX").is_empty());
    assert_eq!(
        sorted(dovecot.files("Archive").into_values().collect()),
        sorted(messages),
        "each in the storage folder once"
    );
    drop(ingestor);
    drop(archive);
    committer.join().expect("committer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_but_not_moved_is_moved_as_a_duplicate() {
    let Some(dovecot) = dovecot("a_message_committed_but_not_moved") else {
        return;
    };
    let messages: Vec<Vec<u8>> = (1..=5).map(|n| message(n, "")).collect();
    for m in &messages {
        dovecot.deliver("INBOX", m);
    }
    // What a gateway that died between the commit and the MOVE leaves behind.
    let t = TestArchive::new();
    for m in &messages[..2] {
        t.ingestor()
            .submit(m, &Envelope::default())
            .expect("submit")
            .wait()
            .await
            .expect("ingest");
    }
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "5 moved",
        idle_and_moved(5),
    )
    .await;
    source.stop().await;
    assert_eq!((s.archived, s.duplicates), (5, 2), "{s:#?}");
    let stats = t.archive().stats().expect("stats");
    assert_eq!(stats.messages, 5);
    assert_eq!(stats.counters["duplicates"], 2);
    assert!(dovecot.files("INBOX").is_empty());
    assert_eq!(dovecot.files("Archive").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_pipeline_refuses_stays_in_the_queue_and_is_reported() {
    let Some(dovecot) = dovecot("a_message_the_pipeline_refuses_stays") else {
        return;
    };
    let good = message(1, "");
    let big = message(2, &format!("X-Padding: {}\r\n", "x".repeat(20_000)));
    dovecot.deliver("INBOX", &good);
    dovecot.deliver("INBOX", b"");
    dovecot.deliver("INBOX", &big);
    let t = TestArchive::with_policy(Policy {
        max_message_size: 10_000,
        ..policy()
    });
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(&source.status, Some(&dovecot), 20, "1 moved", |s| {
        idle_and_moved(1)(s) && s.rejected.len() == 2
    })
    .await;
    assert_eq!(s.archived, 1, "{s:#?}");
    let errors: Vec<&str> = s.rejected.iter().map(|r| r.error.as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("empty")), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("over the limit of 10000 bytes")),
        "{errors:?}"
    );
    let last = s.last_error.clone().unwrap_or_default();
    assert!(last.contains("was refused and stays there"), "{last}");
    assert!(
        s.render().contains("refused, left in INBOX"),
        "{}",
        s.render()
    );
    assert_eq!(archived(t.archive()), vec![good]);
    let mut left: Vec<Vec<u8>> = dovecot.files("INBOX").into_values().collect();
    left.sort();
    assert_eq!(
        left,
        vec![Vec::new(), big.clone()],
        "refused messages are not deleted"
    );

    // The source does not spin on them, and goes on with new mail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = snapshot(&source.status);
    assert_eq!((later.archived, later.rejected.len()), (1, 2), "{later:#?}");
    dovecot.deliver("INBOX", &message(3, ""));
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        10,
        "the next message",
        idle_and_moved(2),
    )
    .await;
    assert_eq!(s.rejected.len(), 2);
    source.stop().await;
    assert_eq!(dovecot.files("INBOX").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_logging_switch_leaves_mail_in_the_queue() {
    let Some(dovecot) = dovecot("a_paused_logging_switch_leaves_mail_in_the_queue") else {
        return;
    };
    dovecot.deliver("INBOX", &message(1, ""));
    let t = TestArchive::new();
    let switch = Arc::new(LoggingSwitch::new(Logging::Paused));
    let options = Options {
        logging: Some(Arc::clone(&switch)),
        ..Options::default()
    };
    let source = Running::start_with(dovecot.settings(), t.ingestor(), options);
    wait_for(&source.status, Some(&dovecot), 10, "paused", |s| {
        s.state.starts_with("paused")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dovecot.files("INBOX").len(), 1);
    assert_eq!(t.archive().stats().expect("stats").messages, 0);
    switch.set(Logging::On);
    wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "moved",
        idle_and_moved(1),
    )
    .await;
    source.stop().await;
    assert_eq!(t.archive().stats().expect("stats").messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_logs_in_and_checks_both_folders() {
    let Some(dovecot) = dovecot("validate_logs_in_and_checks_both_folders") else {
        return;
    };
    dovecot.deliver("INBOX", &message(1, ""));
    let mut settings = dovecot.settings();
    let err = pull::check(&settings)
        .await
        .expect_err("no Archive folder yet");
    let text = err.to_string();
    assert!(
        text.contains("storage_folder \"Archive\" does not exist"),
        "{text}"
    );

    std::fs::create_dir_all(dovecot.maildir("Archive").join("cur")).expect("mkdir");
    std::fs::create_dir_all(dovecot.maildir("Archive").join("new")).expect("mkdir");
    std::fs::create_dir_all(dovecot.maildir("Archive").join("tmp")).expect("mkdir");
    chown_tree(&dovecot.maildir("Archive"), dovecot.owner);
    // As `validate` calls it: synchronously, from a blocking thread of the gateway.
    let blocking = settings.clone();
    let text = tokio::task::spawn_blocking(move || pull::check_blocking(&blocking))
        .await
        .expect("join")
        .expect("valid");
    assert!(
        text.contains("queue folder \"INBOX\" (1 waiting)")
            && text.contains("storage folder \"Archive\"")
            && text.contains("MOVE")
            && text.contains("IDLE"),
        "{text}"
    );

    settings.queue_folder = "Queue".into();
    let text = pull::check(&settings)
        .await
        .expect_err("no Queue")
        .to_string();
    assert!(
        text.contains("queue_folder \"Queue\" does not exist on 127.0.0.1"),
        "{text}"
    );
    // Checking read nothing: the message is still new and unseen.
    assert_eq!(dovecot.files("INBOX").len(), 1);
    assert!(dovecot.files("INBOX").keys().all(|k| k.starts_with("new/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_starttls_verify_the_server() {
    let certs = tempfile::tempdir().expect("temp dir");
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    let Some(dovecot) = dovecot_with("implicit_tls_and_starttls", Some((&cert, &key))) else {
        return;
    };
    std::fs::create_dir_all(dovecot.maildir("Archive").join("cur")).expect("mkdir");
    chown_tree(&dovecot.maildir("Archive"), dovecot.owner);
    let roots = PullClientTls::from_pem_file(&cert).expect("roots");

    let mut implicit = dovecot.settings();
    implicit.tls = PullTls::Implicit;
    implicit.port = dovecot.tls_port.expect("TLS port");
    let text = pull::check_with(&implicit, Some(&roots))
        .await
        .expect("implicit TLS");
    assert!(text.contains("(TLS)"), "{text}");

    let mut starttls = dovecot.settings();
    starttls.tls = PullTls::Starttls;
    let text = pull::check_with(&starttls, Some(&roots))
        .await
        .expect("STARTTLS");
    assert!(text.contains("(STARTTLS)"), "{text}");

    // A certificate nobody vouches for is refused before the password is sent.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let untrusted =
        PullClientTls::from_certificates(vec![other.cert.der().clone()]).expect("roots");
    let err = pull::check_with(&implicit, Some(&untrusted))
        .await
        .expect_err("untrusted");
    assert!(matches!(err, pull::Error::Tls { .. }), "{err}");
    assert!(
        !dovecot.log().contains("auth failed"),
        "no login was attempted"
    );

    // And the source archives over TLS.
    dovecot.deliver("INBOX", &message(1, ""));
    let t = TestArchive::new();
    let options = Options {
        tls: Some(roots),
        ..Options::default()
    };
    let source = Running::start_with(starttls, t.ingestor(), options);
    wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "moved over STARTTLS",
        idle_and_moved(1),
    )
    .await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_report_each_source_and_reload_restarts_only_what_changed() {
    let Some(dovecot) = dovecot("sources_report_each_source_and_reload") else {
        return;
    };
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dovecot.maildir("Second").join(sub)).expect("mkdir");
    }
    chown_tree(&dovecot.maildir("Second"), dovecot.owner);
    dovecot.deliver("INBOX", &message(1, ""));
    dovecot.deliver("Second", &message(2, ""));
    let first = PullSettings {
        name: "first".into(),
        ..dovecot.settings()
    };
    let mut second = PullSettings {
        name: "second".into(),
        secret: PullSecret::Password("wrong".into()),
        queue_folder: "Second".into(),
        storage_folder: "Second-archive".into(),
        ..dovecot.settings()
    };
    let t = TestArchive::new();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let mut sources = pull::Sources::start(
        &[first.clone(), second.clone()],
        t.ingestor().clone(),
        Options::default(),
        &tracker,
        &shutdown,
    );
    let statuses = |sources: &pull::Sources| sources.statuses();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = statuses(&sources);
        if s[0].moved == 1 && s[0].state == "idle" && s[1].is_auth_stopped() {
            break;
        }
        assert!(Instant::now() < deadline, "{s:#?}\n{}", dovecot.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<String> = statuses(&sources).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["first", "second"]);

    // The password is fixed and the configuration reloaded: the stopped source starts
    // again; the running one is left alone (its counters go on).
    second.secret = PullSecret::Password(PASSWORD.into());
    sources.reload(&[first.clone(), second.clone()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = statuses(&sources);
        if s[1].moved == 1 && s[1].state == "idle" {
            assert_eq!(s[0].moved, 1, "the first source was not restarted");
            break;
        }
        assert!(Instant::now() < deadline, "{s:#?}\n{}", dovecot.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dovecot.files("Second-archive").len(), 1);
    assert_eq!(t.archive().stats().expect("stats").messages, 2);

    // A source removed from the configuration stops.
    sources.reload(&[first]);
    assert_eq!(statuses(&sources).len(), 1);
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .expect("every source stops within 10 s");
    assert_eq!(statuses(&sources)[0].state, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_move_messages_are_copied_flagged_and_uid_expunged() {
    // Dovecot announcing UIDPLUS but not MOVE.
    let Some(dovecot) = dovecot_configured("without_move_messages_are_copied", None, &["MOVE"])
    else {
        return;
    };
    let fresh = [message(1, ""), message(2, "")];
    for m in &fresh {
        dovecot.deliver("INBOX", m);
    }
    // Marked \Deleted: copied before an interruption. Archived, expunged, not copied again.
    let interrupted = message(3, "");
    dovecot.deliver_flagged("INBOX", &interrupted, "T");
    let t = TestArchive::new();
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "3 moved",
        idle_and_moved(3),
    )
    .await;
    source.stop().await;
    assert_eq!(s.server.as_deref(), Some("UIDPLUS IDLE"));
    assert!(dovecot.files("INBOX").is_empty());
    assert_eq!(
        sorted(dovecot.files("Archive").into_values().collect()),
        sorted(fresh.to_vec())
    );
    let mut all = fresh.to_vec();
    all.push(interrupted);
    assert_eq!(sorted(archived(t.archive())), sorted(all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uidplus_other_deleted_messages_are_never_expunged() {
    let Some(dovecot) = dovecot_configured(
        "without_uidplus_other_deleted_messages_are_never_expunged",
        None,
        &["MOVE", "UIDPLUS"],
    ) else {
        return;
    };
    dovecot.deliver("INBOX", &message(1, ""));
    let t = TestArchive::new();
    let source = Running::start(dovecot.settings(), t.ingestor());
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "1 moved",
        idle_and_moved(1),
    )
    .await;
    assert_eq!(s.server.as_deref(), Some("IDLE"));
    assert!(
        dovecot.files("INBOX").is_empty(),
        "ours were the only \\Deleted ones: expunged"
    );
    // Someone else's \Deleted message, which the pipeline refuses (empty) and so never
    // becomes ours: plain EXPUNGE would remove it too, so there is none.
    let foreign = dovecot.deliver_flagged("INBOX", b"", "T");
    dovecot.deliver("INBOX", &message(2, ""));
    let s = wait_for(
        &source.status,
        Some(&dovecot),
        20,
        "the second moved",
        |s| idle_and_moved(2)(s) && s.rejected.len() == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    source.stop().await;
    assert_eq!(s.archived, 2);
    let error = s.last_error.clone().unwrap_or_default();
    assert!(error.contains("not expunging"), "{error}");
    assert!(
        foreign.exists(),
        "the foreign \\Deleted message is still there"
    );
    assert_eq!(dovecot.files("Archive").len(), 2, "copied once each");
    assert_eq!(
        dovecot.files("INBOX").len(),
        2,
        "ours stays, marked \\Deleted, beside the foreign one"
    );
    assert_eq!(t.archive().stats().expect("stats").messages, 2);
}

// ---------------------------------------------------------------------------------------
// XOAUTH2, against a scripted server (Dovecot would need an OAuth2 provider).

/// Serves IMAP connections from a script good enough for `check`: accepts the bearer
/// tokens in `valid`, records every XOAUTH2 payload it receives.
async fn xoauth2_server(valid: &'static [&'static str]) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write
                    .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] scripted\r\n")
                    .await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
                    let command = rest.to_ascii_uppercase();
                    let reply = if command.starts_with("AUTHENTICATE XOAUTH2") {
                        let _ = write.write_all(b"+ \r\n").await;
                        let Ok(Some(answer)) = lines.next_line().await else {
                            return;
                        };
                        let decoded = data_encoding::BASE64
                            .decode(answer.trim().as_bytes())
                            .unwrap_or_default();
                        let payload = String::from_utf8_lossy(&decoded).into_owned();
                        record.lock().expect("record").push(payload.clone());
                        let accepted = valid.iter().any(|t| {
                            payload
                                == format!("user=journal@contoso.com\x01auth=Bearer {t}\x01\x01")
                        });
                        if accepted {
                            format!("{tag} OK authenticated\r\n")
                        } else {
                            // The mechanism's error challenge, then NO.
                            let _ = write.write_all(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n").await;
                            let _ = lines.next_line().await;
                            format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
                        }
                    } else if command.starts_with("CAPABILITY") {
                        format!("* CAPABILITY IMAP4rev1 MOVE UIDPLUS IDLE\r\n{tag} OK done\r\n")
                    } else if command.starts_with("LIST") {
                        let name = rest.rsplit(' ').next().unwrap_or("").trim_matches('"');
                        format!("* LIST () \"/\" {name}\r\n{tag} OK done\r\n")
                    } else if command.starts_with("STATUS") {
                        format!("* STATUS INBOX (MESSAGES 0)\r\n{tag} OK done\r\n")
                    } else if command.starts_with("LOGOUT") {
                        let _ = write
                            .write_all(format!("* BYE\r\n{tag} OK bye\r\n").as_bytes())
                            .await;
                        return;
                    } else {
                        format!("{tag} BAD unexpected\r\n")
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = write.flush().await;
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_tokens_are_read_afresh_from_the_command_at_each_login() {
    let (port, seen) = xoauth2_server(&["token-1", "token-2"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "token-1\n").expect("write token");
    let settings = PullSettings {
        name: "m365".into(),
        host: "127.0.0.1".into(),
        port,
        tls: PullTls::None,
        account: "journal@contoso.com".into(),
        secret: PullSecret::Xoauth2Command(format!("cat '{}'", token.display())),
        queue_folder: "INBOX".into(),
        storage_folder: "Archive".into(),
        poll_interval: Duration::from_secs(60),
        idle: true,
    };
    pull::check(&settings).await.expect("first token");
    std::fs::write(&token, "token-2\n").expect("renew token");
    pull::check(&settings)
        .await
        .expect("renewed token, no restart");
    std::fs::write(&token, "expired\n").expect("expire token");
    let err = pull::check(&settings).await.expect_err("expired token");
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains("Invalid credentials"), "{err}");

    // The file variant too.
    let mut from_file = settings.clone();
    from_file.secret = PullSecret::Xoauth2File(token.clone());
    std::fs::write(&token, "token-1").expect("write token");
    pull::check(&from_file).await.expect("token file");

    let seen = seen.lock().expect("seen").clone();
    let bearer = |t: &str| format!("user=journal@contoso.com\x01auth=Bearer {t}\x01\x01");
    assert_eq!(
        seen,
        vec![
            bearer("token-1"),
            bearer("token-2"),
            bearer("expired"),
            bearer("token-1")
        ]
    );

    // A stopped source says which account and host.
    let t = TestArchive::new();
    std::fs::write(&token, "expired").expect("expire token");
    let source = Running::start(settings, t.ingestor());
    let s = wait_for(
        &source.status,
        None,
        10,
        "stopped",
        SourceStatus::is_auth_stopped,
    )
    .await;
    assert_eq!(
        s.state,
        "stopped: authentication failed for journal@contoso.com at 127.0.0.1 — fix the configuration and reload"
    );
    source.stop().await;
}
