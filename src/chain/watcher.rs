//! The chain watcher: follows the head minus `confirmations`, finds what
//! changed for the aliases and names the relay knows (alias events, or the
//! calldata of transactions to the EAS contract; registry logs; role
//! changes), re-reads the truth at the processed block, and moves its cursor
//! (with the block hash) only once that is stored. A hash that no longer
//! matches means a reorg: it rewinds to the fork and re-verifies everything.
//! A periodic sweep re-verifies every alias in batches, catching what no
//! event revealed. While the RPC is down the relay keeps answering from its
//! cache and reports the staleness.

use super::activation::hex;
pub(crate) use super::health::{ChainHealth, is_stale, status_view};
use super::registry::{Registries, Registry};
use super::rpc::{At, BlockInfo, ChainError, ChainEvent, ChainRpc, EasCall, StateRead, StateValue};
use super::verify;
use crate::config::ChainConfig;
use crate::store::tables::{alias_key, split_alias_key};
use crate::store::{
    ChainBinding, ChainStatus, ChainUpdate, Cursor, NameState, Store, StoreError, now_ms,
};
use alloy::primitives::{Address, B256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the chain id is {found}, the config says {expected}")]
    WrongChain { expected: u64, found: u64 },
}

/// The next blocks to process after `cursor` towards `target` (head −
/// confirmations): `[from, to]`, at most `max_range` blocks, never past
/// `target`; None when the cursor is there already (or past it: a node
/// whose head went below the cursor). The numbers come from the RPC
/// endpoint, so nothing here may overflow: a head of `u64::MAX` gives a
/// range that ends at the target, never one that wraps round to block 0.
pub(crate) fn next_range(cursor: u64, target: u64, max_range: u64) -> Option<(u64, u64)> {
    if cursor >= target {
        return None;
    }
    let from = cursor.checked_add(1)?;
    let to = target.min(cursor.saturating_add(max_range.max(1)));
    Some((from, to))
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Processed blocks up to this one.
    Advanced { to: u64, target: u64 },
    /// Nothing new below head − confirmations.
    Idle { cursor: u64 },
    /// A reorg was found; the cursor went back to this block.
    Rewound { to: u64 },
}

pub struct Watcher {
    rpc: ChainRpc,
    store: Arc<Store>,
    registries: Arc<Registries>,
    config: ChainConfig,
    pub(crate) health: Arc<ChainHealth>,
    /// Set by `request_sweep` (resync): sweep at the next opportunity.
    sweep_requested: std::sync::atomic::AtomicBool,
    /// Held by a step and by a rewind, so a resync's rewind cannot be
    /// overwritten by a step that read the cursor before it.
    cursor_lock: tokio::sync::Mutex<()>,
    /// The last confirmed block's timestamp was too far ahead of the clock
    /// (so the warning is logged once per run of such blocks).
    time_refused: std::sync::atomic::AtomicBool,
    /// Cluster mode: confirmed deactivations leave the shared database
    /// first ([`super::deactivation`]).
    cluster: Option<crate::cluster::Writes>,
}

/// What a block range touched, before the truth is read.
#[derive(Default)]
struct Touched {
    /// Alias keys whose commitment must be read.
    aliases: BTreeSet<String>,
    /// Domains whose owner / expiry / maintainer flag must be read.
    names: BTreeSet<String>,
    /// (tld, account) whose MAINTAINER_ROLE must be read.
    maintainers: BTreeSet<(String, Address)>,
}

impl Watcher {
    pub fn new(
        rpc: ChainRpc,
        store: Arc<Store>,
        registries: Arc<Registries>,
        config: ChainConfig,
    ) -> Watcher {
        Watcher {
            rpc,
            store,
            registries,
            config,
            health: Arc::new(ChainHealth::default()),
            sweep_requested: std::sync::atomic::AtomicBool::new(false),
            cursor_lock: tokio::sync::Mutex::new(()),
            time_refused: std::sync::atomic::AtomicBool::new(false),
            cluster: None,
        }
    }

