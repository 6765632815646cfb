//! RFC 4314 access control lists, read-only: what an account may do in a folder, told to the
//! client so it greys out Delete and Move instead of pretending they worked.
//!
//! imap-codec has no ACL commands, so imap-next hands their lines over as malformed. This
//! module parses such a line itself (`tag SP command SP mailbox [SP identifier [SP rights]]`,
//! each argument an atom, a quoted string or a literal) and writes the untagged answers.
//! Pure functions; no I/O.

/// Rights beyond RFC 2086's that this server understands (RFC 4314 § 2.1: `RIGHTS=` must name
/// at least these four), announced in CAPABILITY as `RIGHTS=texk`.
pub const EXTRA_RIGHTS: &str = "texk";

/// An account's rights in a folder it can open: look it up (`l`), read it (`r`), keep its
/// own `\Seen` (`s`) and set other flags (`w`: `\Flagged`). Nobody may insert, post,
/// delete, expunge, create, delete folders or administer (`i p t e k x a`): the archive is
/// read-only and the folders are views.
pub const SELECTABLE: &str = "lrsw";

/// The rights in a folder that only holds other folders (`By month`, `Contacts`): it is
/// listed, nothing more.
pub const PARENT: &str = "l";

/// An ACL command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    MyRights {
        mailbox: Vec<u8>,
    },
    GetAcl {
        mailbox: Vec<u8>,
    },
    ListRights {
        mailbox: Vec<u8>,
        identifier: Vec<u8>,
    },
    SetAcl {
        mailbox: Vec<u8>,
    },
    DeleteAcl {
        mailbox: Vec<u8>,
    },
}

impl Command {
    /// The folder the command names, as the client wrote it (modified UTF-7).
    pub fn mailbox(&self) -> &[u8] {
        match self {
            Command::MyRights { mailbox }
            | Command::GetAcl { mailbox }
            | Command::ListRights { mailbox, .. }
            | Command::SetAcl { mailbox }
            | Command::DeleteAcl { mailbox } => mailbox,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The line is not an ACL command at all (another unknown command).
    #[error("not an ACL command")]
    NotAcl,
    /// An ACL command with missing, extra or malformed arguments.
    #[error("bad ACL command arguments")]
    Syntax,
}

/// The ACL command in a line imap-codec could not parse (with its CRLF, and any literals
/// it carried).
pub fn parse(line: &[u8]) -> Result<Command, Error> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let mut p = Args { rest: line };
    p.word().ok_or(Error::NotAcl)?; // the tag
    if !p.space() {
        return Err(Error::NotAcl);
    }
    let name = p.word().ok_or(Error::NotAcl)?.to_ascii_uppercase();
    let arity = match name.as_slice() {
        b"MYRIGHTS" | b"GETACL" => 1,
        b"LISTRIGHTS" | b"DELETEACL" => 2,
        b"SETACL" => 3,
        _ => return Err(Error::NotAcl),
    };
    let mut args = Vec::with_capacity(arity);
    for _ in 0..arity {
        if !p.space() {
            return Err(Error::Syntax);
        }
        args.push(p.astring().ok_or(Error::Syntax)?);
    }
    if !p.rest.is_empty() {
        return Err(Error::Syntax);
    }
    let mut args = args.into_iter();
    let mut next = || args.next().ok_or(Error::Syntax);
    Ok(match name.as_slice() {
        b"MYRIGHTS" => Command::MyRights { mailbox: next()? },
        b"GETACL" => Command::GetAcl { mailbox: next()? },
        b"LISTRIGHTS" => Command::ListRights {
            mailbox: next()?,
            identifier: next()?,
        },
        b"DELETEACL" => Command::DeleteAcl { mailbox: next()? },
        _ => Command::SetAcl { mailbox: next()? },
    })
}

/// A cursor over a command line's arguments.
struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    fn space(&mut self) -> bool {
        match self.rest.split_first() {
            Some((b' ', rest)) => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// Bytes up to the next space (a tag or a command name).
    fn word(&mut self) -> Option<&'a [u8]> {
        let end = self
            .rest
            .iter()
            .position(|b| *b == b' ')
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        (!word.is_empty()).then_some(word)
    }

    /// RFC 3501 `astring`: an atom (with `]`), a quoted string or a literal.
    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.rest.first()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => {
                let end = self
                    .rest
                    .iter()
                    .position(|b| !is_astring_char(*b))
                    .unwrap_or(self.rest.len());
                let (atom, rest) = self.rest.split_at(end);
                self.rest = rest;
                (!atom.is_empty()).then(|| atom.to_vec())
            }
        }
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 1;
        loop {
            match *self.rest.get(i)? {
                b'"' => break,
                b'\\' => {
                    let c = *self.rest.get(i + 1)?;
                    if c != b'"' && c != b'\\' {
                        return None;
                    }
                    out.push(c);
                    i += 2;
                }
                b'\r' | b'\n' | 0 => return None,
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        self.rest = self.rest.get(i + 1..)?;
        Some(out)
    }

    /// `{n}` or `{n+}`, CRLF, then n bytes (imap-next has received them all by now).
    fn literal(&mut self) -> Option<Vec<u8>> {
        let close = self.rest.iter().position(|b| *b == b'}')?;
        let digits = self.rest.get(1..close)?;
        let digits = digits.strip_suffix(b"+").unwrap_or(digits);
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let after = self.rest.get(close + 1..)?.strip_prefix(b"\r\n")?;
        let data = after.get(..n)?;
        if data.contains(&0) {
            return None;
        }
        self.rest = after.get(n..)?;
        Some(data.to_vec())
    }
}

/// ASTRING-CHAR: any CHAR but atom-specials, and `]`.
fn is_astring_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
}

