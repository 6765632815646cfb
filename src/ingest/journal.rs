//! Exchange envelope-journal reports (`X-MS-Journal-Report`): unwrapping.
//!
//! Exchange (2007 and later, and Exchange Online) journals a message by sending a *journal
//! report* to the journaling mailbox: a new message carrying the `X-MS-Journal-Report` header,
//! whose body is a MIME multipart with
//!
//! 1. the *envelope part*, a `text/plain` part of `Field: value` lines (Microsoft's
//!    Envelope-Part structure, `[MS-XJRNL]` section 2.1), and
//! 2. the original message, attached unaltered as `message/rfc822`.
//!
//! The envelope part looks like this (one line per value; the order of `Subject:` and
//! `Message-ID:` varies, and later versions add fields such as `On-Behalf-Of:`, `Label:`,
//! `Mailbox:`, `SentUtc:` and `ReceivedUtc:`, which are recognized and ignored):
//!
//! ```text
//! Sender: alice@contoso.com
//! Subject: Quarterly figures
//! Message-Id: <abc@contoso.com>
//! To: buyer@fabrikam.com
//! Cc: carol@contoso.com
//! Bcc: boss@contoso.com
//! To: dave@contoso.com, Expanded: sales-team@contoso.com
//! Cc: fwd@fabrikam.com, Forwarded: user@contoso.com
//! Recipient: someone@example.net
//! ```
//!
//! In a recipient line the *first* address is the recipient that was journaled and the address
//! after `Expanded:` or `Forwarded:` is where it came from: the distribution group that was
//! expanded to it, or the mailbox whose mail was redirected (forwarded) to it. `Recipient:`
//! lines name envelope recipients whose To/Cc/Bcc type Exchange could not verify.
//!
//! Parsing is liberal: field names are matched without regard to case or to `-`/`_`, spaces
//! around names and values are ignored, CRLF and bare LF line endings are both accepted, a line
//! starting with white space continues the one before it, addresses may be bare,
//! `<angle-bracketed>` or `Display Name <addr>`, and a recipient line may list several
//! addresses separated by commas (or semicolons).

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

use super::recipients::{RecipientSource, Recipients};
use crate::address;

/// The header that marks a message as an Exchange journal report (its value does not matter and
/// is often empty).
pub const REPORT_HEADER: &str = "X-MS-Journal-Report";

/// What an Exchange journal report says about the message it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalReport<'a> {
    /// The P1 (envelope) sender from the report's `Sender:` line, normalized.
    pub sender: Option<String>,
    /// The `Subject:` line (`None` when missing or empty).
    pub subject: Option<String>,
    /// The `Message-Id:` line, without angle brackets.
    pub message_id: Option<String>,
    /// Every envelope recipient the report lists, Bcc included, with its source.
    pub recipients: Recipients,
    /// The original message, byte for byte as it was attached (decoded from base64 or
    /// quoted-printable when the attachment was so encoded).
    pub original: Cow<'a, [u8]>,
}

/// Why a message that says it is a journal report could not be unwrapped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No usable `message/rfc822` part: none at all (e.g. the original travels as
    /// `application/ms-tnef`), an empty one, or one whose transfer encoding cannot be decoded.
    #[error("journal report has no attached message/rfc822 original")]
    NoOriginal,
    /// No `text/plain` part with at least one envelope field line.
    #[error("journal report has no envelope part")]
    NoEnvelope,
}

/// Unwraps an Exchange envelope journal report.
///
/// `raw` must be the bytes `message` was parsed from (with a parser that parses MIME headers,
/// as `MessageParser::default()` does). Returns `Ok(None)` when `message` is not a journal
/// report, i.e. has no `X-MS-Journal-Report` header. The envelope part is looked for first, so
/// a report with neither part fails with [`Error::NoEnvelope`].
///
/// When the original was attached with an identity transfer encoding (none, `7bit`, `8bit`,
/// `binary`) [`JournalReport::original`] borrows exactly the attached body from `raw`: from the
/// first byte after the part's header block up to, not including, the line break that belongs
/// to the next boundary delimiter (RFC 2046 section 5.1.1).
pub fn unwrap<'a>(
    raw: &'a [u8],
    message: &Message<'a>,
) -> Result<Option<JournalReport<'a>>, Error> {
    let Some(root) = message.parts.first() else {
        return Ok(None);
    };
    let is_report = root
        .headers
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case(REPORT_HEADER));
    if !is_report {
        return Ok(None);
    }

    let envelope = message
        .parts
        .iter()
        .filter(|part| is_text_plain(part))
        .filter_map(|part| part.text_contents())
        .map(Envelope::parse)
        .find(|envelope| envelope.fields > 0)
        .ok_or(Error::NoEnvelope)?;

    let original = message
        .parts
        .iter()
        .skip(1)
        .find(|part| is_attached_message(part))
        .ok_or(Error::NoOriginal)
        .and_then(|part| original_bytes(raw, part))?;

    Ok(Some(JournalReport {
        sender: envelope.sender,
        subject: envelope.subject,
        message_id: envelope.message_id,
        recipients: envelope.recipients,
        original,
    }))
}

