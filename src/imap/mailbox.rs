//! The virtual folders: their names, what they hold, and LIST pattern matching.

use crate::archive::{Archive, FolderQuery};
use crate::classify::Direction;
use crate::directory::{Directory, PersonId};

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// The parent of the month folders.
pub const BY_MONTH: &str = "By month";

/// A folder as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub name: String,
    /// `None` for a folder that only holds other folders (`\Noselect`).
    pub query: Option<FolderQuery>,
    pub has_children: bool,
    /// RFC 6154 special use (`\Junk`, `\All`).
    pub special_use: Option<&'static str>,
}

/// A person's folder: its path (`Contacts/Fabrikam/Marta Buyer`) and the person's
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonFolder {
    pub path: Vec<String>,
    pub addresses: Vec<String>,
}

/// Every folder, given the months with mail, whether the account sees quarantined junk, and
/// the people whose folders it has.
pub fn folders(months: &[(i32, u8)], junk: bool, people: &[PersonFolder]) -> Vec<Folder> {
    let mut out = vec![Folder {
        name: "INBOX".into(),
        query: Some(FolderQuery::All),
        has_children: false,
        special_use: None,
    }];
    for (name, d) in [
        ("Inbound", Direction::Inbound),
        ("Outbound", Direction::Outbound),
        ("Internal", Direction::Internal),
        ("External", Direction::External),
    ] {
        out.push(Folder {
            name: name.into(),
            query: Some(FolderQuery::Direction(d)),
            has_children: false,
            special_use: None,
        });
    }
    if junk {
        out.push(Folder {
            name: "Junk".into(),
            query: Some(FolderQuery::Junk),
            has_children: false,
            special_use: Some("\\Junk"),
        });
    }
    out.push(Folder {
        name: BY_MONTH.into(),
        query: None,
        has_children: !months.is_empty(),
        special_use: None,
    });
    let mut years: Vec<i32> = months.iter().map(|(y, _)| *y).collect();
    years.dedup();
    for year in years {
        out.push(Folder {
            name: format!("{BY_MONTH}/{year}"),
            query: None,
            has_children: true,
            special_use: None,
        });
        for &(y, month) in months.iter().filter(|(y, _)| *y == year) {
            out.push(Folder {
                name: format!("{BY_MONTH}/{y}/{month:02}"),
                query: Some(FolderQuery::Month { year: y, month }),
                has_children: false,
                special_use: None,
            });
        }
    }
    // Person folders, with their parents (`Contacts`, `Contacts/Fabrikam`) as \Noselect.
    let mut parents: Vec<String> = Vec::new();
    for person in people {
        for depth in 1..person.path.len() {
            let parent = person.path[..depth].join("/");
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
    }
    for parent in parents {
        out.push(Folder {
            name: parent,
            query: None,
            has_children: true,
            special_use: None,
        });
    }
    for person in people {
        out.push(Folder {
            name: person.path.join("/"),
            query: Some(FolderQuery::Addresses(person.addresses.clone())),
            has_children: false,
            special_use: None,
        });
    }
    out.sort_by(|a, b| order(&a.name).cmp(&order(&b.name)));
    out
}

/// INBOX first, then the fixed folders, then the rest by name.
fn order(name: &str) -> (u8, &str) {
    let rank = match name {
        "INBOX" => 0,
        "Inbound" => 1,
        "Outbound" => 2,
        "Internal" => 3,
        "External" => 4,
        "Junk" => 5,
        _ => 6,
    };
    (rank, name)
}

/// The folder a (case-sensitive, except INBOX) name refers to, among `all`.
pub fn find(name: &str, all: &[Folder]) -> Option<Folder> {
    let name = if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    };
    // Month folders exist for months with mail; an empty month's folder does not.
    all.iter().find(|f| f.name == name).cloned()
}

