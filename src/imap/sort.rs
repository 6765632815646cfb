//! SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): the order of a folder's matching messages,
//! and the base subject that SORT SUBJECT and THREAD share. Pure functions; no I/O.
//!
//! # What the keys mean here (Dovecot's reading of the RFCs)
//!
//! * ARRIVAL is INTERNALDATE; DATE the `Date:` header as an instant (UTC), or INTERNALDATE
//!   for a message without a readable one; SIZE is RFC822.SIZE.
//! * FROM, TO and CC are the local part of the first address of the header (a group's
//!   name when the header starts with a group); DISPLAYFROM and DISPLAYTO its display name
//!   (RFC 2047 words decoded) or, without one, `local@domain` (a group's name for a group).
//!   A missing header sorts as the empty string.
//! * SUBJECT is the base subject (RFC 5256 § 2.1: `Re:`, `Fwd:`, `[list]` blobs and `(fwd)`
//!   trailers removed).
//! * Strings compare with their characters upper-cased (`i;unicode-casemap`'s title case for
//!   the scripts it matters in), so `[` sorts before `_`, and `c` between them.
//! * `REVERSE` reverses its own key only; messages equal by every key stay in sequence
//!   order.

use std::cmp::Ordering;

use imap_next::imap_types::extensions::sort::{SortCriterion, SortKey};
use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use super::fetch;
use crate::archive::Record;

/// Whether sorting by `criteria` reads the message header (the address keys do; the record
/// holds everything else).
pub fn needs_header(criteria: &[SortCriterion]) -> bool {
    criteria.iter().any(|c| {
        matches!(
            c.key,
            SortKey::From | SortKey::To | SortKey::Cc | SortKey::DisplayFrom | SortKey::DisplayTo
        )
    })
}

/// One message's sort keys.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Its sequence number: the last tie-breaker.
    pub seq: u32,
    pub uid: u32,
    arrival: i64,
    date: i64,
    size: u64,
    subject: String,
    from: String,
    to: String,
    cc: String,
    display_from: String,
    display_to: String,
}

impl Keys {
    /// The keys of message `seq` (UID `uid`) from its record and, for the address keys, the
    /// message bytes (`raw`; without them those keys are empty).
    pub fn new(seq: u32, uid: u32, record: &Record, raw: Option<&[u8]>) -> Self {
        let meta = &record.meta;
        let mut keys = Keys {
            seq,
            uid,
            arrival: meta.received_at,
            date: meta.date,
            size: record.served_size(),
            subject: casemap(&base_subject(meta.subject.as_deref().unwrap_or_default()).0),
            ..Keys::default()
        };
        if let Some(raw) = raw {
            let header = |name: &str| fetch::header_value(raw, name);
            if let Some(from) = header("from") {
                let first = first_address(&from);
                keys.from = casemap(&first.local);
                keys.display_from = casemap(&first.display);
            }
            if let Some(to) = header("to") {
                let first = first_address(&to);
                keys.to = casemap(&first.local);
                keys.display_to = casemap(&first.display);
            }
            if let Some(cc) = header("cc") {
                keys.cc = casemap(&first_address(&cc).local);
            }
        }
        keys
    }

    fn compare(&self, other: &Self, key: &SortKey) -> Ordering {
        match key {
            SortKey::Arrival => self.arrival.cmp(&other.arrival),
            SortKey::Date => self.date.cmp(&other.date),
            SortKey::Size => self.size.cmp(&other.size),
            SortKey::Subject => self.subject.cmp(&other.subject),
            SortKey::From => self.from.cmp(&other.from),
            SortKey::To => self.to.cmp(&other.to),
            SortKey::Cc => self.cc.cmp(&other.cc),
            SortKey::DisplayFrom => self.display_from.cmp(&other.display_from),
            SortKey::DisplayTo => self.display_to.cmp(&other.display_to),
        }
    }
}