/// `name` as an IMAP quoted string. A wire folder name is modified UTF-7, so it holds only
/// printable US-ASCII; anything else is left out rather than sent raw.
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `* MYRIGHTS "mailbox" rights` with its CRLF; `wire_name` is modified UTF-7.
pub fn myrights_line(wire_name: &str, rights: &str) -> Vec<u8> {
    format!("* MYRIGHTS {} {rights}\r\n", quoted(wire_name)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_commands_parse() {
        let cases: &[(&[u8], Result<Command, Error>)] = &[
            (
                b"a1 MYRIGHTS INBOX\r\n",
                Ok(Command::MyRights {
                    mailbox: b"INBOX".to_vec(),
                }),
            ),
            (
                b"a1 myrights \"By month/2026\"\r\n",
                Ok(Command::MyRights {
                    mailbox: b"By month/2026".to_vec(),
                }),
            ),
            (
                b"a1 GETACL \"a\\\"b\\\\c\"\r\n",
                Ok(Command::GetAcl {
                    mailbox: b"a\"b\\c".to_vec(),
                }),
            ),
            (
                b"a1 MYRIGHTS {6}\r\nIn box\r\n",
                Ok(Command::MyRights {
                    mailbox: b"In box".to_vec(),
                }),
            ),
            (
                b"a1 LISTRIGHTS {5+}\r\nINBOX anyone\r\n",
                Ok(Command::ListRights {
                    mailbox: b"INBOX".to_vec(),
                    identifier: b"anyone".to_vec(),
                }),
            ),
            (
                b"a1 SETACL INBOX fred +rw\r\n",
                Ok(Command::SetAcl {
                    mailbox: b"INBOX".to_vec(),
                }),
            ),
            (
                b"a1 DELETEACL Contacts/M&APw-ller fred\r\n",
                Ok(Command::DeleteAcl {
                    mailbox: b"Contacts/M&APw-ller".to_vec(),
                }),
            ),
            (b"a1 FROBNICATE\r\n", Err(Error::NotAcl)),
            (b"a1\r\n", Err(Error::NotAcl)),
            (b"\r\n", Err(Error::NotAcl)),
            (b"a1 MYRIGHTS\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS INBOX extra\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS \"open\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS \"bad\\escape\"\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS (INBOX)\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS {99}\r\nshort\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS {}\r\n\r\n", Err(Error::Syntax)),
            (
                b"a1 MYRIGHTS {99999999999999999999}\r\n\r\n",
                Err(Error::Syntax),
            ),
            (b"a1 LISTRIGHTS INBOX\r\n", Err(Error::Syntax)),
            (b"a1 MYRIGHTS  INBOX\r\n", Err(Error::Syntax)),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quoted("INBOX"), "\"INBOX\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            myrights_line("By month/2026", PARENT),
            b"* MYRIGHTS \"By month/2026\" l\r\n"
        );
    }

    #[test]
    fn garbage_never_panics() {
        for line in [
            &b"{"[..],
            b"a {",
            b"a MYRIGHTS {",
            b"a MYRIGHTS {5",
            b"a MYRIGHTS {5}",
            b"a MYRIGHTS {5}\r",
            b"a MYRIGHTS \"",
            b"a MYRIGHTS \"\\",
            b"a MYRIGHTS \xff\xfe",
            b" ",
            b"",
        ] {
            let _ = parse(line);
        }
    }
}
