//! Which messages no person wrote: auto-replies (out of office, vacation), bounces (delivery
//! status notifications) and bulk mail. None of them is a reply, however it is threaded.

use serde::{Deserialize, Serialize};

/// What kind of machine-made message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auto {
    /// An automatic answer: out of office, vacation notice, auto-responder, read receipt.
    AutoReply,
    /// A delivery status notification (a bounce): `multipart/report`, or from
    /// MAILER-DAEMON or postmaster.
    Bounce,
    /// Bulk or list mail (`Precedence: bulk`, `list`, `junk`).
    Bulk,
}

impl Auto {
    pub fn as_str(self) -> &'static str {
        match self {
            Auto::AutoReply => "auto-reply",
            Auto::Bounce => "bounce",
            Auto::Bulk => "bulk",
        }
    }
}

/// What [`detect`] looks at, taken from the parsed message by ingest.
#[derive(Debug, Clone, Default)]
pub struct Signals<'a> {
    /// Every top-level header field (name, raw value).
    pub headers: Vec<(&'a str, &'a str)>,
    /// `Some(report-type)` (possibly empty) when the message is `multipart/report`.
    pub report_type: Option<&'a str>,
    /// The `From:` address and the envelope sender (journal or SMTP), normalized.
    pub senders: Vec<&'a str>,
    pub subject: Option<&'a str>,
}

/// Subjects (lower case) that out-of-office and auto-responders start with, in English,
/// German, French, Spanish, Italian, Dutch and Portuguese.
const AUTO_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "automatic response",
    "vacation reply",
    "away from the office",
    "abwesenheitsnotiz",
    "abwesenheit",
    "automatische antwort",
    "automatische rückantwort",
    "réponse automatique",
    "reponse automatique",
    "absence du bureau",
    "absent du bureau",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "fuera de oficina",
    "risposta automatica",
    "fuori ufficio",
    "automatisch antwoord",
    "afwezig",
    "resposta automática",
    "resposta automatica",
    "ausência",
];

/// Subjects of bounces, for senders that set neither header nor report type.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable:",
    "undelivered mail returned to sender",
    "delivery status notification (failure)",
    "mail delivery failed",
    "returned mail:",
    "unzustellbar:",
    "non remis :",
    "non remis:",
    "no se puede entregar:",
];

/// The kind of machine-made message this is, or `None` for one a person wrote.
pub fn detect(s: &Signals<'_>) -> Option<Auto> {
    let header = |name: &'static str| {
        s.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(report) = s.report_type {
        return Some(
            if report.eq_ignore_ascii_case("delivery-status") || report.is_empty() {
                Auto::Bounce
            } else {
                // disposition-notification (read receipts) and other reports.
                Auto::AutoReply
            },
        );
    }
    let daemon = s.senders.iter().any(|a| {
        let local = a.split('@').next().unwrap_or("");
        local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster")
    });
    if daemon {
        return Some(Auto::Bounce);
    }
    if header("Auto-Submitted").any(|v| {
        let v = v.split(';').next().unwrap_or("").trim();
        !v.is_empty() && !v.eq_ignore_ascii_case("no")
    }) {
        return Some(Auto::AutoReply);
    }
    for name in ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"] {
        if header(name).any(|v| !v.is_empty()) {
            return Some(Auto::AutoReply);
        }
    }
    for v in header("Precedence") {
        let v = v.to_ascii_lowercase();
        match v.as_str() {
            "auto_reply" | "auto-reply" => return Some(Auto::AutoReply),
            "bulk" | "junk" | "list" => return Some(Auto::Bulk),
            _ => {}
        }
    }
    if let Some(subject) = s.subject {
        let lower = subject.trim().to_lowercase();
        let stripped = super::subject::strip_prefixes(&lower);
        let starts = |list: &[&str]| {
            list.iter()
                .any(|p| lower.starts_with(p) || stripped.starts_with(p))
        };
        if starts(BOUNCE_SUBJECTS) {
            return Some(Auto::Bounce);
        }
        if starts(AUTO_SUBJECTS) {
            return Some(Auto::AutoReply);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(headers: &[(&'static str, &'static str)], subject: &'static str) -> Option<Auto> {
        detect(&Signals {
            headers: headers.to_vec(),
            report_type: None,
            senders: vec!["marta@fabrikam.com"],
            subject: Some(subject),
        })
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<Auto>);
        let cases: &[Case<'_>] = &[
            (&[], "Re: offer", None),
            (&[("Auto-Submitted", "no")], "Re: offer", None),
            (
                &[("Auto-Submitted", "auto-replied")],
                "Re: offer",
                Some(Auto::AutoReply),
            ),
            (
                &[("auto-submitted", "Auto-Generated; x")],
                "Hi",
                Some(Auto::AutoReply),
            ),
            (&[("X-Autoreply", "yes")], "Hi", Some(Auto::AutoReply)),
            (&[("X-Autorespond", "1")], "Hi", Some(Auto::AutoReply)),
            (
                &[("X-Auto-Response-Suppress", "All")],
                "Hi",
                Some(Auto::AutoReply),
            ),
            (&[("Precedence", "auto_reply")], "Hi", Some(Auto::AutoReply)),
            (&[("Precedence", "bulk")], "News", Some(Auto::Bulk)),
            (&[("Precedence", "list")], "News", Some(Auto::Bulk)),
            (&[("Precedence", "first-class")], "Hi", None),
            (&[], "Out of Office: offer", Some(Auto::AutoReply)),
            (&[], "Automatic reply: offer", Some(Auto::AutoReply)),
            (&[], "Abwesenheitsnotiz: Angebot", Some(Auto::AutoReply)),
            (&[], "AW: Abwesenheitsnotiz", Some(Auto::AutoReply)),
            (&[], "Réponse automatique : offre", Some(Auto::AutoReply)),
            (&[], "Respuesta automática: oferta", Some(Auto::AutoReply)),
            (&[], "Undeliverable: offer", Some(Auto::Bounce)),
            (&[], "Re: our out of office policy", None),
        ];
        for (headers, subject, want) in cases {
            assert_eq!(with(headers, subject), *want, "{headers:?} {subject:?}");
        }
    }

    #[test]
    fn reports_and_daemons_are_bounces() {
        let mut s = Signals {
            report_type: Some("delivery-status"),
            ..Signals::default()
        };
        assert_eq!(detect(&s), Some(Auto::Bounce));
        s.report_type = Some("disposition-notification");
        assert_eq!(detect(&s), Some(Auto::AutoReply));
        s.report_type = None;
        s.senders = vec!["MAILER-DAEMON@mx.fabrikam.com"];
        assert_eq!(detect(&s), Some(Auto::Bounce));
        s.senders = vec!["postmaster@fabrikam.com"];
        assert_eq!(detect(&s), Some(Auto::Bounce));
        s.senders = vec!["post@fabrikam.com"];
        assert_eq!(detect(&s), None);
    }
}
