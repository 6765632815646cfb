//! Subjects as threading compares them: without reply and forward prefixes (`Re:`, `AW:`,
//! `SV:`, `Fwd:`, `WG:`, `TR:` …, with counters such as `Re[2]:`) and `[tags]`, white space
//! collapsed, lower case.

/// Prefixes that mark an answer.
const REPLY: &[&str] = &[
    "re", "aw", "sv", "vs", "antw", "antwort", "r", "rif", "res", "réf", "ref", "odp", "ynt",
];
/// Prefixes that mark a forward.
const FORWARD: &[&str] = &["fw", "fwd", "wg", "tr", "enc", "vl", "rv", "i", "doorst"];

/// A subject as threading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The subject without prefixes and tags, lower case, single-spaced.
    pub key: String,
    /// Whether it started with a reply prefix (`Re:`, `AW:` …).
    pub reply: bool,
    /// Whether it started with a forward prefix (`Fwd:`, `WG:` …).
    pub forward: bool,
}

/// Takes one prefix (`re:`, `re[2]:`, `re (2):`) off `s`; says which kind it was.
fn one_prefix(s: &str) -> Option<(&str, bool)> {
    let colon = s.find([':', '：'])?;
    let word = s[..colon].trim();
    // A counter: `Re[2]`, `Re(2)`, `Re^2`.
    let word = word.split(['[', '(', '^']).next().unwrap_or("").trim_end();
    let lower = word.to_lowercase();
    let reply = REPLY.contains(&lower.as_str());
    if !reply && !FORWARD.contains(&lower.as_str()) {
        return None;
    }
    let rest = &s[colon..];
    let rest = rest.char_indices().nth(1).map_or("", |(i, _)| &rest[i..]);
    Some((rest.trim_start(), reply))
}

/// Takes `[tag]` off the start of `s`.
fn one_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some(rest[end + 1..].trim_start())
}

/// `s` without its leading prefixes and tags (case kept).
pub fn strip_prefixes(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        if let Some(rest) = one_tag(s) {
            s = rest;
        } else if let Some((rest, _)) = one_prefix(s) {
            s = rest;
        } else {
            return s;
        }
    }
}

pub fn normalize(subject: &str) -> Normalized {
    let mut s = subject.trim();
    let mut reply = false;
    let mut forward = false;
    loop {
        if let Some(rest) = one_tag(s) {
            s = rest;
        } else if let Some((rest, is_reply)) = one_prefix(s) {
            if is_reply {
                reply = true;
            } else {
                forward = true;
            }
            s = rest;
        } else {
            break;
        }
    }
    let key = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    Normalized {
        key,
        reply,
        forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("Offer", "offer", false, false),
            ("Re: Offer", "offer", true, false),
            ("RE: re:  Offer  2026", "offer 2026", true, false),
            ("AW: WG: Angebot", "angebot", true, true),
            ("SV: Tilbud", "tilbud", true, false),
            ("Fwd: Offer", "offer", false, true),
            ("[EXT] Re: [Fabrikam] Offer", "offer", true, false),
            ("Re[2]: Offer", "offer", true, false),
            ("TR : Offre", "offre", false, true),
            ("Réf. : x", "réf. : x", false, false),
            ("Re:Offer", "offer", true, false),
            ("Meeting: Monday", "meeting: monday", false, false),
            ("", "", false, false),
        ];
        for (subject, key, reply, forward) in cases {
            assert_eq!(
                normalize(subject),
                Normalized {
                    key: key.into(),
                    reply,
                    forward
                },
                "{subject:?}"
            );
        }
    }
}
