//! Checkpoints (C2SP `tlog-checkpoint`) in signed notes (C2SP `signed-note`), Ed25519.
//!
//! A checkpoint's body is three lines: the origin, the tree size in decimal, the root hash in
//! standard base64. The note is the body, a blank line, and one line per signature:
//! `— <key name> <base64(key id || signature)>`, where the key id is the first four bytes of
//! `SHA-256(key name || 0x0A || 0x01 || public key)` and the signature is Ed25519 over the
//! body. A verifier key is written `<name>+<key id in hex>+<base64(0x01 || public key)>`.

use data_encoding::{BASE64, HEXLOWER};
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use super::Hash;

/// The algorithm byte of Ed25519 in C2SP signed notes.
const ALG_ED25519: u8 = 0x01;
/// The em dash (U+2014) and space that start every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    #[error("not a checkpoint: {0}")]
    NotCheckpoint(&'static str),
    #[error("no signature by {0} on the note")]
    NoSignature(String),
    #[error("the signature by {0} does not verify: the note was changed or signed by another key")]
    BadSignature(String),
    #[error("not a verifier key (want name+keyid+base64): {0}")]
    BadKey(&'static str),
}

/// Whether `name` may name a key: not empty, no white space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let mut id = [0u8; 4];
    id.copy_from_slice(&ctx.finish().as_ref()[..4]);
    id
}

/// A named Ed25519 signing key.
pub struct Signer {
    name: String,
    key: Ed25519KeyPair,
    id: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.verifier_key())
    }
}

