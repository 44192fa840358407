//! DKIM signing keys: load the configured PEM files (PKCS#8, or PKCS#1 for
//! RSA), or generate an Ed25519 and an RSA-2048 key into data_dir/dkim/ on
//! first start; and the DNS TXT record to publish for each key.

use crate::config::{Config, KeyAlgorithm};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::fmt;
use std::path::{Path, PathBuf};

/// Selector of the Ed25519 key generated when `dkim.keys` is empty.
pub const DEFAULT_ED25519_SELECTOR: &str = "eas-ed25519";
/// Selector of the RSA key generated when `dkim.keys` is empty.
pub const DEFAULT_RSA_SELECTOR: &str = "eas-rsa";
/// Smallest RSA key accepted (RFC 8301 forbids less than 1024 bits; the
/// crypto library signs with 2048 bits and more).
const MIN_RSA_BITS: usize = 2048;

/// Why a key cannot be used; names the file and the config key behind it.
#[derive(Debug, thiserror::Error)]
pub enum DkimKeyError {
    #[error("cannot read DKIM key file {path} (config key `{key}`): {source}")]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DKIM key file {path} (config key `{key}`) is not usable: {reason}")]
    Invalid {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot generate a DKIM key into {path}: {reason}")]
    Generate { path: PathBuf, reason: String },
    #[error("DKIM key file {0} already exists; not overwriting it")]
    Exists(PathBuf),
}

/// A private key with its public half, checked to be usable for signing.
pub struct KeyPair {
    algorithm: KeyAlgorithm,
    private: PrivateKeyDer<'static>,
    /// Ed25519: the raw 32-byte key (RFC 8463); RSA: SubjectPublicKeyInfo DER.
    public: Vec<u8>,
    bits: usize,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Parses a PEM private key and checks it is of `algorithm`.
    pub fn from_pem(pem: &[u8], algorithm: KeyAlgorithm) -> Result<KeyPair, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no private key in the file (expected \
                 PEM \"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\")"
                .to_string(),
            e => format!("not a PEM private key: {e}"),
        })?;
        let pair = KeyPair::from_der(der)?;
        if pair.algorithm != algorithm {
            return Err(format!(
                "it is {} key, but the configured algorithm is \"{}\"",
                describe(pair.algorithm),
                name(algorithm)
            ));
        }
        Ok(pair)
    }

    fn from_der(der: PrivateKeyDer<'static>) -> Result<KeyPair, String> {
        let (algorithm, public, bits) = match &der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der();
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8(bytes) {
                    (
                        KeyAlgorithm::Ed25519,
                        pair.public_key().as_ref().to_vec(),
                        256,
                    )
                } else {
                    let pair = RsaKeyPair::from_pkcs8(bytes)
                        .map_err(|e| format!("not an Ed25519 or RSA PKCS#8 private key ({e})"))?;
                    rsa_public(&pair)?
                }
            }
            PrivateKeyDer::Pkcs1(pkcs1) => {
                let pair = RsaKeyPair::from_der(pkcs1.secret_pkcs1_der())
                    .map_err(|e| format!("not a valid PKCS#1 RSA private key ({e})"))?;
                rsa_public(&pair)?
            }
            PrivateKeyDer::Sec1(_) => {
                return Err("an EC (SEC1) key: DKIM needs Ed25519 or RSA".into());
            }
            _ => return Err("unsupported private key format".into()),
        };
        let pair = KeyPair {
            algorithm,
            private: der,
            public,
            bits,
        };
        // mail-auth parses the key again when signing: make sure it can.
        pair.signing_key()?;
        Ok(pair)
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Ed25519: the raw 32-byte public key; RSA: SubjectPublicKeyInfo DER.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Size of the key in bits (256 for Ed25519).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// A signing key for mail-auth (each signer owns one).
    pub fn signing_key(&self) -> Result<DkimKey, String> {
        match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                let PrivateKeyDer::Pkcs8(der) = &self.private else {
                    return Err("an Ed25519 key must be PKCS#8".into());
                };
                Ed25519Key::from_pkcs8_der(der.secret_pkcs8_der())
                    .map(DkimKey::Ed25519)
                    .map_err(|e| e.to_string())
            }
            KeyAlgorithm::Rsa => RsaKey::<Sha256>::from_key_der(self.private.clone_key())
                .map(DkimKey::Rsa)
                .map_err(|e| e.to_string()),
        }
    }
}