/// A person's folder under a path it had before the directory renamed it (a new company, a
/// new spelling of the name): the person's folder of today among `all` (the account's
/// folders), under the name asked for. Reads the archive (call it off the async threads);
/// writes nothing.
///
/// `None` if `name` never was a person's folder, if it is today someone's folder (which the
/// account was not shown: a path that is current never leads elsewhere), or if the person's
/// folder is not among the account's: the same answer as for a folder that does not exist.
pub fn find_renamed(archive: &Archive, name: &str, all: &[Folder]) -> Option<Folder> {
    let (salespeople, contacts) = archive.load_directory().ok()?;
    let directory = Directory::new(salespeople, contacts);
    let owner = archive.folder_path_owner(name).ok()??;
    let current = renamed_to(name, &directory, &owner)?;
    let mut folder = find(&current, all)?;
    folder.name = name.to_owned();
    Some(folder)
}

/// The current path of `owner`'s folder, which `name` was once; `None` if `name` is today
/// anyone's folder (or `owner` is no longer in the directory).
fn renamed_to(name: &str, directory: &Directory, owner: &PersonId) -> Option<String> {
    if directory.folder_owner(name).is_some() {
        return None;
    }
    directory.folder(owner).map(|path| path.join("/"))
}

/// The longest LIST pattern (reference and pattern together, in characters) we match: far
/// more than any folder path, and small enough that matching stays cheap.
pub const MAX_PATTERN: usize = 1024;

/// RFC 3501 LIST matching: `*` matches anything, `%` anything but the delimiter. INBOX
/// matches case-insensitively.
///
/// Runs in time linear in the name for each pattern position (a set of pattern positions
/// is carried along the name, as an NFA would), with no recursion, so no pattern can
/// exhaust the stack or backtrack exponentially. Callers bound the pattern with
/// [`MAX_PATTERN`].
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = if name == "INBOX" {
        pattern.to_ascii_uppercase().chars().collect()
    } else {
        pattern.chars().collect()
    };
    // Runs of wildcards: `**` is `*`, and `*` next to `%` is `*`.
    let mut p: Vec<char> = Vec::with_capacity(pattern.len());
    for c in pattern {
        match (p.last_mut(), c) {
            (Some(last @ ('*' | '%')), '*') => *last = '*',
            (Some('*'), '%') => {}
            _ => p.push(c),
        }
    }
    // live[i]: the first i pattern characters match the name read so far.
    let mut live = vec![false; p.len() + 1];
    let mut next = vec![false; p.len() + 1];
    live[0] = true;
    skip_wildcards(&p, &mut live);
    for c in name.chars() {
        next.iter_mut().for_each(|b| *b = false);
        let mut any = false;
        for (i, &pc) in p.iter().enumerate() {
            if !live[i] {
                continue;
            }
            match pc {
                '*' => next[i] = true,
                '%' if c != DELIMITER => next[i] = true,
                '%' => {}
                _ if pc == c => next[i + 1] = true,
                _ => {}
            }
            any = true;
        }
        if !any {
            return false;
        }
        skip_wildcards(&p, &mut next);
        std::mem::swap(&mut live, &mut next);
    }
    live[p.len()]
}

