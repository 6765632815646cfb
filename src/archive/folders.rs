//! What the IMAP view needs from the archive: UID lists of virtual folders, the months that
//! have mail, per-account flags, and a signal when new mail is committed.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{DATES, DIRECTIONS, JUNK, MONTHS, USER_FLAGS};
use super::{Archive, Db, Error};
use crate::classify::Direction;

/// A virtual folder's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderQuery {
    /// Every logged message (not junk).
    All,
    Direction(Direction),
    /// Logged messages whose date falls in this month (UTC).
    Month {
        year: i32,
        month: u8,
    },
    /// Quarantined junk.
    Junk,
    /// Logged messages where one of these (normalized) addresses is a party: a person's
    /// folder.
    Addresses(Vec<String>),
}

/// `\Seen`.
pub const FLAG_SEEN: u8 = 1;
/// `\Flagged`.
pub const FLAG_FLAGGED: u8 = 2;

/// The month key (year × 100 + month) of a Unix time, UTC.
pub fn month_key(unix: i64) -> Option<u32> {
    let ts = jiff::Timestamp::from_second(unix).ok()?;
    let date = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    let year = u32::try_from(date.year()).ok()?;
    Some(year * 100 + u32::try_from(date.month()).ok()?)
}

fn month_bounds(year: i32, month: u8) -> Option<(i64, i64)> {
    let start = jiff::civil::date(i16::try_from(year).ok()?, i8::try_from(month).ok()?, 1);
    let end = start.checked_add(jiff::Span::new().months(1)).ok()?;
    let utc = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_second())
    };
    Some((utc(start)?, utc(end)?))
}

impl Archive {
    /// The sorted UIDs of a virtual folder.
    pub fn folder_uids(&self, query: &FolderQuery) -> Result<Vec<u32>, Error> {
        let txn = self.read()?;
        let mut uids = match query {
            FolderQuery::Addresses(addresses) => {
                let t = txn.open_multimap_table(super::tables::ADDRESSES).db()?;
                let junk = txn.open_table(JUNK).db()?;
                let mut uids = Vec::new();
                for a in addresses {
                    for uid in super::collect_multimap(t.get(a.as_str()).db()?)? {
                        if junk.get(uid).db()?.is_none() {
                            uids.push(uid);
                        }
                    }
                }
                uids
            }
            FolderQuery::Junk => {
                let t = txn.open_table(JUNK).db()?;
                t.iter()
                    .db()?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<Vec<_>, _>>()
                    .db()?
            }
            FolderQuery::Direction(d) => {
                let t = txn.open_multimap_table(DIRECTIONS).db()?;
                super::collect_multimap(t.get(d.code()).db()?)?
            }
            &FolderQuery::Month { year, month } => return self.month_uids(&txn, year, month),
            FolderQuery::All => {
                let t = txn.open_multimap_table(DIRECTIONS).db()?;
                let mut all = Vec::new();
                for d in Direction::ALL {
                    all.extend(super::collect_multimap(t.get(d.code()).db()?)?);
                }
                all
            }
        };
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    fn month_uids(
        &self,
        txn: &redb::ReadTransaction,
        year: i32,
        month: u8,
    ) -> Result<Vec<u32>, Error> {
        let Some((start, end)) = month_bounds(year, month) else {
            return Ok(Vec::new());
        };
        let dates = txn.open_table(DATES).db()?;
        let junk = txn.open_table(JUNK).db()?;
        let mut uids = Vec::new();
        for entry in dates.range((start, 0u32)..(end, 0u32)).db()? {
            let uid = entry.db()?.0.value().1;
            if junk.get(uid).db()?.is_none() {
                uids.push(uid);
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Every message (junk included) where `address` is a party.
    pub fn uids_with_address(&self, address: &str) -> Result<Vec<u32>, Error> {
        let txn = self.read()?;
        let t = txn.open_multimap_table(super::tables::ADDRESSES).db()?;
        super::collect_multimap(t.get(address).db()?)
    }

    /// The months (year, month) that have logged mail, oldest first.
    pub fn months(&self) -> Result<Vec<(i32, u8)>, Error> {
        let txn = self.read()?;
        let t = txn.open_table(MONTHS).db()?;
        let mut out = Vec::new();
        for entry in t.iter().db()? {
            let (k, v) = entry.db()?;
            if v.value() > 0 {
                let key = k.value();
                out.push(((key / 100) as i32, (key % 100) as u8));
            }
        }
        Ok(out)
    }

    /// The UID the next message will get (IMAP's UIDNEXT, the same for every folder).
    pub fn next_uid(&self) -> Result<u32, Error> {
        let txn = self.read()?;
        let meta = txn.open_table(super::tables::META).db()?;
        Ok(super::get_u64(&meta, super::tables::META_NEXT_UID)?
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1))
    }

    /// Resolves when a commit added messages: the watched value is the next UID.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.committed.subscribe()
    }

    /// An account's flags: UID → bits ([`FLAG_SEEN`], [`FLAG_FLAGGED`]); messages without
    /// flags are absent.
    pub fn account_flags(&self, account: &str) -> Result<BTreeMap<u32, u8>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(USER_FLAGS).db()?;
        let mut out = BTreeMap::new();
        for entry in t.range((account, 0u32)..=(account, u32::MAX)).db()? {
            let (k, v) = entry.db()?;
            out.insert(k.value().1, v.value());
        }
        Ok(out)
    }

    /// Sets an account's flags on messages (0 removes the entry). One durable commit.
    pub fn set_account_flags(&self, account: &str, flags: &[(u32, u8)]) -> Result<(), Error> {
        if flags.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().db()?;
        {
            let mut t = txn.open_table(USER_FLAGS).db()?;
            for &(uid, bits) in flags {
                if bits == 0 {
                    t.remove((account, uid)).db()?;
                } else {
                    t.insert((account, uid), bits).db()?;
                }
            }
        }
        txn.commit().db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        // 2026-11-21T08:00:00Z
        assert_eq!(month_key(1_795_248_000), Some(202_611));
        let (start, end) = month_bounds(2026, 12).expect("bounds");
        assert_eq!(month_key(start), Some(202_612));
        assert_eq!(month_key(end), Some(202_701));
        assert_eq!(month_key(end - 1), Some(202_612));
    }
}
