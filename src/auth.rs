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

/// Checks a name and password against the accounts; the account if they match and it has
/// `role`. Slow on purpose (argon2): call it off the async runtime.
pub fn authenticate(archive: &Archive, name: &str, password: &str, role: Role) -> Option<Account> {
    authenticate_any(archive, name, password, &[role])
}

/// The account, if `password` is its password and it has one of `roles`. One argon2 check
/// whatever the outcome (an unknown name is checked against a decoy), so neither the time
/// taken nor the answer tells which names exist or which roles they have.
pub fn authenticate_any(
    archive: &Archive,
    name: &str,
    password: &str,
    roles: &[Role],
) -> Option<Account> {
    let account = archive.account(name).ok().flatten();
    let hash = account
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |a| a.password_hash.clone());
    let matches = verify_password(password, &hash);
    account.filter(|a| matches && roles.iter().any(|r| a.roles.contains(r)))
}

/// Failed logins per source address: after `free` failures within `window`, each further
/// attempt waits, and past `max` the source is refused until the window passes.
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    window: Duration,
    max: u32,
}

impl Throttle {
    pub fn new(window: Duration, max: u32) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            window,
            max,
        }
    }

    fn count(&self, ip: IpAddr) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some((since, n)) if since.elapsed() < self.window => *n,
            _ => 0,
        }
    }

    /// Whether `ip` has failed too often to try again now.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.count(ip) >= self.max
    }

    /// How long to wait before answering a failed attempt from `ip`: one second, doubling
    /// with each recent failure, at most 16.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let n = self.count(ip).min(4);
        Duration::from_secs(1 << n)
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (since, _)| since.elapsed() < window);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&ip);
    }
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
    fn one_check_accepts_any_of_the_roles_asked_for() {
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
        let readers = [Role::Admin, Role::Auditor, Role::Salesperson];
        let ok = authenticate_any(&archive, "ann", "s3cret", &readers).expect("logs in");
        assert_eq!(ok.name, "ann");
        assert!(authenticate_any(&archive, "ann", "wrong", &readers).is_none());
        assert!(authenticate_any(&archive, "bob", "s3cret", &readers).is_none());
        assert!(authenticate(&archive, "ann", "s3cret", Role::Admin).is_none());
        assert!(authenticate(&archive, "ann", "s3cret", Role::Auditor).is_some());
    }

    #[test]
    fn names() {
        assert!(check_name("exchange-01@contoso.com").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
    }

    #[test]
    fn throttle_blocks_after_max_failures() {
        let t = Throttle::new(Duration::from_secs(60), 3);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(!t.blocked(ip));
        for _ in 0..3 {
            t.failed(ip);
        }
        assert!(t.blocked(ip));
        assert_eq!(t.delay(ip), Duration::from_secs(8));
        t.succeeded(ip);
        assert!(!t.blocked(ip));
    }
}
