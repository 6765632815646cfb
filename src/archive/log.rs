//! The directory (salespeople and contacts), the interaction log and opportunities, as the
//! archive stores them.

use redb::{MultimapTable, ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};

use super::tables::{
    CONTACTS, ENTRIES, ENTRIES_BY_CONTACT, ENTRIES_BY_SALESPERSON, ENTRY_PAIRS, FOLDER_PATHS, META,
    META_NEXT_ENTRY, META_NEXT_OPPORTUNITY, OPPORTUNITIES, OPPORTUNITIES_BY_CONTACT, SALESPEOPLE,
};
use super::{Archive, Counter, Db, Error, Record, get_u64};
use crate::classify::Direction;
use crate::directory::{Contact, Directory, PersonId, Salesperson};

/// One salesperson–contact exchange: a line of the interaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its number, from 1, in the order entries were made.
    pub no: u64,
    /// The message's UID and stable id (its permalink).
    pub uid: u32,
    pub id: String,
    /// The message's date (Unix seconds).
    pub date: i64,
    pub direction: Direction,
    /// Salesperson code.
    pub salesperson: String,
    /// Contact number.
    pub contact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub attachments: u32,
}

/// An entry turned into a sales opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opportunity {
    pub no: u64,
    /// The entry it came from.
    pub entry: u64,
    pub contact: String,
    pub salesperson: String,
    pub description: String,
    /// The message's stable id: its permalink.
    pub message: String,
    /// Unix seconds.
    pub created: i64,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub contact: Option<String>,
    pub salesperson: Option<String>,
    pub direction: Option<Direction>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Only entries numbered above this (paging).
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// What a directory import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub salespeople_added: u64,
    pub salespeople_updated: u64,
    pub contacts_added: u64,
    pub contacts_updated: u64,
}

/// The tables of the log, inside one write transaction.
pub(super) struct LogWriter<'t> {
    entries: Table<'t, u64, &'static [u8]>,
    pairs: Table<'t, (u32, &'static str, &'static str), u64>,
    by_contact: MultimapTable<'t, &'static str, u64>,
    by_salesperson: MultimapTable<'t, &'static str, u64>,
}

impl<'t> LogWriter<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, Error> {
        Ok(Self {
            entries: txn.open_table(ENTRIES).db()?,
            pairs: txn.open_table(ENTRY_PAIRS).db()?,
            by_contact: txn.open_multimap_table(ENTRIES_BY_CONTACT).db()?,
            by_salesperson: txn.open_multimap_table(ENTRIES_BY_SALESPERSON).db()?,
        })
    }

    /// Makes the entries of `record` for `pairs` (salesperson code, contact number) that do
    /// not exist yet; returns how many it made.
    pub(super) fn log(
        &mut self,
        meta: &mut Table<'_, &'static str, u64>,
        record: &Record,
        pairs: &[(String, String)],
    ) -> Result<u64, Error> {
        let mut made = 0;
        for (salesperson, contact) in pairs {
            let key = (record.uid, salesperson.as_str(), contact.as_str());
            if self.pairs.get(key).db()?.is_some() {
                continue;
            }
            let no = get_u64(meta, META_NEXT_ENTRY)?.unwrap_or(1);
            meta.insert(META_NEXT_ENTRY, no + 1).db()?;
            let entry = Entry {
                no,
                uid: record.uid,
                id: record.id.clone(),
                date: record.meta.date,
                direction: record.meta.direction,
                salesperson: salesperson.clone(),
                contact: contact.clone(),
                subject: record.meta.subject.clone(),
                attachments: record.meta.attachments,
            };
            let bytes = serde_json::to_vec(&entry).map_err(|e| Error::Corrupt {
                uid: record.uid,
                reason: e.to_string(),
            })?;
            self.entries.insert(no, bytes.as_slice()).db()?;
            self.pairs.insert(key, no).db()?;
            self.by_contact.insert(contact.as_str(), no).db()?;
            self.by_salesperson.insert(salesperson.as_str(), no).db()?;
            made += 1;
        }
        Ok(made)
    }
}

