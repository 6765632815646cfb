//! Who may read what, decided in one place for IMAP and HTTP alike.
//!
//! `admin` and `auditor` accounts see every message. A `salesperson` account sees the
//! messages where its salesperson, or a salesperson it was granted, is a party (sender or
//! recipient, by any of their addresses). Nobody else sees anything.

use std::collections::BTreeSet;

use crate::archive::{self, Account, Archive, Role};
use crate::directory::Directory;

/// What an account may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything, quarantined junk included.
    All,
    /// The messages (UIDs) where one of these salespeople is a party.
    Messages(BTreeSet<u32>),
}

impl Access {
    /// The access of `account`, as of now (the directory and the archive change; compute
    /// it again when they do).
    pub fn of(
        account: &Account,
        directory: &Directory,
        archive: &Archive,
    ) -> Result<Self, archive::Error> {
        if account
            .roles
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Auditor))
        {
            return Ok(Access::All);
        }
        let mut uids = BTreeSet::new();
        if account.roles.contains(&Role::Salesperson) {
            let codes = account.salesperson.iter().chain(&account.grants);
            for code in codes {
                let Some(person) = directory.salesperson_by_code(code) else {
                    continue;
                };
                for address in person.addresses() {
                    uids.extend(archive.uids_with_address(address)?);
                }
            }
        }
        Ok(Access::Messages(uids))
    }

    /// Whether the account sees everything (and so the Junk folder).
    pub fn sees_all(&self) -> bool {
        matches!(self, Access::All)
    }

    pub fn may_read(&self, uid: u32) -> bool {
        match self {
            Access::All => true,
            Access::Messages(uids) => uids.contains(&uid),
        }
    }

    /// Keeps the UIDs the account may read (a sorted list stays sorted).
    pub fn filter(&self, uids: &mut Vec<u32>) {
        if let Access::Messages(allowed) = self {
            uids.retain(|u| allowed.contains(u));
        }
    }
}

/// Whether `account` may log in to read mail (IMAP, HTTP).
pub fn may_log_in(account: &Account) -> bool {
    account
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor | Role::Salesperson))
}
