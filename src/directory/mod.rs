//! The directory: salespeople (inside the organization) and contacts (outside), and which of
//! them a message is between. Parsing, validation and matching are pure; storage is the
//! archive's.
//! (Being written: see the interface below.)

use serde::{Deserialize, Serialize};

/// A salesperson: someone inside whose mail with contacts is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Salesperson {
    /// A short unique code (`AS`, `0042`), as the CRM knows them.
    pub code: String,
    pub name: String,
    /// Normalized (see `crate::address::normalize`).
    pub email: String,
    /// Normalized alternative addresses (aliases, old addresses).
    #[serde(default)]
    pub alt_emails: Vec<String>,
}

/// A contact: someone outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// A unique contact number, as the CRM knows them.
    pub number: String,
    pub name: String,
    pub company: String,
    /// Normalized addresses (at least one).
    pub emails: Vec<String>,
    /// The contact's "log e-mail" preference: when off, no new entries and no tracking.
    pub log_email: bool,
}

/// One problem found in an import file, by file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub file: String,
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}
