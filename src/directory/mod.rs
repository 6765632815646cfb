//! The directory: salespeople (inside the organization) and contacts (outside), and which of
//! them a message is between. Parsing, validation and matching are pure; storage is the
//! archive's.
//!
//! Three steps, each in its own module:
//!
//! - **Import** ([`parse_salespeople`], [`parse_contacts`]): reads a CSV file as a CRM or a
//!   spreadsheet exports it and rejects, row by row, what is wrong *within that one file*: a
//!   wrong number of fields, an empty required field, something that is not an e-mail address,
//!   an unreadable `log_email`, and a code, number or address that an earlier row of the same
//!   file already has. A rejected row is reported (file and line) and left out; the rest of
//!   the file is imported. A file whose header lacks a required column imports nothing.
//! - **Validation** ([`validate`]): checks the directory *as a whole* against the
//!   configuration, which an import file cannot know: salespeople's addresses must be inside
//!   the organization's domains and contacts' outside, and no address may belong to two
//!   people (two salespeople, two contacts, or one of each; the import can only see one file
//!   at a time). It also re-checks what an import guarantees (unique codes and numbers,
//!   normalized addresses), so lists that did not come from an import are checked too. This is
//!   what `mailjournal validate` and the import summary show before the directory goes live.
//! - **Matching** ([`Directory::pairs`]): which salesperson–contact pairs a message is between.
//!
//! A directory with validation problems still works, predictably: an address that belongs to
//! two people matches nobody (see [`Directory::ambiguous`]), and everything else matches as
//! listed.

mod folders;
mod import;
mod matching;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use folders::{CONTACTS_FOLDER, NO_COMPANY, SALESPEOPLE_FOLDER};
pub use import::{parse_contacts, parse_log_email, parse_salespeople};
pub use matching::{Directory, Pair, Role, counts_as_recipient};
pub use validate::{DirectoryProblem, ProblemKind, validate};

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

impl Salesperson {
    /// The main address, then the alternative ones.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.email.as_str()).chain(self.alt_emails.iter().map(String::as_str))
    }

    pub fn id(&self) -> PersonId {
        PersonId::Salesperson(self.code.clone())
    }
}

/// A contact: someone outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// A unique contact number, as the CRM knows them.
    pub number: String,
    pub name: String,
    /// May be empty (a private person).
    pub company: String,
    /// Normalized addresses (at least one).
    pub emails: Vec<String>,
    /// The contact's "log e-mail" preference: when off, no new entries and no tracking.
    pub log_email: bool,
}

impl Contact {
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.emails.iter().map(String::as_str)
    }

    pub fn id(&self) -> PersonId {
        PersonId::Contact(self.number.clone())
    }
}

/// Who someone is in the directory, by key: a salesperson's code or a contact's number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum PersonId {
    Salesperson(String),
    Contact(String),
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Salesperson(code) => write!(f, "salesperson {code}"),
            Self::Contact(number) => write!(f, "contact {number}"),
        }
    }
}

/// Someone in the directory, as [`Directory::who`] finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Person<'a> {
    Salesperson(&'a Salesperson),
    Contact(&'a Contact),
}

impl Person<'_> {
    pub fn id(&self) -> PersonId {
        match self {
            Self::Salesperson(s) => s.id(),
            Self::Contact(c) => c.id(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Salesperson(s) => &s.name,
            Self::Contact(c) => &c.name,
        }
    }
}

impl fmt::Display for Person<'_> {
    /// `salesperson AS (Alice Smith)`, `contact 1001 (Bob Brown, Fabrikam)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Salesperson(s) => write!(f, "salesperson {} ({})", s.code, s.name),
            Self::Contact(c) if c.company.is_empty() => {
                write!(f, "contact {} ({})", c.number, c.name)
            }
            Self::Contact(c) => write!(f, "contact {} ({}, {})", c.number, c.name, c.company),
        }
    }
}

