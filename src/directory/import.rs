//! Reading the salespeople and contacts files: CSV as CRMs and spreadsheets write it.
//!
//! - The first non-blank line is the header. Column names are matched without regard to case,
//!   surrounding white space, or `-`/space versus `_` (`Alt Emails` is `alt_emails`); columns
//!   may come in any order. A missing required column, or a column named twice, is a problem
//!   on the header line and nothing is imported. Unknown columns are ignored and named in one
//!   problem on the header line, which rejects nothing: it is there so that a misspelt
//!   optional column (`alt_email`, `log e-mail`) does not go unnoticed, since silently
//!   dropping it would lose aliases or, worse, a contact's opt-out.
//! - The delimiter is `,` unless the header line has no `,` but a `;` (Excel in many locales)
//!   or, failing that, a tab. An Excel `sep=;` first line is honoured and skipped.
//! - A UTF-8 byte order mark is skipped; UTF-16 (Excel's "Unicode text") is refused with a
//!   hint. CRLF and LF both work, and quoted fields may hold delimiters, quotes (`""`) and
//!   line breaks: a problem's line is the physical line its record starts on.
//! - Every field is trimmed. Lines that are empty or hold only delimiters and white space are
//!   skipped.
//! - A row is rejected, with a problem on its line, for: a number of fields other than the
//!   header's, text that is not UTF-8, an empty required field, something that is not an
//!   e-mail address, an unreadable `log_email`, or a code, number or address that an earlier
//!   row already has (the earlier row keeps it, whether or not it was itself imported: the
//!   file uses it twice either way, and importing the later row could import the stale one).
//!   Every problem of a row is reported, one per reason.

use std::collections::HashMap;
use std::io::Read;

use super::{Contact, ImportProblem, Salesperson};
use crate::address;

