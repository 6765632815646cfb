//! ESEARCH (RFC 4731) and ESORT (RFC 5267): `SEARCH RETURN (…)` and `SORT RETURN (…)`,
//! which imap-codec does not parse. [`split`] takes the `RETURN (…)` options out of a command
//! line, so that imap-codec can parse the rest as a plain SEARCH or SORT, and
//! [`response`] writes the `* ESEARCH` answer. Pure functions; no I/O.
//!
//! The options are MIN, MAX, COUNT and ALL; `RETURN ()` means ALL. MIN and MAX are the lowest
//! and highest matching number, for SORT too; ALL is the matches as a sequence set, in sort
//! order for SORT (consecutive ascending runs written `a:b`). Without matches only COUNT
//! (when asked) is given, as RFC 4731 says. SAVE (RFC 5182), PARTIAL (RFC 5267's
//! CONTEXT=SEARCH) and anything else are unknown options: the command is BAD.

use std::num::NonZeroU32;

/// What `RETURN (…)` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub min: bool,
    pub max: bool,
    pub count: bool,
    pub all: bool,
}

/// Why a `RETURN` command cannot be served.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a SEARCH or SORT with RETURN")]
    NotReturn,
    #[error("unknown or malformed RETURN option")]
    BadOption,
}

/// A command line `tag [UID ]SEARCH|SORT RETURN (options) rest`: the options, and the line
/// without ` RETURN (options)` for imap-codec to parse. `Err(NotReturn)` for anything else.
pub fn split(line: &[u8]) -> Result<(Options, Vec<u8>), Error> {
    let mut words = line.splitn(4, |b| *b == b' ');
    let tag = words.next().ok_or(Error::NotReturn)?;
    let mut verb = words.next().ok_or(Error::NotReturn)?;
    let mut rest = words.next().ok_or(Error::NotReturn)?;
    let mut tail = words.next().unwrap_or_default();
    let uid = verb.eq_ignore_ascii_case(b"UID");
    if uid {
        // `tag UID SEARCH RETURN …`: one word further.
        verb = rest;
        let mut more = tail.splitn(2, |b| *b == b' ');
        rest = more.next().unwrap_or_default();
        tail = more.next().unwrap_or_default();
    }
    let is_command = verb.eq_ignore_ascii_case(b"SEARCH") || verb.eq_ignore_ascii_case(b"SORT");
    if !is_command || !rest.eq_ignore_ascii_case(b"RETURN") {
        return Err(Error::NotReturn);
    }
    let inner = tail.strip_prefix(b"(").ok_or(Error::BadOption)?;
    let close = inner
        .iter()
        .position(|b| *b == b')')
        .ok_or(Error::BadOption)?;
    let (list, after) = inner.split_at(close);
    let after = after.get(1..).unwrap_or_default();
    let after = after.strip_prefix(b" ").ok_or(Error::BadOption)?;
    let mut options = Options::default();
    for word in list.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
        let flag = match word.to_ascii_uppercase().as_slice() {
            b"MIN" => &mut options.min,
            b"MAX" => &mut options.max,
            b"COUNT" => &mut options.count,
            b"ALL" => &mut options.all,
            _ => return Err(Error::BadOption),
        };
        *flag = true;
    }
    if options == Options::default() {
        options.all = true;
    }
    let mut plain = Vec::with_capacity(line.len());
    plain.extend_from_slice(tag);
    plain.push(b' ');
    if uid {
        plain.extend_from_slice(b"UID ");
    }
    plain.extend_from_slice(verb);
    plain.push(b' ');
    plain.extend_from_slice(after);
    Ok((options, plain))
}

