//! Who a message is between: the directory's address index and the salesperson–contact pairs
//! of a message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{Contact, Person, PersonId, Salesperson, folders};
use crate::address;
use crate::ingest::recipients::{RecipientSource, Recipients};

/// Which side of a message the contact of a [`Pair`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The contact sent it to the salesperson (inbound).
    Sender,
    /// The salesperson sent it to the contact (outbound).
    Recipient,
}

/// One entry of the interaction log: a salesperson and a contact a message is between.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pair {
    /// The salesperson's code.
    pub salesperson: String,
    /// The contact's number.
    pub contact: String,
    pub contact_is: Role,
}

/// Whether a recipient seen in `source` is a recipient for the interaction log.
///
/// Every source is: the message's own To/Cc/Bcc, the journal report's To/Cc/Bcc/Recipient
/// lines (the only place a Bcc recipient shows), and also `X-Original-To`, `X-Envelope-To`
/// and `Delivered-To`. Those three are written by the MTA that delivered the message to a
/// mailbox, so they name someone it was actually delivered to (from the envelope, as a
/// journal report does), and with a plain BCC copy rather than a journal report they are the
/// only trace of a Bcc recipient. Ingest already drops the journal mailbox itself. The match
/// is exhaustive so that a new source has to be decided on here.
pub fn counts_as_recipient(source: RecipientSource) -> bool {
    match source {
        RecipientSource::HeaderTo
        | RecipientSource::HeaderCc
        | RecipientSource::HeaderBcc
        | RecipientSource::JournalTo
        | RecipientSource::JournalCc
        | RecipientSource::JournalBcc
        | RecipientSource::JournalRecipient
        | RecipientSource::XOriginalTo
        | RecipientSource::XEnvelopeTo
        | RecipientSource::DeliveredTo => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Salesperson(usize),
    Contact(usize),
}

/// The directory in memory: the lists, and an index of every address.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    salespeople: Vec<Salesperson>,
    contacts: Vec<Contact>,
    by_address: HashMap<String, Slot>,
    ambiguous: BTreeSet<String>,
    by_code: HashMap<String, usize>,
    by_number: HashMap<String, usize>,
    folders: BTreeMap<PersonId, Vec<String>>,
}

impl Directory {
    /// Builds the index. Addresses are normalized again (so hand-made lists work too) and
    /// ones that are not addresses are left out. An address that belongs to two people
    /// matches nobody (it is listed in [`Directory::ambiguous`]; [`super::validate`] reports
    /// it). A code or number listed twice finds the first.
    pub fn new(salespeople: Vec<Salesperson>, contacts: Vec<Contact>) -> Self {
        let mut by_address = HashMap::new();
        let mut ambiguous = BTreeSet::new();
        let mut index = |address: &str, slot: Slot| {
            let Some(address) = address::normalize(address) else {
                return;
            };
            match by_address.get(&address) {
                None => {
                    by_address.insert(address, slot);
                }
                Some(&existing) if existing == slot => {}
                Some(_) => {
                    ambiguous.insert(address);
                }
            }
        };
        for (i, s) in salespeople.iter().enumerate() {
            for a in s.addresses() {
                index(a, Slot::Salesperson(i));
            }
        }
        for (i, c) in contacts.iter().enumerate() {
            for a in c.addresses() {
                index(a, Slot::Contact(i));
            }
        }
        for a in &ambiguous {
            by_address.remove(a);
        }
        let mut by_code = HashMap::new();
        for (i, s) in salespeople.iter().enumerate() {
            by_code.entry(s.code.clone()).or_insert(i);
        }
        let mut by_number = HashMap::new();
        for (i, c) in contacts.iter().enumerate() {
            by_number.entry(c.number.clone()).or_insert(i);
        }
        let folders = folders::folders(&salespeople, &contacts);
        Self {
            salespeople,
            contacts,
            by_address,
            ambiguous,
            by_code,
            by_number,
            folders,
        }
    }

    pub fn salespeople(&self) -> &[Salesperson] {
        &self.salespeople
    }

    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    pub fn is_empty(&self) -> bool {
        self.salespeople.is_empty() && self.contacts.is_empty()
    }

    pub fn salesperson_by_code(&self, code: &str) -> Option<&Salesperson> {
        self.by_code
            .get(code)
            .and_then(|&i| self.salespeople.get(i))
    }