fn rsa_public(pair: &RsaKeyPair) -> Result<(KeyAlgorithm, Vec<u8>, usize), String> {
    let bits = pair.public_modulus_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits; at least {MIN_RSA_BITS} are needed"
        ));
    }
    let spki: PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(|_| "cannot encode the RSA public key".to_string())?;
    Ok((KeyAlgorithm::Rsa, spki.as_ref().to_vec(), bits))
}

fn name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::Rsa => "rsa",
    }
}

fn describe(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Ed25519 => "an Ed25519",
        KeyAlgorithm::Rsa => "an RSA",
    }
}

/// A key with the selector it is published under.
#[derive(Debug)]
pub struct SelectorKey {
    pub selector: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    pub pair: KeyPair,
    /// Signs DKIM (false: only seals ARC).
    pub dkim: bool,
}

/// The keys the relay signs with: `dkim.keys`, or when none are configured,
/// `data_dir/dkim/eas-ed25519.pem` and `data_dir/dkim/eas-rsa.pem`, generated
/// (0600) when missing and reused afterwards.
pub fn load(config: &Config) -> Result<Vec<SelectorKey>, DkimKeyError> {
    if config.dkim.keys.is_empty() {
        let dir = config.data_dir.join("dkim");
        return [
            (DEFAULT_ED25519_SELECTOR, KeyAlgorithm::Ed25519),
            (DEFAULT_RSA_SELECTOR, KeyAlgorithm::Rsa),
        ]
        .into_iter()
        .map(|(selector, algorithm)| {
            let path = dir.join(format!("{selector}.pem"));
            let pair = if path.exists() {
                // The relay's own: made 0600 if an older version left it wider.
                crate::files::restrict_own_file(&path).map_err(|source| DkimKeyError::Read {
                    key: "dkim.keys (empty: generated keys)".into(),
                    path: path.clone(),
                    source,
                })?;
                load_file(&path, algorithm, "dkim.keys (empty: generated keys)")?
            } else {
                let pair = generate(algorithm, &path)?;
                tracing::info!(
                    selector,
                    path = %path.display(),
                    "generated a DKIM key; publish its record (eas-relay dns records)"
                );
                pair
            };
            Ok(SelectorKey {
                selector: selector.to_string(),
                path,
                pair,
                dkim: true,
            })
        })
        .collect();
    }
    config
        .dkim
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let pair = load_file(&key.key, key.algorithm, &format!("dkim.keys[{i}].key"))?;
            Ok(SelectorKey {
                selector: key.selector.clone(),
                path: key.key.clone(),
                pair,
                dkim: key.dkim,
            })
        })
        .collect()
}

