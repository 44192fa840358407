//! The live part of the check, the only part of this folder that asks DNS,
//! and only through [`crate::dns`] (its resolver, its record lookups, and
//! mail-auth's SPF evaluation on that resolver): it looks up everything a
//! [`Plan`] needs ([`observe`]) and hands the answers, unjudged, to the
//! report.

use super::plan::{Plan, dmarc_names, mx_names, spf_domains};
use crate::dns::{
    Answer, MxSet, lookup_addresses, lookup_mx, lookup_ptr, lookup_txt, without_hosts_file,
};
use hickory_resolver::TokioResolver;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for one SPF evaluation (up to ten lookups), beyond the
/// resolver's own timeouts.
const SPF_TIMEOUT: Duration = Duration::from_secs(40);

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
    let resolver = &without_hosts_file(resolver);
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
