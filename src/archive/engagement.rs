//! The engagement figures as the archive stores them, kept up to date in the transaction
//! that files each message ([`EngagementWriter::file`]) and rebuilt from the records by
//! [`Archive::rebuild_engagement`]. The rules are `crate::engagement`'s.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable, Table};

use super::tables::{
    DATES, ENG_COUNTS, ENG_MESSAGES, ENG_OPEN, ENG_SUBJECTS, MESSAGE_IDS, MESSAGES, REFERENCES,
};
use super::{Archive, Db, Error, Record};
use crate::classify::Direction;
use crate::engagement::{self, Auto, Counts, Exchange, PairKey, Scope, kpi, subject};

/// The open-table code of a message awaiting an answer: inbound (awaiting us) 0, outbound
/// (awaiting them) 1.
fn open_kind(outbound: bool) -> u8 {
    u8::from(outbound)
}

fn corrupt(uid: u32, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        uid,
        reason: format!("engagement: {e}"),
    }
}

/// The engagement tables inside one write transaction.
pub(super) struct EngagementWriter<'t> {
    messages: Table<'t, u32, &'static [u8]>,
    subjects: Table<'t, (&'static str, i64, u32), ()>,
    counts: Table<'t, (u8, &'static str, i64), &'static [u8]>,
    open: Table<'t, (u8, i64, u32), &'static [u8]>,
    /// Buckets read or changed in this transaction, written once by [`Self::finish`].
    cache: BTreeMap<(u8, String, i64), Counts>,
    /// How far back a reply subject finds what it answers (seconds).
    pub(super) window: i64,
}

