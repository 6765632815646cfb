//! HTTP Basic authentication against the accounts, with the same rules as IMAP: the roles
//! that may log in (`access::may_log_in`), failures answered slowly and throttled per source
//! address and account.
//!
//! Basic sends the password with every request; the checks go through the gateway's one
//! `auth::Logins`, which runs argon2 a few at a time and remembers a verified login for a
//! few minutes (see there).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};

use super::error::ApiError;
use super::{Context, blocking};
use crate::access::Access;
use crate::archive::{Account, Role};
use crate::auth::{self, Login};
use crate::directory::Directory;

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

/// The account of a request that must have one: 401 without credentials, and 401 after a
/// delay for wrong ones.
pub async fn require(
    ctx: &Arc<Context>,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<User, ApiError> {
    match credentials(headers) {
        Credentials::None => Err(ApiError::unauthorized()),
        Credentials::Malformed => Err(refuse(ctx, ip, "malformed credentials").await),
        Credentials::Basic { name, password } => authenticate(ctx, ip, name, password).await,
    }
}

async fn authenticate(
    ctx: &Arc<Context>,
    ip: IpAddr,
    name: String,
    password: String,
) -> Result<User, ApiError> {
    let account = match ctx
        .logins
        .login(&ctx.archive, ip, &name, &password, auth::reader)
        .await
    {
        Login::Accepted(account) => account,
        Login::Refused { delay } => {
            tracing::info!(account = %name, "HTTP login failed");
            tokio::time::sleep(delay).await;
            return Err(ApiError::unauthorized());
        }
        Login::Throttled => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tracing::info!(account = %name, "HTTP login refused: too many failures from this address");
            return Err(ApiError::unauthorized());
        }
        Login::Busy => return Err(ApiError::busy()),
    };
    let archive = Arc::clone(&ctx.archive);
    blocking(move || {
        let (salespeople, contacts) = archive.load_directory()?;
        let directory = Directory::new(salespeople, contacts);
        let access = Access::of(&account, &directory, &archive)?;
        Ok(User { account, access })
    })
    .await
}

/// Counts a failure from `ip` (credentials that name nobody), waits as the throttle says,
/// and answers 401.
async fn refuse(ctx: &Context, ip: IpAddr, why: &str) -> ApiError {
    let delay = (ctx.logins.throttle())
        .failed_unchecked(ip)
        .unwrap_or(Duration::from_secs(2));
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
}
