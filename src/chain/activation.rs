//! The activation endpoints' logic (EAS-compatible): check a revealed alias
//! against the chain — the signature of the exact message, the signer's
//! right over the name (owner, or an allowed maintainer), the name's expiry,
//! the commitment — before the relay forwards anything; and mark aliases
//! for removal once the chain has dropped them (the watcher removes them
//! once that is confirmed: [`super::deactivation`]).

use super::registry::{Registries, Registry};
use super::rpc::{At, ChainError, ChainRpc, StateRead, StateValue};
use super::verify;
use crate::address::{ForwardError, Mailbox};
use crate::cluster::{ClusterError, RevealClaim, Writes};
use crate::store::{Activated, ChainBinding, NameState, Reveal};
use crate::store::{Store, StoreError};
use alloy::primitives::B256;
use std::sync::Arc;

/// Why an activation request is refused (mapped to the EAS server's answers).
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("{0}")]
    Invalid(String),
    #[error("invalid signature")]
    InvalidSignature,
    #[error("domain expired")]
    Expired,
    #[error("commitment mismatch")]
    CommitmentMismatch { actual: B256, expected: B256 },
    #[error("Not deactivated on contract")]
    NotDeactivated,
    #[error("Not all deactivated on contract")]
    NotAllDeactivated,
    #[error("chain unavailable: {0}")]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cluster mode: the shared database did not take the write (nothing
    /// was written here either).
    #[error("the cluster database: {0}")]
    Cluster(#[from] ClusterError),
}

/// The body of `POST /activate`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ActivateRequest {
    pub alias: String,
    pub sld: String,
    #[serde(rename = "forwardAddress")]
    pub forward_address: String,
    pub signature: String,
    /// Which registry; the EAS frontend sends none (`.country`).
    #[serde(default)]
    pub tld: Option<String>,
}

/// A reveal that holds on chain, ready to be recorded.
#[derive(Debug, Clone)]
pub struct Verified {
    pub activated: Activated,
    /// The signer (0x-hex), when it signed as an allowed maintainer.
    pub maintainer: Option<String>,
}

/// Checks reveals against the chain and keeps the store in step.
pub struct Activation {
    rpc: ChainRpc,
    store: Arc<Store>,
    registries: Arc<Registries>,
    /// Domains that are the relay's own (SRS domain, hostname): never a forward.
    own_domains: Vec<String>,
    /// Cluster mode: reveals are written here first, then in the store
    /// with the id given here (a deactivation leaves the database once the
    /// watcher confirmed it: [`super::deactivation`]).
    cluster: Option<Writes>,
}

