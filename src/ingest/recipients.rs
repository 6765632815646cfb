//! Who a message went to, and how we know.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::address;

/// Where the gateway learned of a recipient. A recipient named in several places has several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientSource {
    /// The message's own `To:` header.
    HeaderTo,
    /// The message's own `Cc:` header.
    HeaderCc,
    /// The message's own `Bcc:` header (rare: most clients strip it).
    HeaderBcc,
    /// A `To:` line of an Exchange journal report.
    JournalTo,
    /// A `Cc:` line of an Exchange journal report.
    JournalCc,
    /// A `Bcc:` line of an Exchange journal report.
    JournalBcc,
    /// A `Recipient:` line of an Exchange journal report (type unknown to Exchange).
    JournalRecipient,
    /// An `X-Original-To:` header added by an MTA.
    XOriginalTo,
    /// An `X-Envelope-To:` header added by an MTA.
    XEnvelopeTo,
    /// A `Delivered-To:` header added by an MTA.
    DeliveredTo,
}

impl RecipientSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTo => "header-to",
            Self::HeaderCc => "header-cc",
            Self::HeaderBcc => "header-bcc",
            Self::JournalTo => "journal-to",
            Self::JournalCc => "journal-cc",
            Self::JournalBcc => "journal-bcc",
            Self::JournalRecipient => "journal-recipient",
            Self::XOriginalTo => "x-original-to",
            Self::XEnvelopeTo => "x-envelope-to",
            Self::DeliveredTo => "delivered-to",
        }
    }
}

/// One recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Normalized address (see [`address::normalize`]).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sources: BTreeSet<RecipientSource>,
    /// The distribution list this recipient was expanded from (journal `Expanded:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expanded_from: Option<String>,
    /// The mailbox that forwarded to this recipient (journal `Forwarded:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<String>,
}

/// An ordered set of recipients keyed by normalized address; adding merges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recipients(Vec<Recipient>);

impl Recipients {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a recipient seen in `source`. Returns false (and adds nothing) if `address` is not
    /// an address.
    pub fn add(&mut self, address: &str, name: Option<&str>, source: RecipientSource) -> bool {
        self.add_recipient(address, name, source, None, None)
    }

    /// Adds a recipient with its journal expansion or forwarding origin.
    pub fn add_recipient(
        &mut self,
        address: &str,
        name: Option<&str>,
        source: RecipientSource,
        expanded_from: Option<&str>,
        forwarded_from: Option<&str>,
    ) -> bool {
        let Some(normalized) = address::normalize(address) else {
            return false;
        };
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let expanded_from = expanded_from.and_then(address::normalize);
        let forwarded_from = forwarded_from.and_then(address::normalize);
        match self.0.iter_mut().find(|r| r.address == normalized) {
            Some(existing) => {
                existing.sources.insert(source);
                if existing.name.is_none() {
                    existing.name = name.map(str::to_owned);
                }
                if existing.expanded_from.is_none() {
                    existing.expanded_from = expanded_from;
                }
                if existing.forwarded_from.is_none() {
                    existing.forwarded_from = forwarded_from;
                }
            }
            None => self.0.push(Recipient {
                address: normalized,
                name: name.map(str::to_owned),
                sources: BTreeSet::from([source]),
                expanded_from,
                forwarded_from,
            }),
        }
        true
    }

    /// Merges another set into this one (the union of addresses and of their sources).
    /// Returns whether anything changed.
    pub fn merge(&mut self, other: &Recipients) -> bool {
        let before = self.clone();
        for r in &other.0 {
            for &source in &r.sources {
                self.add_recipient(
                    &r.address,
                    r.name.as_deref(),
                    source,
                    r.expanded_from.as_deref(),
                    r.forwarded_from.as_deref(),
                );
            }
        }
        *self != before
    }

    /// Removes an address (any form [`address::normalize`] accepts).
    pub fn remove(&mut self, address: &str) {
        if let Some(normalized) = address::normalize(address) {
            self.0.retain(|r| r.address != normalized);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Recipient> {
        self.0.iter()
    }

    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| r.address.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merges_by_normalized_address() {
        let mut set = Recipients::new();
        assert!(set.add("Bob@Example.com", Some("Bob"), RecipientSource::HeaderTo));
        assert!(set.add("bob@example.com", None, RecipientSource::JournalBcc));
        assert!(!set.add("not an address", None, RecipientSource::HeaderCc));
        assert_eq!(set.len(), 1);
        let bob = set.iter().next().expect("one recipient");
        assert_eq!(bob.name.as_deref(), Some("Bob"));
        assert_eq!(
            bob.sources.iter().copied().collect::<Vec<_>>(),
            [RecipientSource::HeaderTo, RecipientSource::JournalBcc]
        );
    }

    #[test]
    fn merge_is_a_union() {
        let mut a = Recipients::new();
        a.add("x@example.com", None, RecipientSource::HeaderTo);
        let mut b = Recipients::new();
        b.add("x@example.com", None, RecipientSource::XOriginalTo);
        b.add("y@example.com", None, RecipientSource::JournalBcc);
        assert!(a.merge(&b));
        assert!(!a.merge(&b), "merging the same set twice changes nothing");
        assert_eq!(
            a.addresses().collect::<Vec<_>>(),
            ["x@example.com", "y@example.com"]
        );
        assert_eq!(a.iter().next().map(|r| r.sources.len()), Some(2));
    }
}