/// A wildcard may match nothing: where position i is live before one, i + 1 is too.
fn skip_wildcards(p: &[char], live: &mut [bool]) {
    for (i, &pc) in p.iter().enumerate() {
        if live[i] && matches!(pc, '*' | '%') {
            live[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        let cases = [
            ("*", "By month/2026/11", true),
            ("%", "By month/2026/11", false),
            ("%", "Inbound", true),
            ("By month/%", "By month/2026", true),
            ("By month/%", "By month/2026/11", false),
            ("By month/*", "By month/2026/11", true),
            ("inbox", "INBOX", true),
            ("In*", "Inbound", true),
            ("In*", "INBOX", true),
            ("Out%", "Outbound", true),
            ("", "INBOX", false),
            ("*/%", "By month/2026", true),
            ("*/%", "INBOX", false),
            ("%/%/%", "By month/2026/11", true),
            ("%/%", "By month/2026/11", false),
            ("B*h/*1", "By month/2026/11", true),
            ("B*h/*2", "By month/2026/11", false),
            ("*%*%", "Inbound", true),
            ("Inbound", "Inbound", true),
            ("Inbound*", "Inbound", true),
            ("Inbound%x", "Inbound", false),
            ("inbound", "Inbound", false),
            ("%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%Z", "Inbound", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn hostile_patterns_are_cheap() {
        // 40,000 stars once overflowed the stack of a recursive matcher; stars before a
        // letter that never comes backtracked exponentially.
        let stars = "*".repeat(40_000);
        assert!(matches(&stars, "By month/2026/11"));
        assert!(!matches(
            &format!("{}Z", "*%".repeat(20_000)),
            "By month/2026/11"
        ));
        // Wildcards that cannot merge, before a letter that never comes: a backtracking
        // matcher would not finish this in any lifetime.
        let long_name = "a".repeat(2_000);
        assert!(!matches(&format!("{}Z", "*a".repeat(500)), &long_name));
        assert!(matches(&format!("{}*", "*a".repeat(500)), &long_name));
    }

    #[test]
    fn month_folders_exist_for_months_with_mail() {
        let months = [(2025, 12), (2026, 1), (2026, 11)];
        let people = [PersonFolder {
            path: vec!["Contacts".into(), "Fabrikam".into(), "Marta Buyer".into()],
            addresses: vec!["marta@fabrikam.com".into()],
        }];
        let all = || folders(&months, false, &people);
        let names: Vec<String> = all().into_iter().map(|f| f.name).collect();
        assert!(names.contains(&"Contacts".to_owned()));
        assert!(names.contains(&"Contacts/Fabrikam".to_owned()));
        assert_eq!(names[0], "INBOX");
        assert!(names.contains(&"By month/2025/12".to_owned()));
        assert!(names.contains(&"By month/2026".to_owned()));
        assert!(!names.contains(&"Junk".to_owned()));
        assert_eq!(
            find("By month/2026/11", &all()).and_then(|f| f.query),
            Some(FolderQuery::Month {
                year: 2026,
                month: 11
            })
        );
        assert!(find("By month/2026/10", &all()).is_none());
        assert!(find("inbox", &all()).is_some());
        assert!(find("By month", &all()).is_some_and(|f| f.query.is_none()));
        assert_eq!(
            find("Contacts/Fabrikam/Marta Buyer", &all()).and_then(|f| f.query),
            Some(FolderQuery::Addresses(vec!["marta@fabrikam.com".into()]))
        );
    }

    #[test]
    fn a_renamed_folder_leads_to_its_person_unless_its_path_is_someone_elses() {
        use crate::directory::Contact;
        let contact = |number: &str, name: &str, company: &str| Contact {
            number: number.into(),
            name: name.into(),
            company: company.into(),
            emails: vec![format!("c{number}@example.net")],
            log_email: true,
        };
        let directory = Directory::new(
            Vec::new(),
            vec![
                contact("1", "Bob Mueller", "Example Net GmbH"),
                contact("2", "Carol", "Example Net"),
            ],
        );
        let bob = PersonId::Contact("1".into());
        let carol = PersonId::Contact("2".into());
        assert_eq!(
            renamed_to("Contacts/Example Net/Bob Müller", &directory, &bob).as_deref(),
            Some("Contacts/Example Net GmbH/Bob Mueller")
        );
        // Carol's folder today is Carol's, whoever had the path before.
        assert_eq!(
            renamed_to("Contacts/Example Net/Carol", &directory, &bob),
            None
        );
        // Someone no longer in the directory has no folder to lead to.
        assert_eq!(
            renamed_to(
                "Contacts/Gone/Dan",
                &directory,
                &PersonId::Contact("9".into())
            ),
            None
        );
        assert!(renamed_to("Contacts/Example Net/Old Carol", &directory, &carol).is_some());
    }
}
