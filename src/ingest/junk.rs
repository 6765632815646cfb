//! Spam verdicts other filters left in the headers.
//!
//! Three kinds of verdict are understood, each enabled by [`JunkRules`]:
//!
//! * SpamAssassin's `X-Spam-Flag: YES`;
//! * SpamAssassin's `X-Spam-Status: Yes, score=... required=... tests=...` (the first word is the
//!   verdict);
//! * Exchange's spam confidence level (SCL, -1 to 9; Microsoft documents the range as -1 to 10),
//!   from `X-MS-Exchange-Organization-SCL: N` or from the `SCL:N` field of the semicolon
//!   separated `X-Forefront-Antispam-Report` (Exchange Online Protection) or
//!   `X-MS-Exchange-Organization-Antispam-Report` headers. SCL -1 means the sender is trusted
//!   and filtering was bypassed: it is never junk, whatever the threshold.
//!
//! Header values are read from the message's raw header bytes, so the result does not depend
//! on how the `mail_parser::MessageParser` was configured to parse these custom headers (by
//! default they parse to `HeaderValue::Text`, or `HeaderValue::Empty` when blank).

use std::borrow::Cow;

use mail_parser::{HeaderValue, Message};

/// Which verdicts count as junk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JunkRules {
    /// `X-Spam-Flag: YES`.
    pub spam_flag: bool,
    /// `X-Spam-Status: Yes, ...`.
    pub spam_status: bool,
    /// Exchange spam confidence level at or above which a message is junk (`None`: ignore SCL).
    pub scl_threshold: Option<i32>,
}

/// Why a message is junk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JunkVerdict {
    SpamFlag,
    SpamStatus,
    Scl(i32),
}

/// Exchange's own SCL header.
const SCL_HEADER: &str = "X-MS-Exchange-Organization-SCL";
/// Anti-spam reports with an `SCL:N` field, in the order they are consulted.
const SCL_REPORT_HEADERS: [&str; 2] = [
    "X-Forefront-Antispam-Report",
    "X-MS-Exchange-Organization-Antispam-Report",
];

/// The first junk verdict found in `message`'s headers, if any, checked in the order
/// `X-Spam-Flag`, `X-Spam-Status`, SCL.
///
/// A `YES` in any `X-Spam-Flag` (or `X-Spam-Status`) field counts. The SCL is the first valid
/// value of `X-MS-Exchange-Organization-SCL`, or failing that the first `SCL:` field of
/// `X-Forefront-Antispam-Report`, or failing that of `X-MS-Exchange-Organization-Antispam-Report`
/// (topmost header first); SCL -1 is never junk.
pub fn verdict(message: &Message<'_>, rules: &JunkRules) -> Option<JunkVerdict> {
    if rules.spam_flag && header_values(message, "X-Spam-Flag").any(|v| says_yes(&v)) {
        return Some(JunkVerdict::SpamFlag);
    }
    if rules.spam_status && header_values(message, "X-Spam-Status").any(|v| says_yes(&v)) {
        return Some(JunkVerdict::SpamStatus);
    }
    if let Some(threshold) = rules.scl_threshold
        && let Some(scl) = scl(message)
        && scl != -1
        && scl >= threshold
    {
        return Some(JunkVerdict::Scl(scl));
    }
    None
}

/// The message's spam confidence level, if an Exchange header states one.
pub fn scl(message: &Message<'_>) -> Option<i32> {
    header_values(message, SCL_HEADER)
        .find_map(|v| parse_scl(&v))
        .or_else(|| {
            SCL_REPORT_HEADERS.iter().find_map(|name| {
                header_values(message, name).find_map(|v| {
                    v.split(';').find_map(|field| {
                        let (key, value) = field.split_once(':')?;
                        if key.trim().eq_ignore_ascii_case("SCL") {
                            parse_scl(value)
                        } else {
                            None
                        }
                    })
                })
            })
        })
}

/// An SCL value: an integer from -1 to 10.
fn parse_scl(value: &str) -> Option<i32> {
    value
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|n| (-1..=10).contains(n))
}

/// Whether the first word of a header value is `yes`, in any case.
fn says_yes(value: &str) -> bool {
    value
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .find(|word| !word.is_empty())
        .is_some_and(|word| word.eq_ignore_ascii_case("yes"))
}

