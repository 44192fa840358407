//! The record lookups of the zone check, answered in the terms it judges:
//! found (never an empty list), missing (NXDOMAIN or NODATA), or failed
//! (SERVFAIL, REFUSED, a timeout...), each lookup bounded in time.

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for one lookup, beyond the resolver's own timeouts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of one lookup, as far as the zone check cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer<T> {
    /// Records of the asked type (never an empty list).
    Found(T),
    /// NXDOMAIN, or no record of the asked type (NODATA).
    Missing,
    /// SERVFAIL, REFUSED, a timeout...: we cannot tell.
    Failed(String),
}

/// MX records as (preference, exchange in lower case without the dot).
pub(crate) type MxSet = Vec<(u16, String)>;

/// A DNS name as the relay compares them: lower case, without the trailing
/// dot.
pub(crate) fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `resolver` without the system's hosts file (where Debian maps the
/// machine's own name to 127.0.1.1), which is not what receivers see.
pub(crate) fn without_hosts_file(resolver: &TokioResolver) -> TokioResolver {
    let mut resolver = resolver.clone();
    resolver.set_hosts(Arc::new(hickory_resolver::Hosts::default()));
    resolver
}

/// What a failed lookup says: `SERVFAIL`, `REFUSED`, `timed out`...
fn describe_error(e: &NetError) -> String {
    match e {
        NetError::Dns(DnsError::ResponseCode(code)) => format!("{code:?}").to_ascii_uppercase(),
        NetError::Timeout => "timed out".into(),
        e => e.to_string(),
    }
}

async fn lookup<T>(
    future: impl Future<Output = Result<T, NetError>>,
    found: impl FnOnce(T) -> Vec<RData>,
) -> Answer<Vec<RData>> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, future).await {
        Err(_) => Answer::Failed("timed out".into()),
        Ok(Err(e)) if e.is_no_records_found() => Answer::Missing,
        Ok(Err(e)) => Answer::Failed(describe_error(&e)),
        Ok(Ok(lookup)) => {
            let records = found(lookup);
            if records.is_empty() {
                Answer::Missing
            } else {
                Answer::Found(records)
            }
        }
    }
}

fn map_answer<T>(answer: Answer<Vec<RData>>, f: impl Fn(&RData) -> Option<T>) -> Answer<Vec<T>> {
    match answer {
        Answer::Found(records) => {
            let items: Vec<T> = records.iter().filter_map(f).collect();
            if items.is_empty() {
                Answer::Missing
            } else {
                Answer::Found(items)
            }
        }
        Answer::Missing => Answer::Missing,
        Answer::Failed(e) => Answer::Failed(e),
    }
}

fn rdata(lookup: hickory_resolver::lookup::Lookup) -> Vec<RData> {
    lookup.answers().iter().map(|r| r.data.clone()).collect()
}

/// The MX records of `name`.
pub(crate) async fn lookup_mx(resolver: &TokioResolver, name: &str) -> Answer<MxSet> {
    let answer = lookup(resolver.mx_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::MX(mx) => Some((mx.preference, canonical(&mx.exchange.to_ascii()))),
        _ => None,
    })
}

/// The TXT records of `name`, each one's character-strings joined.
pub(crate) async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Answer<Vec<String>> {
    let answer = lookup(resolver.txt_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<String>(),
        ),
        _ => None,
    })
}

/// The A and AAAA records of `host`; a failure of either fails both.
pub(crate) async fn lookup_addresses(resolver: &TokioResolver, host: &str) -> Answer<Vec<IpAddr>> {
    let name = format!("{host}.");
    let (v4, v6) = tokio::join!(
        lookup(resolver.ipv4_lookup(name.clone()), rdata),
        lookup(resolver.ipv6_lookup(name), rdata)
    );
    let mut addresses = Vec::new();
    for answer in [v4, v6] {
        match answer {
            Answer::Failed(e) => return Answer::Failed(e),
            Answer::Missing => {}
            Answer::Found(records) => addresses.extend(records.iter().filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
        }
    }
    if addresses.is_empty() {
        Answer::Missing
    } else {
        Answer::Found(addresses)
    }
}

/// The A records of `name` (a DNS list's answer); the caller bounds the time.
pub(crate) async fn lookup_a(resolver: &TokioResolver, name: &str) -> Answer<Vec<Ipv4Addr>> {
    let answer = lookup(resolver.ipv4_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

/// The PTR names of `ip`, canonical.
pub(crate) async fn lookup_ptr(resolver: &TokioResolver, ip: IpAddr) -> Answer<Vec<String>> {
    let answer = lookup(resolver.reverse_lookup(ip), rdata).await;
    map_answer(answer, |r| match r {
        RData::PTR(ptr) => Some(canonical(&ptr.0.to_ascii())),
        _ => None,
    })
}