/// Every salesperson and contact in these tables.
fn read_directory(
    salespeople: &impl ReadableTable<&'static str, &'static [u8]>,
    contacts: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(Vec<Salesperson>, Vec<Contact>), Error> {
    let mut people = Vec::new();
    for e in salespeople.iter().db()? {
        let (_, v) = e.db()?;
        people.push(from_json(v.value(), "salesperson")?);
    }
    let mut firms = Vec::new();
    for e in contacts.iter().db()? {
        let (_, v) = e.db()?;
        firms.push(from_json(v.value(), "contact")?);
    }
    Ok((people, firms))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        uid: 0,
        reason: e.to_string(),
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        uid: 0,
        reason: format!("{what}: {e}"),
    })
}

impl Archive {
    /// Adds or updates salespeople and contacts (by code and number). Nobody is removed:
    /// entries keep referring to the people they were made for.
    ///
    /// Every person's folder path before and after the change is recorded (see
    /// [`Archive::folder_path_owner`]), in the same transaction: a folder a client has seen
    /// keeps opening once the directory renamed it, and the IMAP view never writes.
    pub fn put_directory(
        &self,
        salespeople: &[Salesperson],
        contacts: &[Contact],
    ) -> Result<ImportCounts, Error> {
        let mut counts = ImportCounts::default();
        let txn = self.db.begin_write().db()?;
        {
            let mut s = txn.open_table(SALESPEOPLE).db()?;
            let mut c = txn.open_table(CONTACTS).db()?;
            let before = read_directory(&s, &c)?;
            for p in salespeople {
                let old = s.insert(p.code.as_str(), to_json(p)?.as_slice()).db()?;
                match old {
                    Some(_) => counts.salespeople_updated += 1,
                    None => counts.salespeople_added += 1,
                }
            }
            for p in contacts {
                let old = c.insert(p.number.as_str(), to_json(p)?.as_slice()).db()?;
                match old {
                    Some(_) => counts.contacts_updated += 1,
                    None => counts.contacts_added += 1,
                }
            }
            let after = read_directory(&s, &c)?;
            // The paths of today's directory come last: a path that was someone's and is now
            // someone else's belongs to its current owner.
            let mut paths = txn.open_table(FOLDER_PATHS).db()?;
            for (salespeople, contacts) in [before, after] {
                let directory = Directory::new(salespeople, contacts);
                for (id, path) in directory.folders() {
                    let key = path.join("/");
                    let owner = to_json(id)?;
                    let known = paths
                        .get(key.as_str())
                        .db()?
                        .is_some_and(|v| v.value() == owner.as_slice());
                    if !known {
                        paths.insert(key.as_str(), owner.as_slice()).db()?;
                    }
                }
            }
        }
        txn.commit().db()?;
        Ok(counts)
    }

