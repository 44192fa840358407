//! Where mail for a domain goes: a configured route, else the MX hosts in
//! preference order (equal preferences shuffled), else the domain itself
//! (implicit MX); a null MX (RFC 7505) means the domain takes no mail.
//! Addresses found through DNS must be public unless the operator allowed
//! their network (`outbound.allow_networks`). That includes the addresses
//! of a route's host name: whoever runs that name's DNS, not the operator,
//! decides them. Only a route to an IP address is explicit and exempt.

use super::network::may_connect;
use crate::config::{Config, parse_host_port};
use crate::net::Network;
use crate::reply::Reply;
use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Why no host could be found; each maps to a reply for the recipients.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("domain {0} does not accept mail (null MX)")]
    NullMx(String),
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    #[error("DNS lookup for {0} failed: {1}")]
    Temporary(String, String),
}

impl RouteError {
    pub fn reply(&self) -> Reply {
        match self {
            RouteError::NullMx(_) => Reply::owned(556, [5, 1, 10], self.to_string()),
            RouteError::NoSuchDomain(_) => Reply::owned(550, [5, 1, 2], self.to_string()),
            RouteError::Temporary(..) => Reply::owned(451, [4, 4, 3], self.to_string()),
        }
    }

    pub fn is_permanent(&self) -> bool {
        !matches!(self, RouteError::Temporary(..))
    }
}

/// A host to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// A route to an IP address: the operator named the address itself,
    /// so it is not filtered.
    pub explicit: bool,
}

/// DNS-based routing with the configured overrides.
pub struct Router {
    resolver: Result<TokioResolver, String>,
    routes: BTreeMap<String, NextHop>,
    port: u16,
    allowed: Vec<Network>,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let routes = config
            .outbound
            .routes
            .iter()
            .filter_map(|(domain, target)| {
                let (host, port) = parse_host_port(target)?;
                let hop = NextHop {
                    explicit: host.parse::<IpAddr>().is_ok(),
                    host,
                    port,
                };
                Some((domain.to_ascii_lowercase(), hop))
            })
            .collect();
        Router {
            resolver: crate::dns::resolver(&config.outbound.nameservers),
            routes,
            port: config.outbound.port,
            allowed: config.outbound.allow_networks.clone(),
        }
    }

    /// True when delivery to `hop` may connect to `ip`: a route to an IP
    /// address always, others (a route's host name too) when public or in
    /// an allowed network.
    pub fn may_connect(&self, hop: &NextHop, ip: IpAddr) -> bool {
        hop.explicit || may_connect(ip, &self.allowed)
    }

    fn resolver(&self) -> Result<&TokioResolver, RouteError> {
        self.resolver
            .as_ref()
            .map_err(|e| RouteError::Temporary("resolver".into(), e.clone()))
    }

    /// The hosts to try for `domain`, best first.
    pub async fn next_hops(&self, domain: &str) -> Result<Vec<NextHop>, RouteError> {
        if let Some(hop) = self.routes.get(domain) {
            return Ok(vec![hop.clone()]);
        }
        let lookup = match self.resolver()?.mx_lookup(format!("{domain}.")).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_nx_domain() => return Err(RouteError::NoSuchDomain(domain.into())),
            Err(e) if e.is_no_records_found() => {
                return Ok(vec![NextHop {
                    host: domain.to_string(),
                    port: self.port,
                    explicit: false,
                }]);
            }
            Err(e) => return Err(RouteError::Temporary(domain.into(), describe(&e))),
        };
        let mut mx: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        if mx.iter().any(|(_, host)| host == "." || host.is_empty()) {
            return Err(RouteError::NullMx(domain.into()));
        }
        if mx.is_empty() {
            return Ok(vec![NextHop {
                host: domain.to_string(),
                port: self.port,
                explicit: false,
            }]);
        }
        mx.shuffle(&mut rand::rng());
        mx.sort_by_key(|(pref, _)| *pref);
        Ok(mx
            .into_iter()
            .map(|(_, host)| NextHop {
                host: host.trim_end_matches('.').to_ascii_lowercase(),
                port: self.port,
                explicit: false,
            })
            .collect())
    }

    /// The addresses of a host (an IP literal stands for itself).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RouteError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver()?.lookup_ip(format!("{host}.")).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_no_records_found() => Err(RouteError::Temporary(
                host.into(),
                "host has no address".into(),
            )),
            Err(e) => Err(RouteError::Temporary(host.into(), describe(&e))),
        }
    }
}

fn describe(e: &NetError) -> String {
    e.to_string()
}
