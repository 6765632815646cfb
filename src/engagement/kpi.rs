//! The arithmetic of the figures: what one bucket (a key and a day) counts, how buckets add
//! up, and what a reader is shown (rates, median and 90th percentile response times).

use serde::{Deserialize, Serialize};

use super::Auto;

/// What one key (the organization, a salesperson, a contact, a salesperson–contact pair)
/// counts on one day (UTC) of the messages' dates. A reply counts on the day of the message
/// it answers, so a day's reply rate is that of the mail sent that day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Our messages to contacts (auto-replies not included).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent: u64,
    /// Contacts' messages to us (auto-replies, bounces and bulk not included).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub received: u64,
    /// Our messages that contacts answered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replied: u64,
    /// Contacts' messages we answered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answered: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auto_replies: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bounces: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bulk: u64,
    /// Seconds from each of our messages to the contact's first answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub them_secs: Vec<u32>,
    /// Seconds from each contact's message to our first answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub us_secs: Vec<u32>,
    /// The latest date of a message sent or received (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.received += other.received;
        self.replied += other.replied;
        self.answered += other.answered;
        self.auto_replies += other.auto_replies;
        self.bounces += other.bounces;
        self.bulk += other.bulk;
        self.them_secs.extend_from_slice(&other.them_secs);
        self.us_secs.extend_from_slice(&other.us_secs);
        self.last = self.last.max(other.last);
    }

    /// Counts a message arriving (or leaving).
    pub fn arrival(&mut self, outbound: bool, auto: Option<Auto>, date: i64) {
        match auto {
            Some(Auto::AutoReply) => self.auto_replies += 1,
            Some(Auto::Bounce) => self.bounces += 1,
            Some(Auto::Bulk) => self.bulk += 1,
            None => {
                if outbound {
                    self.sent += 1;
                } else {
                    self.received += 1;
                }
                self.last = self.last.max(Some(date));
            }
        }
    }

    /// Counts the first answer to a message, `secs` after it.
    pub fn first_answer(&mut self, to_outbound: bool, secs: u32) {
        if to_outbound {
            self.replied += 1;
            self.them_secs.push(secs);
        } else {
            self.answered += 1;
            self.us_secs.push(secs);
        }
    }
}

/// The nearest-rank percentile (`p` in 0..=100): the smallest value that at least `p`
/// percent of the values are at or below.
pub fn percentile(values: &mut [u32], p: u32) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len() as u64;
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    values.get((rank - 1) as usize).copied()
}

/// A share as a ratio (0 to 1) with four decimals; `None` of nothing.
fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// What a reader is shown for a key and period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub sent: u64,
    pub received: u64,
    /// Our messages contacts answered, and their share of `sent`.
    pub replied: u64,
    pub reply_rate: Option<f64>,
    /// Contacts' messages we answered, and their share of `received`.
    pub answered: u64,
    pub answer_rate: Option<f64>,
    /// How fast contacts answer us (seconds): median and 90th percentile.
    pub their_reply_median_secs: Option<u32>,
    pub their_reply_p90_secs: Option<u32>,
    /// How fast we answer contacts (seconds).
    pub our_reply_median_secs: Option<u32>,
    pub our_reply_p90_secs: Option<u32>,
    /// Contacts' messages still unanswered, older than the awaiting threshold.
    pub awaiting_us: u64,
    /// Our messages no contact answered yet.
    pub awaiting_them: u64,
    pub auto_replies: u64,
    pub bounces: u64,
    pub bulk: u64,
    /// RFC 3339.
    pub last_interaction: Option<String>,
}

impl Figures {
    pub fn of(counts: &Counts, awaiting_us: u64, awaiting_them: u64) -> Self {
        let mut them = counts.them_secs.clone();
        let mut us = counts.us_secs.clone();
        Self {
            sent: counts.sent,
            received: counts.received,
            replied: counts.replied,
            reply_rate: rate(counts.replied, counts.sent),
            answered: counts.answered,
            answer_rate: rate(counts.answered, counts.received),
            their_reply_median_secs: percentile(&mut them, 50),
            their_reply_p90_secs: percentile(&mut them, 90),
            our_reply_median_secs: percentile(&mut us, 50),
            our_reply_p90_secs: percentile(&mut us, 90),
            awaiting_us,
            awaiting_them,
            auto_replies: counts.auto_replies,
            bounces: counts.bounces,
            bulk: counts.bulk,
            last_interaction: counts.last.map(crate::clock::rfc3339),
        }
    }
}

/// How figures are grouped in time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            _ => Err(format!("{s:?} is not one of day, week, month")),
        }
    }
}

/// The day (days since 1970-01-01, UTC) of a Unix time.
pub fn day_of(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// The label of the period that `day` is in: `2026-11-21`, `2026-W47` (ISO week), `2026-11`.
pub fn label(period: Period, day: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_second(day.saturating_mul(86_400)) else {
        return day.to_string();
    };
    let date = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    match period {
        Period::Day => date.to_string(),
        Period::Week => {
            let w = date.iso_week_date();
            format!("{:04}-W{:02}", w.year(), w.week())
        }
        Period::Month => format!("{:04}-{:02}", date.year(), date.month()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&mut [], 50), None);
        assert_eq!(percentile(&mut [7], 50), Some(7));
        assert_eq!(percentile(&mut [7], 90), Some(7));
        assert_eq!(percentile(&mut [30, 10, 20, 40], 50), Some(20));
        assert_eq!(percentile(&mut [30, 10, 20, 40], 90), Some(40));
        let mut v: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&mut v, 90), Some(9));
        assert_eq!(percentile(&mut v, 50), Some(5));
    }

    #[test]
    fn figures_from_counts() {
        let mut c = Counts::default();
        c.arrival(true, None, 100);
        c.arrival(true, None, 200);
        c.arrival(true, None, 300);
        c.arrival(false, Some(Auto::AutoReply), 400);
        c.arrival(false, Some(Auto::Bounce), 400);
        c.arrival(false, None, 350);
        c.first_answer(true, 3600);
        c.first_answer(false, 60);
        let f = Figures::of(&c, 1, 2);
        assert_eq!((f.sent, f.received, f.replied, f.answered), (3, 1, 1, 1));
        assert_eq!(f.reply_rate, Some(0.3333));
        assert_eq!(f.answer_rate, Some(1.0));
        assert_eq!(f.their_reply_median_secs, Some(3600));
        assert_eq!(f.our_reply_p90_secs, Some(60));
        assert_eq!((f.auto_replies, f.bounces, f.bulk), (1, 1, 0));
        assert_eq!(f.last_interaction.as_deref(), Some("1970-01-01T00:05:50Z"));
        assert_eq!(Figures::of(&Counts::default(), 0, 0).reply_rate, None);
    }

    #[test]
    fn period_labels() {
        // 2026-11-21 is a Saturday in ISO week 47.
        let day = day_of(crate::clock::parse_date("2026-11-21").expect("date"));
        assert_eq!(label(Period::Day, day), "2026-11-21");
        assert_eq!(label(Period::Week, day), "2026-W47");
        assert_eq!(label(Period::Month, day), "2026-11");
        assert_eq!(
            label(
                Period::Week,
                day_of(crate::clock::parse_date("2027-01-01").expect("date"))
            ),
            "2026-W53"
        );
        assert_eq!(day_of(-1), -1);
    }
}