    /// Cluster mode (`Some`): see [`super::deactivation`].
    pub fn with_cluster(mut self, writes: Option<crate::cluster::Writes>) -> Watcher {
        self.cluster = writes;
        self
    }

    /// Asks the running watcher to verify every alias again soon.
    pub(crate) fn request_sweep(&self) {
        self.sweep_requested.store(true, Ordering::Relaxed);
    }

    /// Follows the chain until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.config.chain_id != 0 {
            match self.rpc.chain_id().await {
                Ok(id) if id != self.config.chain_id => {
                    let e = WatchError::WrongChain {
                        expected: self.config.chain_id,
                        found: id,
                    };
                    tracing::error!(error = %e, "not following the chain");
                    self.health.failed(&e.to_string());
                    return;
                }
                _ => {}
            }
        }
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let outcome = self.step().await;
            let mut idle = true;
            match &outcome {
                Ok(Step::Advanced { to, target }) => idle = to >= target,
                Ok(Step::Idle { .. }) => {}
                Ok(Step::Rewound { to }) => {
                    tracing::warn!(
                        block = to,
                        "chain reorganized: rewound, verifying every alias"
                    );
                    next_sweep = tokio::time::Instant::now();
                    idle = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chain watcher step failed; serving from the cache");
                    self.health.failed(&e.to_string());
                }
            }
            self.publish();
            if self.sweep_requested.swap(false, Ordering::Relaxed) {
                next_sweep = tokio::time::Instant::now();
            }
            if outcome.is_ok() && tokio::time::Instant::now() >= next_sweep {
                match self.sweep().await {
                    Ok(n) => {
                        tracing::debug!(aliases = n, "chain sweep done");
                        next_sweep = tokio::time::Instant::now() + self.config.sweep_interval.0;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "chain sweep failed");
                        self.health.failed(&e.to_string());
                    }
                }
            }
            if !idle {
                if *stop.borrow() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval.0) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }

    /// Records the status for `chain status` and the metrics.
    fn publish(&self) {
        let stale = is_stale(self.health.seconds_since_ok(), &self.config);
        metrics::gauge!("eas_chain_stale").set(if stale { 1.0 } else { 0.0 });
        if let Some(s) = self.health.seconds_since_ok() {
            metrics::gauge!("eas_chain_seconds_since_ok").set(s as f64);
        }
        let status = ChainStatus {
            last_ok_ms: self.health.last_ok_ms.load(Ordering::Relaxed),
            head: self.health.head.load(Ordering::Relaxed),
            chain_time: self.store.chain_time(),
            last_error: self.health.last_error.lock().expect("health lock").clone(),
        };
        if let Err(e) = self.store.chain_set_status(&status) {
            tracing::warn!(error = %e, "cannot record the chain status");
        }
    }

    /// One step: reorg check, then one range of blocks (at most
    /// max_block_range) processed and committed.
    pub(crate) async fn step(&self) -> Result<Step, WatchError> {
        let _cursor = self.cursor_lock.lock().await;
        let head = self.observe_head().await?;
        let target = head.number.saturating_sub(self.config.confirmations);
        let cursor = match self.store.chain_cursor()? {
            Some(c) => c,
            None => {
                // A fresh node: from start_block, or from here (the sweep
                // verifies whatever was activated before).
                let start = if self.config.start_block > 0 {
                    self.config.start_block.saturating_sub(1)
                } else {
                    target
                };
                let block = self.block_at(start).await?;
                let cursor = Cursor {
                    number: start,
                    hash: block.hash.0,
                };
                self.store.chain_apply(&ChainUpdate {
                    cursor: Some((cursor, vec![(start, cursor.hash)])),
                    ..ChainUpdate::default()
                })?;
                self.note_time(&block);
                cursor
            }
        };
        self.health.cursor.store(cursor.number, Ordering::Relaxed);
        // A different hash at the cursor, or no block there at all (the
        // chain got shorter), means the processed blocks were replaced.
        if cursor.number > 0
            && self.rpc.block_hash(cursor.number).await?.map(|h| h.0) != Some(cursor.hash)
        {
            let to = self.fork_point().await?;
            return Ok(Step::Rewound { to });
        }
        let Some((from, to)) = next_range(cursor.number, target, self.config.max_block_range)
        else {
            self.settle_deactivations(cursor.number).await;
            return Ok(Step::Idle {
                cursor: cursor.number,
            });
        };
        let touched = self.touched(from, to).await?;
        let mut update = self.read_truth(&touched, to).await?;
        let block = self.block_at(to).await?;
        let hash = block.hash.0;
        update.cursor = Some((Cursor { number: to, hash }, vec![(to, hash)]));
        self.store.chain_apply(&update)?;
        self.note_time(&block);
        self.health.cursor.store(to, Ordering::Relaxed);
        metrics::gauge!("eas_chain_cursor").set(to as f64);
        self.settle_deactivations(to).await;
        Ok(Step::Advanced { to, target })
    }

    /// Removes the aliases `/deactivate` marked whose key reads zero at the
    /// confirmed block `block` (see [`super::deactivation`]). A failure is
    /// logged and retried at the next step: it does not hold the cursor.
    async fn settle_deactivations(&self, block: u64) {
        let settled = super::deactivation::settle(
            &self.rpc,
            &self.store,
            &self.registries,
            self.cluster.as_ref(),
            block,
            self.config.sweep_batch,
        )
        .await;
        match settled {
            Ok(s) if s.removed + s.kept > 0 => {
                tracing::debug!(block, ?s, "deactivations settled");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, block, "cannot settle deactivations yet"),
        }
    }

    /// Reads the head; a good read counts for health. Its timestamp does
    /// not count for expiry: the head is not confirmed yet.
    async fn observe_head(&self) -> Result<BlockInfo, WatchError> {
        let head = self.rpc.latest().await?;
        self.health.ok(&head);
        Ok(head)
    }

    async fn block_at(&self, number: u64) -> Result<BlockInfo, WatchError> {
        match self.rpc.block(number).await? {
            Some(b) => Ok(b),
            None => Err(ChainError::BlockNotFound(number).into()),
        }
    }

    async fn hash_of(&self, number: u64) -> Result<[u8; 32], WatchError> {
        Ok(self.block_at(number).await?.hash.0)
    }

    /// Expiry follows the time of the newest confirmed block processed
    /// (`block`, now the cursor's), never a head that may still be
    /// replaced, and not a timestamp further ahead of the wall clock than
    /// `chain.max_clock_skew`: such a block is reported and its time is
    /// not believed.
    fn note_time(&self, block: &BlockInfo) {
        let ahead = block.timestamp as f64 - (now_ms() / 1000) as f64;
        metrics::gauge!("eas_chain_time_ahead_seconds").set(ahead);
        if self.store.note_chain_time(block.timestamp) {
            self.time_refused.store(false, Ordering::Relaxed);
        } else if !self.time_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                block = block.number,
                timestamp = block.timestamp,
                ahead_s = ahead,
                max_clock_skew = %self.config.max_clock_skew,
                "a confirmed block's timestamp is too far ahead of the clock; \
                 not used for expiry (is the RPC endpoint or this host's clock wrong?)"
            );
        }
    }

    /// Walks back the recorded hashes to the newest block still on the
    /// chain, rewinds there, and verifies everything (what the orphaned
    /// blocks changed is not known any more).
    async fn fork_point(&self) -> Result<u64, WatchError> {
        let recent = self.store.chain_recent()?;
        for (number, hash) in recent.iter().rev() {
            let Some(block) = self.rpc.block(*number).await? else {
                continue;
            };
            if block.hash.0 == *hash {
                self.store.chain_reorg(Cursor {
                    number: *number,
                    hash: *hash,
                })?;
                // The time of the abandoned blocks is gone with them.
                self.note_time(&block);
                metrics::counter!("eas_chain_reorgs_total").increment(1);
                return Ok(*number);
            }
        }
        // Deeper than what was recorded: start over from the oldest known
        // block's parent (or the configured start) and verify everything.
        let back = recent
            .first()
            .map(|(n, _)| n.saturating_sub(1))
            .unwrap_or(self.config.start_block.saturating_sub(1));
        let block = self.block_at(back).await?;
        self.store.chain_reorg(Cursor {
            number: back,
            hash: block.hash.0,
        })?;
        self.note_time(&block);
        metrics::counter!("eas_chain_reorgs_total").increment(1);
        Ok(back)
    }

    /// What the blocks [from, to] touched, among what the relay knows.
    async fn touched(&self, from: u64, to: u64) -> Result<Touched, WatchError> {
        let mut t = Touched::default();
        for registry in &self.registries.list {
            let dc = registry.dc(&self.rpc).await?;
            let mut addresses = vec![dc];
            addresses.extend(registry.log_addresses.iter().copied());
            // The EAS contract's logs carry the role changes even when it has
            // no alias events.
            addresses.push(registry.eas);
            for (_, event) in self.rpc.events(from, to, &addresses).await? {
                self.note_event(registry, &event, &mut t)?;
            }
            if !registry.eas_events {
                for (_, call) in self.rpc.eas_calls(from, to, registry.eas).await? {
                    self.note_call(registry, &call, &mut t)?;
                }
            }
        }
        Ok(t)
    }

    fn note_event(
        &self,
        r: &Registry,
        event: &ChainEvent,
        t: &mut Touched,
    ) -> Result<(), StoreError> {
        match event {
            ChainEvent::AliasActivated { node, alias, .. }
            | ChainEvent::AliasDeactivated { node, alias } => {
                if let Some(key) = self.store.chain_alias_of(&node.0, &alias.0, &r.tld)? {
                    t.aliases.insert(key);
                }
            }
            ChainEvent::AllDeactivated { node } => self.note_all(r, node, t)?,
            ChainEvent::MaintainerAccessToggled { node, .. }
            | ChainEvent::NameTransferred { node, .. }
            | ChainEvent::NameRenewed { node }
            | ChainEvent::NameRegistered { node } => {
                if let Some(domain) = self.store.chain_domain_of(&node.0, &r.tld)? {
                    t.names.insert(domain);
                }
            }
            ChainEvent::RoleChanged { role, account, .. } => {
                if *role == verify::MAINTAINER_ROLE {
                    t.maintainers.insert((r.tld.clone(), *account));
                }
            }
        }
        Ok(())
    }

    fn note_call(&self, r: &Registry, call: &EasCall, t: &mut Touched) -> Result<(), StoreError> {
        match call {
            EasCall::Activate { name, alias } | EasCall::Deactivate { name, alias } => {
                let node = verify::node(name);
                if let Some(key) = self.store.chain_alias_of(&node.0, &alias.0, &r.tld)? {
                    t.aliases.insert(key);
                }
            }
            EasCall::DeactivateAll { name } => self.note_all(r, &verify::node(name), t)?,
            EasCall::ToggleMaintainer { name } => {
                if let Some(domain) = self.store.chain_domain_of(&verify::node(name).0, &r.tld)? {
                    t.names.insert(domain);
                }
            }
            EasCall::SetPublicAliases { .. } => {}
        }
        Ok(())
    }

    /// Every alias of a name (deactivateAll).
    fn note_all(&self, r: &Registry, node: &B256, t: &mut Touched) -> Result<(), StoreError> {
        if let Some(domain) = self.store.chain_domain_of(&node.0, &r.tld)? {
            for (local, record) in self.store.alias_list(&domain)? {
                if record.chain.is_some() {
                    t.aliases.insert(alias_key(&domain, &local));
                }
            }
        }
        Ok(())
    }

    /// Reads the truth for what was touched, at `block`.
    async fn read_truth(&self, t: &Touched, block: u64) -> Result<ChainUpdate, WatchError> {
        let mut bindings = Vec::new();
        for key in &t.aliases {
            let (domain, local) = split_alias_key(key);
            if let Some(b) = self.store.alias_get(domain, local)?.and_then(|r| r.chain) {
                bindings.push((key.clone(), b));
            }
        }
        let mut names = Vec::new();
        for domain in &t.names {
            if let Some(state) = self.store.chain_name(domain)? {
                names.push((domain.clone(), state));
            }
        }
        self.verify(&bindings, &names, &t.maintainers, block).await
    }

    /// Re-reads commitments, name states and maintainer roles at `block`.
    async fn verify(
        &self,
        bindings: &[(String, ChainBinding)],
        names: &[(String, NameState)],
        maintainers: &BTreeSet<(String, Address)>,
        block: u64,
    ) -> Result<ChainUpdate, WatchError> {
        let mut reads = Vec::with_capacity(bindings.len() + names.len() * 3 + maintainers.len());
        let mut usable_bindings = Vec::new();
        for (key, b) in bindings {
            let Some(r) = self.registries.get(Some(&b.tld)) else {
                continue;
            };
            reads.push(StateRead::Commitment {
                eas: r.eas,
                node: verify::node(&b.sld),
                alias: verify::alias_hash(&b.alias),
            });
            usable_bindings.push(key.clone());
        }
        let mut usable_names = Vec::new();
        for (domain, n) in names {
            let Some(r) = self.registries.get(Some(&n.tld)) else {
                continue;
            };
            let dc = r.dc(&self.rpc).await?;
            reads.push(StateRead::OwnerOf {
                dc,
                sld: n.sld.clone(),
            });
            reads.push(StateRead::NameExpires {
                dc,
                sld: n.sld.clone(),
            });
            reads.push(StateRead::MaintainerAllowed {
                eas: r.eas,
                node: verify::node(&n.sld),
            });
            usable_names.push((domain.clone(), n.clone()));
        }
        let mut usable_maintainers = Vec::new();
        for (tld, account) in maintainers {
            let Some(r) = self.registries.get(Some(tld)) else {
                continue;
            };
            reads.push(StateRead::IsMaintainer {
                eas: r.eas,
                account: *account,
            });
            usable_maintainers.push((tld.clone(), *account));
        }
        let values = if reads.is_empty() {
            Vec::new()
        } else {
            self.rpc.read_many(&reads, At::Number(block)).await?
        };
        let mut values = values.into_iter();
        let bad = |what: &str| ChainError::Decode {
            what: "state read",
            detail: format!("unexpected answer for {what}"),
        };
        let mut update = ChainUpdate::default();
        // A reverting getCommitment stays an error (the EAS contract never
        // reverts on it); registry and role reads that revert mean "nothing".
        for key in usable_bindings {
            match values.next() {
                Some(StateValue::Hash(h)) => {
                    update.commitments.push((key, hex(h.as_slice()), block))
                }
                _ => return Err(bad("a commitment").into()),
            }
        }
        for (domain, old) in usable_names {
            match (
                values
                    .next()
                    .map(|v| v.or_if_reverted(StateValue::Address(Address::ZERO))),
                values
                    .next()
                    .map(|v| v.or_if_reverted(StateValue::Number(0))),
                values
                    .next()
                    .map(|v| v.or_if_reverted(StateValue::Bool(false))),
            ) {
                (
                    Some(StateValue::Address(owner)),
                    Some(StateValue::Number(expires)),
                    Some(StateValue::Bool(allowed)),
                ) => {
                    update.names.push((
                        domain,
                        NameState {
                            owner: hex(owner.as_slice()),
                            expires,
                            maintainer_allowed: allowed,
                            checked_block: block,
                            ..old
                        },
                    ));
                }
                _ => return Err(bad("a name").into()),
            }
        }
        for (tld, account) in usable_maintainers {
            match values
                .next()
                .map(|v| v.or_if_reverted(StateValue::Bool(false)))
            {
                Some(StateValue::Bool(holds)) => {
                    update
                        .maintainers
                        .push((tld, hex(account.as_slice()), holds))
                }
                _ => return Err(bad("a role").into()),
            }
        }
        Ok(update)
    }

    /// Verifies every chain-governed alias and name again, in batches, at
    /// the confirmed head (those last checked at that block or later are
    /// current already). Returns how many aliases are now verified.
    pub(crate) async fn sweep(&self) -> Result<usize, WatchError> {
        let head = self.observe_head().await?;
        // At the confirmed head; after a reorg to a shorter chain that can be
        // below the fork point, whose state (canonical, already confirmed) is
        // then the newest truth there is.
        let cursor = self.store.chain_cursor()?.map_or(0, |c| c.number);
        let block = head
            .number
            .saturating_sub(self.config.confirmations)
            .max(cursor)
            .min(head.number);
        let bindings = self.store.chain_bindings()?;
        let names = self.store.chain_names()?;
        let total = bindings.len();
        // Roles have no block of their own: every signer's is read.
        let maintainers: BTreeSet<(String, Address)> = bindings
            .iter()
            .filter_map(|(_, b)| Some((b.tld.clone(), b.signer.parse::<Address>().ok()?)))
            .collect();
        // What was already read at this block or a later one (a resync's
        // last range, an activation) needs no second read.
        let bindings: Vec<_> = bindings
            .into_iter()
            .filter(|(_, b)| b.checked_block < block)
            .collect();
        let names: Vec<_> = names
            .into_iter()
            .filter(|(_, n)| n.checked_block < block)
            .collect();
        let batch = self.config.sweep_batch.max(1);
        for chunk in bindings.chunks(batch) {
            let update = self.verify(chunk, &[], &BTreeSet::new(), block).await?;
            self.store.chain_apply(&update)?;
        }
        for chunk in names.chunks(batch) {
            let update = self.verify(&[], chunk, &BTreeSet::new(), block).await?;
            self.store.chain_apply(&update)?;
        }
        let update = self.verify(&[], &[], &maintainers, block).await?;
        self.store.chain_apply(&update)?;
        metrics::counter!("eas_chain_sweeps_total").increment(1);
        Ok(total)
    }

    /// For `resync`: moves the cursor back to just before `from` (or to the
    /// configured start) so that history is read again.
    pub(crate) async fn rewind_to(&self, from: u64) -> Result<(), WatchError> {
        let _cursor = self.cursor_lock.lock().await;
        let back = from.saturating_sub(1);
        let hash = self.hash_of(back).await?;
        self.store
            .chain_rewind(Some(Cursor { number: back, hash }))?;
        self.health.cursor.store(back, Ordering::Relaxed);
        Ok(())
    }

    /// Processes until the cursor reaches head − confirmations, reporting
    /// (cursor, target) after each step; then sweeps.
    pub(crate) async fn catch_up(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<usize, WatchError> {
        loop {
            match self.step().await? {
                Step::Advanced { to, target } => {
                    progress(to, target);
                    if to >= target {
                        break;
                    }
                }
                Step::Idle { cursor } => {
                    progress(cursor, cursor);
                    break;
                }
                Step::Rewound { .. } => {}
            }
        }
        self.sweep().await
    }

    /// How long to wait between polls.
    pub fn poll_interval(&self) -> Duration {
        self.config.poll_interval.0
    }
}

#[cfg(test)]
#[path = "watcher_tests.rs"]
mod tests;