impl Signer {
    /// The key of this 32-byte seed, named `name` (see [`valid_key_name`]).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKey("a key name has no spaces and no +"));
        }
        let key = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| NoteError::BadKey("not an Ed25519 seed"))?;
        let id = key_id(name, key.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+keyid+base64(0x01 || public key)`, what verifiers are given.
    pub fn verifier_key(&self) -> String {
        let mut public = vec![ALG_ED25519];
        public.extend_from_slice(self.key.public_key().as_ref());
        format!(
            "{}+{}+{}",
            self.name,
            HEXLOWER.encode(&self.id),
            BASE64.encode(&public)
        )
    }

    /// The signed note of `body` (which must end in a newline).
    pub fn sign(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!(
            "{body}\n{SIG_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(&blob)
        )
    }
}

/// A verifier key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl Verifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("three parts joined by +"));
        };
        if !valid_key_name(name) {
            return Err(NoteError::BadKey("the name"));
        }
        let id: [u8; 4] = HEXLOWER_PERMISSIVE(id)
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::BadKey("the key id is 8 hex digits"))?;
        let key = BASE64
            .decode(key.as_bytes())
            .map_err(|_| NoteError::BadKey("the key is base64"))?;
        let Some((&ALG_ED25519, public)) = key.split_first() else {
            return Err(NoteError::BadKey("only Ed25519 keys (algorithm 0x01)"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            public,
        })
    }

    /// The note's body (text before the signatures) if this key signed it.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let Some(split) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed("no blank line before the signatures"));
        };
        let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("the last line does not end"));
        }
        if body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control characters in the text"));
        }
        let mut seen = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(NoteError::Malformed(
                    "a signature line starts with an em dash",
                ));
            };
            let Some((name, sig)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed(
                    "a signature line has a name and a signature",
                ));
            };
            let Ok(sig) = BASE64.decode(sig.as_bytes()) else {
                return Err(NoteError::Malformed("a signature is base64"));
            };
            if name != self.name || sig.len() < 4 || sig[..4] != self.id {
                continue;
            }
            seen = true;
            let key = signature::UnparsedPublicKey::new(&signature::ED25519, &self.public);
            if key.verify(body.as_bytes(), &sig[4..]).is_ok() {
                return Ok(body);
            }
        }
        Err(if seen {
            NoteError::BadSignature(self.name.clone())
        } else {
            NoteError::NoSignature(self.name.clone())
        })
    }
}

#[allow(non_snake_case)]
fn HEXLOWER_PERMISSIVE(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
}

/// A checkpoint: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: origin, size, base64 root, each on its line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(&self.root)
        )
    }

    /// Reads a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::NotCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(NoteError::NotCheckpoint("the second line is the tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| BASE64.decode(r.as_bytes()).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::NotCheckpoint(
                "the third line is a base64 SHA-256 root",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// A signed checkpoint note's checkpoint, if `verifier` signed it and the key's name is
    /// its origin.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Self, NoteError> {
        let checkpoint = Self::parse(verifier.open(note)?)?;
        if checkpoint.origin != verifier.name {
            return Err(NoteError::NotCheckpoint(
                "its origin is not the name of the key that signed it",
            ));
        }
        Ok(checkpoint)
    }

    /// Reads a signed checkpoint note without checking its signature (the gateway reading
    /// its own file).
    pub fn parse_note(note: &str) -> Result<Self, NoteError> {
        match note.rfind("\n\n") {
            Some(split) => Self::parse(&note[..split + 1]),
            None => Err(NoteError::Malformed("no blank line before the signatures")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_seed("mx.example/mailjournal/1795248000", &[7; 32]).expect("signer")
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key_only() {
        let s = signer();
        let c = Checkpoint {
            origin: s.name().to_owned(),
            size: 42,
            root: [3; 32],
        };
        let note = s.sign(&c.body());
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "mx.example/mailjournal/1795248000");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} mx.example/mailjournal/1795248000 "));
        let v = Verifier::parse(&s.verifier_key()).expect("verifier key");
        assert_eq!(Checkpoint::open(&note, &v), Ok(c.clone()));
        assert_eq!(Checkpoint::parse_note(&note), Ok(c));
        // One changed character of the body or the signature.
        let changed = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            Checkpoint::open(&changed, &v),
            Err(NoteError::BadSignature(_))
        ));
        let other = Signer::from_seed(s.name(), &[8; 32]).expect("other");
        let v2 = Verifier::parse(&other.verifier_key()).expect("v2");
        assert!(matches!(
            Checkpoint::open(&note, &v2),
            Err(NoteError::NoSignature(_))
        ));
    }

    #[test]
    fn verifier_keys_are_checked() {
        let key = signer().verifier_key();
        let parts: Vec<&str> = key.split('+').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].len(), 8);
        assert!(Verifier::parse(&key.replacen(parts[1], "00000000", 1)).is_err());
        assert!(Verifier::parse("name+1234").is_err());
        assert!(Signer::from_seed("with space", &[1; 32]).is_err());
    }

    /// The key id of C2SP's example in signed-note.md (PeterNeumann's key).
    #[test]
    fn the_key_id_is_computed_as_c2sp_says() {
        let v =
            Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .expect("the example verifier key parses (and its key id matches)");
        assert_eq!(v.name, "PeterNeumann");
    }

    /// The README's example, signed by another implementation (Python's cryptography).
    #[test]
    fn a_checkpoint_signed_elsewhere_opens() {
        let key = "journal.contoso.com/mailjournal/1796319387+5d41263d+AYf+Jhv8IBrEGWpaT3gHrRonBPWCrV6qPiqWWkdES65O";
        let note = "journal.contoso.com/mailjournal/1796319387\n5\nH997ZRkHqJOGX98YZs8lHWDVJ9+voQpmNRT0+e40qyI=\n\n\u{2014} journal.contoso.com/mailjournal/1796319387 XUEmPcoHi8Mn4CM8Tt4Y4oNkpdNz9V2Bs0FvFBEOxO6j7lFjLHXT5xbKIU/v7Tf24EivT9txeeWLAkFsxgqqXRes8Ak=\n";
        let v = Verifier::parse(key).expect("verifier key");
        let c = Checkpoint::open(note, &v).expect("opens");
        assert_eq!(c.size, 5);
        assert_eq!(c.origin, "journal.contoso.com/mailjournal/1796319387");
    }
}
