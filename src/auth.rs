//! Passwords (argon2id, PHC strings) and the throttling of failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::archive::{Account, Archive, Role};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("{0:?} is not a valid account name (letters, digits, . _ - @, at most 64)")]
    BadName(String),
}

/// Hashes a password for storage (argon2id with the crate's recommended parameters).
pub fn hash_password(password: &str) -> Result<String, Error> {
    if password.is_empty() {
        return Err(Error::EmptyPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC hash. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

/// A hash of a password no account has, so that an unknown name costs as much as a wrong
/// password and does not reveal which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password nobody has").unwrap_or_default())
}

/// Failed logins counted per source address and per account name: after a few failures
/// within `window` each further attempt waits longer, and past `max` (per address) or
/// `max × ACCOUNT_FACTOR` (per account, from whatever addresses) attempts are refused until
/// the window passes.
///
/// An attempt is counted as a failure *before* its password is checked ([`Throttle::begin`]),
/// under one lock, so parallel guesses cannot all slip in below the limit; a success takes
/// back only its own count, so one's own valid logins interleaved with guesses do not
/// reset anything.
pub struct Throttle {
    failures: Mutex<HashMap<Key, (Instant, u32)>>,
    window: Duration,
    max: u32,
}

/// An account may take this many times an address's failures (it is guessed at from many
/// addresses; a lower limit would let anyone lock a salesperson out with a few guesses).
const ACCOUNT_FACTOR: u32 = 3;
/// Counters kept at most; a full table drops the expired ones.
const THROTTLE_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Account(String),
}

/// An attempt that was counted; [`Throttle::succeeded`] takes the count back.
#[derive(Debug)]
pub struct Attempt {
    ip: IpAddr,
    account: String,
    /// Failures recorded for the address, this attempt included.
    failures: u32,
}

impl Attempt {
    /// How long to wait before answering this attempt if it failed: one second, doubling
    /// with each earlier recent failure from the address, at most 16.
    pub fn delay(&self) -> Duration {
        Duration::from_secs(1 << self.failures.saturating_sub(1).min(4))
    }
}

impl Throttle {
    pub fn new(window: Duration, max: u32) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            window,
            max,
        }
    }

    fn live(&self, entry: Option<&(Instant, u32)>) -> u32 {
        match entry {
            Some((since, n)) if since.elapsed() < self.window => *n,
            _ => 0,
        }
    }

    /// Counts an attempt by `account` from `ip` as failed unless it is refused: `None`
    /// when the address or the account has failed too often to try now.
    pub fn begin(&self, ip: IpAddr, account: &str) -> Option<Attempt> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let address = Key::Address(ip);
        let name = Key::Account(account.to_ascii_lowercase());
        if self.live(map.get(&address)) >= self.max
            || self.live(map.get(&name)) >= self.max.saturating_mul(ACCOUNT_FACTOR)
        {
            return None;
        }
        if map.len() >= THROTTLE_ENTRIES {
            let window = self.window;
            map.retain(|_, (since, _)| since.elapsed() < window);
        }
        let mut failures = 0;
        for key in [name, address] {
            let entry = map.entry(key).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= self.window {
                *entry = (Instant::now(), 0);
            }
            entry.1 += 1;
            failures = entry.1;
        }
        Some(Attempt {
            ip,
            account: account.to_ascii_lowercase(),
            failures,
        })
    }

    /// Counts a failure from `ip` that names no account (malformed credentials): how long
    /// to wait before answering it, or `None` if the address is throttled already.
    pub fn failed_unchecked(&self, ip: IpAddr) -> Option<Duration> {
        self.begin(ip, "").map(|attempt| attempt.delay())
    }

    /// Whether `ip` has failed too often to try again now.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.live(map.get(&Key::Address(ip))) >= self.max
    }

    /// The attempt succeeded: its own count is taken back, and nothing else.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [Key::Account(attempt.account), Key::Address(attempt.ip)] {
            if let Some(entry) = map.get_mut(&key) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

/// What a login attempt came to.
#[derive(Debug)]
pub enum Login {
    /// The password is right and the account may log in here.
    Accepted(Account),
    /// Wrong, unknown, or not allowed here: answer after `delay`.
    Refused { delay: Duration },
    /// The address or the account failed too often: refused without a check.
    Throttled,
    /// Too many checks are waiting already: try again later (a temporary failure).
    Busy,
}

/// How long a verified login is remembered by default.
pub const REMEMBER: Duration = Duration::from_secs(300);
/// At most this many remembered logins; a full table drops the expired ones, or else all
/// of them (which only costs the next logins an argon2 check each).
const REMEMBER_MAX: usize = 10_000;
/// Checks that may wait for a turn; more are answered as a temporary failure at once.
const MAX_WAITING: usize = 256;

