//! Start-up recovery: every committed entry is re-queued; spool files
//! without an entry (never acknowledged) are swept; entries that cannot be
//! read, or whose body is missing, are quarantined, never silently dropped.

use super::{QueueError, Spool};
use crate::store::{Store, format_queue_id};
use std::collections::HashSet;

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// (id, due) of every entry with pending recipients.
    pub due: Vec<(u64, u64)>,
    pub orphans_removed: usize,
    pub quarantined: usize,
}

pub(super) fn recover(store: &Store, spool: &Spool) -> Result<Recovered, QueueError> {
    let mut out = Recovered::default();
    let (entries, damaged) = store.queue_scan()?;
    for (id, raw) in damaged {
        spool.quarantine(id, &raw, "queue record does not decode")?;
        store.batch(true, |b| b.remove(id).map(|_| ()))?;
        tracing::error!(id = %format_queue_id(id), "damaged queue record quarantined");
        out.quarantined += 1;
    }
    let (files, strange) = spool.list()?;
    for path in strange {
        tracing::warn!(path = %path.display(), "unexpected file in the spool left alone");
    }
    let files: HashSet<u64> = files.into_iter().collect();
    let mut known = HashSet::new();
    for entry in entries {
        known.insert(entry.id);
        if !files.contains(&entry.id) {
            let raw = serde_json::to_vec_pretty(&entry).unwrap_or_default();
            spool.quarantine(entry.id, &raw, "spool file missing")?;
            store.batch(true, |b| b.remove(entry.id).map(|_| ()))?;
            tracing::error!(id = %format_queue_id(entry.id), "queue entry without body quarantined");
            out.quarantined += 1;
        } else if entry.is_finished() {
            store.batch(true, |b| b.remove(entry.id).map(|_| ()))?;
            spool.remove(entry.id)?;
        } else if let Some(due) = entry.next_due() {
            out.due.push((entry.id, due));
        }
    }
    for id in files.difference(&known) {
        // A body whose metadata never committed was never acknowledged.
        spool.remove(*id)?;
        out.orphans_removed += 1;
    }
    store.queue_due_orphans()?;
    if out.orphans_removed > 0 || out.quarantined > 0 || !out.due.is_empty() {
        tracing::info!(
            queued = out.due.len(),
            orphans_removed = out.orphans_removed,
            quarantined = out.quarantined,
            "queue recovered"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueueEntry;

    fn entry(id: u64) -> QueueEntry {
        crate::store::sample_entry(id, 5)
    }

    #[test]
    fn requeues_sweeps_and_quarantines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        // 1: complete; 2: body missing; 3: orphan body
        spool.write(1, b"one").unwrap();
        spool.write(3, b"three").unwrap();
        store
            .batch(true, |b| {
                b.put(entry(1))?;
                b.put(entry(2))
            })
            .unwrap();
        let r = recover(&store, &spool).unwrap();
        assert_eq!(r.due, vec![(1, 5)]);
        assert_eq!(r.orphans_removed, 1);
        assert_eq!(r.quarantined, 1);
        assert_eq!(spool.list().unwrap().0, vec![1]);
        assert!(store.queue_get(2).unwrap().is_none());
        let meta = spool
            .quarantine_dir()
            .join(format!("{}.meta", format_queue_id(2)));
        assert!(
            std::fs::read_to_string(meta)
                .unwrap()
                .contains("spool file missing")
        );
        assert_eq!(store.queue_due_list().unwrap(), vec![(5, 1)]);
    }
}
