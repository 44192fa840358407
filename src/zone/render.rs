//! The zone-file form of the records to publish (`eas-relay dns records`):
//! TXT values as quoted character-strings, one line per record, grouped,
//! each after a comment saying why.

use super::plan::{Plan, Record, Section};

/// Longest a character-string of a TXT record may be (RFC 1035 §3.3).
pub(crate) const TXT_STRING_MAX: usize = 255;

/// A TXT value in zone-file form: quoted character-strings of at most 255
/// bytes each (RFC 1035 §3.3.14), `"` and `\` escaped, bytes outside
/// printable ASCII as `\DDD`.
pub(crate) fn zone_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    bytes
        .chunks(TXT_STRING_MAX)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() + 2);
            s.push('"');
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One record as a zone-file line (`name IN TYPE value`), the name padded
/// to `width`.
pub(crate) fn zone_line(r: &Record, width: usize) -> String {
    let value = if r.kind == "TXT" {
        zone_txt(&r.value)
    } else {
        r.value.clone()
    };
    format!("{:<width$} IN {:<5} {value}", r.name, r.kind)
}

/// `text` in lines of at most 78 columns (unless a word is longer), each
/// starting with `prefix`.
pub(super) fn wrap(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > 78 {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(prefix);
    out.push_str(&line);
    out.push('\n');
    out
}

/// `text` as `; ` comment lines.
fn comment(text: &str) -> String {
    wrap(text, "; ")
}

/// The records in zone-file form, grouped, each after a comment saying why.
/// The relay's address and PTR are commented out: their values are the
/// operator's to fill in.
pub(crate) fn zone(plan: &Plan, records: &[Record]) -> String {
    let width = records
        .iter()
        .filter(|r| !r.placeholder)
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0);
    let mut out = comment(&format!(
        "DNS records for the alias domain {} and for the relay {}. Check them with \
         `eas-relay dns check {}`. TXT values longer than 255 bytes are split into several \
         quoted strings of one record (RFC 1035); receivers join them.",
        plan.domain, plan.hostname, plan.domain
    ));
    let headings = [
        (
            Section::Alias,
            format!("---- {} (for each alias domain) ----", plan.domain),
        ),
        (
            Section::Relay,
            format!(
                "---- the relay {} (once, shared by every alias domain) ----",
                plan.hostname
            ),
        ),
    ];
    for (section, heading) in headings {
        out.push('\n');
        out.push_str(&comment(&heading));
        let mut last_why = "";
        for r in records.iter().filter(|r| r.section == section) {
            if r.why != last_why {
                out.push('\n');
                out.push_str(&comment(&r.why));
                last_why = &r.why;
            }
            let line = zone_line(r, width);
            if r.placeholder {
                out.push_str("; ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if plan.keys.is_empty() {
        out.push('\n');
        out.push_str(&comment(
            "No DKIM records: the relay neither signs (dkim.enabled) nor seals (arc.enabled).",
        ));
    }
    out
}
