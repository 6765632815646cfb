//! The figures as readers ask for them: the organization's (or one salesperson's, contact's)
//! summary, one row per salesperson, contact or company, optionally per day, week or month,
//! and the lists of messages awaiting an answer. Read from what the archive keeps up to
//! date; nothing is rescanned.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::kpi::{self, Counts, Figures, Period};
use super::{PairKey, Scope, pair_key};
use crate::archive::{self, Archive};
use crate::directory::Directory;

/// Which figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum View {
    Summary,
    Contacts,
    Salespeople,
    Companies,
    AwaitingUs,
    AwaitingThem,
}

impl std::str::FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <View as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("{s:?} is not a view of the figures"))
    }
}

/// What a reader asks for.
#[derive(Debug, Clone)]
pub struct Query {
    pub view: View,
    pub period: Option<Period>,
    /// Messages dated on or after (Unix seconds; figures by whole days, UTC).
    pub since: Option<i64>,
    /// Messages dated before.
    pub until: Option<i64>,
    pub contact: Option<String>,
    pub salesperson: Option<String>,
    /// Inbound mail awaits us once it is this old (seconds).
    pub awaiting_after: i64,
    pub now: i64,
    /// Rows to skip and to return at most (paging).
    pub offset: usize,
    pub limit: Option<usize>,
}

/// Whose figures a reader may see.
#[derive(Debug, Clone)]
pub enum Visibility {
    All,
    /// These salespeople's only (a salesperson account: its own and those it was granted).
    Salespeople(BTreeSet<String>),
}

impl Visibility {
    fn sees(&self, code: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Salespeople(codes) => codes.contains(code),
        }
    }
}

/// One row of figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The period (`2026-11-21`, `2026-W47`, `2026-11`), when grouped by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salesperson: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The salesperson's or contact's name, or the company.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A message awaiting an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub uid: u32,
    /// Its stable id (its permalink).
    pub id: String,
    /// RFC 3339.
    pub date: String,
    /// Hours since it was sent.
    pub age_hours: i64,
    pub salespeople: Vec<String>,
    pub contacts: Vec<String>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Rows {
    Figures(Vec<Row>),
    Awaiting(Vec<Waiting>),
}

/// The answer: rows of this page, and how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub total: usize,
    pub rows: Rows,
}

/// What a row is about (salesperson, contact, company), in a view's grouping.
type Group = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const NO_COMPANY: &str = "(no company)";

