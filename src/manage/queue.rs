//! Operator actions on the queue (list, show, retry, drop) and the
//! delivery log of a domain.

use super::validate::{parse_alias, parse_id};
use super::{Local, ManageError, QueueAccess, QueueView};
use crate::queue::QueueError;
use crate::store::{LogEntry, format_queue_id, now_ms};

impl Local {
    pub(crate) fn queue(&self) -> Result<Vec<QueueView>, ManageError> {
        let (entries, _) = self.store.queue_scan()?;
        Ok(entries.iter().map(QueueView::from_entry).collect())
    }

    pub(crate) fn queue_entry(&self, id: &str) -> Result<QueueView, ManageError> {
        let entry = self
            .store
            .queue_get(parse_id(id)?)?
            .ok_or_else(|| ManageError::NotFound(format!("message {id}")))?;
        Ok(QueueView::from_entry(&entry))
    }

    /// Makes one message (or all) due now; returns how many.
    pub(crate) async fn retry(&self, id: Option<&str>) -> Result<usize, ManageError> {
        let id = id.map(parse_id).transpose()?;
        let n = match &self.queue {
            QueueAccess::Live(queue) => queue.retry(id).await?,
            QueueAccess::Offline(_) => {
                let ids = crate::queue::ops::targets(&self.store, id)?;
                let now = now_ms();
                self.store.batch(true, |b| {
                    let mut n = 0;
                    for id in ids {
                        n += usize::from(crate::queue::ops::retry(b, id, now)?);
                    }
                    Ok(n)
                })?
            }
        };
        if let (Some(id), 0) = (id, n) {
            return Err(ManageError::NotFound(format!(
                "message {}",
                format_queue_id(id)
            )));
        }
        Ok(n)
    }

    /// Removes a message without delivering it.
    pub(crate) async fn drop_message(&self, id: &str) -> Result<(), ManageError> {
        let id = parse_id(id)?;
        let found = match &self.queue {
            QueueAccess::Live(queue) => queue.drop_message(id).await?,
            QueueAccess::Offline(spool) => {
                let found = self
                    .store
                    .batch(true, |b| crate::queue::ops::remove(b, id))?;
                if found {
                    spool.remove(id).map_err(QueueError::Spool)?;
                }
                found
            }
        };
        if !found {
            return Err(ManageError::NotFound(format!(
                "message {}",
                format_queue_id(id)
            )));
        }
        Ok(())
    }

    /// The delivery log of a domain (or one alias of it), newest first.
    pub(crate) fn logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        page: usize,
        limit: usize,
    ) -> Result<Vec<LogEntry>, ManageError> {
        let query = self.log_query(domain, alias, page, limit)?;
        Ok(self.store.log_list(
            &query.domain,
            query.alias.as_deref(),
            query.offset,
            query.limit,
        )?)
    }

    /// A request for a domain's log checked (the domain known here, the
    /// alias valid), for this node's log or the cluster's.
    pub(crate) fn log_query(
        &self,
        domain: &str,
        alias: Option<&str>,
        page: usize,
        limit: usize,
    ) -> Result<LogQuery, ManageError> {
        let (name, _) = self.domain_record(domain)?;
        Ok(LogQuery {
            domain: name,
            alias: alias.map(parse_alias).transpose()?,
            offset: page.saturating_sub(1).saturating_mul(limit),
            limit,
        })
    }
}

/// A checked request for a domain's delivery log.
pub(crate) struct LogQuery {
    pub domain: String,
    /// The alias's local part, normalized.
    pub alias: Option<String>,
    pub offset: usize,
    pub limit: usize,
}
