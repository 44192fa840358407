//! The sans-IO heart of provisioning: given the JSON of a zone label as it
//! is in Redis (the CoreDNS redis plugin's format), what it must become
//! when the relay's records are written ([`changes`]) or taken out again
//! ([`removals`]). Only `mx` and `txt` of the apex and `txt` of `_dmarc`
//! are ever changed; every other field of a label keeps its exact bytes
//! and its place, and a label that needs no change is not rewritten at all
//! (idempotent).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::fmt;

/// The apex label's field name in the zone hash.
pub(crate) const APEX: &str = "@";
/// The DMARC label's field name in the zone hash.
pub(crate) const DMARC_LABEL: &str = "_dmarc";
/// Largest label JSON read from the zone: a label is a handful of records;
/// anything larger is refused rather than parsed.
pub(crate) const MAX_LABEL_BYTES: usize = 64 * 1024;
/// The fields the relay reads or writes, folded as CoreDNS reads them.
const FOLDED: [&str; 3] = ["mx", "txt", "cname"];

/// What the relay wants in a name's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The relay's MX hosts, fully qualified (trailing dot), in order.
    pub mx: Vec<String>,
    /// MX hosts (canonical: lower case, no dot) that stay beside the relay's.
    pub keep_mx: Vec<String>,
    pub ttl: u32,
    /// The apex SPF record; None: leave SPF alone.
    pub spf: Option<String>,
    /// The DMARC record for `_dmarc` when it has none; None: leave it alone.
    pub dmarc: Option<String>,
}

/// A label the zone holds that cannot be edited safely: it is left as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {label} is not a JSON object")]
    NotAnObject { label: String },
    #[error("label {label} is larger than {MAX_LABEL_BYTES} bytes")]
    TooLarge { label: String },
    #[error("label {label} has a CNAME: no MX or TXT may stand beside it")]
    Cname { label: String },
}

/// One label to write: its JSON before and after (None: absent; after a
/// removal, a label left with no field at all is deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabelChange {
    pub label: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A JSON object as (key, raw value) pairs in their order, so that fields
/// the relay does not touch are written back byte for byte.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl RawObject {
    fn parse(label: &str, text: Option<&str>) -> Result<RawObject, LabelError> {
        let label = label.to_string();
        match text {
            None => Ok(RawObject(Vec::new())),
            Some(t) if t.len() > MAX_LABEL_BYTES => Err(LabelError::TooLarge { label }),
            Some(t) => {
                let mut obj: RawObject =
                    serde_json::from_str(t).map_err(|_| LabelError::NotAnObject { label })?;
                obj.fold();
                Ok(obj)
            }
        }
    }

    /// Folds every case variant of the fields the relay reads into one
    /// lower-case field holding the LAST occurrence's value, in the place
    /// of the first: CoreDNS decodes a label with Go's encoding/json, where
    /// keys match case-insensitively and the last duplicate wins, so this
    /// is what DNS serves. Reading anything else would let `{"mx":[ours],
    /// "mx":[old]}` look provisioned while DNS serves `old`.
    fn fold(&mut self) {
        for key in FOLDED {
            let mut at = self
                .0
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| k.eq_ignore_ascii_case(key))
                .map(|(i, _)| i);
            let Some(first) = at.next() else { continue };
            let last = at.next_back().unwrap_or(first);
            let value = self.0[last].1.clone();
            self.0[first] = (key.to_string(), value);
            let mut i = 0;
            self.0.retain(|(k, _)| {
                let keep = i == first || !k.eq_ignore_ascii_case(key);
                i += 1;
                keep
            });
        }
    }

    /// The value of `key` (one of [`FOLDED`]: after [`RawObject::fold`]
    /// there is exactly one, lower case).
    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Sets `key` to `value` in the place of its occurrence (or at the end).
    fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

fn raw(value: &Value) -> Box<RawValue> {
    // Serializing a Value never fails (its keys are strings); the fallback
    // is never reached.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Whether a TXT text is an SPF record: it begins exactly with `v=spf1`
/// then a space or the end (RFC 7208 §4.5; `" v=spf1"` is not one).
pub(crate) fn is_spf(text: &str) -> bool {
    let t = text.as_bytes();
    t.len() >= 6 && t[..6].eq_ignore_ascii_case(b"v=spf1") && t.get(6).is_none_or(|b| *b == b' ')
}

fn is_dmarc(text: &str) -> bool {
    let t = text.trim_start().as_bytes();
    t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"v=DMARC1")
}