/// Sorts `messages` by `criteria`, then by sequence number.
pub fn sort(messages: &mut [Keys], criteria: &[SortCriterion]) {
    messages.sort_by(|a, b| {
        criteria
            .iter()
            .map(|c| {
                let o = a.compare(b, &c.key);
                if c.reverse { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.seq.cmp(&b.seq))
    });
}

/// A string as the sort compares it.
fn casemap(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).collect()
}

/// The first address of a header value, as the sort keys see it.
struct FirstAddress {
    local: String,
    display: String,
}

fn first_address(value: &[u8]) -> FirstAddress {
    let Some((name, local, host)) = fetch::first_address(value) else {
        return FirstAddress {
            local: String::new(),
            display: String::new(),
        };
    };
    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    let local = text(local);
    let display = match (name, host) {
        (Some(name), _) => decode_words(&name),
        (None, Some(host)) => format!("{local}@{}", text(Some(host))),
        // A group: its name.
        (None, None) => local.clone(),
    };
    FirstAddress { local, display }
}

/// A display name with RFC 2047 encoded words decoded.
fn decode_words(name: &[u8]) -> String {
    let mut line = name.to_vec();
    line.push(b'\n');
    match MessageStream::new(&line).parse_unstructured() {
        HeaderValue::Text(text) => text.trim().to_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        _ => String::from_utf8_lossy(name).trim().to_owned(),
    }
}

// ---- Base subject (RFC 5256 § 2.1) -----------------------------------------------------

/// The base subject of a (decoded) subject, and whether it was a reply or forward (a
/// `Re:`/`Fw:`/`Fwd:` leader, a `(fwd)` trailer or a `[fwd: …]` wrapper was removed), which
/// THREAD needs.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) White space runs become one space.
    let mut s = String::with_capacity(subject.len());
    for word in subject.split_whitespace() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(word);
    }
    let mut reply = false;
    loop {
        // (2) Trailers: "(fwd)" and white space.
        loop {
            let trimmed = s.trim_end();
            if trimmed.len() != s.len() {
                s.truncate(trimmed.len());
            } else if s.len() >= 5
                && s.is_char_boundary(s.len() - 5)
                && s[s.len() - 5..].eq_ignore_ascii_case("(fwd)")
            {
                s.truncate(s.len() - 5);
                reply = true;
            } else {
                break;
            }
        }
        // (3)-(5) Leaders and blobs, until neither is left.
        loop {
            if let Some(rest) = strip_leader(&s) {
                reply |= rest.1;
                s = rest.0.to_owned();
                continue;
            }
            if let Some(rest) = strip_blob(&s)
                && !rest.is_empty()
            {
                s = rest.to_owned();
                continue;
            }
            break;
        }
        // (6) "[fwd: ... ]".
        if s.len() >= 6
            && s.is_char_boundary(5)
            && s[..5].eq_ignore_ascii_case("[fwd:")
            && s.ends_with(']')
        {
            s = s[5..s.len() - 1].to_owned();
            reply = true;
            continue;
        }
        return (s, reply);
    }
}

/// `subj-blob`: `[` anything but brackets `]`, then white space; the rest.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    if rest.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches(' '))
}

/// `subj-leader`: white space, or blobs then `re`/`fw`/`fwd`, white space, a blob and `:`.
/// The rest, and whether it was a `subj-refwd` (a reply or forward).
fn strip_leader(s: &str) -> Option<(&str, bool)> {
    if let Some(rest) = s.strip_prefix(' ') {
        return Some((rest, false));
    }
    let mut rest = s;
    while let Some(after) = strip_blob(rest) {
        rest = after;
    }
    let lower = |n: usize| rest.get(..n).map(str::to_ascii_lowercase);
    let word = if lower(3).as_deref() == Some("fwd") {
        3
    } else if matches!(lower(2).as_deref(), Some("re" | "fw")) {
        2
    } else {
        return None;
    };
    let mut rest = rest[word..].trim_start_matches(' ');
    if let Some(after) = strip_blob(rest) {
        rest = after;
    }
    let rest = rest.strip_prefix(':')?;
    Some((rest, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        let cases: &[(&str, &str, bool)] = &[
            ("a", "a", false),
            ("  b   c  ", "b c", false),
            ("Re: foo", "foo", true),
            ("RE:foo", "foo", true),
            ("fwd: re: Fw: x", "x", true),
            ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", true),
            ("Re: [FWD: c]", "c", true),
            ("[xyz]", "[xyz]", false),
            ("[list] topic", "topic", false),
            ("re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", true),
            ("Ad: Re: Ad: x", "Ad: Re: Ad: x", false),
            ("Re [x]: y", "y", true),
            ("Rex: y", "Rex: y", false),
            ("b (a)", "b (a)", false),
            ("x (fwd)", "x", true),
            ("", "", false),
            (" ", "", false),
            ("[", "[", false),
            ("[]", "[]", false),
            ("Re:", "", true),
            ("é (fwd)", "é", true),
            ("ééé: x", "ééé: x", false),
        ];
        for &(subject, base, reply) in cases {
            assert_eq!(
                base_subject(subject),
                (base.to_owned(), reply),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn casemap_puts_brackets_between_letters_and_underscore() {
        let mut words = ["_", "[xyz]", "c", "B", "a"].map(casemap);
        words.sort();
        assert_eq!(words, ["A", "B", "C", "[XYZ]", "_"]);
    }

    #[test]
    fn first_addresses() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"foo bar <a@b.c>", "a", "foo bar"),
            (b"b@c.d", "b", "b@c.d"),
            (b"=?iso-8859-1?q?foo_aar?= <e@f.g>", "e", "foo aar"),
            (b"a: xx@xx.org, yy@yy.org;", "a", "a"),
            (b"empty:;", "empty", "empty"),
            (b"user2@domain2.org (foo bar)", "user2", "foo bar"),
            (b"", "", ""),
        ];
        for &(value, local, display) in cases {
            let got = first_address(value);
            assert_eq!(
                (got.local.as_str(), got.display.as_str()),
                (local, display),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