/// The `* ESEARCH` line answering `tag` with `hits` (in the order SEARCH or SORT gave them).
pub fn response(tag: &str, uid: bool, options: Options, hits: &[NonZeroU32]) -> Vec<u8> {
    let mut out = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        out.push_str(" UID");
    }
    let min = hits.iter().min();
    let max = hits.iter().max();
    if let (true, Some(min)) = (options.min, min) {
        out.push_str(&format!(" MIN {min}"));
    }
    if let (true, Some(max)) = (options.max, max) {
        out.push_str(&format!(" MAX {max}"));
    }
    if options.count {
        out.push_str(&format!(" COUNT {}", hits.len()));
    }
    if options.all && !hits.is_empty() {
        out.push_str(" ALL ");
        out.push_str(&sequence_set(hits));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `hits` as a sequence set in their order: runs of consecutive ascending numbers as `a:b`.
fn sequence_set(hits: &[NonZeroU32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = hits.get(i) {
        let mut end = start;
        while let Some(&next) = hits.get(i + 1) {
            if end.get().checked_add(1) != Some(next.get()) {
                break;
            }
            end = next;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(v: &[u32]) -> Vec<NonZeroU32> {
        v.iter().filter_map(|&n| NonZeroU32::new(n)).collect()
    }

    #[test]
    fn split_table() {
        let all = Options {
            all: true,
            ..Options::default()
        };
        type Want = Result<(Options, &'static str), Error>;
        let cases: &[(&str, Want)] = &[
            (
                "t SEARCH RETURN (MIN max) ALL",
                Ok((
                    Options {
                        min: true,
                        max: true,
                        ..Options::default()
                    },
                    "t SEARCH ALL",
                )),
            ),
            (
                "t SEARCH RETURN () 1:3 SEEN",
                Ok((all, "t SEARCH 1:3 SEEN")),
            ),
            (
                "t UID SORT RETURN (COUNT ALL) (ARRIVAL) UTF-8 ALL",
                Ok((
                    Options {
                        count: true,
                        all: true,
                        ..Options::default()
                    },
                    "t UID SORT (ARRIVAL) UTF-8 ALL",
                )),
            ),
            ("t SEARCH RETURN (SAVE) ALL", Err(Error::BadOption)),
            ("t SEARCH RETURN (PARTIAL 1:5) ALL", Err(Error::BadOption)),
            ("t SEARCH RETURN MIN ALL", Err(Error::BadOption)),
            ("t SEARCH RETURN (MIN", Err(Error::BadOption)),
            ("t SEARCH RETURN (MIN)", Err(Error::BadOption)),
            ("t SEARCH ALL", Err(Error::NotReturn)),
            ("t FETCH RETURN (MIN) ALL", Err(Error::NotReturn)),
            ("t", Err(Error::NotReturn)),
            ("", Err(Error::NotReturn)),
            ("t UID", Err(Error::NotReturn)),
        ];
        for (line, want) in cases {
            let got = split(line.as_bytes());
            let want = want
                .as_ref()
                .map(|(o, l)| (*o, l.as_bytes().to_vec()))
                .map_err(Clone::clone);
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn responses() {
        let every = Options {
            min: true,
            max: true,
            count: true,
            all: true,
        };
        let cases: &[(bool, Options, &[u32], &str)] = &[
            (
                false,
                every,
                &[1, 2, 3, 5],
                "* ESEARCH (TAG \"t\") MIN 1 MAX 5 COUNT 4 ALL 1:3,5",
            ),
            (true, every, &[], "* ESEARCH (TAG \"t\") UID COUNT 0"),
            (
                false,
                Options {
                    all: true,
                    ..Options::default()
                },
                &[2, 4, 5, 3, 1],
                "* ESEARCH (TAG \"t\") ALL 2,4:5,3,1",
            ),
            (
                false,
                Options {
                    min: true,
                    ..Options::default()
                },
                &[7, 3, 9],
                "* ESEARCH (TAG \"t\") MIN 3",
            ),
        ];
        for &(uid, options, hits, want) in cases {
            let got = response("t", uid, options, &nz(hits));
            assert_eq!(String::from_utf8_lossy(&got), format!("{want}\r\n"));
        }
    }
}