struct Remembered {
    name: String,
    /// The account's password hash when it was verified: a new password forgets it.
    password_hash: String,
    until: Instant,
}

/// Every password check of the gateway goes through one `Logins`: IMAP, SMTP AUTH and HTTP.
///
/// - argon2 takes 19 MiB and tens of milliseconds on purpose, so checks run at most one
///   per core at a time; the rest wait their turn in order (a bounded queue), and memory is
///   bounded by the number of cores, not by the number of clients.
/// - A verified login is remembered for a short time as an HMAC of the source address,
///   name and password under a key that lives only in this process (never the password),
///   so a client that logs in again and again costs one argon2 check, not one per login.
///   A remembered login still reads its account: a removed account, a changed password or
///   changed roles take effect at once.
/// - Failures are throttled per address and per account ([`Throttle`]).
pub struct Logins {
    throttle: Throttle,
    checks: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    /// `None` if the system's random generator failed: then nothing is remembered.
    key: Option<ring::hmac::Key>,
    remembered: Mutex<HashMap<Vec<u8>, Remembered>>,
    remember_for: Duration,
}

impl Logins {
    pub fn new(throttle: Throttle, remember_for: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .ok();
        Self {
            throttle,
            checks: tokio::sync::Semaphore::new(cores),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            key,
            remembered: Mutex::new(HashMap::new()),
            remember_for,
        }
    }

    /// The gateway's defaults: 10 failures per address in 10 minutes, logins remembered
    /// for five minutes.
    pub fn standard() -> Self {
        Self::remembering(REMEMBER)
    }

    /// The default throttle, with verified logins remembered for `remember` (`logins.remember`;
    /// zero: never).
    pub fn remembering(remember: Duration) -> Self {
        Self::new(Throttle::new(Duration::from_secs(600), 10), remember)
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Checks `name` and `password` from `ip`: the account if they match and `allowed`
    /// accepts it. One argon2 check at most, run off the async runtime and one per core at
    /// a time; an unknown name costs the same as a wrong password.
    pub async fn login(
        &self,
        archive: &std::sync::Arc<Archive>,
        ip: IpAddr,
        name: &str,
        password: &str,
        allowed: fn(&Account) -> bool,
    ) -> Login {
        let Some(attempt) = self.throttle.begin(ip, name) else {
            return Login::Throttled;
        };
        let fingerprint = self.fingerprint(ip, name, password);
        let recalled = fingerprint.as_deref().and_then(|f| self.recall(f));
        let account = match recalled {
            Some((remembered, hash)) => {
                let archive = std::sync::Arc::clone(archive);
                tokio::task::spawn_blocking(move || {
                    archive
                        .account(&remembered)
                        .ok()
                        .flatten()
                        .filter(|a| a.password_hash == hash)
                })
                .await
                .ok()
                .flatten()
            }
            None => match self.verify(archive, name, password).await {
                Some(found) => found,
                None => {
                    self.throttle.succeeded(attempt);
                    return Login::Busy;
                }
            },
        };
        match account.filter(allowed) {
            Some(account) => {
                self.throttle.succeeded(attempt);
                if let Some(f) = fingerprint {
                    self.remember(f, &account);
                }
                Login::Accepted(account)
            }
            None => {
                if let Some(f) = &fingerprint {
                    self.forget(f);
                }
                Login::Refused {
                    delay: attempt.delay(),
                }
            }
        }
    }

    /// The argon2 check, in turn. `None`: the queue is full.
    async fn verify(
        &self,
        archive: &std::sync::Arc<Archive>,
        name: &str,
        password: &str,
    ) -> Option<Option<Account>> {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // Fair: waiters get their turn in the order they came.
        let permit = self.checks.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.ok()?;
        let archive = std::sync::Arc::clone(archive);
        let (name, password) = (name.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || check(&archive, &name, &password))
            .await
            .ok()
    }

    fn fingerprint(&self, ip: IpAddr, name: &str, password: &str) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let mut ctx = ring::hmac::Context::with_key(key);
        let ip = ip.to_string();
        // Length-prefixed, so that no other address, name and password make the same bytes.
        for part in [ip.as_bytes(), name.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(password.as_bytes());
        Some(ctx.sign().as_ref().to_vec())
    }

    fn recall(&self, fingerprint: &[u8]) -> Option<(String, String)> {
        let map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.get(fingerprint)
            .filter(|r| r.until > Instant::now())
            .map(|r| (r.name.clone(), r.password_hash.clone()))
    }

    fn remember(&self, fingerprint: Vec<u8>, account: &Account) {
        if self.remember_for.is_zero() {
            return;
        }
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= REMEMBER_MAX {
            let now = Instant::now();
            map.retain(|_, r| r.until > now);
            if map.len() >= REMEMBER_MAX {
                map.clear();
            }
        }
        map.insert(
            fingerprint,
            Remembered {
                name: account.name.clone(),
                password_hash: account.password_hash.clone(),
                until: Instant::now() + self.remember_for,
            },
        );
    }

    fn forget(&self, fingerprint: &[u8]) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(fingerprint);
    }
}