    pub fn contact_by_number(&self, number: &str) -> Option<&Contact> {
        self.by_number
            .get(number)
            .and_then(|&i| self.contacts.get(i))
    }

    pub fn person(&self, id: &PersonId) -> Option<Person<'_>> {
        match id {
            PersonId::Salesperson(code) => self.salesperson_by_code(code).map(Person::Salesperson),
            PersonId::Contact(number) => self.contact_by_number(number).map(Person::Contact),
        }
    }

    /// Whose address this is (any form [`address::normalize`] accepts: case and Unicode or
    /// ASCII domains do not matter). `None` for an unknown or ambiguous address.
    pub fn who(&self, address: &str) -> Option<Person<'_>> {
        let address = address::normalize(address)?;
        match *self.by_address.get(&address)? {
            Slot::Salesperson(i) => self.salespeople.get(i).map(Person::Salesperson),
            Slot::Contact(i) => self.contacts.get(i).map(Person::Contact),
        }
    }

    /// Normalized addresses that belong to more than one person and so match nobody.
    pub fn ambiguous(&self) -> impl Iterator<Item = &str> {
        self.ambiguous.iter().map(String::as_str)
    }

    /// The IMAP folder of a person, as path segments: `["Salespeople", name]` or
    /// `["Contacts", company, name]`. Segments hold no `/` and no control characters;
    /// companies spelt differently only in case share the first spelling; a contact without
    /// a company is under `(no company)`; two people who would share a folder (the same name,
    /// in any case) get their code or number appended: `John Smith (1001)`.
    pub fn folder(&self, id: &PersonId) -> Option<&[String]> {
        self.folders.get(id).map(Vec::as_slice)
    }

    /// Every person's folder (see [`Directory::folder`]), by person.
    pub fn folders(&self) -> impl Iterator<Item = (&PersonId, &[String])> {
        self.folders.iter().map(|(id, path)| (id, path.as_slice()))
    }

    /// Whose folder `path` (segments joined with `/`, as IMAP names it) is today, if
    /// anyone's.
    pub fn folder_owner(&self, path: &str) -> Option<&PersonId> {
        self.folders
            .iter()
            .find(|(_, segments)| path.split('/').eq(segments.iter().map(String::as_str)))
            .map(|(id, _)| id)
    }

    /// The salesperson–contact pairs of a message: one per salesperson and contact of whom one
    /// is the sender and the other a recipient (see [`counts_as_recipient`]), sorted by
    /// salesperson code, then contact number.
    ///
    /// Only the sender pairs with recipients: a message from salesperson A to contacts X and
    /// Y, Cc salesperson B, gives (A, X) and (A, Y) but not (B, X): B did not write to X and X
    /// did not write to B. Contacts whose `log_email` is off pair with nobody. Mail between
    /// colleagues, or among contacts, gives nothing; so does a message whose sender is unknown
    /// or not in the directory.
    pub fn pairs(&self, sender: Option<&str>, recipients: &Recipients) -> Vec<Pair> {
        let Some(sender) = sender.and_then(|s| self.who(s)) else {
            return Vec::new();
        };
        let others = recipients
            .iter()
            .filter(|r| r.sources.iter().any(|&s| counts_as_recipient(s)))
            .filter_map(|r| self.who(&r.address));
        let mut pairs: Vec<Pair> = match sender {
            Person::Salesperson(s) => others
                .filter_map(|p| match p {
                    Person::Contact(c) if c.log_email => Some(Pair {
                        salesperson: s.code.clone(),
                        contact: c.number.clone(),
                        contact_is: Role::Recipient,
                    }),
                    _ => None,
                })
                .collect(),
            Person::Contact(c) if c.log_email => others
                .filter_map(|p| match p {
                    Person::Salesperson(s) => Some(Pair {
                        salesperson: s.code.clone(),
                        contact: c.number.clone(),
                        contact_is: Role::Sender,
                    }),
                    Person::Contact(_) => None,
                })
                .collect(),
            Person::Contact(_) => Vec::new(),
        };
        pairs.sort();
        pairs.dedup();
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecipientSource::*;

    fn directory() -> Directory {
        let sp = |code: &str, name: &str, email: &str, alts: &[&str]| Salesperson {
            code: code.into(),
            name: name.into(),
            email: email.into(),
            alt_emails: alts.iter().map(|a| (*a).to_owned()).collect(),
        };
        let contact = |number: &str, name: &str, emails: &[&str], log_email: bool| Contact {
            number: number.into(),
            name: name.into(),
            company: "Fabrikam".into(),
            emails: emails.iter().map(|a| (*a).to_owned()).collect(),
            log_email,
        };
        Directory::new(
            vec![
                sp(
                    "AS",
                    "Alice Smith",
                    "alice@contoso.com",
                    &["a.smith@contoso.com"],
                ),
                sp("BB", "Bert Brown", "bert@contoso.com", &[]),
                sp("CC", "Carl Chu", "carl@xn--bcher-kva.example", &[]),
            ],
            vec![
                contact("1001", "Xavier", &["xavier@fabrikam.com"], true),
                contact(
                    "1002",
                    "Yvonne",
                    &["yvonne@fabrikam.com", "yvonne@example.net"],
                    true,
                ),
                contact("1003", "Olga Opted-Out", &["olga@fabrikam.com"], false),
                contact("1004", "Zed", &["zed@example.net"], true),
            ],
        )
    }

    fn recipients(list: &[(&str, RecipientSource)]) -> Recipients {
        let mut r = Recipients::new();
        for (address, source) in list {
            assert!(r.add(address, None, *source), "{address}");
        }
        r
    }

    #[test]
    fn pairs_table() {
        use Role::{Recipient as Out, Sender as In};
        let dir = directory();
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [(&'a str, RecipientSource)],
            &'a [(&'a str, &'a str, Role)],
        );
        let cases: &[Case] = &[
            (
                "inbound",
                Some("xavier@fabrikam.com"),
                &[("alice@contoso.com", HeaderTo)],
                &[("AS", "1001", In)],
            ),
            (
                "outbound",
                Some("alice@contoso.com"),
                &[("xavier@fabrikam.com", HeaderTo)],
                &[("AS", "1001", Out)],
            ),
            (
                "two salespeople, two contacts: only the sender pairs",
                Some("bert@contoso.com"),
                &[
                    ("yvonne@fabrikam.com", HeaderTo),
                    ("xavier@fabrikam.com", HeaderTo),
                    ("alice@contoso.com", HeaderCc),
                ],
                &[("BB", "1001", Out), ("BB", "1002", Out)],
            ),
            (
                "a contact writes to two salespeople and another contact",
                Some("yvonne@example.net"),
                &[
                    ("bert@contoso.com", HeaderTo),
                    ("xavier@fabrikam.com", HeaderCc),
                    ("alice@contoso.com", HeaderCc),
                ],
                &[("AS", "1002", In), ("BB", "1002", In)],
            ),
            (
                "opted-out contact as a recipient",
                Some("alice@contoso.com"),
                &[
                    ("olga@fabrikam.com", HeaderTo),
                    ("zed@example.net", HeaderCc),
                ],
                &[("AS", "1004", Out)],
            ),
            (
                "opted-out contact as the sender",
                Some("olga@fabrikam.com"),
                &[("alice@contoso.com", HeaderTo)],
                &[],
            ),
            (
                "internal mail",
                Some("alice@contoso.com"),
                &[
                    ("bert@contoso.com", HeaderTo),
                    ("carl@bücher.example", HeaderCc),
                ],
                &[],
            ),
            (
                "mail among contacts",
                Some("xavier@fabrikam.com"),
                &[("zed@example.net", HeaderTo)],
                &[],
            ),
            (
                "Bcc-only contact from a journal report",
                Some("alice@contoso.com"),
                &[
                    ("bert@contoso.com", HeaderTo),
                    ("zed@example.net", JournalBcc),
                ],
                &[("AS", "1004", Out)],
            ),
            (
                "envelope-only recipient (Delivered-To of a BCC copy)",
                Some("xavier@fabrikam.com"),
                &[
                    ("someone@example.org", HeaderTo),
                    ("bert@contoso.com", DeliveredTo),
                ],
                &[("BB", "1001", In)],
            ),
            (
                "alt address of a salesperson",
                Some("A.Smith@Contoso.com"),
                &[("xavier@fabrikam.com", JournalTo)],
                &[("AS", "1001", Out)],
            ),
            (
                "case and IDNA do not matter",
                Some("CARL@Bücher.Example"),
                &[
                    ("XAVIER@FABRIKAM.COM", HeaderTo),
                    ("Zed@Example.NET", HeaderCc),
                ],
                &[("CC", "1001", Out), ("CC", "1004", Out)],
            ),
            (
                "two addresses of one contact give one pair",
                Some("alice@contoso.com"),
                &[
                    ("yvonne@fabrikam.com", HeaderTo),
                    ("yvonne@example.net", HeaderCc),
                ],
                &[("AS", "1002", Out)],
            ),
            (
                "a salesperson writing to their own alias and a contact",
                Some("alice@contoso.com"),
                &[
                    ("a.smith@contoso.com", HeaderTo),
                    ("zed@example.net", HeaderBcc),
                ],
                &[("AS", "1004", Out)],
            ),
            ("no sender", None, &[("alice@contoso.com", HeaderTo)], &[]),
            (
                "unknown sender",
                Some("stranger@example.org"),
                &[("alice@contoso.com", HeaderTo)],
                &[],
            ),
        ];
        for (what, sender, list, want) in cases {
            let got = dir.pairs(*sender, &recipients(list));
            let want: Vec<Pair> = want
                .iter()
                .map(|(s, c, role)| Pair {
                    salesperson: (*s).into(),
                    contact: (*c).into(),
                    contact_is: *role,
                })
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn every_source_counts() {
        let dir = directory();
        for source in [
            HeaderTo,
            HeaderCc,
            HeaderBcc,
            JournalTo,
            JournalCc,
            JournalBcc,
            JournalRecipient,
            XOriginalTo,
            XEnvelopeTo,
            DeliveredTo,
        ] {
            let got = dir.pairs(
                Some("alice@contoso.com"),
                &recipients(&[("xavier@fabrikam.com", source)]),
            );
            assert_eq!(got.len(), 1, "{}", source.as_str());
        }
    }

    #[test]
    fn lookups() {
        let dir = directory();
        assert_eq!(
            dir.salesperson_by_code("AS").map(|s| s.name.as_str()),
            Some("Alice Smith")
        );
        assert!(dir.salesperson_by_code("as").is_none());
        assert_eq!(
            dir.contact_by_number("1002").map(|c| c.name.as_str()),
            Some("Yvonne")
        );
        assert_eq!(
            dir.who("<Yvonne@Example.NET>").map(|p| p.id()),
            Some(PersonId::Contact("1002".into()))
        );
        assert_eq!(
            dir.who("carl@BÜCHER.example").map(|p| p.to_string()),
            Some("salesperson CC (Carl Chu)".to_owned())
        );
        assert!(dir.who("nobody@contoso.com").is_none());
        assert!(dir.who("not an address").is_none());
        assert_eq!(
            dir.person(&PersonId::Contact("1001".into()))
                .map(|p| p.to_string()),
            Some("contact 1001 (Xavier, Fabrikam)".to_owned())
        );
        assert!(Directory::default().who("alice@contoso.com").is_none());
    }

    #[test]
    fn shared_addresses_match_nobody() {
        let dir = Directory::new(
            vec![Salesperson {
                code: "AS".into(),
                name: "Alice".into(),
                email: "Alice@Contoso.com".into(),
                alt_emails: vec!["shared@fabrikam.com".into(), "alice@contoso.com".into()],
            }],
            vec![Contact {
                number: "1".into(),
                name: "Xavier".into(),
                company: String::new(),
                emails: vec!["shared@fabrikam.com".into(), "xavier@fabrikam.com".into()],
                log_email: true,
            }],
        );
        assert_eq!(dir.ambiguous().collect::<Vec<_>>(), ["shared@fabrikam.com"]);
        assert!(dir.who("shared@fabrikam.com").is_none());
        assert!(dir.who("alice@contoso.com").is_some());
        assert_eq!(
            dir.pairs(
                Some("alice@contoso.com"),
                &recipients(&[("shared@fabrikam.com", HeaderTo)])
            ),
            []
        );
        assert_eq!(
            dir.pairs(
                Some("xavier@fabrikam.com"),
                &recipients(&[("alice@contoso.com", HeaderTo)])
            )
            .len(),
            1
        );
    }

    #[test]
    fn pair_serializes() {
        let pair = Pair {
            salesperson: "AS".into(),
            contact: "1001".into(),
            contact_is: Role::Sender,
        };
        assert_eq!(
            serde_json::to_string(&pair).ok().as_deref(),
            Some(r#"{"salesperson":"AS","contact":"1001","contact_is":"sender"}"#)
        );
    }
}
