//! How the management commands print: a table or lines for people, the
//! views as JSON with `--json`.

use crate::manage::{AliasView, DomainView, QueueView};
use serde::Serialize;

pub(super) fn done<T: Serialize>(json: bool, value: &T, text: &str) {
    if json {
        out!("{}", serde_json::to_string(value).unwrap_or_default());
    } else {
        out!("{text}");
    }
}

pub(super) fn print_domains(domains: &[DomainView], json: bool) {
    if json {
        out!("{}", serde_json::to_string(domains).unwrap_or_default());
        return;
    }
    out!(
        "{:<40} {:<7} {:<7} {:>8}",
        "DOMAIN",
        "ACTIVE",
        "SOURCE",
        "ALIASES"
    );
    for d in domains {
        let source = serde_json::to_value(d.source).unwrap_or_default();
        out!(
            "{:<40} {:<7} {:<7} {:>8}",
            d.domain,
            if d.active { "yes" } else { "no" },
            source.as_str().unwrap_or(""),
            d.aliases_total
        );
    }
}

pub(super) fn print_aliases(aliases: &[(String, AliasView)], json: bool) {
    if json {
        let list: Vec<_> = aliases
            .iter()
            .map(|(d, a)| serde_json::json!({ "domain": d, "alias": a }))
            .collect();
        out!("{}", serde_json::to_string(&list).unwrap_or_default());
        return;
    }
    for (domain, a) in aliases {
        let state = if a.active { "" } else { " (suspended)" };
        out!("{}@{domain} -> {}{state}", a.alias, a.forward);
    }
}

pub(super) fn print_queue(queue: &[QueueView], json: bool) {
    if json {
        out!("{}", serde_json::to_string(queue).unwrap_or_default());
        return;
    }
    out!(
        "{:<16} {:>9} {:<20} {:<32} PENDING",
        "ID",
        "SIZE",
        "ARRIVED",
        "SENDER"
    );
    for q in queue {
        let pending = q
            .recipients
            .iter()
            .filter(|r| r.status == "pending")
            .count();
        let sender = if q.sender.is_empty() { "<>" } else { &q.sender };
        out!(
            "{:<16} {:>9} {:<20} {:<32} {}/{}",
            q.id,
            q.size,
            format_ms(q.created),
            sender,
            pending,
            q.recipients.len()
        );
    }
    out!("{} message(s)", queue.len());
}

pub(super) fn print_queue_entry(q: &QueueView, json: bool) {
    if json {
        out!("{}", serde_json::to_string(q).unwrap_or_default());
        return;
    }
    out!("id:         {}", q.id);
    out!(
        "sender:     {}",
        if q.sender.is_empty() { "<>" } else { &q.sender }
    );
    out!("arrived:    {}", format_ms(q.created));
    if let Some(envelope) = &q.envelope_from {
        out!("envelope:   {envelope}");
    }
    out!("size:       {}", q.size);
    out!("subject:    {}", q.subject.as_deref().unwrap_or(""));
    out!("message-id: {}", q.message_id.as_deref().unwrap_or(""));
    out!("client:     {}", q.client_ip.as_deref().unwrap_or(""));
    for r in &q.recipients {
        out!(
            "recipient:  {} (alias {}) {} after {} attempt(s){}{}",
            r.address,
            r.alias,
            r.status,
            r.attempts,
            r.next_attempt
                .map(|t| format!(", next {}", format_ms(t)))
                .unwrap_or_default(),
            r.last_reply
                .as_deref()
                .map(|l| format!(", last reply: {l}"))
                .unwrap_or_default()
        );
    }
}

pub(super) fn print_logs(logs: &serde_json::Value, json: bool) {
    if json {
        out!("{logs}");
        return;
    }
    for item in logs.as_array().into_iter().flatten() {
        let event = &item["events"][0];
        // The message is usually the whole reply, code included.
        let code = event["code"].to_string();
        let message = event["message"].as_str().unwrap_or("");
        let reply = if message.starts_with(&code) {
            message.to_string()
        } else {
            format!("{code} {message}")
        };
        out!(
            "{} {} -> {} {}: {reply}",
            format_ms(item["created"].as_u64().unwrap_or(0)),
            item["recipient"]["email"].as_str().unwrap_or(""),
            item["forward"]["email"].as_str().unwrap_or(""),
            event["status"].as_str().unwrap_or(""),
        );
    }
}

fn format_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}