fn load_file(
    path: &Path,
    algorithm: KeyAlgorithm,
    config_key: &str,
) -> Result<KeyPair, DkimKeyError> {
    let pem = crate::files::read_secret(path).map_err(|source| DkimKeyError::Read {
        key: config_key.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    KeyPair::from_pem(&pem, algorithm).map_err(|reason| DkimKeyError::Invalid {
        key: config_key.to_string(),
        path: path.to_path_buf(),
        reason,
    })
}

/// Generates a key (Ed25519, or RSA-2048) and writes it as a PKCS#8 PEM file
/// readable by its owner only. Refuses to overwrite an existing file.
pub fn generate(algorithm: KeyAlgorithm, path: &Path) -> Result<KeyPair, DkimKeyError> {
    if path.exists() {
        return Err(DkimKeyError::Exists(path.to_path_buf()));
    }
    let fail = |reason: String| DkimKeyError::Generate {
        path: path.to_path_buf(),
        reason,
    };
    let pkcs8: Vec<u8> = match algorithm {
        KeyAlgorithm::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(|e| fail(e.to_string()))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|e| fail(e.to_string()))?;
            der.as_ref().to_vec()
        }
        KeyAlgorithm::Rsa => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| fail(e.to_string()))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|e| fail(e.to_string()))?;
            der.as_ref().to_vec()
        }
    };
    let pem = pem_encode("PRIVATE KEY", &pkcs8);
    let pair = KeyPair::from_pem(pem.as_bytes(), algorithm).map_err(fail)?;
    // Written under a fresh random name, then linked into place: a crash
    // never leaves a truncated key behind that the next start would choke
    // on, and nothing planted at the path or at a guessable temporary name
    // is followed or overwritten.
    crate::files::write_secret_new(path, pem.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DkimKeyError::Exists(path.to_path_buf())
        } else {
            fail(e.to_string())
        }
    })?;
    Ok(pair)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The TXT record value to publish at `<selector>._domainkey.<domain>`:
