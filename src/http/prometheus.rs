//! `/metrics` in the Prometheus text format (version 0.0.4): message counts from the
//! archive, the ingest latency histogram and the open sessions from [`Metrics`].

use std::fmt::Write;

use crate::archive::{Counter, Stats};
use crate::classify::Direction;
use crate::metrics::{LATENCY_BUCKETS, Metrics};

/// The content type Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// Renders every metric.
pub fn render(stats: &Stats, metrics: &Metrics) -> String {
    let mut t = Text(String::with_capacity(4096));
    let counter = |c: Counter| stats.counters.get(c.key()).copied().unwrap_or(0);

    t.family(
        "mailjournal_messages",
        "gauge",
        "Logged messages in the archive by direction (quarantined junk not included).",
    );
    for d in Direction::ALL {
        let n = match d {
            Direction::Inbound => stats.inbound,
            Direction::Outbound => stats.outbound,
            Direction::Internal => stats.internal,
            Direction::External => stats.external,
        };
        t.sample(
            "mailjournal_messages",
            &format!("direction=\"{}\"", d.as_str()),
            n,
        );
    }
    t.single(
        "mailjournal_junk_quarantined",
        "gauge",
        "Junk messages in quarantine.",
        stats.junk_quarantined_now,
    );
    t.single(
        "mailjournal_junk_dropped_total",
        "counter",
        "Junk messages counted and discarded.",
        counter(Counter::JunkDropped),
    );
    t.single(
        "mailjournal_stored_total",
        "counter",
        "New messages stored, quarantined junk included.",
        counter(Counter::Stored),
    );
    t.single(
        "mailjournal_later_copies",
        "gauge",
        "Later copies kept: distinct bytes of messages archived already.",
        stats.later_copies,
    );
    t.single(
        "mailjournal_duplicates_total",
        "counter",
        "Copies merged into a message already archived.",
        counter(Counter::Duplicates),
    );
    t.single(
        "mailjournal_malformed_total",
        "counter",
        "Messages stored with a malformed flag.",
        counter(Counter::Malformed),
    );
    t.single(
        "mailjournal_journal_reports_total",
        "counter",
        "Messages unwrapped from journal reports.",
        counter(Counter::JournalReports),
    );
    // Recounted from scratch by `directory rematch`, so it can go down: a gauge.
    t.single(
        "mailjournal_unmatched_messages",
        "gauge",
        "Logged messages that match no salesperson-contact pair.",
        counter(Counter::Unmatched),
    );

    let name = "mailjournal_ingest_latency_seconds";
    t.family(
        name,
        "histogram",
        "Time from the end of a message's data to its durable commit.",
    );
    let (cumulative, sum) = metrics.ingest_latency.snapshot();
    let total = cumulative.last().copied().unwrap_or(0);
    for (le, n) in LATENCY_BUCKETS.iter().zip(&cumulative) {
        t.sample(&format!("{name}_bucket"), &format!("le=\"{le}\""), n);
    }
    t.sample(&format!("{name}_bucket"), "le=\"+Inf\"", total);
    t.sample(&format!("{name}_sum"), "", sum);
    t.sample(&format!("{name}_count"), "", total);

    t.single(
        "mailjournal_smtp_sessions",
        "gauge",
        "Open SMTP sessions.",
        metrics.smtp_sessions.get(),
    );
    t.single(
        "mailjournal_imap_sessions",
        "gauge",
        "Open IMAP sessions.",
        metrics.imap_sessions.get(),
    );
    t.0
}

