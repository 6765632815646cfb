//! TLS for the listeners: rustls with the ring provider only, TLS 1.2 and 1.3. Certificates
//! come from PEM files, or are generated self-signed into the data directory on first start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A loaded certificate: the server configuration and the leaf's SHA-256 fingerprint.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub fingerprint: String,
    /// Where the certificate came from (for logs and `validate`).
    pub source: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("source", &self.source)
            .finish()
    }
}

/// The ring provider: the only one this project builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the configured certificate, or the self-signed one in `data_dir/tls/` (generating
/// it for `hostname` if it does not exist yet).
pub fn load(settings: &TlsSettings, data_dir: &Path, hostname: &str) -> Result<Tls, Error> {
    let (cert, key) = match settings {
        TlsSettings::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSettings::SelfSigned => {
            let dir = data_dir.join("tls");
            let cert = dir.join("self-signed-cert.pem");
            let key = dir.join("self-signed-key.pem");
            if !cert.exists() || !key.exists() {
                generate(&dir, &cert, &key, hostname)?;
            }
            (cert, key)
        }
    };
    check_permissions(&cert, &key)?;
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls_pki_types::pem::Error| Error::File {
            path,
            reason: e.to_string(),
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(file_error(&cert))?
        .collect::<Result<_, _>>()
        .map_err(file_error(&cert))?;
    if chain.is_empty() {
        return Err(Error::File {
            path: cert,
            reason: "no certificate in it".into(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(&key).map_err(file_error(&key))?;
    let fingerprint = fingerprint(&chain[0]);
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)?;
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
        source: cert.display().to_string(),
    })
}

/// Refuses a private key that every local user may read or write, or that its group may
/// change, and a certificate that anyone but its owner may change (someone could put their
/// own in its place), as OpenSSH refuses an unprotected host key. A group-readable key
/// (`root:mailjournal 0640`) is fine. A missing file is left to the reader's error.
fn check_permissions(cert: &Path, key: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    };
    let refuse = |path: &Path, mode: u32, what: &str, fix: &str| Error::File {
        path: path.to_path_buf(),
        reason: format!("{what} (mode {mode:04o}); {fix}"),
    };
    if let Some(m) = mode(key) {
        if m & 0o007 != 0 {
            return Err(refuse(
                key,
                m,
                "the private key is open to every local user",
                "make it owner-only: chmod 600 (or 640 with the gateway's group)",
            ));
        }
        if m & 0o020 != 0 {
            return Err(refuse(
                key,
                m,
                "the private key may be changed by its group",
                "chmod g-w",
            ));
        }
    }
    if let Some(m) = mode(cert).filter(|m| m & 0o022 != 0) {
        return Err(refuse(
            cert,
            m,
            "the certificate may be changed by others than its owner",
            "chmod go-w",
        ));
    }
    Ok(())
}

/// Generates a self-signed certificate for `hostname` (and localhost, 127.0.0.1, ::1).
fn generate(dir: &Path, cert: &Path, key: &Path, hostname: &str) -> Result<(), Error> {
    let mut names = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let generated = self_signed(hostname, names, jiff::Timestamp::now())
        .map_err(|e| Error::Generate(e.to_string()))?;
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| Error::File {
            path,
            reason: e.to_string(),
        }
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes()).map_err(io_error(key))?;
    write_private(cert, generated.cert.pem().as_bytes()).map_err(io_error(cert))?;
    tracing::warn!(
        cert = %cert.display(),
        "no TLS certificate configured: generated a self-signed one (set tls.cert and tls.key for production)"
    );
    Ok(())
}

/// The self-signed certificate: named after `hostname` (common name and first subject
/// alternative name), valid from a day before `now` (clocks differ) for two years.
fn self_signed(
    hostname: &str,
    names: Vec<String>,
    now: jiff::Timestamp,
) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    dn.push(rcgen::DnType::OrganizationName, "mailjournal (self-signed)");
    params.distinguished_name = dn;
    let day = |t: jiff::Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let one_day = jiff::SignedDuration::from_hours(24);
    params.not_before = day(now.saturating_sub(one_day).unwrap_or(now));
    params.not_after = day(now.saturating_add(one_day * 730).unwrap_or(now));
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// SHA-256 of a certificate, as colon-separated upper-case hex (as browsers show it).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load(&TlsSettings::SelfSigned, dir.path(), "mx.test").expect("generate");
        let b = load(&TlsSettings::SelfSigned, dir.path(), "mx.test").expect("reload");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let key = dir.path().join("tls/self-signed-key.pem");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the private key is private");
    }

    #[test]
    fn the_self_signed_certificate_names_the_host_and_lasts_two_years() {
        let now: jiff::Timestamp = "2026-12-03T11:00:00Z".parse().expect("time");
        let names = vec!["mx.test".to_owned(), "localhost".to_owned()];
        let generated = self_signed("mx.test", names, now).expect("generate");
        let der = generated.cert.der().to_vec();
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"mx.test"));
        assert!(!has(b"rcgen self signed cert"));
        // Validity as UTCTime: from 2026-12-02 to 2028-12-02 (730 days later).
        assert!(has(b"261202000000Z"), "not before");
        assert!(has(b"281202000000Z"), "not after");
        assert!(!has(b"750101000000Z"));
    }

    #[test]
    fn keys_open_to_others_and_certificates_others_may_change_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        load(&TlsSettings::SelfSigned, dir.path(), "mx.test").expect("generate");
        let cert = dir.path().join("tls/self-signed-cert.pem");
        let key = dir.path().join("tls/self-signed-key.pem");
        let settings = TlsSettings::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let chmod = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        for (key_mode, cert_mode, refused) in [
            (0o600, 0o644, None),
            (0o640, 0o644, None),
            (0o400, 0o444, None),
            (
                0o644,
                0o644,
                Some("the private key is open to every local user (mode 0644)"),
            ),
            (0o604, 0o644, Some("open to every local user")),
            (0o660, 0o644, Some("may be changed by its group")),
            (0o600, 0o664, Some("the certificate may be changed")),
            (0o600, 0o646, Some("the certificate may be changed")),
        ] {
            chmod(&key, key_mode);
            chmod(&cert, cert_mode);
            match (load(&settings, dir.path(), "mx.test"), refused) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
                (Ok(_), Some(want)) => panic!("{key_mode:o}/{cert_mode:o}: want {want}"),
                (Err(e), None) => panic!("{key_mode:o}/{cert_mode:o}: {e}"),
            }
        }
    }

    #[test]
    fn missing_or_bad_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let settings = TlsSettings::Files {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        };
        let e = load(&settings, dir.path(), "x").expect_err("bad");
        assert!(
            e.to_string().starts_with(&cert.display().to_string()),
            "{e}"
        );
    }
}
