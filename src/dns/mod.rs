//! The DNS resolver every lookup of the relay goes through (MX and host
//! addresses for delivery; SPF, DKIM, DMARC and ARC records for the inbound
//! verdicts; the records of the zone check): the servers of
//! `outbound.nameservers`, or the system's configuration when there are
//! none. The only module that builds a resolver; `query.rs` holds the
//! record lookups of the zone check.

mod query;

pub(crate) use query::{
    Answer, MxSet, canonical, lookup_a, lookup_addresses, lookup_mx, lookup_ptr, lookup_txt,
    without_hosts_file,
};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::SocketAddr;
use std::time::Duration;

/// Shortest time a "no such record" answer is cached.
const NEGATIVE_MIN_TTL: Duration = Duration::from_secs(10);

/// The TLS settings handed to hickory, which builds them even for plain
/// DNS: its default loads the system's roots through
/// rustls-platform-verifier and fails when there are none, which stopped
/// the relay from starting on a machine without CA certificates. Lookups
/// here are UDP and TCP only; were TLS ever used, an empty root store
/// trusts nothing.
fn unused_tls_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Builds a resolver on `nameservers` (UDP and TCP on each address's port),
/// or on the system configuration when the list is empty.
///
/// Only DNS answers: /etc/hosts is not consulted (like Postfix's
/// `smtp_host_lookup = dns`; a local `127.0.1.1 <hostname>` line must not
/// route mail or pass SPF).
///
/// hickory's cache stays on (it caches negative answers, which mail-auth
/// does not), with a floor of [`NEGATIVE_MIN_TTL`] for negative answers: a
/// server that sends no SOA with NXDOMAIN would otherwise be asked again for
/// every message (the HELO name, the DMARC tree walk).
pub(crate) fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    if nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .map(|b| b.with_tls_config(unused_tls_config()))
            .and_then(|mut b| {
                b.options_mut().negative_min_ttl = Some(NEGATIVE_MIN_TTL);
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b.build()
            })
            .map_err(|e| {
                format!("cannot use the system DNS configuration ({e}); set outbound.nameservers")
            });
    }
    let servers = nameservers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_tls_config(unused_tls_config());
    builder.options_mut().negative_min_ttl = Some(NEGATIVE_MIN_TTL);
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}