/// A `text/plain` part (or a part without `Content-Type`, which defaults to it).
fn is_text_plain(part: &MessagePart<'_>) -> bool {
    match part.content_type() {
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("plain"))
        }
        None => matches!(part.body, PartType::Text(_)),
    }
}

/// A `message/rfc822` (or `message/global`) part, or an untyped part mail-parser read as a
/// message (the default inside `multipart/digest`).
fn is_attached_message(part: &MessagePart<'_>) -> bool {
    match part.content_type() {
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                })
        }
        None => matches!(part.body, PartType::Message(_)),
    }
}

/// The original message carried by `part`.
fn original_bytes<'a>(raw: &'a [u8], part: &MessagePart<'_>) -> Result<Cow<'a, [u8]>, Error> {
    let bytes = match part.encoding {
        Encoding::None => {
            // mail-parser falls back to the identity encoding when base64 or quoted-printable
            // cannot be decoded: the raw bytes would then be the encoded text, not a message.
            if part.content_transfer_encoding().is_some_and(|cte| {
                let cte = cte.trim();
                cte.eq_ignore_ascii_case("base64") || cte.eq_ignore_ascii_case("quoted-printable")
            }) {
                return Err(Error::NoOriginal);
            }
            let start = usize::try_from(part.offset_body).map_err(|_| Error::NoOriginal)?;
            let end = usize::try_from(part.offset_end).map_err(|_| Error::NoOriginal)?;
            Cow::Borrowed(raw.get(start..end).ok_or(Error::NoOriginal)?)
        }
        Encoding::Base64 | Encoding::QuotedPrintable => match &part.body {
            // mail-parser keeps the decoded bytes as the nested message's `raw_message`.
            PartType::Message(nested) => Cow::Owned(nested.raw_message.to_vec()),
            // Decoded, but not parseable as a message: still what was attached.
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => Cow::Owned(bytes.to_vec()),
            // Text here would be a lossy conversion, not the attached bytes.
            PartType::Text(_) | PartType::Html(_) | PartType::Multipart(_) => {
                return Err(Error::NoOriginal);
            }
        },
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::NoOriginal);
    }
    Ok(bytes)
}

/// The fields of an envelope part.
#[derive(Debug, Default)]
struct Envelope {
    sender: Option<String>,
    subject: Option<String>,
    message_id: Option<String>,
    recipients: Recipients,
    /// How many envelope field lines were recognized.
    fields: usize,
}