impl<'t> EngagementWriter<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, Error> {
        Ok(Self {
            messages: txn.open_table(ENG_MESSAGES).db()?,
            subjects: txn.open_table(ENG_SUBJECTS).db()?,
            counts: txn.open_table(ENG_COUNTS).db()?,
            open: txn.open_table(ENG_OPEN).db()?,
            cache: BTreeMap::new(),
            window: engagement::DEFAULT_SUBJECT_WINDOW,
        })
    }

    fn bucket(&mut self, scope: Scope, key: &str, day: i64) -> Result<&mut Counts, Error> {
        let k = (scope.code(), key.to_owned(), day);
        if !self.cache.contains_key(&k) {
            let stored = match self.counts.get((scope.code(), key, day)).db()? {
                Some(g) => serde_json::from_slice(g.value()).map_err(|e| corrupt(0, e))?,
                None => Counts::default(),
            };
            self.cache.insert(k.clone(), stored);
        }
        self.cache
            .get_mut(&k)
            .ok_or_else(|| corrupt(0, "a bucket vanished"))
    }

    fn exchange(&self, uid: u32) -> Result<Option<Exchange>, Error> {
        self.messages
            .get(uid)
            .db()?
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| corrupt(uid, e)))
            .transpose()
    }

    /// Counts a newly filed message with its interaction-log `pairs`, and what it answers.
    /// The one place the commit path touches engagement.
    pub(super) fn file(
        &mut self,
        message_ids: &impl ReadableMultimapTable<&'static str, u32>,
        references: &impl ReadableMultimapTable<&'static str, u32>,
        record: &Record,
        pairs: &[PairKey],
    ) -> Result<(), Error> {
        let m = &record.meta;
        if record.is_junk() {
            return Ok(());
        }
        if m.auto == Some(Auto::Bounce) {
            return self.file_bounce(message_ids, record, pairs);
        }
        let outbound = match m.direction {
            Direction::Outbound => true,
            Direction::Inbound => false,
            Direction::Internal | Direction::External => return Ok(()),
        };
        if pairs.is_empty() {
            return Ok(());
        }
        let mut pairs = pairs.to_vec();
        pairs.sort();
        pairs.dedup();
        let mut exchange = Exchange {
            id: record.id.clone(),
            date: m.date,
            outbound,
            pairs,
            auto: m.auto,
            subject: m.subject.clone(),
            answered: Vec::new(),
            in_reply_to: m.in_reply_to.first().cloned(),
            answers: None,
        };
        let day = kpi::day_of(m.date);
        for (scope, key) in engagement::keys(&exchange.pairs) {
            self.bucket(scope, &key, day)?
                .arrival(outbound, m.auto, m.date);
        }
        if m.auto.is_none() {
            let pairs_json =
                serde_json::to_vec(&exchange.pairs).map_err(|e| corrupt(record.uid, e))?;
            self.open
                .insert(
                    (open_kind(outbound), m.date, record.uid),
                    pairs_json.as_slice(),
                )
                .db()?;
            let normalized = m.subject.as_deref().map(subject::normalize);
            if let Some(n) = normalized.as_ref().filter(|n| !n.key.is_empty()) {
                self.subjects
                    .insert((n.key.as_str(), m.date, record.uid), ())
                    .db()?;
            }
            if let Some((uid, mut parent)) =
                self.parent(message_ids, record, &exchange, normalized.as_ref())?
            {
                exchange.answers = Some(uid);
                let newly = engagement::answer(&mut parent, &exchange.pairs);
                if !newly.is_empty() {
                    let secs = u32::try_from((m.date - parent.date).max(0)).unwrap_or(u32::MAX);
                    let parent_day = kpi::day_of(parent.date);
                    for (scope, key) in newly {
                        self.bucket(scope, &key, parent_day)?
                            .first_answer(parent.outbound, secs);
                    }
                    self.open
                        .remove((open_kind(parent.outbound), parent.date, uid))
                        .db()?;
                    let json = serde_json::to_vec(&parent).map_err(|e| corrupt(uid, e))?;
                    self.messages.insert(uid, json.as_slice()).db()?;
                }
            }
        }
        if m.auto.is_none()
            && let Some(mid) = &m.message_id
        {
            self.answered_before(references, record.uid, mid, &mut exchange)?;
        }
        let json = serde_json::to_vec(&exchange).map_err(|e| corrupt(record.uid, e))?;
        self.messages.insert(record.uid, json.as_slice()).db()?;
        Ok(())
    }

    /// Replies archived before the message they answer (a journal or a bulk ingest that
    /// delivered them out of order): those whose `In-Reply-To` is `mid` and that answer
    /// nothing else count as answers to the exchange now filed as `uid`.
    fn answered_before(
        &mut self,
        references: &impl ReadableMultimapTable<&'static str, u32>,
        uid: u32,
        mid: &str,
        exchange: &mut Exchange,
    ) -> Result<(), Error> {
        let children = super::collect_multimap(references.get(mid).db()?)?;
        for child_uid in children.into_iter().filter(|&u| u != uid) {
            let Some(mut child) = self.exchange(child_uid)? else {
                continue;
            };
            let direct = child.auto.is_none()
                && child.answers.is_none()
                && child.in_reply_to.as_deref() == Some(mid)
                && engagement::may_answer(child.outbound, child.date, &child.pairs, exchange);
            if !direct {
                continue;
            }
            child.answers = Some(uid);
            let newly = engagement::answer(exchange, &child.pairs);
            let secs = u32::try_from((child.date - exchange.date).max(0)).unwrap_or(u32::MAX);
            let day = kpi::day_of(exchange.date);
            for (scope, key) in newly {
                self.bucket(scope, &key, day)?
                    .first_answer(exchange.outbound, secs);
            }
            let json = serde_json::to_vec(&child).map_err(|e| corrupt(child_uid, e))?;
            self.messages.insert(child_uid, json.as_slice()).db()?;
        }
        if !exchange.answered.is_empty() {
            self.open
                .remove((open_kind(exchange.outbound), exchange.date, uid))
                .db()?;
        }
        Ok(())
    }

    /// A bounce: counted for the message it reports on (found by the Message-ID the report
    /// carries, else by `In-Reply-To`/`References`), which stops awaiting an answer; else,
    /// when it has pairs of its own (a contact's server wrote as the contact), for those.
    fn file_bounce(
        &mut self,
        message_ids: &impl ReadableMultimapTable<&'static str, u32>,
        record: &Record,
        pairs: &[PairKey],
    ) -> Result<(), Error> {
        let m = &record.meta;
        let day = kpi::day_of(m.date);
        let mids = m
            .bounced
            .iter()
            .chain(&m.in_reply_to)
            .chain(m.references.iter().rev());
        for mid in mids {
            let uids = super::collect_multimap(message_ids.get(mid.as_str()).db()?)?;
            for uid in uids.into_iter().filter(|&u| u != record.uid) {
                let Some(parent) = self.exchange(uid)?.filter(|p| p.outbound) else {
                    continue;
                };
                for (scope, key) in engagement::keys(&parent.pairs) {
                    self.bucket(scope, &key, day)?.bounces += 1;
                }
                self.open.remove((open_kind(true), parent.date, uid)).db()?;
                return Ok(());
            }
        }
        if matches!(m.direction, Direction::Inbound) && !pairs.is_empty() {
            let mut pairs = pairs.to_vec();
            pairs.sort();
            pairs.dedup();
            for (scope, key) in engagement::keys(&pairs) {
                self.bucket(scope, &key, day)?.bounces += 1;
            }
        }
        Ok(())
    }

    /// The exchange `record` answers: by `In-Reply-To`, then `References` (latest first),
    /// then by reply subject within the window.
    fn parent(
        &self,
        message_ids: &impl ReadableMultimapTable<&'static str, u32>,
        record: &Record,
        exchange: &Exchange,
        normalized: Option<&subject::Normalized>,
    ) -> Result<Option<(u32, Exchange)>, Error> {
        let m = &record.meta;
        let fits =
            |p: &Exchange| engagement::may_answer(exchange.outbound, m.date, &exchange.pairs, p);
        for mid in m.in_reply_to.iter().chain(m.references.iter().rev()) {
            let uids = super::collect_multimap(message_ids.get(mid.as_str()).db()?)?;
            for uid in uids.into_iter().filter(|&u| u != record.uid) {
                if let Some(p) = self.exchange(uid)?
                    && fits(&p)
                {
                    return Ok(Some((uid, p)));
                }
            }
        }
        let Some(n) = normalized.filter(|n| n.reply && !n.key.is_empty()) else {
            return Ok(None);
        };
        let from = m.date.saturating_sub(self.window);
        let mut uids = Vec::new();
        for r in self
            .subjects
            .range((n.key.as_str(), from, 0)..=(n.key.as_str(), m.date, u32::MAX))
            .db()?
        {
            uids.push(r.db()?.0.value().2);
        }
        for uid in uids.into_iter().rev().filter(|&u| u != record.uid) {
            if let Some(p) = self.exchange(uid)?
                && fits(&p)
            {
                return Ok(Some((uid, p)));
            }
        }
        Ok(None)
    }

    /// Writes the buckets this transaction changed; call once, after its last message.
    pub(super) fn finish(&mut self) -> Result<(), Error> {
        for ((scope, key, day), counts) in std::mem::take(&mut self.cache) {
            let json = serde_json::to_vec(&counts).map_err(|e| corrupt(0, e))?;
            self.counts
                .insert((scope, key.as_str(), day), json.as_slice())
                .db()?;
        }
        Ok(())
    }
}

