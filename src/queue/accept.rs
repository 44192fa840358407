//! The queue's own records for a message the inbound server accepted: one
//! recipient per distinct forwarding address, all pending and due at once,
//! then queued durably (spool file fsynced, then the store commit).

use super::{Queue, QueueError};
use crate::spool::Message;
use crate::store::{QueueEntry, QueuedRecipient, RcptStatus};
use std::collections::HashSet;
use std::net::IpAddr;

/// A recipient accepted in a transaction.
pub(crate) struct AcceptedRecipient {
    /// As the client wrote it (for the Received header).
    pub rcpt: String,
    /// The alias that matched.
    pub alias: String,
    pub destinations: Vec<String>,
}

/// What the inbound server knows of a message it accepted, for its queue
/// entry (the body comes separately, as the spool's [`Message`]).
pub(crate) struct Accepted {
    pub id: u64,
    /// Unix ms of acceptance.
    pub created: u64,
    /// The envelope sender as received ("" is the null sender).
    pub sender: String,
    /// The envelope sender towards the next hop when it differs (SRS).
    pub envelope_from: Option<String>,
    pub client_ip: IpAddr,
    pub helo: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// See [`QueueEntry::sender_authenticated`].
    pub sender_authenticated: bool,
    pub recipients: Vec<AcceptedRecipient>,
    /// The content scan's verdict (None: not scanned).
    pub spam: Option<crate::store::SpamLog>,
}

/// A message on disk: its id and how many forwarding addresses it goes to.
pub(crate) struct Queued {
    pub id: u64,
    pub recipients: usize,
}

impl Accepted {
    /// The store's record: each forwarding address once (compared without
    /// case), whichever aliases lead to it.
    fn into_entry(self, size: u64) -> QueueEntry {
        let mut seen = HashSet::new();
        let mut recipients = Vec::new();
        for accepted in &self.recipients {
            for dest in &accepted.destinations {
                if seen.insert(dest.to_lowercase()) {
                    recipients.push(QueuedRecipient {
                        address: dest.clone(),
                        rcpt: accepted.rcpt.clone(),
                        alias: accepted.alias.clone(),
                        status: RcptStatus::Pending,
                        attempts: 0,
                        next_attempt: self.created,
                        last_reply: None,
                    });
                }
            }
        }
        QueueEntry {
            id: self.id,
            envelope_from: self.envelope_from,
            sender: self.sender,
            created: self.created,
            size,
            client_ip: Some(self.client_ip.to_string()),
            helo: self.helo,
            message_id: self.message_id,
            subject: self.subject,
            smtputf8: self.smtputf8,
            body_8bit: self.body_8bit,
            is_dsn: false,
            sender_authenticated: self.sender_authenticated,
            recipients,
            due: None,
            spam: self.spam,
        }
    }
}

impl Queue {
    /// Queues a message the inbound server accepted; returns only once it
    /// is on disk (see [`Queue::enqueue`]).
    pub(crate) async fn accept(
        &self,
        accepted: Accepted,
        message: Message,
    ) -> Result<Queued, QueueError> {
        let size = (message.head.len() as u64).saturating_add(message.body.len());
        let entry = accepted.into_entry(size);
        let recipients = entry.recipients.len();
        let id = self.enqueue(entry, message).await?;
        Ok(Queued { id, recipients })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(rcpt: &str, destinations: &[&str]) -> AcceptedRecipient {
        AcceptedRecipient {
            rcpt: rcpt.into(),
            alias: rcpt.into(),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn each_forwarding_address_is_queued_once_and_due_at_acceptance() {
        let accepted = Accepted {
            id: 7,
            created: 1_000,
            sender: "s@origin.test".into(),
            envelope_from: Some("SRS0=x@relay.test".into()),
            client_ip: "192.0.2.7".parse().unwrap(),
            helo: Some("client.test".into()),
            message_id: None,
            subject: Some("hi".into()),
            smtputf8: false,
            body_8bit: true,
            sender_authenticated: true,
            recipients: vec![
                recipient("a@d.country", &["one@x.test", "two@x.test"]),
                recipient("b@d.country", &["ONE@x.test", "three@x.test"]),
            ],
            spam: None,
        };
        let entry = accepted.into_entry(42);
        let addresses: Vec<_> = entry.recipients.iter().map(|r| &r.address[..]).collect();
        assert_eq!(addresses, ["one@x.test", "two@x.test", "three@x.test"]);
        assert_eq!(entry.recipients[2].rcpt, "b@d.country");
        assert!(
            entry
                .recipients
                .iter()
                .all(|r| r.status == RcptStatus::Pending
                    && r.attempts == 0
                    && r.next_attempt == 1_000)
        );
        assert_eq!(entry.next_due(), Some(1_000));
        assert_eq!(entry.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!((entry.size, entry.is_dsn, entry.due), (42, false, None));
    }
}