/// The values of the top-level header fields called `name` (any case), in message order,
/// unfolded.
fn header_values<'m>(
    message: &'m Message<'_>,
    name: &'m str,
) -> impl Iterator<Item = Cow<'m, str>> {
    message
        .parts
        .first()
        .map(|root| root.headers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(move |h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| {
            let start = usize::try_from(h.offset_start).ok()?;
            let end = usize::try_from(h.offset_end).ok()?;
            match message.raw_message.get(start..end) {
                Some(bytes) => Some(unfold(String::from_utf8_lossy(bytes))),
                None => match &h.value {
                    HeaderValue::Text(text) => Some(Cow::Borrowed(text.as_ref())),
                    HeaderValue::TextList(list) => Some(Cow::Owned(list.join(", "))),
                    _ => None,
                },
            }
        })
}

/// Joins folded lines and trims.
fn unfold(value: Cow<'_, str>) -> Cow<'_, str> {
    if value.contains(['\r', '\n']) {
        Cow::Owned(
            value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        )
    } else {
        match value {
            Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
            Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use mail_parser::MessageParser;

    use super::*;

    const ALL: JunkRules = JunkRules {
        spam_flag: true,
        spam_status: true,
        scl_threshold: Some(5),
    };

    fn rules(spam_flag: bool, spam_status: bool, scl_threshold: Option<i32>) -> JunkRules {
        JunkRules {
            spam_flag,
            spam_status,
            scl_threshold,
        }
    }

    #[test]
    fn verdicts() {
        use JunkVerdict::{Scl, SpamFlag, SpamStatus};
        let cases: [(&str, &str, JunkRules, Option<JunkVerdict>); 28] = [
            ("no verdict headers", "", ALL, None),
            ("spam flag", "X-Spam-Flag: YES\r\n", ALL, Some(SpamFlag)),
            (
                "spam flag, lower case",
                "x-spam-flag:yes\r\n",
                ALL,
                Some(SpamFlag),
            ),
            (
                "spam flag, spaces",
                "X-Spam-Flag:   Yes  \r\n",
                ALL,
                Some(SpamFlag),
            ),
            (
                "spam flag, folded",
                "X-Spam-Flag:\r\n\tYES\r\n",
                ALL,
                Some(SpamFlag),
            ),
            ("spam flag NO", "X-Spam-Flag: NO\r\n", ALL, None),
            ("spam flag empty", "X-Spam-Flag:\r\n", ALL, None),
            ("spam flag YESS", "X-Spam-Flag: YESS\r\n", ALL, None),
            (
                "second spam flag says yes",
                "X-Spam-Flag: NO\r\nX-Spam-Flag: YES\r\n",
                ALL,
                Some(SpamFlag),
            ),
            (
                "spam flag, rule off",
                "X-Spam-Flag: YES\r\n",
                rules(false, true, None),
                None,
            ),
            (
                "spam status",
                "X-Spam-Status: Yes, score=9.1 required=5.0 tests=BAYES_99,\r\n\tURIBL_BLACK autolearn=no\r\n",
                ALL,
                Some(SpamStatus),
            ),
            (
                "spam status, no comma",
                "X-Spam-Status: yes score=6.0\r\n",
                ALL,
                Some(SpamStatus),
            ),
            (
                "spam status No",
                "X-Spam-Status: No, score=-1.9 required=5.0\r\n",
                ALL,
                None,
            ),
            (
                "spam status, rule off",
                "X-Spam-Status: Yes, score=9.1\r\n",
                rules(true, false, Some(0)),
                None,
            ),
            (
                "flag wins over status",
                "X-Spam-Status: Yes, score=9.1\r\nX-Spam-Flag: YES\r\n",
                ALL,
                Some(SpamFlag),
            ),
            (
                "SCL at threshold",
                "X-MS-Exchange-Organization-SCL: 5\r\n",
                ALL,
                Some(Scl(5)),
            ),
            (
                "SCL above threshold",
                "X-MS-Exchange-Organization-SCL:9\r\n",
                ALL,
                Some(Scl(9)),
            ),
            (
                "SCL below threshold",
                "X-MS-Exchange-Organization-SCL: 4\r\n",
                ALL,
                None,
            ),
            (
                "SCL ignored",
                "X-MS-Exchange-Organization-SCL: 9\r\n",
                rules(true, true, None),
                None,
            ),
            (
                "SCL -1 is trusted",
                "X-MS-Exchange-Organization-SCL: -1\r\n",
                rules(false, false, Some(-1)),
                None,
            ),
            (
                "SCL not a number",
                "X-MS-Exchange-Organization-SCL: high\r\n",
                ALL,
                None,
            ),
            (
                "SCL out of range",
                "X-MS-Exchange-Organization-SCL: 99\r\n",
                ALL,
                None,
            ),
            (
                "Forefront report",
                "X-Forefront-Antispam-Report: CIP:203.0.113.9;CTRY:;LANG:en;SCL:7;SRV:;\r\n IPV:NLI;SFV:SPM;H:mail.example.net;PTR:;CAT:SPM;SFS:(13230040);DIR:INB;\r\n",
                ALL,
                Some(Scl(7)),
            ),
            (
                "Forefront report, SCL -1",
                "X-Forefront-Antispam-Report: CIP:192.0.2.1;SCL:-1;SFV:SKN;DIR:INB;\r\n",
                ALL,
                None,
            ),
            (
                "on-premises antispam report",
                "X-MS-Exchange-Organization-Antispam-Report: DV:3.3.5705.600;SID:SenderIDStatus Fail;SCL:6\r\n",
                ALL,
                Some(Scl(6)),
            ),
            (
                "SCL header wins over the report",
                "X-Forefront-Antispam-Report: SCL:9;SFV:SPM\r\nX-MS-Exchange-Organization-SCL: -1\r\n",
                ALL,
                None,
            ),
            (
                "report consulted when the SCL header is unusable",
                "X-MS-Exchange-Organization-SCL: n/a\r\nX-Forefront-Antispam-Report: SCL:8\r\n",
                ALL,
                Some(Scl(8)),
            ),
            (
                "spam flag despite SCL -1",
                "X-Spam-Flag: YES\r\nX-MS-Exchange-Organization-SCL: -1\r\n",
                ALL,
                Some(SpamFlag),
            ),
        ];
        for (name, headers, rules, want) in cases {
            for lf in [false, true] {
                let mut text = format!(
                    "From: sender@example.net\r\n\
                     To: alice@contoso.com\r\n\
                     Subject: test\r\n\
                     {headers}\
                     Content-Type: text/plain\r\n\
                     \r\n\
                     X-Spam-Flag: YES in the body is not a header.\r\n"
                );
                if lf {
                    text = text.replace("\r\n", "\n");
                }
                let Some(message) = MessageParser::default().parse(text.as_bytes()) else {
                    panic!("{name}: unparseable test message");
                };
                assert_eq!(verdict(&message, &rules), want, "{name} (LF only: {lf})");
            }
        }
    }

    #[test]
    fn parser_configuration_does_not_matter() {
        let text = "From: sender@example.net\r\nX-Spam-Flag: YES\r\nX-MS-Exchange-Organization-SCL: 8\r\n\r\nbody\r\n";
        let parsers = [
            MessageParser::new(),
            MessageParser::new()
                .header_text("X-Spam-Flag")
                .header_text(SCL_HEADER),
            MessageParser::new()
                .header_address("X-Spam-Flag")
                .header_id(SCL_HEADER),
        ];
        for parser in parsers {
            let message = parser.parse(text.as_bytes());
            assert_eq!(
                message.as_ref().and_then(|m| verdict(m, &ALL)),
                Some(JunkVerdict::SpamFlag)
            );
            assert_eq!(message.as_ref().and_then(scl), Some(8));
        }
    }

    #[test]
    fn fixtures() {
        let flagged = include_bytes!("../../tests/it/fixtures/spam-flagged.eml");
        let scl7 = include_bytes!("../../tests/it/fixtures/spam-scl.eml");
        let cases: [(&str, &[u8], JunkRules, Option<JunkVerdict>); 6] = [
            (
                "spam-flagged.eml",
                flagged,
                ALL,
                Some(JunkVerdict::SpamFlag),
            ),
            (
                "spam-flagged.eml",
                flagged,
                rules(false, true, None),
                Some(JunkVerdict::SpamStatus),
            ),
            (
                "spam-flagged.eml",
                flagged,
                rules(false, false, Some(0)),
                None,
            ),
            ("spam-scl.eml", scl7, ALL, Some(JunkVerdict::Scl(7))),
            ("spam-scl.eml", scl7, rules(true, true, Some(8)), None),
            ("spam-scl.eml", scl7, rules(true, true, None), None),
        ];
        for (name, raw, rules, want) in cases {
            let message = MessageParser::default().parse(raw);
            assert_eq!(
                message.and_then(|m| verdict(&m, &rules)),
                want,
                "{name} {rules:?}"
            );
        }
    }

    #[test]
    fn empty_message_has_no_verdict() {
        assert_eq!(verdict(&Message::default(), &ALL), None);
    }
}