    /// Whose folder `path` (a person's folder segments joined with `/`) is or last was,
    /// among every path [`Archive::put_directory`] ever made current; `None` if it never was
    /// a person's folder.
    pub fn folder_path_owner(&self, path: &str) -> Result<Option<PersonId>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(FOLDER_PATHS).db()?;
        let owner = t.get(path).db()?;
        owner
            .map(|v| from_json(v.value(), "folder path"))
            .transpose()
    }

    /// Every salesperson and contact.
    pub fn load_directory(&self) -> Result<(Vec<Salesperson>, Vec<Contact>), Error> {
        let txn = self.db.begin_read().db()?;
        let s = txn.open_table(SALESPEOPLE).db()?;
        let c = txn.open_table(CONTACTS).db()?;
        read_directory(&s, &c)
    }

    /// Makes the missing entries of every logged message from `pairs`; messages that match
    /// nobody are counted. Never duplicates an entry. Returns (entries made, messages
    /// without any entry).
    pub fn rematch(
        &self,
        pairs: &dyn Fn(&Record) -> Vec<(String, String)>,
    ) -> Result<(u64, u64), Error> {
        let uids = self.folder_uids(&super::FolderQuery::All)?;
        let mut made = 0;
        let mut unmatched = 0;
        // A transaction per chunk keeps memory and lock time bounded on a large archive.
        for chunk in uids.chunks(1000) {
            let txn = self.db.begin_write().db()?;
            {
                let messages = txn.open_table(super::tables::MESSAGES).db()?;
                let mut meta = txn.open_table(META).db()?;
                let mut log = LogWriter::open(&txn)?;
                for &uid in chunk {
                    let Some(bytes) = messages.get(uid).db()?.map(|g| g.value().to_vec()) else {
                        continue;
                    };
                    let record = super::decode(uid, &bytes)?;
                    let p = pairs(&record);
                    if p.is_empty() && log.pairs_of(uid)? == 0 {
                        unmatched += 1;
                    }
                    made += log.log(&mut meta, &record, &p)?;
                }
            }
            txn.commit().db()?;
        }
        let txn = self.db.begin_write().db()?;
        {
            let mut counters = txn.open_table(super::tables::COUNTERS).db()?;
            counters.insert(Counter::Unmatched.key(), unmatched).db()?;
        }
        txn.commit().db()?;
        Ok((made, unmatched))
    }

    /// Entries matching `filter`, by number.
    pub fn entries(&self, filter: &EntryFilter) -> Result<Vec<Entry>, Error> {
        let txn = self.db.begin_read().db()?;
        let entries = txn.open_table(ENTRIES).db()?;
        let numbers: Vec<u64> = if let Some(contact) = &filter.contact {
            let t = txn.open_multimap_table(ENTRIES_BY_CONTACT).db()?;
            t.get(contact.as_str())
                .db()?
                .map(|r| r.map(|g| g.value()))
                .collect::<Result<_, _>>()
                .db()?
        } else if let Some(salesperson) = &filter.salesperson {
            let t = txn.open_multimap_table(ENTRIES_BY_SALESPERSON).db()?;
            t.get(salesperson.as_str())
                .db()?
                .map(|r| r.map(|g| g.value()))
                .collect::<Result<_, _>>()
                .db()?
        } else {
            let from = filter.after.map_or(0, |a| a + 1);
            entries
                .range(from..)
                .db()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .db()?
        };
        let mut out = Vec::new();
        for no in numbers {
            if filter.after.is_some_and(|a| no <= a) {
                continue;
            }
            let Some(g) = entries.get(no).db()? else {
                continue;
            };
            let e: Entry = from_json(g.value(), "entry")?;
            let keep = filter
                .salesperson
                .as_ref()
                .is_none_or(|s| *s == e.salesperson)
                && filter.contact.as_ref().is_none_or(|c| *c == e.contact)
                && filter.direction.is_none_or(|d| d == e.direction)
                && filter.since.is_none_or(|s| e.date >= s)
                && filter.until.is_none_or(|u| e.date < u);
            if keep {
                out.push(e);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn entry(&self, no: u64) -> Result<Option<Entry>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(ENTRIES).db()?;
        t.get(no)
            .db()?
            .map(|g| from_json(g.value(), "entry"))
            .transpose()
    }

    /// The entries of one message.
    pub fn entries_of(&self, uid: u32) -> Result<Vec<Entry>, Error> {
        let txn = self.db.begin_read().db()?;
        let pairs = txn.open_table(ENTRY_PAIRS).db()?;
        let entries = txn.open_table(ENTRIES).db()?;
        let mut out = Vec::new();
        for r in pairs
            .range((uid, "", "")..(uid.saturating_add(1), "", ""))
            .db()?
        {
            let no = r.db()?.1.value();
            if let Some(g) = entries.get(no).db()? {
                out.push(from_json(g.value(), "entry")?);
            }
        }
        Ok(out)
    }

    /// Turns an entry into an opportunity.
    pub fn add_opportunity(
        &self,
        entry: u64,
        description: &str,
        now: i64,
    ) -> Result<Option<Opportunity>, Error> {
        let Some(e) = self.entry(entry)? else {
            return Ok(None);
        };
        let txn = self.db.begin_write().db()?;
        let opportunity = {
            let mut meta = txn.open_table(META).db()?;
            let no = get_u64(&meta, META_NEXT_OPPORTUNITY)?.unwrap_or(1);
            meta.insert(META_NEXT_OPPORTUNITY, no + 1).db()?;
            let o = Opportunity {
                no,
                entry,
                contact: e.contact.clone(),
                salesperson: e.salesperson.clone(),
                description: description.to_owned(),
                message: e.id.clone(),
                created: now,
            };
            txn.open_table(OPPORTUNITIES)
                .db()?
                .insert(no, to_json(&o)?.as_slice())
                .db()?;
            txn.open_multimap_table(OPPORTUNITIES_BY_CONTACT)
                .db()?
                .insert(e.contact.as_str(), no)
                .db()?;
            o
        };
        txn.commit().db()?;
        Ok(Some(opportunity))
    }

    /// A contact's opportunities, oldest first.
    pub fn opportunities(&self, contact: &str) -> Result<Vec<Opportunity>, Error> {
        let txn = self.db.begin_read().db()?;
        let by = txn.open_multimap_table(OPPORTUNITIES_BY_CONTACT).db()?;
        let all = txn.open_table(OPPORTUNITIES).db()?;
        let mut out = Vec::new();
        for r in by.get(contact).db()? {
            let no = r.db()?.value();
            if let Some(g) = all.get(no).db()? {
                out.push(from_json(g.value(), "opportunity")?);
            }
        }
        Ok(out)
    }
}

impl LogWriter<'_> {
    /// How many entries a message has.
    fn pairs_of(&self, uid: u32) -> Result<u64, Error> {
        let mut n = 0;
        for r in self
            .pairs
            .range((uid, "", "")..(uid.saturating_add(1), "", ""))
            .db()?
        {
            r.db()?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(number: &str, name: &str, company: &str) -> Contact {
        Contact {
            number: number.into(),
            name: name.into(),
            company: company.into(),
            emails: vec![format!("c{number}@example.net")],
            log_email: true,
        }
    }

    #[test]
    fn every_folder_path_ever_current_is_kept_with_its_last_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("open");
        let owner = |path: &str| archive.folder_path_owner(path).expect("read");
        let bob = Some(PersonId::Contact("1".into()));
        let carol = Some(PersonId::Contact("2".into()));
        let alice = Some(PersonId::Salesperson("AS".into()));
        let seller = Salesperson {
            code: "AS".into(),
            name: "Alice Seller".into(),
            email: "alice@contoso.com".into(),
            alt_emails: Vec::new(),
        };
        archive
            .put_directory(
                std::slice::from_ref(&seller),
                &[contact("1", "Bob Müller", "Example Net")],
            )
            .expect("import");
        assert_eq!(owner("Contacts/Example Net/Bob Müller"), bob);
        assert_eq!(owner("Salespeople/Alice Seller"), alice);
        assert_eq!(owner("Contacts/Example Net"), None, "parents are no one's");

        // A new company and spelling: both paths lead to Bob.
        archive
            .put_directory(&[], &[contact("1", "Bob Mueller", "Example Net GmbH")])
            .expect("re-import");
        assert_eq!(owner("Contacts/Example Net/Bob Müller"), bob);
        assert_eq!(owner("Contacts/Example Net GmbH/Bob Mueller"), bob);

        // Carol takes Bob's old path: it is hers now.
        archive
            .put_directory(&[], &[contact("2", "Bob Müller", "Example Net")])
            .expect("import");
        assert_eq!(owner("Contacts/Example Net/Bob Müller"), carol);
        assert_eq!(owner("Contacts/Example Net GmbH/Bob Mueller"), bob);
        assert_eq!(owner("Contacts/Nobody/Never"), None);
    }
}
