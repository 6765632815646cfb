//! HTTP Basic authentication against the accounts, with the same rules as IMAP: the roles
//! that may log in (`access::may_log_in`), failures answered slowly and throttled per source
//! address.
//!
//! Basic sends the password with every request, and argon2 is slow and takes 19 MiB per
//! check on purpose. So checks run a few at a time (a flood of guesses queues instead of
//! exhausting memory), and a verified name and password are remembered for a few minutes as
//! an HMAC under a key that lives only in this process. A remembered login still reads its
//! account on every request: a removed account, a changed password or changed roles take
//! effect at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use ring::hmac;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::{Context, blocking};
use crate::access::{self, Access};
use crate::archive::{Account, Archive, Role};
use crate::auth;
use crate::directory::Directory;

/// How long a verified login is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// At most this many remembered logins: a full table drops the expired ones, or else all
/// of them (which only costs the next requests an argon2 check each).
const REMEMBER_MAX: usize = 10_000;
/// Password checks running at once.
const CHECKS_AT_ONCE: usize = 4;

/// An authenticated account and what it may read, as of this request.
#[derive(Debug, Clone)]
pub struct User {
    pub account: Account,
    pub access: Access,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.account.roles.contains(&role)
    }
}

/// Credentials as an `Authorization` header carries them.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic {
        name: String,
        password: String,
    },
    /// Present but not readable Basic credentials (or another scheme).
    Malformed,
}

/// The credentials of a request.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let parsed = value.to_str().ok().and_then(|v| {
        let (scheme, encoded) = v.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = data_encoding::BASE64
            .decode(encoded.trim().as_bytes())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (name, password) = text.split_once(':')?;
        Some((name.to_owned(), password.to_owned()))
    });
    match parsed {
        Some((name, password)) => Credentials::Basic { name, password },
        None => Credentials::Malformed,
    }
}

struct Remembered {
    name: String,
    /// The account's password hash when it was verified: a new password forgets it.
    password_hash: String,
    until: Instant,
}

/// The state authentication keeps between requests.
pub struct Logins {
    /// `None` if the system's random generator failed: then nothing is remembered.
    key: Option<hmac::Key>,
    remembered: Mutex<HashMap<Vec<u8>, Remembered>>,
    checks: Semaphore,
}

impl Default for Logins {
    fn default() -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok();
        Self {
            key,
            remembered: Mutex::new(HashMap::new()),
            checks: Semaphore::new(CHECKS_AT_ONCE),
        }
    }
}

impl Logins {
    fn fingerprint(&self, name: &str, password: &str) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let mut ctx = hmac::Context::with_key(key);
        // Length-prefixed, so that no other name and password make the same bytes.
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name.as_bytes());
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
                until: Instant::now() + REMEMBER,
            },
        );
    }

    fn forget(&self, fingerprint: &[u8]) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(fingerprint);
    }
}

/// The account of a request that must have one: 401 without credentials, and 401 after a
/// delay for wrong ones.
pub async fn require(
    ctx: &Arc<Context>,
    logins: &Logins,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<User, ApiError> {
    match credentials(headers) {
        Credentials::None => Err(ApiError::unauthorized()),
        Credentials::Malformed => Err(refuse(ctx, ip, "malformed credentials").await),
        Credentials::Basic { name, password } => {
            authenticate(ctx, logins, ip, name, password).await
        }
    }
}

async fn authenticate(
    ctx: &Arc<Context>,
    logins: &Logins,
    ip: IpAddr,
    name: String,
    password: String,
) -> Result<User, ApiError> {
    if ctx.throttle.blocked(ip) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tracing::info!(account = %name, "HTTP login refused: too many failures from this address");
        return Err(ApiError::unauthorized());
    }
    let fingerprint = logins.fingerprint(&name, &password);
    let recalled = fingerprint.as_deref().and_then(|f| logins.recall(f));
    // Held while argon2 runs (only when it has to).
    let _permit = match recalled {
        Some(_) => None,
        None => Some(
            logins
                .checks
                .acquire()
                .await
                .map_err(|e| ApiError::internal(format!("login semaphore: {e}")))?,
        ),
    };
    let archive = Arc::clone(&ctx.archive);
    let account = blocking(move || {
        let account = match recalled {
            Some((remembered, hash)) => archive
                .account(&remembered)?
                .filter(|a| a.password_hash == hash),
            None => check_password(&archive, &name, &password),
        };
        let Some(account) = account.filter(access::may_log_in) else {
            return Ok((name, None));
        };
        let (salespeople, contacts) = archive.load_directory()?;
        let directory = Directory::new(salespeople, contacts);
        let access = Access::of(&account, &directory, &archive)?;
        Ok((name, Some(User { account, access })))
    })
    .await?;
    match account {
        (_, Some(user)) => {
            ctx.throttle.succeeded(ip);
            if let Some(f) = fingerprint {
                logins.remember(f, &user.account);
            }
            Ok(user)
        }
        (name, None) => {
            if let Some(f) = &fingerprint {
                logins.forget(f);
            }
            tracing::info!(account = %name, "HTTP login failed");
            Err(refuse(ctx, ip, "wrong credentials").await)
        }
    }
}

/// One argon2 check whatever the outcome (see `auth::authenticate_any`).
fn check_password(archive: &Archive, name: &str, password: &str) -> Option<Account> {
    auth::authenticate_any(
        archive,
        name,
        password,
        &[Role::Admin, Role::Auditor, Role::Salesperson],
    )
}

/// Counts a failure from `ip`, waits as the throttle says, and answers 401.
async fn refuse(ctx: &Context, ip: IpAddr, why: &str) -> ApiError {
    let delay = ctx.throttle.delay(ip);
    ctx.throttle.failed(ip);
    tracing::debug!(%ip, why, "HTTP authentication failed");
    tokio::time::sleep(delay).await;
    ApiError::unauthorized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("value"),
        );
        h
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(credentials(&HeaderMap::new()), Credentials::None);
        // "alice:pa:ss wörd": the password may hold colons and any UTF-8.
        let encoded = data_encoding::BASE64.encode("alice:pa:ss wörd".as_bytes());
        assert_eq!(
            credentials(&with(&format!("basic  {encoded}"))),
            Credentials::Basic {
                name: "alice".into(),
                password: "pa:ss wörd".into()
            }
        );
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic !!!",
            &format!("Basic {}", data_encoding::BASE64.encode(b"no colon")),
        ] {
            assert_eq!(credentials(&with(bad)), Credentials::Malformed, "{bad}");
        }
    }

    #[test]
    fn remembered_logins_expire_and_can_be_forgotten() {
        let logins = Logins::default();
        let f = logins.fingerprint("alice", "secret").expect("key");
        assert_ne!(Some(f.clone()), logins.fingerprint("alice", "secreT"));
        assert_ne!(Some(f.clone()), logins.fingerprint("alices", "ecret"));
        assert_eq!(logins.recall(&f), None);
        let account = Account {
            name: "alice".into(),
            password_hash: "hash".into(),
            roles: vec![Role::Salesperson],
            created: 0,
            salesperson: None,
            grants: Vec::new(),
        };
        logins.remember(f.clone(), &account);
        assert_eq!(logins.recall(&f), Some(("alice".into(), "hash".into())));
        logins.forget(&f);
        assert_eq!(logins.recall(&f), None);
    }
}
