//! TLS material: the server certificate for inbound STARTTLS (loaded from
//! the config, or self-signed and kept in data_dir/tls/ on first start) and
//! the client configurations for outbound TLS: opportunistic (any
//! certificate) and verified (system roots plus an optional CA file).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS {what} {path}: {reason}")]
    Load {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write generated TLS material to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS certificate and key do not fit together: {0}")]
    Config(#[from] rustls::Error),
    #[error(
        "outbound.tls = \"verified\" but no trusted root certificate was found (system roots: {0}); install the system's CA certificates or set outbound.tls_ca_file"
    )]
    NoRoots(String),
}

/// The one crypto provider of the process (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads the configured certificate, or the self-signed one in
/// `data_dir/tls/`, generating it on first start.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    hostname: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        _ => {
            let dir = data_dir.join("tls");
            let paths = (dir.join("cert.pem"), dir.join("key.pem"));
            if !paths.0.exists() || !paths.1.exists() {
                generate_self_signed(&paths.0, &paths.1, hostname)?;
            }
            (paths.0, paths.1, true)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Load {
            what: "certificate",
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Load {
            what: "certificate",
            path: cert_path,
            reason: "no PEM certificate in the file".into(),
        });
    }
    let key_error = |reason: String| TlsError::Load {
        what: "key",
        path: key_path.clone(),
        reason,
    };
    let pem = if generated {
        crate::files::read_own_secret(&key_path)
    } else {
        crate::files::read_secret(&key_path)
    }
    .map_err(|e| key_error(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| key_error(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn generate_self_signed(cert_path: &Path, key_path: &Path, hostname: &str) -> Result<(), TlsError> {
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    // Replaced, not written through: one of the two may exist (or be a
    // symlink someone planted), and the pair must match.
    replace_file(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    replace_file(cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Creates a new secret file readable by its owner only (0600); fails when
/// anything, a symlink included, is at `path` already (never followed).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    crate::files::write_new(path, data, 0o600).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn replace_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    crate::files::replace_file(path, data, mode).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Client config for outbound STARTTLS. Certificates are not verified: this
/// is opportunistic TLS (RFC 7435), as MTAs do without MTA-STS or DANE; it
/// still defeats passive eavesdropping. Handshake signatures are checked.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Client config for outbound STARTTLS that verifies the server's
/// certificate (chain to a trusted root, validity, and the host name given
/// at connect time). Trusted: the system's roots and the certificates in
/// `ca_file`. Fails when there is no root at all, since nothing could then
/// be delivered.
pub fn verifying_client_config(
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot read some of the system's root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use");
    }
    let system = format!("{added} loaded, {} errors", native.errors.len());
    if let Some(path) = ca_file {
        let load = |reason: String| TlsError::Load {
            what: "CA file (outbound.tls_ca_file)",
            path: path.to_path_buf(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| load(e.to_string()))?;
        if certs.is_empty() {
            return Err(load("no PEM certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| load(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots(system));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Largest private CA file read: a few certificates, not a data dump.
const MAX_CA_BYTES: u64 = 1024 * 1024;

/// A private CA file (`redis_ca_file`, `cluster.ca_file`): its PEM and
/// the certificates in it, at least one and nothing unparsable; Err says
/// why not (the caller names the file and the key).
pub(crate) fn read_ca_file(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_CA_BYTES {
        return Err(format!("larger than {MAX_CA_BYTES} bytes"));
    }
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok((pem, certs))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_with_private_key_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        server_config(None, None, dir.path(), "relay.test").unwrap();
        let key = dir.path().join("tls/key.pem");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&key).unwrap();
        server_config(None, None, dir.path(), "relay.test").unwrap();
        assert_eq!(before, std::fs::read(&key).unwrap(), "key must be reused");
    }

    #[test]
    fn missing_cert_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = server_config(
            Some(&dir.path().join("nope.pem")),
            Some(&dir.path().join("nokey.pem")),
            dir.path(),
            "relay.test",
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
