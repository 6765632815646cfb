//! The IMAP folder of each person: `Salespeople/<Name>` and `Contacts/<Company>/<Name>`, as
//! path segments (the IMAP view joins them with its delimiter).

use std::collections::{BTreeMap, HashMap};

use super::{Contact, PersonId, Salesperson};

/// The parent of the salespeople's folders.
pub const SALESPEOPLE_FOLDER: &str = "Salespeople";
/// The parent of the contacts' company folders.
pub const CONTACTS_FOLDER: &str = "Contacts";
/// The company folder of contacts without a company.
pub const NO_COMPANY: &str = "(no company)";

/// Every person's folder (see [`super::Directory::folder`]). A code or number listed twice
/// keeps the first person's folder.
pub(super) fn folders(
    salespeople: &[Salesperson],
    contacts: &[Contact],
) -> BTreeMap<PersonId, Vec<String>> {
    let mut paths: Vec<(PersonId, Vec<String>)> = Vec::new();
    for s in salespeople {
        let name = segment(&s.name).unwrap_or_else(|| segment_or(&s.code, "?"));
        paths.push((s.id(), vec![SALESPEOPLE_FOLDER.to_owned(), name]));
    }
    // One spelling per company: the first one listed.
    let mut companies: HashMap<String, String> = HashMap::new();
    for c in contacts {
        let company = match segment(&c.company) {
            Some(company) => companies
                .entry(company.to_lowercase())
                .or_insert(company)
                .clone(),
            None => NO_COMPANY.to_owned(),
        };
        let name = segment(&c.name).unwrap_or_else(|| segment_or(&c.number, "?"));
        paths.push((c.id(), vec![CONTACTS_FOLDER.to_owned(), company, name]));
    }
    // Folders that more than one person would get, without regard to case (so that clients
    // on case-insensitive file systems keep them apart).
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, path) in &paths {
        *count.entry(path.join("/").to_lowercase()).or_default() += 1;
    }
    let mut out = BTreeMap::new();
    for (id, mut path) in paths {
        if count
            .get(&path.join("/").to_lowercase())
            .copied()
            .unwrap_or(0)
            > 1
            && let Some(last) = path.last_mut()
        {
            let key = match &id {
                PersonId::Salesperson(key) | PersonId::Contact(key) => segment_or(key, "?"),
            };
            last.push_str(&format!(" ({key})"));
        }
        out.entry(id).or_insert(path);
    }
    out
}

/// A name as one folder segment: no hierarchy delimiter (`/` becomes `-`), no control
/// characters, white space collapsed; `None` if nothing is left.
fn segment(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .filter(|c| !c.is_control() || c.is_whitespace())
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn segment_or(name: &str, fallback: &str) -> String {
    segment(name).unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        let sp = |code: &str, name: &str| Salesperson {
            code: code.into(),
            name: name.into(),
            email: format!("{code}@contoso.com"),
            alt_emails: Vec::new(),
        };
        let contact = |number: &str, name: &str, company: &str| Contact {
            number: number.into(),
            name: name.into(),
            company: company.into(),
            emails: vec![format!("{number}@fabrikam.com")],
            log_email: true,
        };
        let got = folders(
            &[
                sp("AS", "Alice Smith"),
                sp("JS1", "John Smith"),
                sp("JS2", "john  smith"),
                sp("X", " \t"),
            ],
            &[
                contact("1", "Bob / Robert", "Fabrikam A/S"),
                contact("2", "Carol", "FABRIKAM a/s"),
                contact("3", "Pat", ""),
                contact("4", "Dan\u{7}", "Fabrikam A/S"),
                contact("5", "Dan", "fabrikam a/s"),
                contact("5", "Duplicate number", "Other"),
            ],
        );
        let path = |id: PersonId| got.get(&id).map(|p| p.join("/"));
        let s = |code: &str| path(PersonId::Salesperson(code.into()));
        let c = |number: &str| path(PersonId::Contact(number.into()));
        assert_eq!(s("AS").as_deref(), Some("Salespeople/Alice Smith"));
        assert_eq!(s("JS1").as_deref(), Some("Salespeople/John Smith (JS1)"));
        assert_eq!(s("JS2").as_deref(), Some("Salespeople/john smith (JS2)"));
        assert_eq!(s("X").as_deref(), Some("Salespeople/X"));
        assert_eq!(
            c("1").as_deref(),
            Some("Contacts/Fabrikam A-S/Bob - Robert")
        );
        assert_eq!(c("2").as_deref(), Some("Contacts/Fabrikam A-S/Carol"));
        assert_eq!(c("3").as_deref(), Some("Contacts/(no company)/Pat"));
        assert_eq!(c("4").as_deref(), Some("Contacts/Fabrikam A-S/Dan (4)"));
        assert_eq!(c("5").as_deref(), Some("Contacts/Fabrikam A-S/Dan (5)"));
        assert_eq!(got.len(), 9);
    }
}