/// The organization's engagement totals (all time), appended to [`render`]'s text.
pub fn render_engagement(f: &crate::engagement::Figures) -> String {
    let mut t = Text(String::with_capacity(1024));
    let name = "mailjournal_engagement_messages";
    t.family(
        name,
        "gauge",
        "Messages between salespeople and contacts: sent, received (by people), replied (ours \
         answered), answered (theirs answered by us), auto-replies, bounces and bulk.",
    );
    for (kind, n) in [
        ("sent", f.sent),
        ("received", f.received),
        ("replied", f.replied),
        ("answered", f.answered),
        ("auto_reply", f.auto_replies),
        ("bounce", f.bounces),
        ("bulk", f.bulk),
    ] {
        t.sample(name, &format!("kind=\"{kind}\""), n);
    }
    t.single(
        "mailjournal_engagement_reply_rate",
        "gauge",
        "Share of our messages that contacts answered (0 to 1).",
        f.reply_rate.unwrap_or(0.0),
    );
    t.single(
        "mailjournal_engagement_answer_rate",
        "gauge",
        "Share of contacts' messages that we answered (0 to 1).",
        f.answer_rate.unwrap_or(0.0),
    );
    let name = "mailjournal_engagement_response_seconds";
    t.family(
        name,
        "gauge",
        "Time to the first answer: median and 90th percentile, of contacts answering us (them) \
         and of us answering contacts (us).",
    );
    for (side, q, v) in [
        ("them", "0.5", f.their_reply_median_secs),
        ("them", "0.9", f.their_reply_p90_secs),
        ("us", "0.5", f.our_reply_median_secs),
        ("us", "0.9", f.our_reply_p90_secs),
    ] {
        if let Some(v) = v {
            t.sample(name, &format!("side=\"{side}\",quantile=\"{q}\""), v);
        }
    }
    let name = "mailjournal_engagement_awaiting";
    t.family(
        name,
        "gauge",
        "Messages awaiting an answer: contacts' older than engagement.awaiting_after (us), ours \
         (them).",
    );
    t.sample(name, "side=\"us\"", f.awaiting_us);
    t.sample(name, "side=\"them\"", f.awaiting_them);
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_engagement_totals() {
        let f = crate::engagement::Figures {
            sent: 4,
            replied: 2,
            reply_rate: Some(0.5),
            their_reply_median_secs: Some(3600),
            awaiting_them: 2,
            ..Default::default()
        };
        let text = render_engagement(&f);
        for line in [
            "mailjournal_engagement_messages{kind=\"sent\"} 4",
            "mailjournal_engagement_messages{kind=\"replied\"} 2",
            "mailjournal_engagement_reply_rate 0.5",
            "mailjournal_engagement_answer_rate 0",
            "mailjournal_engagement_response_seconds{side=\"them\",quantile=\"0.5\"} 3600",
            "mailjournal_engagement_awaiting{side=\"them\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("side=\"us\",quantile"),
            "no time without answers"
        );
    }

    #[test]
    fn renders_every_family_with_one_type_line() {
        let stats = Stats {
            messages: 5,
            later_copies: 2,
            inbound: 2,
            outbound: 1,
            internal: 1,
            external: 0,
            junk_quarantined_now: 1,
            uidvalidity: 1,
            next_uid: 6,
            raw_bytes: 0,
            stored_bytes: 0,
            disk_bytes: 0,
            counters: [("duplicates", 3), ("unmatched", 4)].into_iter().collect(),
        };
        let metrics = Metrics::default();
        metrics.ingest_latency.observe(Duration::from_millis(2));
        metrics.ingest_latency.observe(Duration::from_secs(9));
        metrics.imap_sessions.inc();
        let text = render(&stats, &metrics);
        for line in [
            "mailjournal_messages{direction=\"inbound\"} 2",
            "mailjournal_messages{direction=\"external\"} 0",
            "mailjournal_junk_quarantined 1",
            "mailjournal_duplicates_total 3",
            "mailjournal_later_copies 2",
            "mailjournal_unmatched_messages 4",
            "mailjournal_ingest_latency_seconds_bucket{le=\"0.001\"} 0",
            "mailjournal_ingest_latency_seconds_bucket{le=\"0.0025\"} 1",
            "mailjournal_ingest_latency_seconds_bucket{le=\"5\"} 1",
            "mailjournal_ingest_latency_seconds_bucket{le=\"+Inf\"} 2",
            "mailjournal_ingest_latency_seconds_sum 9.002",
            "mailjournal_ingest_latency_seconds_count 2",
            "mailjournal_smtp_sessions 0",
            "mailjournal_imap_sessions 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), types.len(), "one TYPE line per family");
        assert!(text.ends_with('\n'));
    }
}