/// One problem found in an import file, by file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub file: String,
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
    /// Only a note (which column was taken for which): nothing was rejected.
    pub note: bool,
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{DomainRule, OrgDomains};
    use crate::ingest::recipients::{RecipientSource, Recipients};

    const SALESPEOPLE_CSV: &[u8] =
        include_bytes!("../../tests/it/fixtures/directory/salespeople.csv");
    const CONTACTS_CSV: &[u8] = include_bytes!("../../tests/it/fixtures/directory/contacts.csv");

    fn lines(problems: &[ImportProblem]) -> Vec<(u64, &str)> {
        problems
            .iter()
            .map(|p| (p.line, p.reason.as_str()))
            .collect()
    }

    /// The fixture files of the integration tests: what they import and report is part of
    /// what the other tests rely on.
    #[test]
    fn fixture_files() {
        let (salespeople, problems) = parse_salespeople(SALESPEOPLE_CSV, "salespeople.csv");
        assert_eq!(
            salespeople
                .iter()
                .map(|s| s.code.as_str())
                .collect::<Vec<_>>(),
            ["AS", "BM", "CC", "DD"]
        );
        assert_eq!(
            salespeople[0].alt_emails,
            ["alice.andersen@contoso.com", "a.seller@contoso.com"]
        );
        assert_eq!(salespeople[1].email, "bob@contoso.com");
        assert_eq!(salespeople[2].name, "Chen, Carol");
        assert_eq!(
            lines(&problems),
            [
                (
                    1,
                    "ignoring unknown column(s) \"phone\" (known columns: code, name, email, \
                     alt_emails)"
                ),
                (6, "email: \"erin.contoso.com\" is not an e-mail address"),
                (7, "code \"AS\" is already used on line 2"),
                (8, "address bob@contoso.com is already used on line 3"),
                (9, "expected 5 fields as in the header (line 1), found 3"),
                (10, "empty name"),
            ]
        );
        assert_eq!(
            problems[1].to_string(),
            "salespeople.csv:6: email: \"erin.contoso.com\" is not an e-mail address"
        );

        let (contacts, problems) = parse_contacts(CONTACTS_CSV, "contacts.csv");
        assert_eq!(
            contacts
                .iter()
                .map(|c| (c.number.as_str(), c.log_email))
                .collect::<Vec<_>>(),
            [
                ("1001", true),
                ("1002", true),
                ("1003", true),
                ("1004", false),
                ("1005", true),
                ("1010", true),
            ]
        );
        assert_eq!(
            contacts[2].emails,
            ["rene@fabrikam.com", "rene.ortiz@example.net"]
        );
        assert_eq!(contacts[2].name, "René Ortiz");
        assert_eq!(contacts[5].company, "");
        assert_eq!(
            lines(&problems),
            [
                (8, "emails: \"not-an-address\" is not an e-mail address"),
                (9, "number \"1001\" is already used on line 2"),
                (10, "address marta@fabrikam.com is already used on line 2"),
                (
                    11,
                    "log_email \"maybe\" is not one of yes/no, true/false, 1/0, on/off, y/n \
                     (empty means yes)"
                ),
                (12, "expected 5 fields as in the header (line 1), found 6"),
            ]
        );

        let org = OrgDomains::new(vec![DomainRule::parse("contoso.com").expect("valid")]);
        assert_eq!(validate(&salespeople, &contacts, &org), []);

        let dir = Directory::new(salespeople, contacts);
        let mut to = Recipients::new();
        to.add("marta@fabrikam.com", None, RecipientSource::HeaderTo);
        to.add("kim@fabrikam.com", None, RecipientSource::HeaderTo);
        to.add("bob@contoso.com", None, RecipientSource::HeaderCc);
        to.add("rene.ortiz@example.net", None, RecipientSource::JournalBcc);
        assert_eq!(
            dir.pairs(Some("Alice@Contoso.com"), &to),
            [
                Pair {
                    salesperson: "AS".into(),
                    contact: "1001".into(),
                    contact_is: Role::Recipient,
                },
                Pair {
                    salesperson: "AS".into(),
                    contact: "1003".into(),
                    contact_is: Role::Recipient,
                },
            ]
        );
        assert_eq!(
            dir.folder(&PersonId::Contact("1010".into()))
                .map(|p| p.join("/")),
            Some("Contacts/(no company)/Pat Private".to_owned())
        );
    }
}
