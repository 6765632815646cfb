//! Modified UTF-7, the encoding of IMAP folder names (RFC 3501 § 5.1.3).
//!
//! Decoding is checked: a name a client sends may be anything, and a name that is not valid
//! modified UTF-7 is an error to answer, never a panic.

use std::sync::OnceLock;

use data_encoding::Encoding;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the mailbox name is not valid modified UTF-7")]
pub struct Invalid;

/// Base64 with `,` in place of `/`, no padding, and no stray bits.
fn base64() -> &'static Encoding {
    static ENCODING: OnceLock<Encoding> = OnceLock::new();
    ENCODING.get_or_init(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols
            .push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,");
        spec.check_trailing_bits = true;
        spec.encoding()
            .unwrap_or_else(|_| data_encoding::BASE64_NOPAD.clone())
    })
}

/// The name a client wrote, decoded. Characters outside printable US-ASCII that a client
/// sent raw (UTF-8, as some clients do) are kept as they are.
pub fn decode(name: &str) -> Result<String, Invalid> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-').ok_or(Invalid)?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = base64().decode(encoded.as_bytes()).map_err(|_| Invalid)?;
            if bytes.len() % 2 != 0 {
                return Err(Invalid);
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            let text = String::from_utf16(&units).map_err(|_| Invalid)?;
            // Printable US-ASCII must stand for itself (RFC 3501), so each name has one
            // spelling.
            if text.chars().any(|c| (' '..='~').contains(&c)) {
                return Err(Invalid);
            }
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A name for the wire: printable US-ASCII as it is, `&` as `&-`, anything else in
/// base64-encoded UTF-16 between `&` and `-`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut String| {
        if !pending.is_empty() {
            out.push('&');
            out.push_str(&base64().encode(pending));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                pending.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("Bob Müller", "Bob M&APw-ller"),
            ("日本語", "&ZeVnLIqe-"),
            ("Entwürfe/Grüße", "Entw&APw-rfe/Gr&APwA3w-e"),
            ("😀", "&2D3eAA-"),
            ("", ""),
        ];
        for (plain, wire) in cases {
            assert_eq!(encode(plain), wire, "encode {plain}");
            assert_eq!(decode(wire).as_deref(), Ok(plain), "decode {wire}");
        }
    }

    #[test]
    fn invalid_names_are_errors() {
        for bad in [
            "&'-", "&!-", "&A-", "&", "a&b", "&AGE-", "&2D0-", "&APw", "&AP-", "&APx-",
        ] {
            assert_eq!(decode(bad), Err(Invalid), "{bad:?}");
        }
        // Raw UTF-8 is taken as it is.
        assert_eq!(decode("Müller").as_deref(), Ok("Müller"));
    }
}