/// The `text` of a TXT entry of the plugin's format, if it has one.
fn txt_text(entry: &RawValue) -> Option<String> {
    match serde_json::from_str::<Value>(entry.get()).ok()? {
        Value::Object(o) => match o.get("text") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn mx_host(entry: &RawValue) -> Option<String> {
    match serde_json::from_str::<Value>(entry.get()).ok()? {
        Value::Object(o) => match o.get("host") {
            Some(Value::String(s)) => Some(crate::dns::canonical(s)),
            _ => None,
        },
        _ => None,
    }
}

/// The entries of an array field (an absent or non-array field has none).
fn entries(obj: &RawObject, key: &str) -> Vec<Box<RawValue>> {
    obj.get(key)
        .and_then(|v| serde_json::from_str::<Vec<Box<RawValue>>>(v.get()).ok())
        .unwrap_or_default()
}

/// Replaces field `key` by `entries` unless it already means the same.
fn put_array(obj: &mut RawObject, key: &str, entries: &[Box<RawValue>]) -> bool {
    let old = obj.get(key);
    // The same entries byte for byte: unchanged, also when one holds what
    // serde_json accepts as text but not as a Value (`1e400`, a lone
    // surrogate `"\ud800"`); compared as Values only, such a label would
    // count as changed on every run and be rewritten forever.
    let same_bytes = old
        .and_then(|v| serde_json::from_str::<Vec<Box<RawValue>>>(v.get()).ok())
        .is_some_and(|old| {
            old.iter()
                .map(|e| e.get())
                .eq(entries.iter().map(|e| e.get()))
        });
    if same_bytes {
        return false;
    }
    let joined = format!(
        "[{}]",
        entries
            .iter()
            .map(|e| e.get())
            .collect::<Vec<_>>()
            .join(",")
    );
    let new = serde_json::from_str::<Value>(&joined).ok();
    let old = old.and_then(|v| serde_json::from_str::<Value>(v.get()).ok());
    if new.is_some() && old == new {
        return false;
    }
    // The entries are each valid JSON, so their array is too; were it not,
    // nothing is written rather than something the relay cannot vouch for.
    match RawValue::from_string(joined) {
        Ok(value) => {
            obj.set(key, value);
            true
        }
        Err(_) => false,
    }
}

/// The apex: the relay's MX hosts (plus the kept ones that were there) and
/// exactly one SPF record, in the place of the first old one.
fn edit_apex(obj: &mut RawObject, d: &Desired) -> bool {
    let ours: Vec<String> = d.mx.iter().map(|h| crate::dns::canonical(h)).collect();
    let mut mx: Vec<Box<RawValue>> =
        d.mx.iter()
            .zip(1u32..)
            .map(|(host, i)| {
                raw(&json!({
                    "ttl": d.ttl,
                    "host": host,
                    "preference": i.saturating_mul(10),
                }))
            })
            .collect();
    mx.extend(
        entries(obj, "mx")
            .into_iter()
            .filter(|e| mx_host(e).is_some_and(|h| d.keep_mx.contains(&h) && !ours.contains(&h))),
    );
    let mut changed = put_array(obj, "mx", &mx);
    if let Some(spf) = &d.spf {
        let old = entries(obj, "txt");
        let first_spf = old
            .iter()
            .position(|e| txt_text(e).is_some_and(|t| is_spf(&t)));
        let mut txt: Vec<Box<RawValue>> = old
            .into_iter()
            .filter(|e| !txt_text(e).is_some_and(|t| is_spf(&t)))
            .collect();
        let at = first_spf.unwrap_or(txt.len()).min(txt.len());
        txt.insert(at, raw(&json!({"ttl": d.ttl, "text": spf})));
        changed |= put_array(obj, "txt", &txt);
    }
    changed
}

/// `_dmarc`: the suggested record, only when the label has no DMARC record
/// and no CNAME (a TXT beside a CNAME is not allowed).
fn edit_dmarc(obj: &mut RawObject, dmarc: &str, ttl: u32) -> bool {
    let mut txt = entries(obj, "txt");
    if obj.get("cname").is_some()
        || txt
            .iter()
            .any(|e| txt_text(e).is_some_and(|t| is_dmarc(&t)))
    {
        return false;
    }
    txt.push(raw(&json!({"ttl": ttl, "text": dmarc})));
    put_array(obj, "txt", &txt)
}

/// The labels to write, given what the zone holds at the apex and at
/// `_dmarc` (None: absent). Empty when nothing needs to change.
pub fn changes(
    apex: Option<&str>,
    dmarc: Option<&str>,
    d: &Desired,
) -> Result<Vec<LabelChange>, LabelError> {
    let mut out = Vec::new();
    let mut obj = RawObject::parse(APEX, apex)?;
    if obj.get("cname").is_some() {
        // MX or TXT beside a CNAME is not allowed (RFC 1034 §3.6.2): the
        // owner points the name elsewhere; adding records would break it.
        return Err(LabelError::Cname { label: APEX.into() });
    }
    if edit_apex(&mut obj, d) {
        let after = obj.to_json();
        // What the relay writes must be readable by the relay again.
        if after.len() > MAX_LABEL_BYTES {
            return Err(LabelError::TooLarge { label: APEX.into() });
        }
        out.push(LabelChange {
            label: APEX,
            before: apex.map(str::to_string),
            after: Some(after),
        });
    }
    if let Some(record) = &d.dmarc {
        // A `_dmarc` label the relay cannot read is the owner's: it is left
        // alone, and the apex (what makes mail arrive) is still written.
        match RawObject::parse(DMARC_LABEL, dmarc) {
            Err(e) => tracing::warn!(error = %e, "_dmarc left as is"),
            Ok(mut obj) => {
                let after = edit_dmarc(&mut obj, record, d.ttl).then(|| obj.to_json());
                match after {
                    Some(after) if after.len() > MAX_LABEL_BYTES => {
                        tracing::warn!(
                            "_dmarc left as is: adding the record would make it too large"
                        )
                    }
                    Some(after) => out.push(LabelChange {
                        label: DMARC_LABEL,
                        before: dmarc.map(str::to_string),
                        after: Some(after),
                    }),
                    None => {}
                }
            }
        }
    }
    Ok(out)
}

/// Drops the entries of array field `key` that the relay wrote (`ours`);
/// a field left empty goes. True when something was dropped.
fn drop_entries(obj: &mut RawObject, key: &str, ours: impl Fn(&RawValue) -> bool) -> bool {
    let old = entries(obj, key);
    let kept: Vec<Box<RawValue>> = old.iter().filter(|e| !ours(e)).cloned().collect();
    if kept.len() == old.len() {
        return false;
    }
    if kept.is_empty() {
        obj.remove(key);
        true
    } else {
        put_array(obj, key, &kept)
    }
}

/// The change of one label by `edit` (None: nothing to change); a label
/// left with no field is deleted.
fn remove_from(
    label: &'static str,
    text: Option<&str>,
    edit: impl FnOnce(&mut RawObject) -> bool,
) -> Result<Option<LabelChange>, LabelError> {
    let Some(before) = text else {
        return Ok(None);
    };
    let mut obj = RawObject::parse(label, Some(before))?;
    if !edit(&mut obj) {
        return Ok(None);
    }
    Ok(Some(LabelChange {
        label,
        before: Some(before.to_string()),
        after: (!obj.0.is_empty()).then(|| obj.to_json()),
    }))
}

/// The labels to write to take the relay's records out of a name's zone:
/// the apex MX entries naming one of its hosts, the apex TXT and `_dmarc`
/// TXT entries whose text is still exactly the SPF and DMARC record the
/// relay writes; nothing else (an SPF record the owner changed since is
/// the owner's now). Empty when none is there.
pub fn removals(
    apex: Option<&str>,
    dmarc: Option<&str>,
    d: &Desired,
) -> Result<Vec<LabelChange>, LabelError> {
    let ours: Vec<String> = d.mx.iter().map(|h| crate::dns::canonical(h)).collect();
    let is_text = |record: &Option<String>, e: &RawValue| {
        record
            .as_ref()
            .is_some_and(|r| txt_text(e).is_some_and(|t| t == *r))
    };
    let apex = remove_from(APEX, apex, |obj| {
        let mx = drop_entries(obj, "mx", |e| mx_host(e).is_some_and(|h| ours.contains(&h)));
        let spf = drop_entries(obj, "txt", |e| is_text(&d.spf, e));
        mx | spf
    })?;
    let dmarc = remove_from(DMARC_LABEL, dmarc, |obj| {
        drop_entries(obj, "txt", |e| is_text(&d.dmarc, e))
    })?;
    Ok(apex.into_iter().chain(dmarc).collect())
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
