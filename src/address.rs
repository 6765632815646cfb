//! E-mail addresses and the organization's domains.
//!
//! Every address that is compared or indexed goes through [`normalize`]: the domain becomes its
//! IDNA ASCII form (so `bücher.example` and `xn--bcher-kva.example` are one domain) and the
//! whole address is lower-cased, which is how every mail system in practice treats local parts.

use std::fmt;

/// Normalizes an address for comparison and indexing, or `None` if it is not an address
/// (no `@`, empty local part, or a domain IDNA rejects).
pub fn normalize(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || local.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    let domain = normalize_domain(domain)?;
    Some(format!("{}@{}", local.to_lowercase(), domain))
}

/// The IDNA ASCII, lower-case form of a domain, without a trailing dot.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return None;
    }
    let ascii = idna::domain_to_ascii(domain).ok()?;
    if ascii.is_empty() || ascii.contains(|c: char| c.is_whitespace() || c == '@') {
        return None;
    }
    Some(ascii)
}

/// The domain part of a normalized address.
pub fn domain_of(normalized: &str) -> &str {
    normalized.rsplit_once('@').map_or("", |(_, d)| d)
}

/// One organization domain, with or without its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// IDNA ASCII, lower case.
    pub domain: String,
    pub subdomains: bool,
}

impl DomainRule {
    /// Parses `example.com` (that domain only) or `*.example.com` (it and every subdomain).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (subdomains, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.is_empty() {
            return Err("empty domain".into());
        }
        if name.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is only allowed as a leading `*.`"
            ));
        }
        let domain =
            normalize_domain(name).ok_or_else(|| format!("{text:?} is not a valid domain name"))?;
        if !domain.contains('.') {
            return Err(format!("{text:?} is not a fully qualified domain name"));
        }
        Ok(Self { domain, subdomains })
    }

    pub fn matches(&self, domain: &str) -> bool {
        domain == self.domain
            || (self.subdomains
                && domain.len() > self.domain.len()
                && domain.ends_with(&self.domain)
                && domain.as_bytes()[domain.len() - self.domain.len() - 1] == b'.')
    }
}

impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            write!(f, "*.{}", self.domain)
        } else {
            f.write_str(&self.domain)
        }
    }
}

/// The organization's domains: what "inside" means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgDomains {
    rules: Vec<DomainRule>,
}

impl OrgDomains {
    pub fn new(rules: Vec<DomainRule>) -> Self {
        Self { rules }
    }

    pub fn rules(&self) -> &[DomainRule] {
        &self.rules
    }

    /// Whether a domain (any case, Unicode or ASCII) belongs to the organization.
    pub fn contains_domain(&self, domain: &str) -> bool {
        normalize_domain(domain).is_some_and(|d| self.rules.iter().any(|r| r.matches(&d)))
    }

    /// Whether an address (any form [`normalize`] accepts) is inside the organization.
    pub fn contains_address(&self, address: &str) -> bool {
        normalize(address).is_some_and(|a| {
            let d = domain_of(&a);
            self.rules.iter().any(|r| r.matches(d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_addresses() {
        let cases = [
            ("Alice@Example.COM", Some("alice@example.com")),
            ("<bob@example.com>", Some("bob@example.com")),
            ("carol@Bücher.Example", Some("carol@xn--bcher-kva.example")),
            ("dave@example.com.", Some("dave@example.com")),
            ("no-at-sign", None),
            ("@example.com", None),
            ("user@", None),
            ("a b@example.com", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn domain_rules() {
        let exact = DomainRule::parse("Example.com").expect("valid");
        let wide = DomainRule::parse("*.example.org").expect("valid");
        assert!(exact.matches("example.com"));
        assert!(!exact.matches("sales.example.com"));
        assert!(wide.matches("example.org"));
        assert!(wide.matches("eu.sales.example.org"));
        assert!(!wide.matches("badexample.org"));
        assert!(DomainRule::parse("*.").is_err());
        assert!(DomainRule::parse("ex*ample.com").is_err());
        assert!(DomainRule::parse("localhost").is_err());
        assert!(DomainRule::parse("exa mple.com").is_err());
        let org = OrgDomains::new(vec![
            exact,
            wide,
            DomainRule::parse("bücher.example").expect("valid"),
        ]);
        assert!(org.contains_address("X@XN--BCHER-KVA.EXAMPLE"));
        assert!(org.contains_address("x@BÜCHER.example"));
        assert!(!org.contains_address("x@example.net"));
    }
}