impl Envelope {
    fn parse(text: &str) -> Self {
        let mut envelope = Self::default();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with([' ', '\t'])
                && let Some(current) = current.as_mut()
            {
                current.push(' ');
                current.push_str(line.trim());
                continue;
            }
            if let Some(done) = current.take() {
                envelope.field(&done);
            }
            current = Some(line.to_owned());
        }
        if let Some(done) = current {
            envelope.field(&done);
        }
        envelope
    }

    fn field(&mut self, line: &str) {
        let Some((name, value)) = line.split_once(':') else {
            return;
        };
        // Whatever precedes the name (a byte order mark, however the part's charset decoded it)
        // is not part of it.
        let name = name
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            .trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return;
        }
        let key: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let value = value.trim();
        let source = match key.as_str() {
            "sender" => {
                if self.sender.is_none() {
                    self.sender = mailbox(value).and_then(|(_, addr)| address::normalize(addr));
                }
                None
            }
            "subject" => {
                if self.subject.is_none() && !value.is_empty() {
                    self.subject = Some(value.to_owned());
                }
                None
            }
            "messageid" => {
                if self.message_id.is_none() {
                    self.message_id = message_id(value);
                }
                None
            }
            "to" => Some(RecipientSource::JournalTo),
            "cc" => Some(RecipientSource::JournalCc),
            "bcc" => Some(RecipientSource::JournalBcc),
            "recipient" => Some(RecipientSource::JournalRecipient),
            // Known fields that carry nothing this gateway keeps.
            "onbehalfof" | "label" | "mailbox" | "sentutc" | "receivedutc" => None,
            _ => return,
        };
        self.fields += 1;
        if let Some(source) = source {
            self.recipient_line(value, source);
        }
    }

    /// `addr[, addr...][, Expanded: dl][, Forwarded: mailbox]`: every listed address is a
    /// recipient that came from the expanded group or forwarding mailbox, which is itself
    /// listed too, with the same source.
    fn recipient_line(&mut self, value: &str, source: RecipientSource) {
        let mut targets = Vec::new();
        let mut origins = Vec::new();
        let mut expanded_from = None;
        let mut forwarded_from = None;
        for item in split_list(value) {
            if let Some((kind, origin)) = redirection(item) {
                let slot = match kind {
                    Redirection::Expanded => &mut expanded_from,
                    Redirection::Forwarded => &mut forwarded_from,
                };
                if slot.is_none() {
                    *slot = Some(origin);
                }
                origins.push(origin);
            } else if let Some(target) = mailbox(item) {
                targets.push(target);
            }
        }
        for (name, addr) in targets {
            self.recipients.add_recipient(
                addr,
                name.as_deref(),
                source,
                expanded_from,
                forwarded_from,
            );
        }
        for origin in origins {
            self.recipients
                .add_recipient(origin, None, source, None, None);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Redirection {
    Expanded,
    Forwarded,
}

/// `Expanded: addr` or `Forwarded: addr`, with the bare address.
fn redirection(item: &str) -> Option<(Redirection, &str)> {
    let (kind, value) = item.split_once(':')?;
    let kind = kind.trim();
    let kind = if kind.eq_ignore_ascii_case("expanded") {
        Redirection::Expanded
    } else if kind.eq_ignore_ascii_case("forwarded") {
        Redirection::Forwarded
    } else {
        return None;
    };
    let (_, addr) = mailbox(value)?;
    Some((kind, addr))
}

/// Splits a list at commas and semicolons outside double quotes and angle brackets; empty
/// items are dropped.
fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut angle = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                items.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// A display name (if any) and the address of `addr`, `<addr>` or `Name <addr>`; a leading
/// `smtp:` or `mailto:` is dropped. `None` when nothing is left.
fn mailbox(item: &str) -> Option<(Option<String>, &str)> {
    let item = item.trim();
    let (name, addr) = match (item.rfind('<'), item.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = item[..open].trim().trim_matches('"').trim();
            let name = (!name.is_empty()).then(|| name.replace("\\\"", "\"").replace("\\\\", "\\"));
            (name, item[open + 1..close].trim())
        }
        _ => (None, item.trim_matches(['<', '>']).trim()),
    };
    let addr = strip_prefix_ignore_case(addr, "smtp:")
        .or_else(|| strip_prefix_ignore_case(addr, "mailto:"))
        .unwrap_or(addr)
        .trim();
    (!addr.is_empty()).then_some((name, addr))
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The message id of a `Message-Id:` value: what is inside the first `<...>`, or the whole
/// value without stray brackets.
fn message_id(value: &str) -> Option<String> {
    let value = value.trim();
    let id = match value.find('<') {
        Some(open) => {
            let rest = &value[open + 1..];
            rest.find('>').map_or(rest, |close| &rest[..close])
        }
        None => value.trim_end_matches('>'),
    };
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mail_parser::MessageParser;

    use super::*;
    use crate::ingest::recipients::Recipient;
    use RecipientSource::{
        JournalBcc as Bcc, JournalCc as Cc, JournalRecipient as Rcpt, JournalTo as To,
    };

    const ORIGINAL: &str = "From: Alice <alice@contoso.com>\r\n\
        To: Buyer <buyer@fabrikam.com>\r\n\
        Subject: Quarterly figures\r\n\
        Message-ID: <q3-figures@contoso.com>\r\n\
        Date: Tue, 14 Jan 2025 09:30:00 +0000\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=us-ascii\r\n\
        \r\n\
        Numbers attached in the next mail.\r\n";

    /// A multipart original, whose own closing boundary and epilogue must stay inside it.
    const MULTIPART_ORIGINAL: &str = "From: buyer@fabrikam.com\r\n\
        To: alice@contoso.com\r\n\
        Subject: Re: Quarterly figures\r\n\
        Message-ID: <reply-1@fabrikam.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
        \r\n\
        --inner\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        Thanks!\r\n\
        --inner\r\n\
        Content-Type: text/html\r\n\
        \r\n\
        <p>Thanks!</p>\r\n\
        --inner--\r\n\
        epilogue of the original\r\n";

    const ENVELOPE: &str = "Sender: alice@contoso.com\r\n\
        Subject: Quarterly figures\r\n\
        Message-Id: <q3-figures@contoso.com>\r\n\
        To: buyer@fabrikam.com\r\n";

    /// How a report's original part is attached.
    #[derive(Clone, Copy)]
    enum Attach {
        /// As is, with this `Content-Transfer-Encoding` (if any).
        Identity(Option<&'static str>),
        Base64,
        QuotedPrintable,
        /// As `application/ms-tnef` instead of `message/rfc822`.
        Tnef,
        Missing,
    }

    /// A CRLF journal report: optional envelope text, the original attached as `attach`, and an
    /// optional trailing part after it.
    fn report(envelope: Option<&str>, original: &str, attach: Attach, trailer: bool) -> String {
        let mut out = String::from(
            "From: Microsoft Exchange <postmaster@contoso.com>\r\n\
             To: journal@archive.contoso.com\r\n\
             Subject: Quarterly figures\r\n\
             X-MS-Journal-Report:\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"JR-boundary\"\r\n\
             \r\n\
             This is a multi-part message in MIME format.\r\n",
        );
        if let Some(envelope) = envelope {
            out.push_str(
                "--JR-boundary\r\n\
                 Content-Type: text/plain; charset=\"us-ascii\"\r\n\
                 Content-Transfer-Encoding: 7bit\r\n\
                 \r\n",
            );
            out.push_str(envelope);
            out.push_str("\r\n");
        }
        match attach {
            Attach::Identity(cte) => {
                out.push_str("--JR-boundary\r\nContent-Type: message/rfc822\r\n");
                if let Some(cte) = cte {
                    out.push_str(&format!("Content-Transfer-Encoding: {cte}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(original);
                out.push_str("\r\n");
            }
            Attach::Base64 => {
                out.push_str(
                    "--JR-boundary\r\n\
                     Content-Type: message/rfc822\r\n\
                     Content-Transfer-Encoding: base64\r\n\
                     \r\n",
                );
                let encoded = data_encoding::BASE64.encode(original.as_bytes());
                for chunk in encoded.as_bytes().chunks(76) {
                    out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                    out.push_str("\r\n");
                }
            }
            Attach::QuotedPrintable => {
                out.push_str(
                    "--JR-boundary\r\n\
                     Content-Type: message/rfc822\r\n\
                     Content-Transfer-Encoding: quoted-printable\r\n\
                     \r\n",
                );
                // Every `=` escaped and every line break kept as a hard break.
                out.push_str(&original.replace('=', "=3D"));
                out.push_str("\r\n");
            }
            Attach::Tnef => {
                out.push_str(
                    "--JR-boundary\r\n\
                     Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\
                     \r\n\
                     eJ8+IhAAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNy\r\n",
                );
            }
            Attach::Missing => {}
        }
        if trailer {
            out.push_str(
                "--JR-boundary\r\n\
                 Content-Type: text/plain\r\n\
                 \r\n\
                 A trailing part.\r\n",
            );
        }
        out.push_str("--JR-boundary--\r\n");
        out
    }

    fn lf_only(text: &str) -> String {
        text.replace("\r\n", "\n")
    }

    fn sources(list: &[RecipientSource]) -> BTreeSet<RecipientSource> {
        list.iter().copied().collect()
    }

    fn recipient(
        address: &str,
        name: Option<&str>,
        list: &[RecipientSource],
        expanded_from: Option<&str>,
        forwarded_from: Option<&str>,
    ) -> Recipient {
        Recipient {
            address: address.to_owned(),
            name: name.map(str::to_owned),
            sources: sources(list),
            expanded_from: expanded_from.map(str::to_owned),
            forwarded_from: forwarded_from.map(str::to_owned),
        }
    }

    #[test]
    fn envelope_fields_and_recipients() {
        struct Case {
            name: &'static str,
            envelope: &'static str,
            sender: Option<&'static str>,
            subject: Option<&'static str>,
            message_id: Option<&'static str>,
            recipients: Vec<Recipient>,
        }
        let cases = [
            Case {
                name: "plain report with To, Cc and Bcc",
                envelope: "Sender: alice@contoso.com\r\n\
                    Subject: Quarterly figures\r\n\
                    Message-Id: <q3-figures@contoso.com>\r\n\
                    To: buyer@fabrikam.com\r\n\
                    Cc: carol@contoso.com\r\n\
                    Bcc: boss@contoso.com\r\n",
                sender: Some("alice@contoso.com"),
                subject: Some("Quarterly figures"),
                message_id: Some("q3-figures@contoso.com"),
                recipients: vec![
                    recipient("buyer@fabrikam.com", None, &[To], None, None),
                    recipient("carol@contoso.com", None, &[Cc], None, None),
                    recipient("boss@contoso.com", None, &[Bcc], None, None),
                ],
            },
            Case {
                name: "distribution group expanded to a member",
                envelope: "Sender: alice@contoso.com\r\n\
                    Subject: Kick-off\r\n\
                    Message-ID: <kickoff@contoso.com>\r\n\
                    To: dave@contoso.com, Expanded: sales-team@contoso.com\r\n\
                    To: erin@contoso.com, Expanded: sales-team@contoso.com\r\n\
                    Bcc: frank@contoso.com, Expanded: managers@contoso.com\r\n",
                sender: Some("alice@contoso.com"),
                subject: Some("Kick-off"),
                message_id: Some("kickoff@contoso.com"),
                recipients: vec![
                    recipient(
                        "dave@contoso.com",
                        None,
                        &[To],
                        Some("sales-team@contoso.com"),
                        None,
                    ),
                    recipient("sales-team@contoso.com", None, &[To], None, None),
                    recipient(
                        "erin@contoso.com",
                        None,
                        &[To],
                        Some("sales-team@contoso.com"),
                        None,
                    ),
                    recipient(
                        "frank@contoso.com",
                        None,
                        &[Bcc],
                        Some("managers@contoso.com"),
                        None,
                    ),
                    recipient("managers@contoso.com", None, &[Bcc], None, None),
                ],
            },
            Case {
                name: "recipient forwarded to another mailbox",
                envelope: "Sender: buyer@fabrikam.com\r\n\
                    Subject: Order\r\n\
                    Message-ID: <order@fabrikam.com>\r\n\
                    To: alice.private@gmail.example, Forwarded: alice@contoso.com\r\n\
                    Cc: fwd@contoso.com, Forwarded: carol@contoso.com\r\n",
                sender: Some("buyer@fabrikam.com"),
                subject: Some("Order"),
                message_id: Some("order@fabrikam.com"),
                recipients: vec![
                    recipient(
                        "alice.private@gmail.example",
                        None,
                        &[To],
                        None,
                        Some("alice@contoso.com"),
                    ),
                    recipient("alice@contoso.com", None, &[To], None, None),
                    recipient(
                        "fwd@contoso.com",
                        None,
                        &[Cc],
                        None,
                        Some("carol@contoso.com"),
                    ),
                    recipient("carol@contoso.com", None, &[Cc], None, None),
                ],
            },
            Case {
                name: "Recipient lines, one with several addresses and display names",
                envelope: "Sender: <bounce@example.net>\r\n\
                    Message-ID: <n1@example.net>\r\n\
                    Subject: Newsletter\r\n\
                    Recipient: alice@contoso.com\r\n\
                    Recipient: \"Smith, Bob\" <bob@contoso.com>, <carol@contoso.com>; dave@contoso.com\r\n\
                    Recipient: erin@contoso.com, Expanded: all@contoso.com\r\n\
                    Recipient: /o=Contoso/ou=Exchange/cn=Recipients/cn=legacy\r\n",
                sender: Some("bounce@example.net"),
                subject: Some("Newsletter"),
                message_id: Some("n1@example.net"),
                recipients: vec![
                    recipient("alice@contoso.com", None, &[Rcpt], None, None),
                    recipient("bob@contoso.com", Some("Smith, Bob"), &[Rcpt], None, None),
                    recipient("carol@contoso.com", None, &[Rcpt], None, None),
                    recipient("dave@contoso.com", None, &[Rcpt], None, None),
                    recipient(
                        "erin@contoso.com",
                        None,
                        &[Rcpt],
                        Some("all@contoso.com"),
                        None,
                    ),
                    recipient("all@contoso.com", None, &[Rcpt], None, None),
                ],
            },
            Case {
                name: "byte order mark, mixed case names, odd spacing, folding, ignored fields",
                envelope: "\u{feff}SENDER:Alice@Contoso.COM\r\n\
                    on-behalf-of: assistant@contoso.com\r\n\
                    message-ID :   <MiXeD@Contoso.com>   \r\n\
                    subject:\tHello   \r\n\
                    Label: retention\r\n\
                    tO:   Buyer@Fabrikam.com ,  expanded :  Buyers@Fabrikam.com\r\n\
                    CC: carol@contoso.com,\r\n\
                    \x20 dave@contoso.com\r\n\
                    bCc: BOSS@contoso.com\r\n\
                    Bcc: boss@contoso.com\r\n\
                    SentUtc: 2025-01-14T09:30:00Z\r\n\
                    Some free text that is not a field.\r\n",
                sender: Some("alice@contoso.com"),
                subject: Some("Hello"),
                message_id: Some("MiXeD@Contoso.com"),
                recipients: vec![
                    recipient(
                        "buyer@fabrikam.com",
                        None,
                        &[To],
                        Some("buyers@fabrikam.com"),
                        None,
                    ),
                    recipient("buyers@fabrikam.com", None, &[To], None, None),
                    recipient("carol@contoso.com", None, &[Cc], None, None),
                    recipient("dave@contoso.com", None, &[Cc], None, None),
                    recipient("boss@contoso.com", None, &[Bcc], None, None),
                ],
            },
            Case {
                name: "a recipient listed both as To and as expansion member",
                envelope: "Sender: alice@contoso.com\r\n\
                    Subject:\r\n\
                    Message-Id: <>\r\n\
                    To: dave@contoso.com\r\n\
                    Bcc: dave@contoso.com, Expanded: sales-team@contoso.com\r\n",
                sender: Some("alice@contoso.com"),
                subject: None,
                message_id: None,
                recipients: vec![
                    recipient(
                        "dave@contoso.com",
                        None,
                        &[To, Bcc],
                        Some("sales-team@contoso.com"),
                        None,
                    ),
                    recipient("sales-team@contoso.com", None, &[Bcc], None, None),
                ],
            },
            Case {
                name: "null reverse path",
                envelope: "Sender: <>\r\nMessage-Id: ndr-1@contoso.com\r\nTo: alice@contoso.com\r\n",
                sender: None,
                subject: None,
                message_id: Some("ndr-1@contoso.com"),
                recipients: vec![recipient("alice@contoso.com", None, &[To], None, None)],
            },
        ];
        for case in cases {
            for line_ending in ["CRLF", "LF"] {
                let mut text = report(Some(case.envelope), ORIGINAL, Attach::Identity(None), false);
                if line_ending == "LF" {
                    text = lf_only(&text);
                }
                let raw = text.as_bytes();
                let Some(message) = MessageParser::default().parse(raw) else {
                    panic!("{}: unparseable test message", case.name);
                };
                let report = unwrap(raw, &message)
                    .unwrap_or_else(|e| panic!("{} ({line_ending}): {e}", case.name))
                    .unwrap_or_else(|| panic!("{} ({line_ending}): not a report", case.name));
                let what = format!("{} ({line_ending})", case.name);
                assert_eq!(report.sender.as_deref(), case.sender, "{what}: sender");
                assert_eq!(report.subject.as_deref(), case.subject, "{what}: subject");
                assert_eq!(
                    report.message_id.as_deref(),
                    case.message_id,
                    "{what}: message id"
                );
                assert_eq!(
                    report.recipients.iter().cloned().collect::<Vec<_>>(),
                    case.recipients,
                    "{what}: recipients"
                );
            }
        }
    }

    #[test]
    fn original_is_what_was_attached() {
        use Attach::{Base64, Identity, QuotedPrintable};
        // (case, original, how it is attached, another part after it, LF-only line endings)
        let cases = [
            (
                "no transfer encoding",
                ORIGINAL,
                Identity(None),
                false,
                false,
            ),
            ("7bit", ORIGINAL, Identity(Some("7bit")), false, false),
            ("8bit", ORIGINAL, Identity(Some("8bit")), false, false),
            (
                "binary (Exchange Online)",
                ORIGINAL,
                Identity(Some("binary")),
                false,
                false,
            ),
            (
                "followed by another part",
                ORIGINAL,
                Identity(Some("7bit")),
                true,
                false,
            ),
            (
                "multipart original",
                MULTIPART_ORIGINAL,
                Identity(Some("7bit")),
                false,
                false,
            ),
            (
                "multipart, another part",
                MULTIPART_ORIGINAL,
                Identity(None),
                true,
                false,
            ),
            (
                "LF-only line endings",
                ORIGINAL,
                Identity(Some("7bit")),
                false,
                true,
            ),
            (
                "LF-only multipart",
                MULTIPART_ORIGINAL,
                Identity(None),
                true,
                true,
            ),
            ("base64", ORIGINAL, Base64, false, false),
            (
                "base64 multipart, another part",
                MULTIPART_ORIGINAL,
                Base64,
                true,
                false,
            ),
            ("LF-only base64", ORIGINAL, Base64, false, true),
            (
                "quoted-printable",
                MULTIPART_ORIGINAL,
                QuotedPrintable,
                false,
                false,
            ),
        ];
        for (name, original, attach, trailer, lf) in cases {
            let mut text = report(Some(ENVELOPE), original, attach, trailer);
            let mut original = original.to_owned();
            if lf {
                text = lf_only(&text);
                // Line breaks inside base64 are encoded data: they stay as they were.
                if !matches!(attach, Base64) {
                    original = lf_only(&original);
                }
            }
            let raw = text.as_bytes();
            let Some(message) = MessageParser::default().parse(raw) else {
                panic!("{name}: unparseable test message");
            };
            let report = unwrap(raw, &message)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: not a report"));
            assert_eq!(
                String::from_utf8_lossy(&report.original),
                original,
                "{name}: original bytes"
            );
            assert_eq!(
                matches!(report.original, Cow::Borrowed(_)),
                matches!(attach, Identity(_)),
                "{name}: borrowed from the report"
            );
            // What was attached parses back to the same message.
            let Some(reparsed) = MessageParser::default().parse(report.original.as_ref()) else {
                panic!("{name}: original does not parse");
            };
            assert_eq!(
                reparsed.raw_message(),
                original.as_bytes(),
                "{name}: reparsed"
            );
            assert!(
                reparsed.message_id().is_some(),
                "{name}: reparsed message id"
            );
            assert_eq!(
                report.sender.as_deref(),
                Some("alice@contoso.com"),
                "{name}"
            );
        }
    }

    #[test]
    fn errors_and_non_reports() {
        let without_header = report(Some(ENVELOPE), ORIGINAL, Attach::Identity(None), false)
            .replace("X-MS-Journal-Report:\r\n", "");
        let lower_case_header = report(Some(ENVELOPE), ORIGINAL, Attach::Identity(None), false)
            .replace(
                "X-MS-Journal-Report:",
                "x-ms-journal-report: application/msgtnef",
            );
        let cases: [(&str, String, Result<bool, Error>); 8] = [
            ("no X-MS-Journal-Report header", without_header, Ok(false)),
            (
                "header name in lower case, with a value",
                lower_case_header,
                Ok(true),
            ),
            (
                "ordinary single-part message",
                ORIGINAL.to_owned(),
                Ok(false),
            ),
            (
                "no original",
                report(Some(ENVELOPE), ORIGINAL, Attach::Missing, true),
                Err(Error::NoOriginal),
            ),
            (
                "TNEF instead of message/rfc822",
                report(Some(ENVELOPE), ORIGINAL, Attach::Tnef, false),
                Err(Error::NoOriginal),
            ),
            (
                "empty original",
                report(Some(ENVELOPE), "", Attach::Identity(None), false),
                Err(Error::NoOriginal),
            ),
            (
                "no envelope part",
                report(None, ORIGINAL, Attach::Identity(None), false),
                Err(Error::NoEnvelope),
            ),
            (
                "text part without envelope fields",
                report(
                    Some("Nothing to see here.\r\n"),
                    ORIGINAL,
                    Attach::Identity(None),
                    false,
                ),
                Err(Error::NoEnvelope),
            ),
        ];
        for (name, text, want) in cases {
            let raw = text.as_bytes();
            let Some(message) = MessageParser::default().parse(raw) else {
                panic!("{name}: unparseable test message");
            };
            let got = unwrap(raw, &message).map(|r| r.is_some());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn single_part_report_has_no_original() {
        let text = "From: postmaster@contoso.com\r\n\
            X-MS-Journal-Report: \r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            Sender: alice@contoso.com\r\n\
            To: bob@contoso.com\r\n";
        let raw = text.as_bytes();
        let message = MessageParser::default().parse(raw);
        assert_eq!(
            message.map(|m| unwrap(raw, &m).map(|r| r.is_some())),
            Some(Err(Error::NoOriginal))
        );
    }

    #[test]
    fn unparsed_message_is_not_a_report() {
        assert_eq!(unwrap(b"", &Message::default()), Ok(None));
    }

    #[test]
    fn fixtures() {
        // (fixture, its bytes, envelope sender, message id, envelope recipients)
        let cases = [
            (
                "journal-bcc-expanded.eml",
                &include_bytes!("../../tests/it/fixtures/journal-bcc-expanded.eml")[..],
                "alice@contoso.com",
                "q3-prices-2025@contoso.com",
                vec![
                    recipient("buyer@fabrikam.com", None, &[To], None, None),
                    recipient(
                        "dave@contoso.com",
                        None,
                        &[To],
                        Some("sales-team@contoso.com"),
                        None,
                    ),
                    recipient("sales-team@contoso.com", None, &[To], None, None),
                    recipient("carol@contoso.com", None, &[Cc], None, None),
                    recipient("boss@contoso.com", None, &[Bcc], None, None),
                ],
            ),
            (
                "journal-inbound.eml",
                &include_bytes!("../../tests/it/fixtures/journal-inbound.eml")[..],
                "buyer@fabrikam.com",
                "re-q3-prices-88@mail.fabrikam.com",
                vec![
                    recipient("alice@contoso.com", None, &[To], None, None),
                    recipient(
                        "alice.private@gmail.example",
                        None,
                        &[To],
                        None,
                        Some("alice@contoso.com"),
                    ),
                ],
            ),
        ];
        for (name, raw, sender, id, recipients) in cases {
            let Some(message) = MessageParser::default().parse(raw) else {
                panic!("{name}: unparseable");
            };
            let report = unwrap(raw, &message)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: not a report"));
            assert_eq!(report.sender.as_deref(), Some(sender), "{name}");
            assert_eq!(report.message_id.as_deref(), Some(id), "{name}");
            assert_eq!(
                report.recipients.iter().cloned().collect::<Vec<_>>(),
                recipients,
                "{name}"
            );
            // The original is the text between the part's blank line and the CRLF that
            // precedes the closing delimiter.
            let text = String::from_utf8_lossy(raw);
            let start = text
                .find("\r\n\r\nReceived: from mail.fabrikam")
                .or_else(|| text.find("\r\n\r\nFrom: Alice"))
                .map(|i| i + 4);
            let end = text.rfind("\r\n--_jr_");
            let Some(expected) = start.zip(end).and_then(|(s, e)| raw.get(s..e)) else {
                panic!("{name}: fixture layout changed");
            };
            assert_eq!(report.original.as_ref(), expected, "{name}: original");
            assert!(
                report.original.ends_with(b"\r\n"),
                "{name}: original keeps its last line break"
            );
            let original = MessageParser::default().parse(report.original.as_ref());
            assert_eq!(
                original.as_ref().and_then(|m| m.message_id()),
                Some(id),
                "{name}"
            );
        }
    }

    #[test]
    fn list_and_mailbox_helpers() {
        assert_eq!(
            split_list(" a@x.com ,, b@x.com;c@x.com "),
            ["a@x.com", "b@x.com", "c@x.com"]
        );
        assert_eq!(
            split_list("\"Doe, J\" <j@x.com>, <k,l@x.com>"),
            ["\"Doe, J\" <j@x.com>", "<k,l@x.com>"]
        );
        assert_eq!(mailbox("SMTP:Bob@X.com"), Some((None, "Bob@X.com")));
        assert_eq!(
            mailbox("\"Bob\" <mailto:bob@x.com>"),
            Some((Some("Bob".to_owned()), "bob@x.com"))
        );
        assert_eq!(mailbox(" <> "), None);
        assert_eq!(message_id("<a@b> (comment)").as_deref(), Some("a@b"));
        assert_eq!(message_id("a@b>").as_deref(), Some("a@b"));
        assert_eq!(message_id("< >"), None);
    }
}