/// Judges a record from its bytes: auto-reply, bounce or bulk (or a person's), and for a
/// bounce the Message-ID it reports on.
pub type JudgeFn = dyn Fn(&Archive, &Record) -> (Option<Auto>, Option<String>);

/// A message awaiting an answer.
#[derive(Debug, Clone)]
pub struct Open {
    pub uid: u32,
    pub date: i64,
    pub pairs: Vec<PairKey>,
}

impl Archive {
    /// Applies `[engagement]`: how far back a reply subject finds what it answers (from the
    /// next commit on), and how old inbound mail is before it awaits us (what readers are
    /// shown by default).
    pub fn set_engagement(&self, settings: &crate::config::EngagementSettings) {
        use std::sync::atomic::Ordering::Relaxed;
        self.subject_window
            .store(settings.subject_window.max(0), Relaxed);
        self.awaiting_after
            .store(settings.awaiting_after.max(0), Relaxed);
    }

    /// `engagement.awaiting_after` (seconds).
    pub fn awaiting_after(&self) -> i64 {
        self.awaiting_after
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn subject_window(&self) -> i64 {
        self.subject_window
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The buckets of `scope` (of `key` only, when given) of days in `since..until`.
    pub fn engagement_counts(
        &self,
        scope: Scope,
        key: Option<&str>,
        since_day: Option<i64>,
        until_day: Option<i64>,
    ) -> Result<Vec<(String, i64, Counts)>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(ENG_COUNTS).db()?;
        let s = scope.code();
        let lo = since_day.unwrap_or(i64::MIN);
        let hi = until_day.unwrap_or(i64::MAX);
        let range = match key {
            Some(k) => t.range((s, k, lo)..=(s, k, hi)).db()?,
            None => t.range((s, "", i64::MIN)..(s + 1, "", i64::MIN)).db()?,
        };
        let mut out = Vec::new();
        for r in range {
            let (k, v) = r.db()?;
            let (_, key, day) = k.value();
            if day < lo || day > hi {
                continue;
            }
            let counts: Counts = serde_json::from_slice(v.value()).map_err(|e| corrupt(0, e))?;
            out.push((key.to_owned(), day, counts));
        }
        Ok(out)
    }

    /// The messages awaiting an answer (inbound: awaiting us; outbound: awaiting them),
    /// oldest first, dated in `since..until`.
    pub fn engagement_open(
        &self,
        outbound: bool,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<Vec<Open>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(ENG_OPEN).db()?;
        let k = open_kind(outbound);
        let lo = since.unwrap_or(i64::MIN);
        let hi = until.unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for r in t.range((k, lo, 0)..(k, hi, 0)).db()? {
            let (key, v) = r.db()?;
            let (_, date, uid) = key.value();
            let pairs = serde_json::from_slice(v.value()).map_err(|e| corrupt(uid, e))?;
            out.push(Open { uid, date, pairs });
        }
        Ok(out)
    }

    /// What engagement keeps of message `uid`, if it is an exchange.
    pub fn engagement_exchange(&self, uid: u32) -> Result<Option<Exchange>, Error> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(ENG_MESSAGES).db()?;
        t.get(uid)
            .db()?
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| corrupt(uid, e)))
            .transpose()
    }

    /// Recomputes every engagement figure from the archived messages, in date order, with
    /// today's directory (`pairs`) and, for records that carry no judgement, `auto_of`
    /// (which reads the message's bytes). Returns how many exchanges it counted.
    pub fn rebuild_engagement(
        &self,
        pairs: &dyn Fn(&Record) -> Vec<PairKey>,
        auto_of: &JudgeFn,
    ) -> Result<u64, Error> {
        let txn = self.db.begin_write().db()?;
        txn.delete_table(ENG_MESSAGES).db()?;
        txn.delete_table(ENG_SUBJECTS).db()?;
        txn.delete_table(ENG_COUNTS).db()?;
        txn.delete_table(ENG_OPEN).db()?;
        txn.open_table(ENG_MESSAGES).db()?;
        txn.open_table(ENG_SUBJECTS).db()?;
        txn.open_table(ENG_COUNTS).db()?;
        txn.open_table(ENG_OPEN).db()?;
        txn.commit().db()?;
        let order: Vec<u32> = {
            let txn = self.db.begin_read().db()?;
            let dates = txn.open_table(DATES).db()?;
            let mut v = Vec::new();
            for r in dates.iter().db()? {
                v.push(r.db()?.0.value().1);
            }
            v
        };
        let mut counted = 0;
        for chunk in order.chunks(1000) {
            let txn = self.db.begin_write().db()?;
            {
                let messages = txn.open_table(MESSAGES).db()?;
                let message_ids = txn.open_multimap_table(MESSAGE_IDS).db()?;
                let references = txn.open_multimap_table(REFERENCES).db()?;
                let mut w = EngagementWriter::open(&txn)?;
                w.window = self.subject_window();
                for &uid in chunk {
                    let Some(bytes) = messages.get(uid).db()?.map(|g| g.value().to_vec()) else {
                        continue;
                    };
                    let mut record = super::decode(uid, &bytes)?;
                    if record.is_junk() {
                        continue;
                    }
                    let p = pairs(&record);
                    // A message between no salesperson and contact counts only as a bounce,
                    // and bounces come from mailer daemons.
                    let daemon = record
                        .meta
                        .from
                        .iter()
                        .map(|f| f.address.as_str())
                        .chain(record.meta.sender.as_deref())
                        .any(|a| {
                            let local = a.split('@').next().unwrap_or("");
                            local.eq_ignore_ascii_case("mailer-daemon")
                                || local.eq_ignore_ascii_case("postmaster")
                        });
                    if p.is_empty() && !daemon && record.meta.auto != Some(Auto::Bounce) {
                        continue;
                    }
                    if record.meta.auto.is_none() {
                        (record.meta.auto, record.meta.bounced) = auto_of(self, &record);
                    }
                    w.file(&message_ids, &references, &record, &p)?;
                    counted += 1;
                }
                w.finish()?;
            }
            txn.commit().db()?;
        }
        Ok(counted)
    }
}