/// A column the import knows, with the other names CRM exports and spreadsheets give it
/// (matched after [`column_key`]; the name itself wins over an alias).
struct Column {
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

const fn required(name: &'static str, aliases: &'static [&'static str]) -> Column {
    Column {
        name,
        aliases,
        required: true,
    }
}

const fn optional(name: &'static str, aliases: &'static [&'static str]) -> Column {
    Column {
        name,
        aliases,
        required: false,
    }
}

const SALESPEOPLE: &[Column] = &[
    required(
        "code",
        &["id", "no", "nr", "number", "salesperson_code", "sales_code"],
    ),
    required("name", &["full_name", "display_name"]),
    required("email", &["mail", "email_address", "primary_email"]),
    optional(
        "alt_emails",
        &[
            "alt_email",
            "aliases",
            "alias",
            "other_emails",
            "alternative_emails",
        ],
    ),
];

/// `company` must be a column, but may be empty (a private person).
const CONTACTS: &[Column] = &[
    required(
        "number",
        &[
            "no",
            "nr",
            "id",
            "contact_number",
            "contact_no",
            "contact_id",
            "customer_number",
            "customer_no",
            "customer_id",
        ],
    ),
    required(
        "name",
        &["full_name", "contact_name", "contact", "display_name"],
    ),
    required(
        "company",
        &[
            "company_name",
            "organization",
            "organisation",
            "account",
            "account_name",
            "firm",
        ],
    ),
    required(
        "emails",
        &[
            "email",
            "mail",
            "email_address",
            "email_addresses",
            "addresses",
        ],
    ),
    optional("log_email", &["log_emails", "log", "logging"]),
];

/// Reads a salespeople file: columns `code`, `name`, `email` and optionally `alt_emails`
/// (addresses separated by `;`, `,` or white space). `file` names it in problems.
pub fn parse_salespeople(reader: impl Read, file: &str) -> (Vec<Salesperson>, Vec<ImportProblem>) {
    let mut problems = Problems::new(file);
    let rows = read_rows(reader, SALESPEOPLE, &mut problems);
    let mut codes = Claims::default();
    let mut addresses = Claims::default();
    let mut out = Vec::new();
    for row in rows {
        let [code, name, email, alt_emails] = row.values.as_slice() else {
            continue;
        };
        let mut reasons = Vec::new();
        claim_key("code", code, row.line, &mut codes, &mut reasons);
        if name.is_empty() {
            reasons.push("empty name".to_owned());
        }
        let main = match split_addresses(email).as_slice() {
            [] => {
                reasons.push("empty email".to_owned());
                None
            }
            [one] => match import_address(one) {
                Ok(a) => Some(a),
                Err(reason) => {
                    reasons.push(format!("email: {reason}"));
                    None
                }
            },
            [..] => {
                reasons.push(format!(
                    "email {email:?} holds several addresses: put all but the main one in \
                     alt_emails"
                ));
                None
            }
        };
        let mut alts: Vec<String> = Vec::new();
        for raw in split_addresses(alt_emails) {
            match import_address(raw) {
                Ok(a) if main.as_ref() == Some(&a) || alts.contains(&a) => {}
                Ok(a) => alts.push(a),
                Err(reason) => reasons.push(format!("alt_emails: {reason}")),
            }
        }
        for a in main.iter().chain(&alts) {
            claim_address(a, row.line, &mut addresses, &mut reasons);
        }
        match main {
            Some(email) if reasons.is_empty() => out.push(Salesperson {
                code: code.clone(),
                name: name.clone(),
                email,
                alt_emails: alts,
            }),
            _ => problems.extend(row.line, reasons),
        }
    }
    (out, problems.finish())
}

/// Reads a contacts file: columns `number`, `name`, `company` (may be empty), `emails` (one or
/// more, separated by `;`, `,` or white space) and optionally `log_email` (see
/// [`parse_log_email`]; empty or absent means on). `file` names it in problems.
pub fn parse_contacts(reader: impl Read, file: &str) -> (Vec<Contact>, Vec<ImportProblem>) {
    let mut problems = Problems::new(file);
    let rows = read_rows(reader, CONTACTS, &mut problems);
    let mut numbers = Claims::default();
    let mut addresses = Claims::default();
    let mut out = Vec::new();
    for row in rows {
        let [number, name, company, emails, log_email] = row.values.as_slice() else {
            continue;
        };
        let mut reasons = Vec::new();
        claim_key("number", number, row.line, &mut numbers, &mut reasons);
        if name.is_empty() {
            reasons.push("empty name".to_owned());
        }
        let raw_emails = split_addresses(emails);
        if raw_emails.is_empty() {
            reasons.push("empty emails: a contact needs at least one address".to_owned());
        }
        let mut valid: Vec<String> = Vec::new();
        for raw in raw_emails {
            match import_address(raw) {
                Ok(a) if valid.contains(&a) => {}
                Ok(a) => valid.push(a),
                Err(reason) => reasons.push(format!("emails: {reason}")),
            }
        }
        for a in &valid {
            claim_address(a, row.line, &mut addresses, &mut reasons);
        }
        let log = parse_log_email(log_email);
        if log.is_none() {
            reasons.push(format!(
                "log_email {log_email:?} is not one of yes/no, true/false, 1/0, on/off, y/n \
                 (empty means yes)"
            ));
        }
        match log {
            Some(log_email) if reasons.is_empty() => out.push(Contact {
                number: number.clone(),
                name: name.clone(),
                company: company.clone(),
                emails: valid,
                log_email,
            }),
            _ => problems.extend(row.line, reasons),
        }
    }
    (out, problems.finish())
}

/// Reads a `log_email` value: yes/no, true/false, 1/0, on/off, y/n in any case; empty means
/// yes (logging is the default). `None` for anything else.
pub fn parse_log_email(value: &str) -> Option<bool> {
    let value = value.trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "yes" | "y" | "true" | "1" | "on" => Some(true),
        "no" | "n" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// The addresses of a multi-address field: separated by `;`, `,` or white space.
fn split_addresses(field: &str) -> Vec<&str> {
    field
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An address as the directory stores it (normalized), or why it is not one. Stricter than
/// [`address::normalize`], which has to take whatever a message says: the domain must have a
/// dot, and the local part no `@`, brackets or quotes (a `Name <address>` pasted into the
/// cell, say).
fn import_address(raw: &str) -> Result<String, String> {
    let bad = || format!("{raw:?} is not an e-mail address");
    let normalized = address::normalize(raw).ok_or_else(bad)?;
    let (local, domain) = normalized.rsplit_once('@').ok_or_else(bad)?;
    if local.contains(['@', '<', '>', '"', '(', ')', '[', ']']) || !domain.contains('.') {
        return Err(bad());
    }
    Ok(normalized)
}

/// Who first used a code, number or address: value → line.
#[derive(Default)]
struct Claims(HashMap<String, u64>);

impl Claims {
    /// Claims `key` for `line`, or returns the line that already has it.
    fn claim(&mut self, key: &str, line: u64) -> Option<u64> {
        match self.0.get(key) {
            Some(&first) if first != line => Some(first),
            Some(_) => None,
            None => {
                self.0.insert(key.to_owned(), line);
                None
            }
        }
    }
}

fn claim_key(what: &str, key: &str, line: u64, claims: &mut Claims, reasons: &mut Vec<String>) {
    if key.is_empty() {
        reasons.push(format!("empty {what}"));
    } else if let Some(first) = claims.claim(key, line) {
        reasons.push(format!("{what} {key:?} is already used on line {first}"));
    }
}

fn claim_address(address: &str, line: u64, claims: &mut Claims, reasons: &mut Vec<String>) {
    if let Some(first) = claims.claim(address, line) {
        reasons.push(format!("address {address} is already used on line {first}"));
    }
}

struct Problems<'a> {
    file: &'a str,
    list: Vec<ImportProblem>,
}

impl<'a> Problems<'a> {
    fn new(file: &'a str) -> Self {
        Self {
            file,
            list: Vec::new(),
        }
    }

    fn push(&mut self, line: u64, reason: impl Into<String>) {
        self.list.push(ImportProblem {
            file: self.file.to_owned(),
            line,
            reason: reason.into(),
            note: false,
        });
    }

    /// Something the import did that the user should know, which rejects nothing.
    fn note(&mut self, line: u64, reason: impl Into<String>) {
        self.list.push(ImportProblem {
            file: self.file.to_owned(),
            line,
            reason: reason.into(),
            note: true,
        });
    }

    /// The problems in line order (a line's own in the order found).
    fn finish(mut self) -> Vec<ImportProblem> {
        self.list.sort_by_key(|p| p.line);
        self.list
    }

    fn extend(&mut self, line: u64, reasons: Vec<String>) {
        for reason in reasons {
            self.push(line, reason);
        }
    }
}

/// One data row: its first physical line and its values in the order of the column list
/// (empty for an optional column the file does not have).
struct Row {
    line: u64,
    values: Vec<String>,
}

/// Where the known columns are in the file.
struct Layout {
    line: u64,
    width: usize,
    index: Vec<Option<usize>>,
}

/// Reads the header and the rows of the right width, reporting everything else.
fn read_rows(mut reader: impl Read, columns: &[Column], problems: &mut Problems) -> Vec<Row> {
    let mut bytes = Vec::new();
    if let Err(e) = reader.read_to_end(&mut bytes) {
        problems.push(1, format!("cannot read the file: {e}"));
        return Vec::new();
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        problems.push(
            1,
            "the file is UTF-16 text: save it as \"CSV UTF-8 (comma delimited)\"",
        );
        return Vec::new();
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let (delimiter, start) = dialect(text);
    let body = text.get(start..).unwrap_or_default();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body);
    let mut lines = Lines::new(text);
    let mut record = csv::ByteRecord::new();
    let mut layout: Option<Layout> = None;
    let mut rows = Vec::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at = e.position().map_or(lines.pos, |p| {
                    start.saturating_add(usize::try_from(p.byte()).unwrap_or(usize::MAX))
                });
                let line = lines.line_at(at);
                problems.push(line, format!("cannot read the file from here on: {e}"));
                break;
            }
        }
        let at = record.position().map_or(lines.pos, |p| {
            start.saturating_add(usize::try_from(p.byte()).unwrap_or(usize::MAX))
        });
        let line = lines.line_at(at);
        if record
            .iter()
            .all(|f| String::from_utf8_lossy(f).trim().is_empty())
        {
            continue;
        }
        let Some(layout) = &layout else {
            layout = Some(match header(&record, line, columns, problems) {
                Some(found) => found,
                None => return Vec::new(),
            });
            continue;
        };
        if record.len() != layout.width {
            let mut reason = format!(
                "expected {} fields as in the header (line {}), found {}",
                layout.width,
                layout.line,
                record.len()
            );
            let breaks = record
                .iter()
                .map(|f| f.iter().filter(|&&b| b == b'\n').count())
                .sum::<usize>();
            if breaks > 0 {
                reason.push_str(&format!(
                    "; a quoted field here holds {breaks} line break(s): is a closing quote \
                     missing?"
                ));
            }
            problems.push(line, reason);
            continue;
        }
        let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
        let Ok(fields) = fields else {
            problems.push(
                line,
                "not UTF-8 text: save the file as \"CSV UTF-8 (comma delimited)\"",
            );
            continue;
        };
        let values = layout
            .index
            .iter()
            .map(|i| {
                i.and_then(|i| fields.get(i))
                    .map_or_else(String::new, |f| f.trim().to_owned())
            })
            .collect();
        rows.push(Row { line, values });
    }
    if layout.is_none() {
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        problems.push(
            1,
            format!(
                "the file is empty: expected a header line with the columns {}",
                names.join(", ")
            ),
        );
    }
    rows
}

/// Finds the known columns in the header, or reports why the file cannot be imported.
fn header(
    record: &csv::ByteRecord,
    line: u64,
    columns: &[Column],
    problems: &mut Problems,
) -> Option<Layout> {
    let names: Vec<String> = record
        .iter()
        .map(|f| column_key(&String::from_utf8_lossy(f)))
        .collect();
    let raw: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_owned())
        .collect();
    let mut ok = true;
    let mut index = Vec::new();
    let mut missing = Vec::new();
    let mut claimed = vec![false; names.len()];
    for column in columns {
        let exact: Vec<usize> = (0..names.len())
            .filter(|&i| names[i] == column.name)
            .collect();
        let found = if exact.is_empty() {
            (0..names.len())
                .filter(|&i| column.aliases.contains(&names[i].as_str()))
                .collect()
        } else {
            exact
        };
        for &i in &found {
            claimed[i] = true;
        }
        match found.as_slice() {
            [] if column.required => missing.push(column.name),
            [] => index.push(None),
            [i] => {
                if names[*i] != column.name {
                    problems.note(
                        line,
                        format!("took column {:?} as {}", raw[*i], column.name),
                    );
                }
                index.push(Some(*i));
            }
            [..] => {
                let at: Vec<String> = found
                    .iter()
                    .map(|&i| format!("{} {:?}", i + 1, raw[i]))
                    .collect();
                problems.push(
                    line,
                    format!(
                        "column {} appears more than once (fields {})",
                        column.name,
                        at.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    if !missing.is_empty() {
        let found: Vec<String> = record
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_owned())
            .collect();
        problems.push(
            line,
            format!(
                "missing required column(s) {}; the header has: {}",
                missing.join(", "),
                found.join(", ")
            ),
        );
        ok = false;
    }
    let unknown: Vec<String> = raw
        .iter()
        .zip(&names)
        .zip(&claimed)
        .filter(|((_, key), claimed)| !key.is_empty() && !**claimed)
        .map(|((raw, _), _)| format!("{raw:?}"))
        .collect();
    if ok && !unknown.is_empty() {
        let known: Vec<&str> = columns.iter().map(|c| c.name).collect();
        problems.push(
            line,
            format!(
                "ignoring unknown column(s) {} (known columns: {})",
                unknown.join(", "),
                known.join(", ")
            ),
        );
    }
    ok.then_some(Layout {
        line,
        width: record.len(),
        index,
    })
}

/// A header name as matched: lower case, words joined by `_` (`Alt Emails`, `alt-emails`), and
/// `e-mail` as `email` (`Log E-mail` is `log_email`).
fn column_key(name: &str) -> String {
    let lower = name.trim_start_matches('\u{feff}').to_lowercase();
    let mut words: Vec<String> = Vec::new();
    for word in lower
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|s| !s.is_empty())
    {
        match words.last_mut() {
            Some(last) if last == "e" && word.starts_with("mail") => last.push_str(word),
            _ => words.push(word.to_owned()),
        }
    }
    words.join("_")
}

/// The delimiter, from an Excel `sep=X` first line or else from the header line, and where
/// the CSV starts (after the `sep=` line, if any).
fn dialect(text: &[u8]) -> (u8, usize) {
    let mut start = 0;
    // The first line that is not blank.
    let line = loop {
        let rest = text.get(start..).unwrap_or_default();
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], start + i + 1),
            None => (rest, text.len()),
        };
        if !line.trim_ascii().is_empty() || next >= text.len() {
            break line.trim_ascii_start();
        }
        start = next;
    };
    let raw = line.strip_suffix(b"\r").unwrap_or(line);
    if raw.len() == 5 && raw[..4].eq_ignore_ascii_case(b"sep=") {
        let after = text[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| start + i + 1);
        return (raw[4], after);
    }
    let delimiter = if line.contains(&b',') {
        b','
    } else if line.contains(&b';') {
        b';'
    } else if line.contains(&b'\t') {
        b'\t'
    } else {
        b','
    };
    (delimiter, 0)
}

