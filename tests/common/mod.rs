//! Shared helpers of the integration tests: a DNS server, a destination
//! SMTP server, an in-process relay, the real binary as a child process,
//! an SMTP client and an HTTP client, real scanner peers (rspamd, clamd)
//! and a real PostgreSQL.
// Each test binary uses only part of the helpers.
#![allow(dead_code)]

pub mod anvil;
pub mod api;
pub mod clamd;
pub mod dns;
pub mod eas;
pub mod http;
pub mod node;
pub mod postgres;
pub mod proxy;
pub mod pyverify;
pub mod redis;
pub mod relay;
pub mod rspamd;
pub mod sink;
pub mod smtp;

use std::path::PathBuf;

/// A loopback TCP port free now (a peer started on it may still lose a
/// race for it: the harnesses retry on another).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The first of `dirs` holding the program `name`; panics naming the
/// Debian `package` that `scripts/test` installs.
pub fn binary(name: &str, dirs: &[&str], package: &str) -> PathBuf {
    for dir in dirs {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed (scripts/test installs the Debian package {package})");
}

/// The exit status of `child` once it has ended (the child is then taken
/// out): a peer that died while the harness waited for it to answer.
pub fn exited(child: &mut Option<std::process::Child>) -> Option<std::process::ExitStatus> {
    let status = child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
    *child = None;
    Some(status)
}

/// A private CA named `name` and a server certificate for 127.0.0.1 it
/// signed: (CA PEM, certificate PEM, key PEM).
pub fn test_ca(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    let issuer = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (issuer.pem(), cert.pem(), key.serialize_pem())
}