/// An alias as the EAS frontend accepts it: 1–32 of letters, digits, `.`,
/// `_`, `-` (anchored: nothing else anywhere).
pub(crate) fn valid_alias(alias: &str) -> bool {
    (1..=32).contains(&alias.len())
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A second-level name: 1–63 of lower-case letters, digits and `-`.
pub(crate) fn valid_sld(sld: &str) -> bool {
    (1..=63).contains(&sld.len())
        && sld
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Activation {
    pub fn new(
        rpc: ChainRpc,
        store: Arc<Store>,
        registries: Arc<Registries>,
        own_domains: Vec<String>,
    ) -> Activation {
        Activation {
            rpc,
            store,
            registries,
            own_domains,
            cluster: None,
        }
    }

    /// Cluster mode (`Some`): an activation that passed the chain checks is
    /// committed in the shared database first; while the database cannot
    /// take it the request is refused ([`ActivationError::Cluster`]) and
    /// nothing is written.
    pub fn with_cluster(mut self, writes: Option<Writes>) -> Activation {
        self.cluster = writes;
        self
    }

    fn registry(&self, tld: Option<&str>) -> Result<&Registry, ActivationError> {
        self.registries
            .get(tld)
            .ok_or_else(|| ActivationError::Invalid("unknown tld".into()))
    }

    fn check_alias_and_sld(alias: &str, sld: &str) -> Result<(), ActivationError> {
        if !valid_alias(alias) {
            return Err(ActivationError::Invalid(
                "alias must be 1 to 32 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        Self::check_sld(sld)
    }

    fn check_sld(sld: &str) -> Result<(), ActivationError> {
        if !valid_sld(sld) {
            return Err(ActivationError::Invalid(
                "sld must be 1 to 63 lower-case letters, digits or '-'".into(),
            ));
        }
        Ok(())
    }

    /// The form of a forward alone: what anyone may be told.
    fn check_forward_syntax(forward: &str) -> Result<Mailbox, ActivationError> {
        crate::address::check_forward(forward, |_| Ok::<_, StoreError>(false)).map_err(|_| {
            ActivationError::Invalid("forwardAddress must be a valid email address".into())
        })
    }

    /// The whole check of a forward, including whether the relay serves its
    /// domain. Only for a caller whose signature has been verified: the
    /// answer tells which domains the relay serves.
    fn check_forward(&self, forward: &str) -> Result<Mailbox, ActivationError> {
        crate::address::check_forward(forward, |domain| {
            Ok(self
                .own_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
                || self.store.domain_get(domain)?.is_some())
        })
        .map_err(|e| match e {
            ForwardError::Invalid(_) => {
                ActivationError::Invalid("forwardAddress must be a valid email address".into())
            }
            ForwardError::Served => ActivationError::Invalid(
                "forwardAddress must not be at a domain this relay serves".into(),
            ),
            ForwardError::Lookup(e) => ActivationError::Store(e),
        })
    }

    /// `POST /activate`: verify and record a revealed alias (see
    /// [`Activation::verify`]).
    pub async fn activate(&self, req: &ActivateRequest) -> Result<(), ActivationError> {
        let verified = self.verify(req).await?;
        // A cluster node writes PostgreSQL first (the reveal's id is the
        // database's), then its own store; a single node its store.
        match &self.cluster {
            Some(c) => {
                let id =
                    c.db.claim_reveal(&c.node_id, &reveal_claim(&verified.activated))
                        .await?;
                self.store.chain_activate_claimed(&verified.activated, id)?;
            }
            None => {
                self.store.chain_activate(&verified.activated)?;
            }
        }
        if let Some(signer) = &verified.maintainer {
            self.store.chain_apply(&crate::store::ChainUpdate {
                maintainers: vec![(verified.activated.binding.tld.clone(), signer.clone(), true)],
                ..Default::default()
            })?;
        }
        metrics::counter!("eas_chain_activations_total").increment(1);
        tracing::info!(alias = %req.alias, domain = %verified.activated.domain,
            signer = %verified.activated.binding.signer,
            block = verified.activated.binding.checked_block, "alias activated");
        Ok(())
    }

    /// Checks a revealed alias against the chain, recording nothing: the
    /// signature of the exact message, the signer's right over the name
    /// (owner, or an allowed maintainer), the forward, the name's expiry,
    /// keccak256(alias | forward | signature) against the commitment on
    /// chain, and a case variant already active. `/activate` records what
    /// it returns; a cluster node's replica checks every reveal the
    /// database claims with it before forwarding. Before the
    /// signature is verified as the name's owner's (or an allowed
    /// maintainer's) a request is judged only by its form, so that nobody
    /// can learn from the errors which domains the relay serves or which
    /// names have aliases here; the served-domain check comes after.
    pub async fn verify(&self, req: &ActivateRequest) -> Result<Verified, ActivationError> {
        Self::check_alias_and_sld(&req.alias, &req.sld)?;
        Self::check_forward_syntax(&req.forward_address)?;
        let sig = verify::parse_signature(&req.signature)
            .map_err(|e| ActivationError::Invalid(format!("signature: {e}")))?;
        let registry = self.registry(req.tld.as_deref())?;
        let tld = registry.tld.clone();
        let text = verify::message(&req.alias, &req.sld, &tld, &req.forward_address);
        let signer = verify::recover_signer(verify::message_digest(&text), &sig)
            .map_err(|_| ActivationError::InvalidSignature)?;
        let node = verify::node(&req.sld);
        let alias_hash = verify::alias_hash(&req.alias);
        let dc = registry.dc(&self.rpc).await?;
        // The frontend calls right after its activate transaction: read the
        // latest state (the watcher re-checks at confirmed blocks).
        let head = self.rpc.latest().await?;
        let block = head.number;
        let at = At::Number(block);
        let values = self
            .rpc
            .read_many(
                &[
                    StateRead::OwnerOf {
                        dc,
                        sld: req.sld.clone(),
                    },
                    StateRead::NameExpires {
                        dc,
                        sld: req.sld.clone(),
                    },
                    StateRead::Commitment {
                        eas: registry.eas,
                        node,
                        alias: alias_hash,
                    },
                    StateRead::MaintainerAllowed {
                        eas: registry.eas,
                        node,
                    },
                    StateRead::IsMaintainer {
                        eas: registry.eas,
                        account: signer,
                    },
                ],
                at,
            )
            .await?;
        // A registry that reverts for an unknown or expired name has no
        // owner and no expiry to offer; a reverting role read grants nothing.
        let values: Vec<StateValue> = values
            .into_iter()
            .zip([
                StateValue::Address(alloy::primitives::Address::ZERO),
                StateValue::Number(0),
                StateValue::Hash(B256::ZERO),
                StateValue::Bool(false),
                StateValue::Bool(false),
            ])
            .map(|(v, nothing)| v.or_if_reverted(nothing))
            .collect();
        let (owner, expires, actual, maintainer_allowed, is_maintainer) = match values.as_slice() {
            [
                StateValue::Address(owner),
                StateValue::Number(expires),
                StateValue::Hash(actual),
                StateValue::Bool(allowed),
                StateValue::Bool(maintainer),
            ] => (*owner, *expires, *actual, *allowed, *maintainer),
            other => {
                return Err(ActivationError::Chain(ChainError::Decode {
                    what: "activation reads",
                    detail: format!("{other:?}"),
                }));
            }
        };
        if signer != owner && !(maintainer_allowed && is_maintainer) {
            return Err(ActivationError::InvalidSignature);
        }
        // Signed by whoever manages the name: now it may learn that the
        // forward's domain is served here (a forwarding loop).
        self.check_forward(&req.forward_address)?;
        if expires <= self.store.expiry_now() {
            return Err(ActivationError::Expired);
        }
        let expected = verify::commitment(&req.alias, &req.forward_address, &sig);
        if actual != expected {
            return Err(ActivationError::CommitmentMismatch { actual, expected });
        }
        let domain = format!("{}.{tld}", req.sld);
        let local = req.alias.to_ascii_lowercase();
        self.check_case_variant(registry, &req.sld, &domain, &local, &req.alias, block)
            .await?;
        let binding = ChainBinding {
            tld: tld.clone(),
            sld: req.sld.clone(),
            alias: req.alias.clone(),
            commitment: hex(expected.as_slice()),
            observed: hex(actual.as_slice()),
            signer: hex(signer.as_slice()),
            checked_block: block,
        };
        let name = NameState {
            tld: tld.clone(),
            sld: req.sld.clone(),
            owner: hex(owner.as_slice()),
            expires,
            maintainer_allowed,
            checked_block: block,
        };
        Ok(Verified {
            activated: Activated {
                domain,
                local,
                node: node.0,
                alias_hash: alias_hash.0,
                binding,
                reveal: Reveal {
                    forward: req.forward_address.clone(),
                    signature: hex(&sig),
                },
                name,
            },
            maintainer: (signer != owner).then(|| hex(signer.as_slice())),
        })
    }

    /// The chain binding of `local@domain` this registry's name holds, if
    /// any (never a static alias: /deactivate does not touch those).
    fn binding_of(
        &self,
        registry: &Registry,
        sld: &str,
        domain: &str,
        local: &str,
    ) -> Result<Option<ChainBinding>, ActivationError> {
        Ok(self
            .store
            .alias_get(domain, local)?
            .and_then(|r| r.chain)
            .filter(|b| b.tld == registry.tld && b.sld == sld))
    }

    /// Two on-chain aliases that differ only in case share one local key
    /// here (mail matches in any case). The one activated first keeps it
    /// while its commitment is on chain as revealed: a replayed reveal of
    /// the other cannot take its place (the owner deactivates it first).
    async fn check_case_variant(
        &self,
        registry: &Registry,
        sld: &str,
        domain: &str,
        local: &str,
        alias: &str,
        block: u64,
    ) -> Result<(), ActivationError> {
        let Some(other) = self.binding_of(registry, sld, domain, local)? else {
            return Ok(());
        };
        if other.alias == alias {
            return Ok(());
        }
        let on_chain = self
            .rpc
            .commitment(
                registry.eas,
                verify::node(sld),
                verify::alias_hash(&other.alias),
                At::Number(block),
            )
            .await?;
        if hex(on_chain.as_slice()).eq_ignore_ascii_case(&other.commitment) {
            return Err(ActivationError::Invalid(format!(
                "alias {} is active with another case ({}); deactivate it on chain first",
                alias, other.alias
            )));
        }
        Ok(())
    }

    /// `POST /deactivate`: once the alias's commitment is gone, mark it
    /// for removal. Anyone may call it, so it looks only at a chain record
    /// whose own on-chain key (keccak256 of the alias exactly as activated,
    /// which may differ in case from the request) reads zero, and answers
    /// success only when the requested key reads zero as well. The read is
    /// at the latest block, which a lagging or lying RPC endpoint can get
    /// wrong: the alias is removed only when the watcher reads zero at a
    /// confirmed block ([`super::deactivation`]); until then it forwards
    /// as the chain (at confirmed blocks) says.
    pub async fn deactivate(
        &self,
        alias: &str,
        sld: &str,
        tld: Option<&str>,
    ) -> Result<(), ActivationError> {
        Self::check_alias_and_sld(alias, sld)?;
        let registry = self.registry(tld)?;
        let node = verify::node(sld);
        let domain = format!("{sld}.{}", registry.tld);
        let local = alias.to_ascii_lowercase();
        let binding = self.binding_of(registry, sld, &domain, &local)?;
        let mut exact = vec![alias];
        if let Some(b) = &binding
            && b.alias != alias
        {
            exact.push(b.alias.as_str());
        }
        let head = self.rpc.latest().await?.number;
        for a in exact {
            let on_chain = self
                .rpc
                .commitment(registry.eas, node, verify::alias_hash(a), At::Number(head))
                .await?;
            if on_chain != B256::ZERO {
                return Err(ActivationError::NotDeactivated);
            }
        }
        if let Some(b) = binding
            && self
                .store
                .chain_mark_deactivating(&domain, &local, &b, head, false)?
        {
            tracing::info!(alias = %b.alias, %domain, block = head,
                "alias deactivated on chain: removed once confirmed");
        }
        Ok(())
    }

    /// `POST /deactivate-all`: once `getNumAlias` is zero, mark for removal
    /// every chain alias of the name whose own on-chain key reads zero (the
    /// counter alone is not trusted to mean every commitment is gone); the
    /// watcher removes them once confirmed, as for `/deactivate`.
    pub async fn deactivate_all(
        &self,
        sld: &str,
        tld: Option<&str>,
    ) -> Result<(), ActivationError> {
        Self::check_sld(sld)?;
        let registry = self.registry(tld)?;
        let node = verify::node(sld);
        let head = self.rpc.latest().await?.number;
        let at = At::Number(head);
        if self.rpc.num_alias(registry.eas, node, at).await? != 0 {
            return Err(ActivationError::NotAllDeactivated);
        }
        let domain = format!("{sld}.{}", registry.tld);
        let bindings: Vec<(String, ChainBinding)> = self
            .store
            .alias_list(&domain)?
            .into_iter()
            .filter_map(|(local, r)| Some((local, r.chain?)))
            .filter(|(_, b)| b.tld == registry.tld && b.sld == sld)
            .collect();
        let reads: Vec<StateRead> = bindings
            .iter()
            .map(|(_, b)| StateRead::Commitment {
                eas: registry.eas,
                node,
                alias: verify::alias_hash(&b.alias),
            })
            .collect();
        let values = if reads.is_empty() {
            Vec::new()
        } else {
            self.rpc.read_many(&reads, at).await?
        };
        if values.len() != bindings.len() {
            return Err(ActivationError::Chain(ChainError::Decode {
                what: "commitments",
                detail: format!("{} answers to {} reads", values.len(), bindings.len()),
            }));
        }
        let mut left = 0;
        for ((local, b), value) in bindings.iter().zip(values) {
            match value {
                StateValue::Hash(h) if h == B256::ZERO => {
                    self.store
                        .chain_mark_deactivating(&domain, local, b, head, true)?;
                }
                StateValue::Hash(_) => left += 1,
                other => {
                    return Err(ActivationError::Chain(ChainError::Decode {
                        what: "commitment",
                        detail: format!("{other:?}"),
                    }));
                }
            }
        }
        if left > 0 {
            return Err(ActivationError::NotAllDeactivated);
        }
        tracing::info!(%domain, block = head,
            "all aliases deactivated on chain: removed once confirmed");
        Ok(())
    }

    /// `POST /check-alias`: whether the alias forwards now.
    pub(crate) fn check_alias(
        &self,
        alias: &str,
        sld: &str,
        tld: Option<&str>,
    ) -> Result<bool, ActivationError> {
        Self::check_alias_and_sld(alias, sld)?;
        let registry = self.registry(tld)?;
        let Some(mailbox) = Mailbox::parse(&format!("{alias}@{sld}.{}", registry.tld)) else {
            return Ok(false);
        };
        Ok(matches!(
            crate::recipients::recipient(&self.store, &mailbox, "", true)?,
            crate::recipients::Resolution::Forward { .. }
        ))
    }
}

/// What the shared database keeps of a verified activation.
fn reveal_claim(a: &Activated) -> RevealClaim<'_> {
    RevealClaim {
        domain: &a.domain,
        sld: &a.binding.sld,
        tld: &a.binding.tld,
        local: &a.local,
        alias: &a.binding.alias,
        forward: &a.reveal.forward,
        signature: &a.reveal.signature,
        commitment: &a.binding.commitment,
    }
}

/// 0x-prefixed lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    alloy::primitives::hex::encode_prefixed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_validation() {
        assert!(valid_alias("hello.World_1-x"));
        for bad in ["", "a b", "a@b", "x\n", "é", "hello\u{0}", &"a".repeat(33)] {
            assert!(!valid_alias(bad), "{bad:?}");
        }
        assert!(valid_sld("fsociety-2"));
        for bad in ["", "Fsociety", "a.b", "a_b", &"a".repeat(64), "a\nb"] {
            assert!(!valid_sld(bad), "{bad:?}");
        }
        assert_eq!(hex(&[0, 255]), "0x00ff");
    }
}
