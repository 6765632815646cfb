//! Signed, expiring links to one message, for embedding in a CRM record: whoever holds the
//! link may read that message (and its metadata) until it expires, without an account.
//!
//! A token is `base64url(expires_at as 8 big-endian bytes || HMAC-SHA256 tag)`, the tag taken
//! over the message's stable id and the expiry under a key kept in `DATA_DIR/link-key` (32
//! random bytes, owner-only, made on first use). Nothing about issued links is stored: a
//! token is checked by recomputing its tag. Replacing the key file revokes every link.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use data_encoding::BASE64URL_NOPAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::archive::StableId;

/// The key's file name in the data directory.
pub const KEY_FILE: &str = "link-key";

/// The link key's length in bytes.
pub const KEY_LEN: usize = 32;
const EXPIRY_LEN: usize = 8;
const TAG_LEN: usize = 32;
/// Separates link tags from any other use the key might get one day.
const CONTEXT: &[u8] = b"mailjournal/link/v1\0";

/// Why the link key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: a link key is {KEY_LEN} bytes, this file has {len}")]
    Length { path: PathBuf, len: u64 },
    #[error("the system's random number generator failed")]
    Random,
}

/// Why a token does not open a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Genuine, for this message, but past its expiry.
    #[error("this link has expired")]
    Expired,
    /// Malformed, tampered with, made with another key, or made for another message.
    #[error("this link is not valid")]
    Invalid,
}

/// The key links are signed with.
#[derive(Clone)]
pub struct Tokens {
    key: hmac::Key,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

impl Tokens {
    /// The key of the archive in `data_dir`, made (and made durable) if there is none yet.
    /// Safe against a concurrent first use by another process: both end up with one key.
    pub fn load(data_dir: &Path) -> Result<Self, KeyError> {
        let path = data_dir.join(KEY_FILE);
        match read_key(&path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other.map(|k| Self::from_key(&k)),
        }
        create_key(data_dir, &path)?;
        read_key(&path).map(|k| Self::from_key(&k))
    }

    /// A key given by the caller (tests).
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A token opening message `id` until `expires_at` (Unix seconds, exclusive).
    pub fn issue(&self, id: &StableId, expires_at: i64) -> String {
        let expiry = expires_at.to_be_bytes();
        let tag = hmac::sign(&self.key, &signed(id, &expiry));
        let mut token = Vec::with_capacity(EXPIRY_LEN + TAG_LEN);
        token.extend_from_slice(&expiry);
        token.extend_from_slice(tag.as_ref());
        BASE64URL_NOPAD.encode(&token)
    }

    /// Whether `token` opens message `id` at `now` (Unix seconds). The tag is checked first
    /// (in constant time), so only a genuine token can learn that it expired.
    pub fn verify(&self, id: &StableId, token: &str, now: i64) -> Result<(), TokenError> {
        // A well-formed token has one length; refuse anything else before decoding it.
        if token.len() != BASE64URL_NOPAD.encode_len(EXPIRY_LEN + TAG_LEN) {
            return Err(TokenError::Invalid);
        }
        let bytes = BASE64URL_NOPAD
            .decode(token.as_bytes())
            .map_err(|_| TokenError::Invalid)?;
        let (expiry, tag) = bytes.split_at(EXPIRY_LEN);
        let expiry: [u8; EXPIRY_LEN] = expiry.try_into().map_err(|_| TokenError::Invalid)?;
        hmac::verify(&self.key, &signed(id, &expiry), tag).map_err(|_| TokenError::Invalid)?;
        if now >= i64::from_be_bytes(expiry) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The permalink that carries a token: `{base_url}/m/{id}?token=…`.
pub fn link(base_url: &str, id: &StableId, token: &str) -> String {
    format!("{}/m/{id}?token={token}", base_url.trim_end_matches('/'))
}

fn signed(id: &StableId, expiry: &[u8; EXPIRY_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + id.as_str().len() + 1 + EXPIRY_LEN);
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(id.as_str().as_bytes());
    message.push(0);
    message.extend_from_slice(expiry);
    message
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |source| KeyError::Io { path, source }
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    if meta.len() != KEY_LEN as u64 {
        return Err(KeyError::Length {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the link key is readable by others: chmod 600 it");
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(io_error(path))?;
    Ok(key)
}

/// Writes a new key to a temporary file, makes it durable, and links it into place unless
/// another process got there first (a hard link never replaces an existing file, so a key
/// that may already have signed links is never overwritten).
fn create_key(data_dir: &Path, path: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
    let rng = SystemRandom::new();
    let mut key = [0u8; KEY_LEN];
    rng.fill(&mut key).map_err(|_| KeyError::Random)?;
    let mut suffix = [0u8; 8];
    rng.fill(&mut suffix).map_err(|_| KeyError::Random)?;
    let tmp = data_dir.join(format!(
        ".{KEY_FILE}.{}.tmp",
        data_encoding::HEXLOWER.encode(&suffix)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&key)?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::File::open(data_dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&tmp);
    written.map_err(io_error(path))?;
    tracing::info!(path = %path.display(), "made a new key for signed links");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> StableId {
        StableId::from_message_id(&format!("{n}@test"), b"body")
    }

    #[test]
    fn only_a_genuine_unexpired_token_for_the_same_message_verifies() {
        let tokens = Tokens::from_key(&[7; KEY_LEN]);
        let token = tokens.issue(&id(1), 1000);
        assert_eq!(token.len(), 54);
        assert_eq!(tokens.verify(&id(1), &token, 999), Ok(()));
        assert_eq!(
            tokens.verify(&id(1), &token, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(tokens.verify(&id(2), &token, 999), Err(TokenError::Invalid));
        let other_key = Tokens::from_key(&[8; KEY_LEN]);
        assert_eq!(
            other_key.verify(&id(1), &token, 999),
            Err(TokenError::Invalid)
        );
        // A later expiry with the old tag: the expiry is signed.
        let mut bytes = BASE64URL_NOPAD.decode(token.as_bytes()).expect("decodes");
        bytes[..8].copy_from_slice(&5000i64.to_be_bytes());
        let extended = BASE64URL_NOPAD.encode(&bytes);
        assert_eq!(
            tokens.verify(&id(1), &extended, 999),
            Err(TokenError::Invalid)
        );
        for bad in ["", "x", &token[1..], &format!("{token}A"), "!!!!"] {
            assert_eq!(tokens.verify(&id(1), bad, 0), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let a = Tokens::load(&data).expect("made");
        let b = Tokens::load(&data).expect("loaded");
        let token = a.issue(&id(1), 10);
        assert_eq!(b.verify(&id(1), &token, 0), Ok(()));
        let meta = std::fs::metadata(data.join(KEY_FILE)).expect("key file");
        assert_eq!(meta.len(), 32);
        assert_eq!(meta.mode() & 0o777, 0o600);
        let leftovers = std::fs::read_dir(&data).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");

        std::fs::write(data.join(KEY_FILE), b"short").expect("write");
        assert!(matches!(
            Tokens::load(&data),
            Err(KeyError::Length { len: 5, .. })
        ));
    }

    #[test]
    fn links() {
        assert_eq!(
            link("https://journal.contoso.com/", &id(1), "TOKEN"),
            format!("https://journal.contoso.com/m/{}?token=TOKEN", id(1))
        );
    }
}
