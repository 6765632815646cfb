//! Checking the directory as a whole, against the organization's domains.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{Contact, Person, PersonId, Salesperson};
use crate::address::{self, OrgDomains};

/// What kind of problem a [`DirectoryProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// No organization domains are configured, so nobody is inside; inside/outside is not
    /// checked.
    NoOrgDomains,
    /// Two salespeople with one code.
    DuplicateCode,
    /// Two contacts with one number.
    DuplicateNumber,
    /// Someone without any address.
    NoAddress,
    /// An address that is not an address, or not in normalized form.
    InvalidAddress,
    /// A salesperson's address outside the organization's domains.
    SalespersonOutside,
    /// A contact's address inside the organization's domains.
    ContactInside,
    /// An address that belongs to two people.
    SharedAddress,
}

/// One problem with the directory as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryProblem {
    pub kind: ProblemKind,
    /// Who it is about: one person, or two (the one listed first, first) for a shared address
    /// or a duplicate code or number; nobody for [`ProblemKind::NoOrgDomains`].
    pub people: Vec<PersonId>,
    /// The address concerned, normalized when it can be.
    pub address: Option<String>,
    /// What to show, naming everyone concerned.
    pub message: String,
}

impl fmt::Display for DirectoryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks the directory as a whole; nothing found means ready to go live.
///
/// Reports, in list order (salespeople, then contacts): duplicate codes and numbers, people
/// without an address, addresses that are not normalized addresses, salespeople's addresses
/// outside the organization's domains and contacts' inside them, and every address shared by
/// two people (whoever they are). The import already rejects within one file what it can see
/// there; this is what it cannot: the configuration, and both files together.
pub fn validate(
    salespeople: &[Salesperson],
    contacts: &[Contact],
    org: &OrgDomains,
) -> Vec<DirectoryProblem> {
    let mut problems = Vec::new();
    let domains = org
        .rules()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if org.rules().is_empty() {
        problems.push(DirectoryProblem {
            kind: ProblemKind::NoOrgDomains,
            people: Vec::new(),
            address: None,
            message: "no organization domains are configured (organization.domains), so \
                      nobody is inside: salespeople's and contacts' addresses cannot be checked"
                .to_owned(),
        });
    }
    let people = salespeople
        .iter()
        .map(Person::Salesperson)
        .chain(contacts.iter().map(Person::Contact));
    let mut keys: HashMap<PersonId, Person> = HashMap::new();
    let mut owners: HashMap<String, Person> = HashMap::new();
    for person in people {
        let id = person.id();
        match keys.get(&id) {
            Some(first) => {
                let (kind, what) = match person {
                    Person::Salesperson(_) => (ProblemKind::DuplicateCode, "code"),
                    Person::Contact(_) => (ProblemKind::DuplicateNumber, "number"),
                };
                problems.push(DirectoryProblem {
                    kind,
                    people: vec![first.id(), id.clone()],
                    address: None,
                    message: format!("{first} and {person} have the same {what}"),
                });
            }
            None => {
                keys.insert(id.clone(), person);
            }
        }
        let addresses: Vec<&str> = match person {
            Person::Salesperson(s) => s.addresses().collect(),
            Person::Contact(c) => c.addresses().collect(),
        };
        if addresses.iter().all(|a| a.trim().is_empty()) {
            problems.push(DirectoryProblem {
                kind: ProblemKind::NoAddress,
                people: vec![id.clone()],
                address: None,
                message: format!("{person} has no e-mail address"),
            });
        }
        let mut seen = HashSet::new();
        for raw in addresses {
            if raw.trim().is_empty() {
                continue;
            }
            let Some(normalized) = address::normalize(raw) else {
                problems.push(DirectoryProblem {
                    kind: ProblemKind::InvalidAddress,
                    people: vec![id.clone()],
                    address: Some(raw.to_owned()),
                    message: format!("{person}: {raw:?} is not an e-mail address"),
                });
                continue;
            };
            if normalized != raw {
                problems.push(DirectoryProblem {
                    kind: ProblemKind::InvalidAddress,
                    people: vec![id.clone()],
                    address: Some(normalized.clone()),
                    message: format!(
                        "{person}: {raw:?} is not stored in normalized form ({normalized})"
                    ),
                });
            }
            if !seen.insert(normalized.clone()) {
                continue;
            }
            if !org.rules().is_empty() {
                let inside = org.contains_address(&normalized);
                match person {
                    Person::Salesperson(_) if !inside => problems.push(DirectoryProblem {
                        kind: ProblemKind::SalespersonOutside,
                        people: vec![id.clone()],
                        address: Some(normalized.clone()),
                        message: format!(
                            "{person}: {normalized} is outside the organization's domains \
                             ({domains})"
                        ),
                    }),
                    Person::Contact(_) if inside => problems.push(DirectoryProblem {
                        kind: ProblemKind::ContactInside,
                        people: vec![id.clone()],
                        address: Some(normalized.clone()),
                        message: format!(
                            "{person}: {normalized} is inside the organization's domains \
                             ({domains}): a colleague cannot be a contact"
                        ),
                    }),
                    _ => {}
                }
            }
            match owners.get(&normalized) {
                Some(first) => problems.push(DirectoryProblem {
                    kind: ProblemKind::SharedAddress,
                    people: vec![first.id(), id.clone()],
                    address: Some(normalized.clone()),
                    message: format!(
                        "{normalized} belongs to both {first} and {person}: it will match \
                         neither"
                    ),
                }),
                None => {
                    owners.insert(normalized, person);
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::DomainRule;

    fn org() -> OrgDomains {
        OrgDomains::new(vec![
            DomainRule::parse("contoso.com").expect("valid"),
            DomainRule::parse("*.contoso.eu").expect("valid"),
        ])
    }

    fn sp(code: &str, name: &str, emails: &[&str]) -> Salesperson {
        Salesperson {
            code: code.into(),
            name: name.into(),
            email: emails.first().copied().unwrap_or_default().into(),
            alt_emails: emails.iter().skip(1).map(|a| (*a).to_owned()).collect(),
        }
    }

    fn contact(number: &str, name: &str, emails: &[&str]) -> Contact {
        Contact {
            number: number.into(),
            name: name.into(),
            company: "Fabrikam".into(),
            emails: emails.iter().map(|a| (*a).to_owned()).collect(),
            log_email: true,
        }
    }

    #[test]
    fn table() {
        use ProblemKind::*;
        type Case<'a> = (
            &'a str,
            Vec<Salesperson>,
            Vec<Contact>,
            &'a [(ProblemKind, &'a str)],
        );
        let cases: Vec<Case> = vec![
            (
                "clean",
                vec![
                    sp(
                        "AS",
                        "Alice",
                        &["alice@contoso.com", "alice@sales.contoso.eu"],
                    ),
                    sp("BB", "Bert", &["bert@contoso.eu"]),
                ],
                vec![contact(
                    "1",
                    "Xavier",
                    &["xavier@fabrikam.com", "x@example.net"],
                )],
                &[],
            ),
            (
                "inside and outside",
                vec![sp(
                    "AS",
                    "Alice",
                    &["alice@contoso.com", "alice.private@example.net"],
                )],
                vec![contact(
                    "1",
                    "Xavier",
                    &["xavier@fabrikam.com", "xavier@contoso.com"],
                )],
                &[
                    (
                        SalespersonOutside,
                        "salesperson AS (Alice): alice.private@example.net is outside the \
                         organization's domains (contoso.com, *.contoso.eu)",
                    ),
                    (
                        ContactInside,
                        "contact 1 (Xavier, Fabrikam): xavier@contoso.com is inside",
                    ),
                ],
            ),
            (
                "shared addresses, naming both",
                vec![
                    sp("AS", "Alice", &["alice@contoso.com", "sales@contoso.com"]),
                    sp("BB", "Bert", &["bert@contoso.com", "sales@contoso.com"]),
                ],
                vec![
                    contact("1", "Xavier", &["info@fabrikam.com"]),
                    contact("2", "Yvonne", &["info@fabrikam.com"]),
                    contact("3", "Zed", &["bert@contoso.com"]),
                ],
                &[
                    (
                        SharedAddress,
                        "sales@contoso.com belongs to both salesperson AS (Alice) and \
                         salesperson BB (Bert)",
                    ),
                    (
                        SharedAddress,
                        "info@fabrikam.com belongs to both contact 1 (Xavier, Fabrikam) and \
                         contact 2 (Yvonne, Fabrikam)",
                    ),
                    (ContactInside, "contact 3 (Zed, Fabrikam): bert@contoso.com"),
                    (
                        SharedAddress,
                        "bert@contoso.com belongs to both salesperson BB (Bert) and contact 3",
                    ),
                ],
            ),
            (
                "duplicate keys, no or bad addresses",
                vec![
                    sp("AS", "Alice", &["alice@contoso.com"]),
                    sp("AS", "Alan", &["Alan@Contoso.com"]),
                    sp("CC", "Carl", &[]),
                ],
                vec![
                    contact("1", "Xavier", &["xavier"]),
                    contact("1", "Xena", &[]),
                ],
                &[
                    (
                        DuplicateCode,
                        "salesperson AS (Alice) and salesperson AS (Alan) have the same code",
                    ),
                    (
                        InvalidAddress,
                        "\"Alan@Contoso.com\" is not stored in normalized form \
                         (alan@contoso.com)",
                    ),
                    (NoAddress, "salesperson CC (Carl) has no e-mail address"),
                    (InvalidAddress, "\"xavier\" is not an e-mail address"),
                    (
                        DuplicateNumber,
                        "contact 1 (Xavier, Fabrikam) and contact 1 (Xena",
                    ),
                    (
                        NoAddress,
                        "contact 1 (Xena, Fabrikam) has no e-mail address",
                    ),
                ],
            ),
        ];
        for (what, salespeople, contacts, want) in cases {
            let got = validate(&salespeople, &contacts, &org());
            assert_eq!(got.len(), want.len(), "{what}: {got:#?}");
            for (problem, (kind, text)) in got.iter().zip(want.iter()) {
                assert_eq!(problem.kind, *kind, "{what}: {problem}");
                assert!(
                    problem.to_string().contains(text),
                    "{what}: {problem} should contain {text:?}"
                );
            }
        }
    }

    #[test]
    fn shared_address_names_both_ids() {
        let got = validate(
            &[sp("AS", "Alice", &["alice@contoso.com"])],
            &[contact("1", "Xavier", &["alice@contoso.com"])],
            &org(),
        );
        let shared: Vec<&DirectoryProblem> = got
            .iter()
            .filter(|p| p.kind == ProblemKind::SharedAddress)
            .collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(
            shared[0].people,
            [
                PersonId::Salesperson("AS".into()),
                PersonId::Contact("1".into())
            ]
        );
        assert_eq!(shared[0].address.as_deref(), Some("alice@contoso.com"));
    }

    #[test]
    fn no_org_domains() {
        let got = validate(
            &[sp("AS", "Alice", &["alice@contoso.com"])],
            &[contact("1", "Xavier", &["xavier@fabrikam.com"])],
            &OrgDomains::default(),
        );
        assert_eq!(
            got.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [ProblemKind::NoOrgDomains]
        );
    }
}