/// The account named, if `password` is its password (whatever its roles). One argon2
/// check whatever the outcome: an unknown name is checked against a decoy.
fn check(archive: &Archive, name: &str, password: &str) -> Option<Account> {
    let account = archive.account(name).ok().flatten();
    let hash = account
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |a| a.password_hash.clone());
    let matches = verify_password(password, &hash);
    account.filter(|_| matches)
}

/// Accounts that may log in to read (IMAP, HTTP).
pub fn reader(account: &Account) -> bool {
    [Role::Admin, Role::Auditor, Role::Salesperson]
        .iter()
        .any(|r| account.roles.contains(r))
        && crate::access::may_log_in(account)
}

/// Accounts that may submit journaled mail (SMTP AUTH).
pub fn source(account: &Account) -> bool {
    account.roles.contains(&Role::Source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password("").is_err());
    }

    #[test]
    fn one_check_then_the_roles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("open");
        archive
            .put_account(&Account {
                name: "ann".into(),
                password_hash: hash_password("s3cret").expect("hash"),
                roles: vec![Role::Auditor],
                created: 0,
                salesperson: None,
                grants: Vec::new(),
            })
            .expect("put");
        let ok = check(&archive, "ann", "s3cret").expect("logs in");
        assert_eq!(ok.name, "ann");
        assert!(reader(&ok), "an auditor reads");
        assert!(!source(&ok), "but submits no mail");
        assert!(check(&archive, "ann", "wrong").is_none());
        assert!(check(&archive, "bob", "s3cret").is_none());
    }

    #[test]
    fn names() {
        assert!(check_name("exchange-01@contoso.com").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
    }

    #[test]
    fn throttle_counts_before_checking_and_a_success_resets_nothing() {
        let t = Throttle::new(Duration::from_secs(60), 3);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        // Three attempts in flight at once: all counted before any is checked.
        let a = t.begin(ip, "ann").expect("first");
        let b = t.begin(ip, "ann").expect("second");
        let c = t.begin(ip, "ann").expect("third");
        assert_eq!(c.delay(), Duration::from_secs(4));
        assert!(t.begin(ip, "ann").is_none(), "a fourth is refused");
        assert!(t.blocked(ip));
        // One of them was the right password: it takes back its own count only.
        t.succeeded(a);
        drop((b, c));
        let d = t.begin(ip, "bob").expect("one more after the success");
        assert_eq!(d.failures, 3);
        assert_eq!(d.delay(), Duration::from_secs(4));
        assert!(t.begin(ip, "bob").is_none());
        // Per account, from many addresses: three times the address limit.
        for i in 0..9u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            if i < 7 {
                assert!(t.begin(ip, "Carol").is_some(), "attempt {i}");
            } else {
                let _ = t.begin(ip, "carol");
            }
        }
        assert!(
            t.begin(other, "CAROL").is_none(),
            "the account is throttled"
        );
        assert!(t.begin(other, "dave").is_some(), "other accounts are not");
    }

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            password_hash: "hash".into(),
            roles: vec![Role::Salesperson],
            created: 0,
            salesperson: None,
            grants: Vec::new(),
        }
    }

    #[test]
    fn remembered_logins_are_per_source_and_can_be_forgotten() {
        let logins = Logins::standard();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let f = logins.fingerprint(ip, "alice", "secret").expect("key");
        assert_ne!(Some(f.clone()), logins.fingerprint(ip, "alice", "secreT"));
        assert_ne!(Some(f.clone()), logins.fingerprint(ip, "alices", "ecret"));
        let elsewhere: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_ne!(
            Some(f.clone()),
            logins.fingerprint(elsewhere, "alice", "secret")
        );
        assert_eq!(logins.recall(&f), None);
        let account = alice();
        logins.remember(f.clone(), &account);
        assert_eq!(logins.recall(&f), Some(("alice".into(), "hash".into())));
        logins.forget(&f);
        assert_eq!(logins.recall(&f), None);
    }

    #[test]
    fn remembering_can_be_turned_off() {
        let logins = Logins::remembering(Duration::ZERO);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let f = logins.fingerprint(ip, "alice", "secret").expect("key");
        let account = alice();
        logins.remember(f.clone(), &account);
        assert_eq!(logins.recall(&f), None, "every login is checked again");
    }
}
