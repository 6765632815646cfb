//! Direction of a message relative to the organization: pure, table-tested.

use serde::{Deserialize, Serialize};

use crate::address::OrgDomains;

/// Which way a message crossed the organization's boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sender outside, at least one recipient inside.
    Inbound,
    /// Sender inside, at least one recipient outside.
    Outbound,
    /// Every party inside.
    Internal,
    /// No party inside.
    External,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Inbound,
        Direction::Outbound,
        Direction::Internal,
        Direction::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Internal => "internal",
            Self::External => "external",
        }
    }

    /// A stable one-byte code, used in index keys.
    pub fn code(self) -> u8 {
        match self {
            Self::Inbound => 1,
            Self::Outbound => 2,
            Self::Internal => 3,
            Self::External => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.code() == code)
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not one of inbound, outbound, internal, external"))
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a message from its sender and recipients.
///
/// A message with no known sender is treated as coming from outside: journaled mail always has
/// one, so a missing sender means a broken message, and "inbound" is the reading that keeps it
/// visible to the recipients inside.
pub fn classify<'a>(
    org: &OrgDomains,
    sender: Option<&str>,
    recipients: impl IntoIterator<Item = &'a str>,
) -> Direction {
    let sender_inside = sender.is_some_and(|s| org.contains_address(s));
    let (mut any_inside, mut any_outside) = (false, false);
    for r in recipients {
        if org.contains_address(r) {
            any_inside = true;
        } else {
            any_outside = true;
        }
    }
    match (sender_inside, any_inside, any_outside) {
        (true, _, true) => Direction::Outbound,
        (true, _, false) => Direction::Internal,
        (false, true, _) => Direction::Inbound,
        (false, false, _) => Direction::External,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::DomainRule;

    fn org() -> OrgDomains {
        OrgDomains::new(vec![
            DomainRule::parse("contoso.com").expect("valid"),
            DomainRule::parse("*.contoso.eu").expect("valid"),
            DomainRule::parse("bücher.example").expect("valid"),
        ])
    }

    #[test]
    fn table() {
        use Direction::*;
        let cases: &[(Option<&str>, &[&str], Direction)] = &[
            (Some("buyer@fabrikam.com"), &["alice@contoso.com"], Inbound),
            (
                Some("BUYER@fabrikam.com"),
                &["Alice@CONTOSO.COM", "x@example.net"],
                Inbound,
            ),
            (Some("alice@contoso.com"), &["buyer@fabrikam.com"], Outbound),
            (
                Some("alice@contoso.com"),
                &["bob@contoso.com", "buyer@fabrikam.com"],
                Outbound,
            ),
            (Some("alice@contoso.com"), &["bob@contoso.com"], Internal),
            (Some("alice@contoso.com"), &[], Internal),
            (Some("a@fabrikam.com"), &["b@example.net"], External),
            (Some("a@fabrikam.com"), &[], External),
            (None, &["alice@contoso.com"], Inbound),
            (None, &["b@example.net"], External),
            // subdomains only where configured
            (Some("x@sales.contoso.eu"), &["y@contoso.eu"], Internal),
            (Some("x@sales.contoso.com"), &["alice@contoso.com"], Inbound),
            // look-alike domains are outside
            (Some("x@evilcontoso.com"), &["alice@contoso.com"], Inbound),
            (
                Some("x@contoso.com.evil.net"),
                &["alice@contoso.com"],
                Inbound,
            ),
            // IDNA: Unicode and punycode forms are one domain
            (
                Some("anna@BÜCHER.example"),
                &["b@xn--bcher-kva.example"],
                Internal,
            ),
            (
                Some("anna@xn--bcher-kva.example"),
                &["b@fabrikam.com"],
                Outbound,
            ),
            // garbage recipient counts as outside, never as inside
            (Some("alice@contoso.com"), &["not-an-address"], Outbound),
        ];
        let org = org();
        for (sender, recipients, want) in cases {
            let got = classify(&org, *sender, recipients.iter().copied());
            assert_eq!(got, *want, "sender {sender:?} recipients {recipients:?}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for d in Direction::ALL {
            assert_eq!(Direction::from_code(d.code()), Some(d));
            assert_eq!(d.as_str().parse::<Direction>(), Ok(d));
        }
        assert!("sideways".parse::<Direction>().is_err());
    }
}
