//! SMTP replies (RFC 5321 § 4.2) with enhanced status codes (RFC 3463). Texts are short and
//! generic: they never carry internal details.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply; `status` is the enhanced code (`2.1.0`) or empty.
    pub fn new(code: u16, status: &str, text: &str) -> Self {
        let line = match (status.is_empty(), text.is_empty()) {
            (true, _) => text.to_owned(),
            (false, true) => status.to_owned(),
            (false, false) => format!("{status} {text}"),
        };
        Self {
            code,
            lines: vec![line],
        }
    }

    /// A multi-line reply (EHLO) without enhanced codes.
    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        Self { code, lines }
    }

    pub fn greeting(hostname: &str) -> Self {
        Self::new(220, "", &format!("{hostname} ESMTP mailjournal ready"))
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // A reply line never carries a CR or LF of its own.
            let line: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            if line.is_empty() {
                out.extend_from_slice(
                    format!("{}{}\r\n", self.code, if sep == '-' { "-" } else { " " }).as_bytes(),
                );
            } else {
                out.extend_from_slice(format!("{}{sep}{line}\r\n", self.code).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn formats() {
        assert_eq!(text(&Reply::new(250, "2.1.0", "OK")), "250 2.1.0 OK\r\n");
        assert_eq!(text(&Reply::new(334, "", "")), "334 \r\n");
        assert_eq!(
            text(&Reply::multiline(250, vec!["a".into(), "SIZE 1".into()])),
            "250-a\r\n250 SIZE 1\r\n"
        );
        assert_eq!(
            text(&Reply::new(500, "5.5.2", "x\r\ny")),
            "500 5.5.2 xy\r\n"
        );
    }
}
