//! Operator changes to queue entries, applied inside a store batch: the
//! same code serves the committer (node running) and the CLI (offline).

use crate::store::{Batch, RcptStatus, Store, StoreError};

/// The entries an operator action applies to: `id`, or every entry with
/// recipients pending.
pub fn targets(store: &Store, id: Option<u64>) -> Result<Vec<u64>, StoreError> {
    match id {
        Some(id) => Ok(vec![id]),
        None => Ok(store
            .queue_due_list()?
            .into_iter()
            .map(|(_, id)| id)
            .collect()),
    }
}

/// Makes every pending recipient of `id` due at `now`; false when the
/// entry does not exist or has nothing pending.
pub fn retry(b: &mut Batch<'_>, id: u64, now: u64) -> Result<bool, StoreError> {
    let Some(mut entry) = b.get(id)? else {
        return Ok(false);
    };
    if entry.is_finished() {
        return Ok(false);
    }
    for r in &mut entry.recipients {
        if r.status == RcptStatus::Pending {
            r.next_attempt = now;
        }
    }
    b.put(entry)?;
    Ok(true)
}

/// Removes `id` from the queue; the caller deletes its spool file once the
/// batch is committed. False when it did not exist.
pub fn remove(b: &mut Batch<'_>, id: u64) -> Result<bool, StoreError> {
    Ok(b.remove(id)?.is_some())
}
