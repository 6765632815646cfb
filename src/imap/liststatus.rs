//! LIST-STATUS (RFC 5819): `LIST reference pattern RETURN (STATUS (items))`, which imap-codec
//! does not parse. [`split`] takes the `RETURN (…)` options off the end of a LIST line, so
//! that imap-codec can parse the rest as a plain LIST, and gives the STATUS items as a STATUS
//! command line for imap-codec to parse too. Pure functions; no I/O.
//!
//! The return options understood are `STATUS (…)`, and `CHILDREN`, `SUBSCRIBED` and
//! `SPECIAL-USE`, which change nothing: every LIST answer has the children and special-use
//! attributes, and every folder is subscribed. LIST-EXTENDED's selection options (`LIST
//! (SUBSCRIBED) …`) are not understood, and LIST-EXTENDED is not announced.

/// Why a `RETURN` LIST cannot be served.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a LIST with RETURN")]
    NotReturn,
    #[error("unknown or malformed RETURN option")]
    BadOption,
}

/// A LIST with return options, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The LIST command line without ` RETURN (…)`.
    pub list: Vec<u8>,
    /// `tag STATUS INBOX (items)` for the STATUS items, when STATUS was asked for.
    pub status: Option<Vec<u8>>,
}

/// Takes a command line `tag LIST reference pattern RETURN (options)` apart.
pub fn split(line: &[u8]) -> Result<Split, Error> {
    let mut words = line.splitn(3, |b| *b == b' ');
    let tag = words.next().ok_or(Error::NotReturn)?;
    let verb = words.next().ok_or(Error::NotReturn)?;
    if !verb.eq_ignore_ascii_case(b"LIST") {
        return Err(Error::NotReturn);
    }
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    let upper = body.to_ascii_uppercase();
    let at = find_last(&upper, b" RETURN (").ok_or(Error::NotReturn)?;
    let options = body
        .get(at + b" RETURN (".len()..)
        .and_then(|o| o.strip_suffix(b")"))
        .ok_or(Error::BadOption)?;
    let mut list = body.get(..at).unwrap_or_default().to_vec();
    list.extend_from_slice(b"\r\n");
    let mut status = None;
    let mut rest = options;
    loop {
        rest = trim_start(rest);
        if rest.is_empty() {
            break;
        }
        let end = rest
            .iter()
            .position(|b| *b == b' ' || *b == b'(')
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        match word.to_ascii_uppercase().as_slice() {
            b"STATUS" => {
                let after = trim_start(after);
                let inner = after.strip_prefix(b"(").ok_or(Error::BadOption)?;
                let close = inner
                    .iter()
                    .position(|b| *b == b')')
                    .ok_or(Error::BadOption)?;
                let items = inner.get(..close).unwrap_or_default();
                let mut line = tag.to_vec();
                line.extend_from_slice(b" STATUS INBOX (");
                line.extend_from_slice(items);
                line.extend_from_slice(b")\r\n");
                status = Some(line);
                rest = inner.get(close + 1..).unwrap_or_default();
            }
            b"CHILDREN" | b"SUBSCRIBED" | b"SPECIAL-USE" => rest = after,
            _ => return Err(Error::BadOption),
        }
    }
    Ok(Split { list, status })
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_prefix(b" ") {
        s = rest;
    }
    s
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        type Want = Result<(&'static str, Option<&'static str>), Error>;
        let cases: &[(&str, Want)] = &[
            (
                "t LIST \"\" * RETURN (STATUS (MESSAGES UNSEEN))\r\n",
                Ok((
                    "t LIST \"\" *\r\n",
                    Some("t STATUS INBOX (MESSAGES UNSEEN)\r\n"),
                )),
            ),
            (
                "t list \"\" \"%\" return (children STATUS (SIZE) special-use)\r\n",
                Ok(("t list \"\" \"%\"\r\n", Some("t STATUS INBOX (SIZE)\r\n"))),
            ),
            (
                "t LIST \"\" * RETURN (SUBSCRIBED)\r\n",
                Ok(("t LIST \"\" *\r\n", None)),
            ),
            (
                "t LIST \"\" * RETURN ()\r\n",
                Ok(("t LIST \"\" *\r\n", None)),
            ),
            ("t LIST \"\" * RETURN (MYRIGHTS)\r\n", Err(Error::BadOption)),
            (
                "t LIST \"\" * RETURN (STATUS MESSAGES)\r\n",
                Err(Error::BadOption),
            ),
            (
                "t LIST \"\" * RETURN (STATUS (MESSAGES)\r\n",
                Err(Error::BadOption),
            ),
            ("t LIST \"\" *\r\n", Err(Error::NotReturn)),
            ("t LSUB \"\" * RETURN (CHILDREN)\r\n", Err(Error::NotReturn)),
            ("t", Err(Error::NotReturn)),
        ];
        for (line, want) in cases {
            let got = split(line.as_bytes());
            let want = want.clone().map(|(list, status)| Split {
                list: list.as_bytes().to_vec(),
                status: status.map(|s| s.as_bytes().to_vec()),
            });
            assert_eq!(got, want, "{line}");
        }
    }
}
