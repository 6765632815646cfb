//! Who may read what, decided in one place for IMAP and HTTP alike.
//!
//! `admin` and `auditor` accounts see every message. A `salesperson` account sees the
//! messages where its salesperson, or a salesperson it was granted, is a party (sender or
//! recipient, by any of their addresses), the interaction-log entries of those salespeople
//! only, and a message's blind recipients only where they are its own or it sent the
//! message ([`Access::redact`]). Nobody else sees anything.

use std::collections::BTreeSet;

use crate::archive::{self, Account, Archive, Role};
use crate::directory::Directory;

/// What an account may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything, quarantined junk included.
    All,
    /// The messages where one of the account's salespeople (its own, and those it was
    /// granted) is a party.
    Messages(Visible),
}

/// What an account that does not see everything sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// The messages (UIDs) where one of the salespeople is a party.
    pub uids: BTreeSet<u32>,
    /// The salespeople's codes: their interaction-log entries (and no one else's).
    pub codes: BTreeSet<String>,
    /// The salespeople's addresses: who a blind recipient may be shown to.
    pub addresses: BTreeSet<String>,
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
        let mut visible = Visible::default();
        if account.roles.contains(&Role::Salesperson) {
            let codes = account.salesperson.iter().chain(&account.grants);
            for code in codes {
                let Some(person) = directory.salesperson_by_code(code) else {
                    continue;
                };
                visible.codes.insert(person.code.clone());
                for address in person.addresses() {
                    visible.uids.extend(archive.uids_with_address(address)?);
                    visible.addresses.insert(address.to_owned());
                }
            }
        }
        Ok(Access::Messages(visible))
    }

    /// Sees nothing (an account that vanished, or a failure to read the directory).
    pub fn nothing() -> Self {
        Access::Messages(Visible::default())
    }

    /// Whether the account sees everything (and so the Junk folder).
    pub fn sees_all(&self) -> bool {
        matches!(self, Access::All)
    }

    pub fn may_read(&self, uid: u32) -> bool {
        match self {
            Access::All => true,
            Access::Messages(v) => v.uids.contains(&uid),
        }
    }

    /// Keeps the UIDs the account may read (a sorted list stays sorted).
    pub fn filter(&self, uids: &mut Vec<u32>) {
        if let Access::Messages(v) = self {
            uids.retain(|u| v.uids.contains(u));
        }
    }

    /// Whether the account sees the interaction-log entries (and opportunities) of the
    /// salesperson `code`: its own salesperson's and those it was granted.
    pub fn sees_salesperson(&self, code: &str) -> bool {
        match self {
            Access::All => true,
            Access::Messages(v) => v.codes.contains(code),
        }
    }

    /// Takes out of `record` the blind recipients (named in no `To:` or `Cc:`, only in a
    /// journal report's Bcc, a `Bcc:` header or an envelope header) that the account may
    /// not know of: a blind copy is shown only to accounts that see everything, to the
    /// sender's salesperson and to the blind recipient's own salesperson. Everything that
    /// shows a record to an account (HTTP, IMAP SEARCH) shows it through this.
    pub fn redact(&self, record: &mut archive::Record) {
        let Access::Messages(v) = self else {
            return;
        };
        let m = &record.meta;
        let sent_by_us = m
            .sender
            .iter()
            .chain(m.from.iter().map(|f| &f.address))
            .any(|a| v.addresses.contains(a));
        if sent_by_us {
            return;
        }
        let hidden: Vec<String> = m
            .recipients
            .iter()
            .filter(|r| is_blind(r) && !v.addresses.contains(&r.address))
            .map(|r| r.address.clone())
            .collect();
        for address in hidden {
            record.meta.recipients.remove(&address);
        }
    }
}

/// A recipient that the message's own `To:` and `Cc:` (or a journal report's `To:`/`Cc:`
/// lines, which repeat them) do not name.
fn is_blind(r: &crate::ingest::recipients::Recipient) -> bool {
    use crate::ingest::recipients::RecipientSource as S;
    !r.sources
        .iter()
        .any(|s| matches!(s, S::HeaderTo | S::HeaderCc | S::JournalTo | S::JournalCc))
}

/// Whether `account` may log in to read mail (IMAP, HTTP).
pub fn may_log_in(account: &Account) -> bool {
    account
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor | Role::Salesperson))
}