pub fn build(
    archive: &Archive,
    directory: &Directory,
    visibility: &Visibility,
    q: &Query,
) -> Result<Report, archive::Error> {
    // Opted-out contacts (log e-mail off) are left out of everything shown.
    let opted_in = |number: &str| {
        directory
            .contact_by_number(number)
            .is_none_or(|c| c.log_email)
    };
    let company_of = |number: &str| {
        directory
            .contact_by_number(number)
            .map(|c| c.company.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| NO_COMPANY.to_owned())
    };
    let pair_ok = |(s, c): &PairKey| {
        visibility.sees(s)
            && opted_in(c)
            && q.salesperson.as_ref().is_none_or(|x| x == s)
            && q.contact.as_ref().is_none_or(|x| x == c)
    };

    if matches!(q.view, View::AwaitingUs | View::AwaitingThem) {
        let outbound = q.view == View::AwaitingThem;
        let mut open = archive.engagement_open(outbound, q.since, q.until)?;
        if !outbound {
            let cutoff = q.now.saturating_sub(q.awaiting_after);
            open.retain(|o| o.date <= cutoff);
        }
        open.retain_mut(|o| {
            o.pairs.retain(|p| pair_ok(p));
            !o.pairs.is_empty()
        });
        let total = open.len();
        let page: Vec<_> = open
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .collect();
        let mut rows = Vec::with_capacity(page.len());
        for o in page {
            let exchange = archive.engagement_exchange(o.uid)?;
            let set = |f: fn(&PairKey) -> &String| {
                o.pairs
                    .iter()
                    .map(f)
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            rows.push(Waiting {
                uid: o.uid,
                id: exchange.as_ref().map(|e| e.id.clone()).unwrap_or_default(),
                date: crate::clock::rfc3339(o.date),
                age_hours: q.now.saturating_sub(o.date).max(0) / 3600,
                salespeople: set(|p| &p.0),
                contacts: set(|p| &p.1),
                subject: exchange.and_then(|e| e.subject),
            });
        }
        return Ok(Report {
            total,
            rows: Rows::Awaiting(rows),
        });
    }

    let since_day = q.since.map(kpi::day_of);
    let until_day = q.until.map(|u| kpi::day_of(u.saturating_sub(1)));
    let restricted = matches!(visibility, Visibility::Salespeople(_));
    // Where the figures come from: counts de-duplicated per message where the reader sees
    // the whole scope, else the salesperson–contact pairs it may see.
    let (scope, key): (Scope, Option<String>) = match (q.view, &q.salesperson, &q.contact) {
        (_, Some(s), Some(c)) => (Scope::Pair, Some(pair_key(s, c))),
        (View::Summary, None, None) if !restricted => (Scope::Org, Some(String::new())),
        (View::Summary | View::Salespeople, Some(s), None) => (Scope::Salesperson, Some(s.clone())),
        (View::Summary | View::Salespeople, None, None) => (Scope::Salesperson, None),
        (View::Contacts | View::Companies, None, None) if !restricted => (Scope::Contact, None),
        (View::Summary | View::Contacts | View::Companies, None, Some(c)) if !restricted => {
            (Scope::Contact, Some(c.clone()))
        }
        _ => (Scope::Pair, None),
    };
    // The row a (salesperson, contact) belongs to in this view.
    let group = |s: Option<&str>, c: Option<&str>| -> Group {
        match q.view {
            View::Summary => (None, None, None, None),
            View::Salespeople => {
                let name = s
                    .and_then(|s| directory.salesperson_by_code(s))
                    .map(|p| p.name.clone());
                (s.map(str::to_owned), None, name, None)
            }
            View::Contacts => {
                let contact = c.and_then(|c| directory.contact_by_number(c));
                (
                    None,
                    c.map(str::to_owned),
                    contact.map(|p| p.name.clone()),
                    c.map(company_of),
                )
            }
            _ => (None, None, None, c.map(company_of)),
        }
    };
    let mut sums: BTreeMap<(Option<String>, Group), (Counts, u64, u64)> = BTreeMap::new();
    for (k, day, counts) in
        archive.engagement_counts(scope, key.as_deref(), since_day, until_day)?
    {
        let (s, c) = match scope {
            Scope::Org => (None, None),
            Scope::Salesperson => (Some(k.as_str()), None),
            Scope::Contact => (None, Some(k.as_str())),
            Scope::Pair => match k.split_once('\t') {
                Some((s, c)) => (Some(s), Some(c)),
                None => continue,
            },
        };
        if s.is_some_and(|s| !visibility.sees(s))
            || c.is_some_and(|c| !opted_in(c))
            || (scope == Scope::Pair
                && !pair_ok(&(s.unwrap_or("").to_owned(), c.unwrap_or("").to_owned())))
        {
            continue;
        }
        let period = q.period.map(|p| kpi::label(p, day));
        let entry = sums.entry((period, group(s, c))).or_default();
        entry.0.add(&counts);
    }
    // Messages awaiting an answer, in the rows of the period they were sent in.
    for outbound in [false, true] {
        let mut open = archive.engagement_open(outbound, q.since, q.until)?;
        if !outbound {
            let cutoff = q.now.saturating_sub(q.awaiting_after);
            open.retain(|o| o.date <= cutoff);
        }
        for o in open {
            let period = q.period.map(|p| kpi::label(p, kpi::day_of(o.date)));
            let groups: BTreeSet<Group> = o
                .pairs
                .iter()
                .filter(|p| pair_ok(p))
                .map(|(s, c)| group(Some(s), Some(c)))
                .collect();
            for g in groups {
                let entry = sums.entry((period.clone(), g)).or_default();
                if outbound {
                    entry.2 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    if sums.is_empty() && q.view == View::Summary && q.period.is_none() {
        sums.insert((None, (None, None, None, None)), Default::default());
    }
    let total = sums.len();
    let rows = sums
        .into_iter()
        .skip(q.offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(
            |((period, (salesperson, contact, name, company)), (counts, us, them))| Row {
                period,
                salesperson,
                contact,
                name,
                company,
                figures: Figures::of(&counts, us, them),
            },
        )
        .collect();
    Ok(Report {
        total,
        rows: Rows::Figures(rows),
    })
}
