//! Accounts, stored in the archive's database (the engine stays inside `archive/`).

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::USERS;
use super::{Archive, Db, Error};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May submit journal mail over SMTP AUTH.
    Source,
    /// Sees everything (later: over IMAP and HTTP) and administers.
    Admin,
    /// Sees everything, read-only.
    Auditor,
    /// A salesperson: sees the mail where that salesperson (or one granted) is a party.
    Salesperson,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "source" => Ok(Role::Source),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            "salesperson" => Ok(Role::Salesperson),
            _ => Err(format!(
                "{s:?} is not a role (source, admin, auditor, salesperson)"
            )),
        }
    }
}

/// An account: its name, its argon2 password hash (PHC string) and its roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub created: i64,
    /// The salesperson (code) a `salesperson` account is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesperson: Option<String>,
    /// Other salespeople (codes) whose mail an administrator let this account read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

impl Archive {
    /// Adds or replaces an account (replacing keeps nothing of the old one).
    pub fn put_account(&self, account: &Account) -> Result<(), Error> {
        let bytes = serde_json::to_vec(account).map_err(|e| Error::Corrupt {
            uid: 0,
            reason: e.to_string(),
        })?;
        let txn = self.db.begin_write().db()?;
        txn.open_table(USERS)
            .db()?
            .insert(account.name.as_str(), bytes.as_slice())
            .db()?;
        txn.commit().db()
    }

    pub fn account(&self, name: &str) -> Result<Option<Account>, Error> {
        let txn = self.db.begin_read().db()?;
        let table = txn.open_table(USERS).db()?;
        let Some(g) = table.get(name).db()? else {
            return Ok(None);
        };
        serde_json::from_slice(g.value())
            .map(Some)
            .map_err(|e| Error::Corrupt {
                uid: 0,
                reason: format!("account {name}: {e}"),
            })
    }

    /// Removes an account; returns whether it existed.
    pub fn remove_account(&self, name: &str) -> Result<bool, Error> {
        let txn = self.db.begin_write().db()?;
        let existed = txn.open_table(USERS).db()?.remove(name).db()?.is_some();
        txn.commit().db()?;
        Ok(existed)
    }

    pub fn accounts(&self) -> Result<Vec<Account>, Error> {
        let txn = self.db.begin_read().db()?;
        let table = txn.open_table(USERS).db()?;
        let mut out = Vec::new();
        for entry in table.iter().db()? {
            let (k, v) = entry.db()?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| Error::Corrupt {
                    uid: 0,
                    reason: format!("account {}: {e}", k.value()),
                })?,
            );
        }
        Ok(out)
    }
}
