//! The live part of the check: the only code here that asks DNS, through
//! a resolver built by [`crate::dns`]. It looks everything up a [`Plan`]
//! needs ([`observe`]) and hands the answers, unjudged, to the report.

use super::plan::{Plan, dmarc_names, lower, mx_names, spf_domains};
use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for one lookup, and for one SPF evaluation (up to ten
/// lookups), beyond the resolver's own timeouts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
const SPF_TIMEOUT: Duration = Duration::from_secs(40);

/// The outcome of one lookup, as far as the checks care.
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

/// Everything [`observe`] looked up, keyed by name. A name missing from a
/// map was not looked up; the checks treat it as a failed lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) mx: HashMap<String, Answer<MxSet>>,
    /// Each TXT record's character-strings joined, per name.
    pub(crate) txt: HashMap<String, Answer<Vec<String>>>,
    /// A and AAAA of `plan.hostname`.
    pub(crate) addresses: Answer<Vec<IpAddr>>,
    /// SPF of (domain, address).
    pub(crate) spf: HashMap<(String, IpAddr), SpfResult>,
    /// PTR of each address, names in lower case without the dot.
    pub(crate) ptr: HashMap<IpAddr, Answer<Vec<String>>>,
}

pub(super) fn txt_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = spf_domains(plan).into_iter().map(|(d, _)| d).collect();
    names.extend(plan.keys.iter().map(|k| plan.dkim_name(k)));
    names.extend(dmarc_names(&plan.domain));
    names.extend(dmarc_names(&plan.dkim_domain));
    names.sort();
    names.dedup();
    names
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

async fn lookup_mx(resolver: &TokioResolver, name: &str) -> Answer<MxSet> {
    let answer = lookup(resolver.mx_lookup(format!("{name}.")), rdata).await;
    map_answer(answer, |r| match r {
        RData::MX(mx) => Some((mx.preference, lower(&mx.exchange.to_ascii()))),
        _ => None,
    })
}

async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Answer<Vec<String>> {
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

async fn lookup_addresses(resolver: &TokioResolver, host: &str) -> Answer<Vec<IpAddr>> {
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

async fn lookup_ptr(resolver: &TokioResolver, ip: IpAddr) -> Answer<Vec<String>> {
    let answer = lookup(resolver.reverse_lookup(ip), rdata).await;
    map_answer(answer, |r| match r {
        RData::PTR(ptr) => Some(lower(&ptr.0.to_ascii())),
        _ => None,
    })
}

/// SPF of `domain` for mail the relay sends from `ip` (as mail-auth
/// evaluates it for an envelope sender at `domain`).
async fn spf(auth: &MessageAuthenticator, plan: &Plan, domain: &str, ip: IpAddr) -> SpfResult {
    let sender = format!("postmaster@{domain}");
    let params = SpfParameters::verify_mail_from(ip, &plan.helo, &plan.hostname, &sender);
    match tokio::time::timeout(SPF_TIMEOUT, auth.verify_spf(params)).await {
        Ok(output) => output.result(),
        Err(_) => SpfResult::TempError,
    }
}

/// Looks up everything the checks of `plan` need, concurrently, in DNS
/// only: the system's hosts file (where Debian maps the machine's own name
/// to 127.0.1.1) is not what receivers see.
pub(crate) async fn observe(plan: &Plan, resolver: &TokioResolver) -> Observed {
    let mut resolver = resolver.clone();
    resolver.set_hosts(Arc::new(hickory_resolver::Hosts::default()));
    let resolver = &resolver;
    enum Got {
        Mx(String, Answer<MxSet>),
        Txt(String, Answer<Vec<String>>),
        Addresses(Answer<Vec<IpAddr>>),
        Spf(String, IpAddr, SpfResult),
        Ptr(IpAddr, Answer<Vec<String>>),
    }
    let mut observed = Observed {
        mx: HashMap::new(),
        txt: HashMap::new(),
        addresses: Answer::Failed("not looked up".into()),
        spf: HashMap::new(),
        ptr: HashMap::new(),
    };
    let store = |observed: &mut Observed, got: Got| match got {
        Got::Mx(name, a) => {
            observed.mx.insert(name, a);
        }
        Got::Txt(name, a) => {
            observed.txt.insert(name, a);
        }
        Got::Addresses(a) => observed.addresses = a,
        Got::Spf(domain, ip, result) => {
            observed.spf.insert((domain, ip), result);
        }
        Got::Ptr(ip, a) => {
            observed.ptr.insert(ip, a);
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    for name in mx_names(plan) {
        let r = resolver.clone();
        tasks.spawn(async move { Got::Mx(name.clone(), lookup_mx(&r, &name).await) });
    }
    for name in txt_names(plan) {
        let r = resolver.clone();
        tasks.spawn(async move { Got::Txt(name.clone(), lookup_txt(&r, &name).await) });
    }
    let (r, host) = (resolver.clone(), plan.hostname.clone());
    tasks.spawn(async move { Got::Addresses(lookup_addresses(&r, &host).await) });
    while let Some(got) = tasks.join_next().await {
        if let Ok(got) = got {
            store(&mut observed, got);
        }
    }

    // Then what depends on the relay's addresses.
    if let Answer::Found(ips) = &observed.addresses {
        let auth = Arc::new(MessageAuthenticator(resolver.clone()));
        let plan = Arc::new(plan.clone());
        for &ip in ips {
            for (domain, _) in spf_domains(&plan) {
                let (auth, plan) = (auth.clone(), plan.clone());
                tasks.spawn(async move {
                    let result = spf(&auth, &plan, &domain, ip).await;
                    Got::Spf(domain, ip, result)
                });
            }
            let r = resolver.clone();
            tasks.spawn(async move { Got::Ptr(ip, lookup_ptr(&r, ip).await) });
        }
        while let Some(got) = tasks.join_next().await {
            if let Ok(got) = got {
                store(&mut observed, got);
            }
        }
    }
    observed
}
