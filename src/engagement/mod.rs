//! Email engagement measured from the journal itself, for all mail: which message answers
//! which (threading), which messages no person wrote (auto-replies, bounces, bulk), and the
//! figures (sent, received, replied, reply rates, response times, awaiting an answer).
//!
//! Everything here is pure domain logic; the archive keeps the figures up to date in the
//! transaction that files each message (`archive::engagement`), and [`report`] reads them.
//!
//! The rules:
//! - An *exchange* is a logged message with at least one salesperson–contact pair (so an
//!   opted-out contact, who pairs with nobody, has none): outbound (a salesperson wrote to
//!   contacts) or inbound (a contact wrote to salespeople).
//! - A *reply* is an exchange written by a person (not [`Auto`]) that answers an earlier
//!   exchange of the other direction that shares a salesperson–contact pair with it. What it
//!   answers is found from `In-Reply-To`, then `References` (latest first); failing those,
//!   from a reply subject (`Re:`, `AW:` …) equal to an earlier exchange's normalized subject,
//!   between the same parties, at most `engagement.subject_window` earlier.
//! - Only the first answer from each pair counts (its time is the response time); a message
//!   stops awaiting an answer once any of its pairs answered.

pub mod auto;
pub mod kpi;
pub mod report;
pub mod subject;

use serde::{Deserialize, Serialize};

pub use auto::{Auto, Signals, detect};
pub use kpi::{Counts, Figures, Period};

/// The default `engagement.subject_window`: 14 days.
pub const DEFAULT_SUBJECT_WINDOW: i64 = 14 * 86_400;
/// The default `engagement.awaiting_after`: 24 hours.
pub const DEFAULT_AWAITING_AFTER: i64 = 24 * 3600;

/// A salesperson code and a contact number.
pub type PairKey = (String, String);

/// What engagement keeps of one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The message's stable id.
    pub id: String,
    /// Its date (Unix seconds).
    pub date: i64,
    pub outbound: bool,
    /// Its salesperson–contact pairs.
    pub pairs: Vec<PairKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<Auto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The pairs that answered it (the first answer of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answered: Vec<PairKey>,
    /// Its first `In-Reply-To`: what it answers once that is archived, should it come
    /// later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The UID of the exchange it answers, once found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u32>,
}

/// Which figures a key counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The whole organization (key `""`).
    Org,
    Salesperson,
    Contact,
    /// A salesperson–contact pair (key `code\tnumber`): what a salesperson may see of a
    /// contact.
    Pair,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Org, Scope::Salesperson, Scope::Contact, Scope::Pair];

    pub fn code(self) -> u8 {
        match self {
            Scope::Org => 0,
            Scope::Salesperson => 1,
            Scope::Contact => 2,
            Scope::Pair => 3,
        }
    }
}

/// The key of a pair in [`Scope::Pair`].
pub fn pair_key(salesperson: &str, contact: &str) -> String {
    format!("{salesperson}\t{contact}")
}

/// Every (scope, key) that a set of pairs counts toward, each once.
pub fn keys(pairs: &[PairKey]) -> std::collections::BTreeSet<(Scope, String)> {
    let mut out = std::collections::BTreeSet::new();
    if pairs.is_empty() {
        return out;
    }
    out.insert((Scope::Org, String::new()));
    for (s, c) in pairs {
        out.insert((Scope::Salesperson, s.clone()));
        out.insert((Scope::Contact, c.clone()));
        out.insert((Scope::Pair, pair_key(s, c)));
    }
    out
}

/// Whether `reply` (dated `date`, outbound or not, with `pairs`) may answer `parent`: a
/// person's message of the other direction, not later, sharing a pair.
pub fn may_answer(outbound: bool, date: i64, pairs: &[PairKey], parent: &Exchange) -> bool {
    parent.auto.is_none()
        && parent.outbound != outbound
        && parent.date <= date
        && pairs.iter().any(|p| parent.pairs.contains(p))
}

/// What a reply does to the message it answers: the pairs it newly answers, and the keys
/// whose first answer this is (each counts a reply and a response time).
pub fn answer(parent: &mut Exchange, pairs: &[PairKey]) -> Vec<(Scope, String)> {
    let before = keys(&parent.answered);
    let new: Vec<PairKey> = pairs
        .iter()
        .filter(|p| parent.pairs.contains(p) && !parent.answered.contains(p))
        .cloned()
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    parent.answered.extend(new);
    parent.answered.sort();
    keys(&parent.answered)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(s: &str, c: &str) -> PairKey {
        (s.into(), c.into())
    }

    fn outbound(pairs: Vec<PairKey>) -> Exchange {
        Exchange {
            id: "x".into(),
            date: 100,
            outbound: true,
            pairs,
            auto: None,
            subject: None,
            answered: Vec::new(),
            in_reply_to: None,
            answers: None,
        }
    }

    #[test]
    fn only_the_first_answer_of_each_key_counts() {
        let mut p = outbound(vec![pair("AS", "1001"), pair("AS", "1002")]);
        let first = answer(&mut p, &[pair("AS", "1001")]);
        assert_eq!(
            first,
            vec![
                (Scope::Org, String::new()),
                (Scope::Salesperson, "AS".into()),
                (Scope::Contact, "1001".into()),
                (Scope::Pair, "AS\t1001".into()),
            ]
        );
        assert_eq!(answer(&mut p, &[pair("AS", "1001")]), vec![]);
        // The second contact's answer counts for that contact only.
        assert_eq!(
            answer(&mut p, &[pair("AS", "1002")]),
            vec![
                (Scope::Contact, "1002".into()),
                (Scope::Pair, "AS\t1002".into())
            ]
        );
        // A pair the message was not between answers nothing.
        assert_eq!(answer(&mut p, &[pair("BM", "1002")]), vec![]);
    }

    #[test]
    fn who_may_answer_what() {
        let p = outbound(vec![pair("AS", "1001")]);
        assert!(may_answer(false, 200, &[pair("AS", "1001")], &p));
        assert!(
            !may_answer(true, 200, &[pair("AS", "1001")], &p),
            "same direction"
        );
        assert!(!may_answer(false, 50, &[pair("AS", "1001")], &p), "earlier");
        assert!(
            !may_answer(false, 200, &[pair("AS", "1002")], &p),
            "other parties"
        );
        let auto = Exchange {
            auto: Some(Auto::AutoReply),
            ..p
        };
        assert!(!may_answer(false, 200, &[pair("AS", "1001")], &auto));
    }
}