/// `v=DKIM1; k=ed25519; p=<raw key, base64>` (RFC 8463) or
/// `v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo, base64>` (RFC 6376).
pub fn txt_record(key: &KeyPair) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        name(key.algorithm),
        BASE64.encode(&key.public)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DkimKeyConfig;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path) -> Config {
        Config {
            hostname: "relay.test".into(),
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[test]
    fn generates_default_keys_once_0600_and_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let first = load(&config).unwrap();
        let selectors: Vec<_> = first.iter().map(|k| k.selector.as_str()).collect();
        assert_eq!(selectors, ["eas-ed25519", "eas-rsa"]);
        assert_eq!(first[0].pair.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(first[1].pair.algorithm(), KeyAlgorithm::Rsa);
        assert_eq!(first[1].pair.bits(), 2048);
        for key in &first {
            let mode = std::fs::metadata(&key.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.path.display());
            assert!(key.path.starts_with(dir.path().join("dkim")));
        }
        let again = load(&config).unwrap();
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(
                a.pair.public_key(),
                b.pair.public_key(),
                "key was regenerated"
            );
        }
    }

    #[test]
    fn txt_record_formats() {
        let dir = tempfile::tempdir().unwrap();
        let ed = generate(KeyAlgorithm::Ed25519, &dir.path().join("ed.pem")).unwrap();
        let record = txt_record(&ed);
        let p = record.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
        assert_eq!(BASE64.decode(p).unwrap().len(), 32);

        let rsa = generate(KeyAlgorithm::Rsa, &dir.path().join("rsa.pem")).unwrap();
        let record = txt_record(&rsa);
        let p = record.strip_prefix("v=DKIM1; k=rsa; p=").unwrap();
        let spki = BASE64.decode(p).unwrap();
        // SubjectPublicKeyInfo of rsaEncryption: SEQUENCE { SEQUENCE { OID
        // 1.2.840.113549.1.1.1, NULL }, BIT STRING }, 294 bytes for 2048 bits.
        assert_eq!(spki.len(), 294);
        assert_eq!(
            &spki[4..19],
            &[
                0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
                0x00
            ]
        );
        // The record parses as a DKIM key record for mail-auth too.
        use mail_auth::common::parse::TxtRecordParser;
        mail_auth::common::verify::DomainKey::parse(record.as_bytes()).unwrap();
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate(KeyAlgorithm::Ed25519, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            generate(KeyAlgorithm::Ed25519, &path),
            Err(DkimKeyError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn loads_configured_pkcs8_and_pkcs1_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ed_path = dir.path().join("ed.pem");
        let ed = generate(KeyAlgorithm::Ed25519, &ed_path).unwrap();
        // PKCS#1 ("BEGIN RSA PRIVATE KEY"), as `openssl genrsa -traditional` writes.
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs1 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa)
            .map(|pkcs8| pkcs8_to_pkcs1(pkcs8.as_ref()))
            .unwrap();
        let rsa_path = dir.path().join("rsa1.pem");
        crate::tls::write_private(&rsa_path, pem_encode("RSA PRIVATE KEY", &pkcs1).as_bytes())
            .unwrap();

        let mut config = config(dir.path());
        config.dkim.keys = vec![
            DkimKeyConfig {
                selector: "ed".into(),
                algorithm: KeyAlgorithm::Ed25519,
                key: ed_path,
                dkim: true,
            },
            DkimKeyConfig {
                selector: "rsa".into(),
                algorithm: KeyAlgorithm::Rsa,
                key: rsa_path,
                dkim: true,
            },
        ];
        let keys = load(&config).unwrap();
        assert_eq!(keys[0].selector, "ed");
        assert_eq!(keys[0].pair.public_key(), ed.public_key());
        assert_eq!(keys[1].pair.algorithm(), KeyAlgorithm::Rsa);
        assert_eq!(
            keys[1].pair.public_key(),
            rsa.public_key().as_der().unwrap().as_ref()
        );
        // Nothing was generated next to them.
        assert!(!dir.path().join("dkim").exists());
    }

    /// Extracts the RSAPrivateKey (PKCS#1) from a PKCS#8 PrivateKeyInfo:
    /// SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { RSAPrivateKey } }.
    fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Vec<u8> {
        fn header(b: &[u8]) -> (usize, usize) {
            // (header length, content length) of the DER element at b[0].
            if b[1] & 0x80 == 0 {
                (2, b[1] as usize)
            } else {
                let n = (b[1] & 0x7f) as usize;
                let len = b[2..2 + n].iter().fold(0, |a, &x| (a << 8) | x as usize);
                (2 + n, len)
            }
        }
        let (h, _) = header(pkcs8);
        let mut pos = h;
        for _ in 0..2 {
            let (h, len) = header(&pkcs8[pos..]);
            pos += h + len;
        }
        assert_eq!(pkcs8[pos], 0x04, "OCTET STRING");
        let (h, len) = header(&pkcs8[pos..]);
        pkcs8[pos + h..pos + h + len].to_vec()
    }

    #[test]
    fn errors_name_the_file_and_the_config_key() {
        let dir = tempfile::tempdir().unwrap();
        let ed_path = dir.path().join("ed.pem");
        generate(KeyAlgorithm::Ed25519, &ed_path).unwrap();
        let garbage = dir.path().join("garbage.pem");
        crate::tls::write_private(&garbage, b"hello\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let open = dir.path().join("open.pem");
        std::fs::copy(&ed_path, &open).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        }

        let cases = [
            (
                open.clone(),
                KeyAlgorithm::Ed25519,
                "cannot read DKIM key file",
                "mode 0644",
            ),
            (
                missing.clone(),
                KeyAlgorithm::Rsa,
                "cannot read DKIM key file",
                "No such file",
            ),
            (
                garbage.clone(),
                KeyAlgorithm::Rsa,
                "is not usable",
                "no private key in the file",
            ),
            (
                ed_path.clone(),
                KeyAlgorithm::Rsa,
                "is not usable",
                "it is an Ed25519 key, but the configured algorithm is \"rsa\"",
            ),
        ];
        for (path, algorithm, what, why) in cases {
            let mut config = config(dir.path());
            config.dkim.keys = vec![
                DkimKeyConfig {
                    selector: "ok".into(),
                    algorithm: KeyAlgorithm::Ed25519,
                    key: ed_path.clone(),
                    dkim: true,
                },
                DkimKeyConfig {
                    selector: "bad".into(),
                    algorithm,
                    key: path.clone(),
                    dkim: true,
                },
            ];
            let err = load(&config).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
            assert!(err.contains(why), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains("`dkim.keys[1].key`"), "{err}");
        }
    }
}