/// Physical line numbers of byte offsets, counted forward: `\n`, `\r\n` and a lone `\r` each
/// end a line. (The csv crate's own `Position::line` is off by one after CRLF and does not
/// count blank lines, so the lines are counted here from its byte offsets.)
struct Lines<'a> {
    text: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The line of the record the csv reader says starts at `at`: it points just past the
    /// previous record's first terminator byte, so line breaks (blank lines, the `\n` of a
    /// CRLF) are skipped first. Offsets must not go backwards.
    fn line_at(&mut self, at: usize) -> u64 {
        let mut at = at.max(self.pos).min(self.text.len());
        while matches!(self.text.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        while self.pos < at {
            match self.text.get(self.pos) {
                Some(b'\n') => self.line += 1,
                Some(b'\r') if self.text.get(self.pos + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(list: &[ImportProblem]) -> Vec<(u64, String)> {
        list.iter().map(|p| (p.line, p.reason.clone())).collect()
    }

    /// Each case: the file, the codes imported, and the problems as (line, part of reason).
    #[test]
    fn salespeople_table() {
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(u64, &'a str)]);
        let cases: &[Case] = &[
            (
                "plain",
                "code,name,email,alt_emails\nAS,Alice Smith,alice@contoso.com,\n\
                 BB,Bert Brown,Bert@Contoso.COM,b.brown@contoso.com; bert@CONTOSO.com\n",
                &["AS", "BB"],
                &[],
            ),
            (
                "columns in any order, any case, alt_emails absent",
                "Email , CODE,Name\nalice@contoso.com,AS,Alice\n",
                &["AS"],
                &[],
            ),
            (
                "an unknown column is named once and rejects nothing; a near name is taken",
                "code,name,email,alt_email,phone\nAS,Alice,alice@contoso.com,a@contoso.com,1\n\
                 BB,Bert,bert@contoso.com,,2\n",
                &["AS", "BB"],
                &[
                    (1, "took column \"alt_email\" as alt_emails"),
                    (1, "ignoring unknown column(s) \"phone\""),
                ],
            ),
            (
                "an alias is taken, and the import says which",
                "ID,Full Name,E-Mail Address,alt_email\nAS,Alice,alice@contoso.com,a@contoso.com\n",
                &["AS"],
                &[
                    (1, "took column \"ID\" as code"),
                    (1, "took column \"Full Name\" as name"),
                    (1, "took column \"E-Mail Address\" as email"),
                    (1, "took column \"alt_email\" as alt_emails"),
                ],
            ),
            (
                "the name itself wins over an alias",
                "code,id,name,email\nAS,7,Alice,alice@contoso.com\n",
                &["AS"],
                &[(1, "ignoring unknown column(s) \"id\"")],
            ),
            (
                "two aliases of one column import nothing",
                "code,name,mail,primary email\nAS,Alice,alice@contoso.com,a@contoso.com\n",
                &[],
                &[(
                    1,
                    "column email appears more than once (fields 3 \"mail\", 4 \"primary email\")",
                )],
            ),
            (
                "missing column imports nothing",
                "code,name,mailbox\nAS,Alice,alice@contoso.com\n",
                &[],
                &[(
                    1,
                    "missing required column(s) email; the header has: code, name, mailbox",
                )],
            ),
            (
                "column twice imports nothing",
                "code,name,email,Email\nAS,Alice,alice@contoso.com,x@contoso.com\n",
                &[],
                &[(
                    1,
                    "column email appears more than once (fields 3 \"email\", 4 \"Email\")",
                )],
            ),
            ("empty file", "", &[], &[(1, "the file is empty")]),
            (
                "only blank lines",
                "\r\n\n  \n",
                &[],
                &[(1, "the file is empty")],
            ),
            (
                "wrong field count",
                "code,name,email\nAS,Alice,alice@contoso.com\nBB,Bert\n\
                 CC,Carl,carl@contoso.com,extra\nDD,Dora,dora@contoso.com\n",
                &["AS", "DD"],
                &[
                    (3, "expected 3 fields as in the header (line 1), found 2"),
                    (4, "expected 3 fields as in the header (line 1), found 4"),
                ],
            ),
            (
                "bad addresses",
                "code,name,email,alt_emails\nAS,Alice,alice,\nBB,Bert,bert@contoso.com,bert@\n\
                 CC,Carl,Carl <carl@contoso.com>,\nDD,Dora,dora@localhost,\n\
                 EE,Emma,emma@contoso.com emma2@contoso.com,\nFF,Finn,finn@contoso.com,\n",
                &["FF"],
                &[
                    (2, "email: \"alice\" is not an e-mail address"),
                    (3, "alt_emails: \"bert@\" is not an e-mail address"),
                    (
                        4,
                        "email \"Carl <carl@contoso.com>\" holds several addresses",
                    ),
                    (5, "email: \"dora@localhost\" is not an e-mail address"),
                    (
                        6,
                        "email \"emma@contoso.com emma2@contoso.com\" holds several",
                    ),
                ],
            ),
            (
                "empty required fields, every reason reported",
                "code,name,email\n,Alice,alice@contoso.com\nBB,,\n",
                &[],
                &[(2, "empty code"), (3, "empty name"), (3, "empty email")],
            ),
            (
                "duplicate code",
                "code,name,email\nAS,Alice,alice@contoso.com\nAS,Alan,alan@contoso.com\n\
                 as,Anna,anna@contoso.com\n",
                &["AS", "as"],
                &[(3, "code \"AS\" is already used on line 2")],
            ),
            (
                "duplicate address, also as an alt and in another case",
                "code,name,email,alt_emails\nAS,Alice,alice@contoso.com,sales@contoso.com\n\
                 BB,Bert,SALES@contoso.com,\nCC,Carl,carl@contoso.com,alice@contoso.com\n\
                 DD,Dora,dora@contoso.com,dora@contoso.com DORA@contoso.com\n",
                &["AS", "DD"],
                &[
                    (3, "address sales@contoso.com is already used on line 2"),
                    (4, "address alice@contoso.com is already used on line 2"),
                ],
            ),
            (
                "a rejected row still holds its code and addresses",
                "code,name,email\nAS,,alice@contoso.com\nAS,Alice,alice@contoso.com\n",
                &[],
                &[
                    (2, "empty name"),
                    (3, "code \"AS\" is already used on line 2"),
                    (3, "address alice@contoso.com is already used on line 2"),
                ],
            ),
            (
                "quoted comma and quotes",
                "code,name,email\n\"AS\",\"Smith, Alice \"\"Al\"\"\",alice@contoso.com\n",
                &["AS"],
                &[],
            ),
            (
                "multiline quoted field keeps later line numbers right",
                "code,name,email\n\"AS\",\"Alice\nSmith\",alice@contoso.com\n\
                 BB,\"Bert\r\n\r\nBrown\",bert\nCC,Carl,carl@\n",
                &["AS"],
                &[
                    (4, "email: \"bert\" is not an e-mail address"),
                    (7, "email: \"carl@\" is not an e-mail address"),
                ],
            ),
            (
                "unclosed quote",
                "code,name,email\nAS,\"Alice,alice@contoso.com\nBB,Bert,bert@contoso.com\n",
                &[],
                &[(
                    2,
                    "expected 3 fields as in the header (line 1), found 2; a quoted field \
                     here holds 2 line break(s)",
                )],
            ),
            (
                "BOM, CRLF, blank lines and surrounding white space",
                "\u{feff}code,name,email\r\n\r\n AS , Alice ,\talice@contoso.com \r\n\
                 ,,\r\nBB,Bert,bert@x\r\n\r\n\r\n",
                &["AS"],
                &[(5, "email: \"bert@x\" is not an e-mail address")],
            ),
            (
                "blank LF lines count",
                "\ncode,name,email\n\nAS,Alice,alice@contoso.com\n\n\nBB,Bert,bert\n",
                &["AS"],
                &[(7, "email: \"bert\" is not an e-mail address")],
            ),
            (
                "lone CR line ends",
                "code,name,email\rAS,Alice,alice@contoso.com\r\rBB,Bert,bert\r",
                &["AS"],
                &[(4, "email: \"bert\" is not an e-mail address")],
            ),
            (
                "semicolons",
                "code;name;email;alt_emails\nAS;Smith, Alice;alice@contoso.com;\"a1@contoso.com;\
                 a2@contoso.com\"\nBB;Bert\n",
                &["AS"],
                &[(3, "expected 4 fields as in the header (line 1), found 2")],
            ),
            (
                "Excel sep= line",
                "sep=;\r\ncode;name;email\r\nAS;Alice;alice@contoso.com\r\nBB;Bert;bert\r\n",
                &["AS"],
                &[(4, "email: \"bert\" is not an e-mail address")],
            ),
            (
                "tabs",
                "code\tname\temail\nAS\tSmith, Alice\talice@contoso.com\n",
                &["AS"],
                &[],
            ),
        ];
        for (what, text, codes, want) in cases {
            let (got, list) = parse_salespeople(text.as_bytes(), "sp.csv");
            let got_codes: Vec<&str> = got.iter().map(|s| s.code.as_str()).collect();
            assert_eq!(&got_codes, codes, "{what}: imported");
            let list = problems(&list);
            assert_eq!(list.len(), want.len(), "{what}: problems {list:#?}");
            for ((line, reason), (want_line, want_reason)) in list.iter().zip(want.iter()) {
                assert_eq!(line, want_line, "{what}: {reason}");
                assert!(
                    reason.contains(want_reason),
                    "{what}: {reason:?} should contain {want_reason:?}"
                );
            }
        }
    }

    #[test]
    fn salesperson_fields() {
        let text = "code,name,email,alt_emails\n\
                    \"AS\",\"Smith, Alice\",Alice@Bücher.Example,\"alice@contoso.com,\n\
                    a.smith@contoso.com ALICE@bücher.example\"\n";
        let (got, list) = parse_salespeople(text.as_bytes(), "sp.csv");
        assert!(list.is_empty(), "{list:?}");
        assert_eq!(
            got,
            [Salesperson {
                code: "AS".into(),
                name: "Smith, Alice".into(),
                email: "alice@xn--bcher-kva.example".into(),
                alt_emails: vec!["alice@contoso.com".into(), "a.smith@contoso.com".into()],
            }]
        );
    }

    #[test]
    fn contacts_table() {
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, bool)],
            &'a [(u64, &'a str)],
        );
        let cases: &[Case] = &[
            (
                "plain, log_email absent",
                "number,name,company,emails\n1001,Bob Brown,Fabrikam,bob@fabrikam.com\n\
                 1002,Pat Private,,pat@example.net;p@example.net\n",
                &[("1001", true), ("1002", true)],
                &[],
            ),
            (
                "a CRM export: No, Email (several addresses in one quoted field)",
                "No,Name,Company,Email\n1001,Bob Brown,Fabrikam,\"bob@fabrikam.com, b@fabrikam.com\"\n",
                &[("1001", true)],
                &[
                    (1, "took column \"No\" as number"),
                    (1, "took column \"Email\" as emails"),
                ],
            ),
            (
                "id for the number",
                "id;name;company;emails\n7;Kim;;kim@example.net\n",
                &[("7", true)],
                &[(1, "took column \"id\" as number")],
            ),
            (
                "log_email values",
                "Number,Name,Company,Emails,Log E-mail\n1,A,F,a@fabrikam.com,yes\n\
                 2,B,F,b@fabrikam.com,NO\n3,C,F,c@fabrikam.com,\n4,D,F,d@fabrikam.com,0\n\
                 5,E,F,e@fabrikam.com,Off\n6,F,F,f@fabrikam.com,maybe\n7,G,F,g@fabrikam.com,n\n\
                 8,H,F,h@fabrikam.com,TRUE\n",
                &[
                    ("1", true),
                    ("2", false),
                    ("3", true),
                    ("4", false),
                    ("5", false),
                    ("7", false),
                    ("8", true),
                ],
                &[(7, "log_email \"maybe\" is not one of yes/no")],
            ),
            (
                "bad and missing addresses, duplicate number and address",
                "number,name,company,emails,log_email\n1,A,F,a@fabrikam.com b@fabrikam.com,y\n\
                 2,B,F,,y\n3,C,F,c@fabrikam.com x,y\n1,D,F,d@fabrikam.com,y\n\
                 5,E,F,B@FABRIKAM.COM,y\n6,Z,,z@example.net,y\n",
                &[("1", true), ("6", true)],
                &[
                    (3, "empty emails"),
                    (4, "emails: \"x\" is not an e-mail address"),
                    (5, "number \"1\" is already used on line 2"),
                    (6, "address b@fabrikam.com is already used on line 2"),
                ],
            ),
            (
                "missing company column",
                "number,name,emails\n1,A,a@fabrikam.com\n",
                &[],
                &[(1, "missing required column(s) company")],
            ),
            (
                "semicolons, CRLF, multiline quoted company",
                "\u{feff}number;name;company;emails;log_email\r\n1;A;\"Fabrikam\r\nEurope\";\
                 a@fabrikam.com;ja\r\n2;B;F;b@fabrikam.com;\r\n",
                &[("2", true)],
                &[(2, "log_email \"ja\"")],
            ),
        ];
        for (what, text, want_rows, want) in cases {
            let (got, list) = parse_contacts(text.as_bytes(), "c.csv");
            let got_rows: Vec<(&str, bool)> = got
                .iter()
                .map(|c| (c.number.as_str(), c.log_email))
                .collect();
            assert_eq!(&got_rows, want_rows, "{what}: imported");
            let list = problems(&list);
            assert_eq!(list.len(), want.len(), "{what}: problems {list:#?}");
            for ((line, reason), (want_line, want_reason)) in list.iter().zip(want.iter()) {
                assert_eq!(line, want_line, "{what}: {reason}");
                assert!(
                    reason.contains(want_reason),
                    "{what}: {reason:?} should contain {want_reason:?}"
                );
            }
        }
    }

    #[test]
    fn contact_fields() {
        let text = "number,name,company,emails,log_email\n\
                    0042,\"Brown, Bob\",\"Fabrikam, Inc.\",\"Bob@Fabrikam.com, bob@EXAMPLE.net\",off\n";
        let (got, list) = parse_contacts(text.as_bytes(), "c.csv");
        assert!(list.is_empty(), "{list:?}");
        assert_eq!(
            got,
            [Contact {
                number: "0042".into(),
                name: "Brown, Bob".into(),
                company: "Fabrikam, Inc.".into(),
                emails: vec!["bob@fabrikam.com".into(), "bob@example.net".into()],
                log_email: false,
            }]
        );
    }

    #[test]
    fn odd_encodings() {
        let (got, list) = parse_salespeople(&b"\xFF\xFEc\0o\0"[..], "sp.csv");
        assert!(got.is_empty());
        assert_eq!(list.len(), 1);
        assert!(list[0].reason.contains("UTF-16"), "{list:?}");

        // Windows-1252 "Müller": that row only.
        let text = b"code,name,email\nAS,M\xFCller,m@contoso.com\nBB,Bert,bert@contoso.com\n";
        let (got, list) = parse_salespeople(&text[..], "sp.csv");
        assert_eq!(got.len(), 1);
        assert_eq!(
            problems(&list),
            [(
                2,
                "not UTF-8 text: save the file as \"CSV UTF-8 (comma delimited)\"".to_owned()
            )]
        );
        assert_eq!(list[0].to_string(), format!("sp.csv:2: {}", list[0].reason));
    }

    #[test]
    fn log_email_values() {
        for (value, want) in [
            ("", Some(true)),
            (" Yes ", Some(true)),
            ("Y", Some(true)),
            ("1", Some(true)),
            ("on", Some(true)),
            ("true", Some(true)),
            ("No", Some(false)),
            ("n", Some(false)),
            ("0", Some(false)),
            ("OFF", Some(false)),
            ("false", Some(false)),
            ("2", None),
            ("nein", None),
        ] {
            assert_eq!(parse_log_email(value), want, "{value:?}");
        }
    }
}
