//! The signatures the relay adds to what it forwards: one DKIM-Signature of
//! its own domain per key (relaxed/relaxed; the configured header fields the
//! message has, From oversigned), then the ARC set (ARC-Authentication-
//! Results with the inbound verdicts, ARC-Message-Signature, ARC-Seal).
//! Header fields already in the message are never touched; the body is
//! hashed once for all signatures.

use crate::config::{Config, KeyAlgorithm};
use crate::rewrite::keys::SelectorKey;
use mail_auth::common::crypto::{DkimKey, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticationResults};
use memchr::memchr;

/// One top-level header field, as signers and verifiers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, without the whitespace obsolete syntax allows before ':'.
    pub name: &'a [u8],
    /// Everything after ':' up to and including the final CRLF (folding kept).
    pub value: &'a [u8],
    /// Byte range of the whole field in the message.
    pub start: usize,
    pub end: usize,
}

/// `header` without the fields `drop` picks; None when it picks none (the
/// header stays as it is).
pub fn without_fields(header: &[u8], drop: impl Fn(&Field<'_>) -> bool) -> Option<Vec<u8>> {
    let (fields, _) = header_fields(header);
    let dropped: Vec<(usize, usize)> = fields
        .iter()
        .filter(|f| drop(f))
        .map(|f| (f.start, f.end))
        .collect();
    if dropped.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(header.len());
    let mut at = 0;
    for (start, end) in dropped {
        out.extend_from_slice(header.get(at..start).unwrap_or_default());
        at = end;
    }
    out.extend_from_slice(header.get(at..).unwrap_or_default());
    Some(out)
}

/// The header fields of `message`, top to bottom, and where the body starts
/// (after the empty line; the message length when there is none). A line
/// without ':' counts as a field of that name with an empty value, as
/// mail-auth and other verifiers see it.
pub fn header_fields(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut fields = Vec::with_capacity(32);
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") {
            return (fields, pos + 2);
        }
        if rest[0] == b'\n' {
            return (fields, pos + 1);
        }
        let mut end = pos + memchr(b'\n', rest).map_or(rest.len(), |p| p + 1);
        while end < message.len() && matches!(message[end], b' ' | b'\t') {
            end += memchr(b'\n', &message[end..]).map_or(message.len() - end, |p| p + 1);
        }
        let first_line = &message[pos..end];
        let (name, value) = match memchr(b':', first_line) {
            Some(colon) if !first_line[..colon].contains(&b'\n') => {
                (&first_line[..colon], &first_line[colon + 1..])
            }
            _ => (first_line, &first_line[first_line.len()..]),
        };
        let name = trim_end(name);
        fields.push(Field {
            name,
            value,
            start: pos,
            end,
        });
        pos = end;
    }
    (fields, message.len())
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// How the inbound message's ARC chain is continued.
pub struct Seal<'a> {
    /// The inbound verdicts, which become the ARC-Authentication-Results.
    pub results: &'a AuthenticationResults<'a>,
    /// The verified inbound chain (gives the instance number and cv=).
    pub chain: &'a ArcOutput<'a>,
}

/// Signs with the relay's keys; built once at startup.
pub struct Signer {
    domain: String,
    /// (selector, key) of every DKIM signature made; empty when dkim.enabled is off.
    dkim: Vec<(String, DkimKey)>,
    /// dkim.headers, deduplicated.
    headers: Vec<String>,
    /// What the ARC-Message-Signature covers: dkim.headers and DKIM-Signature.
    ams_headers: Vec<String>,
    /// (selector, key) that seals; None when ARC sealing is off.
    arc: Option<(String, DkimKey)>,
}

impl Signer {
    /// `keys` are the loaded DKIM keys (all of them sign when dkim.enabled;
    /// the one arc.selector names, or the first RSA key, seals).
    pub fn new(config: &Config, keys: &[SelectorKey]) -> Result<Signer, String> {
        let domain = config.dkim_domain().to_ascii_lowercase();
        let mut headers: Vec<String> = Vec::new();
        for h in &config.dkim.headers {
            if !headers.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                headers.push(h.clone());
            }
        }
        let dkim = if config.dkim.enabled {
            keys.iter()
                .filter(|k| k.dkim)
                .map(|k| Ok((k.selector.clone(), signing_key(k)?)))
                .collect::<Result<_, String>>()?
        } else {
            Vec::new()
        };
        let mut ams_headers = headers.clone();
        if !ams_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("DKIM-Signature"))
        {
            ams_headers.push("DKIM-Signature".into());
        }
        let arc = if config.arc.enabled && config.auth.enabled {
            let key = arc_key(config, keys)?;
            Some((key.selector.clone(), signing_key(key)?))
        } else {
            if config.arc.enabled {
                tracing::warn!(
                    "arc.enabled needs auth.enabled (the seal carries the inbound verdicts): \
                     not sealing"
                );
            }
            None
        };
        Ok(Signer {
            domain,
            dkim,
            headers,
            ams_headers,
            arc,
        })
    }

    /// Selectors that sign DKIM, in the order the signatures are added.
    pub fn dkim_selectors(&self) -> impl Iterator<Item = &str> {
        self.dkim.iter().map(|(s, _)| s.as_str())
    }

    /// Selector of the sealing key, when ARC sealing is on.
    pub fn arc_selector(&self) -> Option<&str> {
        self.arc.as_ref().map(|(s, _)| s.as_str())
    }

    /// Nothing to sign with: `sign` would return nothing.
    pub fn is_idle(&self) -> bool {
        self.dkim.is_empty() && self.arc.is_none()
    }

    /// The header fields to put on top of the message (CRLF-terminated):
    /// the ARC set when `seal` is given and sealing is on, then one
    /// DKIM-Signature per key. `header` is the message's header section;
    /// `body_hash` the relaxed SHA-256 hash of everything after it (the
    /// body is never needed here, so it never has to be in memory).
    pub fn sign(
        &self,
        header: &[u8],
        seal: Option<Seal<'_>>,
        body_hash: &[u8],
    ) -> Result<Vec<u8>, mail_auth::Error> {
        let seal = seal.filter(|_| self.arc.is_some());
        if self.dkim.is_empty() && seal.is_none() {
            return Ok(Vec::new());
        }
        let (fields, _) = header_fields(header);
        let bh = base64(body_hash);
        let now = now_tag();

        let dkim_block =
            dkim_signatures(&self.domain, &self.dkim, &self.headers, &fields, &bh, &now)?;

        let Some(seal) = seal else {
            return Ok(dkim_block);
        };
        let Some((selector, key)) = &self.arc else {
            return Ok(dkim_block);
        };
        // RFC 8617 §5.1: instance i follows the last set; cv=none for the
        // first, else pass (only verified, passing chains are given to us to
        // seal, so the sets in the message are well formed).
        let prior = arc_sets(&fields);
        let (instance, cv) = match prior.last() {
            Some((last, _)) => (last + 1, "pass"),
            None => (1, "none"),
        };
        let mut aar = format!("ARC-Authentication-Results: i={instance};").into_bytes();
        let results = seal.results.to_header();
        aar.extend_from_slice(
            results
                .strip_prefix("Authentication-Results:")
                .unwrap_or(&results)
                .as_bytes(),
        );

        // The AMS covers the message as it will leave: our DKIM signatures
        // on top of its header fields.
        let (dkim_fields, _) = header_fields(&dkim_block);
        let all: Vec<Field<'_>> = dkim_fields.iter().chain(fields.iter()).copied().collect();
        let (signed, h) = select(&all, &self.ams_headers);
        let ams_tags = [
            ("i", instance.to_string()),
            ("a", key.algorithm().name().to_string()),
            ("d", self.domain.clone()),
            ("s", selector.clone()),
            ("c", "relaxed/relaxed".to_string()),
            ("h", h),
            ("t", now.clone()),
            ("bh", bh),
        ];
        let ams = signed_field("ARC-Message-Signature", &ams_tags, key, |w| {
            Canonicalization::Relaxed.canonicalize_headers(signed.iter().copied(), w)
        })?;

        // The AS covers every ARC set in instance order, this one last.
        let mut chain: Vec<(&[u8], &[u8])> = prior.iter().map(|(_, f)| (f.name, f.value)).collect();
        let (ours, _) = header_fields(&aar);
        let (ams_field, _) = header_fields(&ams);
        chain.extend(
            ours.iter()
                .chain(ams_field.iter())
                .map(|f| (f.name, f.value)),
        );
        let as_tags = [
            ("i", instance.to_string()),
            ("a", key.algorithm().name().to_string()),
            ("t", now),
            ("cv", cv.to_string()),
            ("d", self.domain.clone()),
            ("s", selector.clone()),
        ];
        let arc_seal = signed_field("ARC-Seal", &as_tags, key, |w| {
            Canonicalization::Relaxed.canonicalize_headers(chain.iter().copied(), w)
        })?;

        let mut out = Vec::with_capacity(arc_seal.len() + ams.len() + aar.len() + dkim_block.len());
        out.extend_from_slice(&arc_seal);
        out.extend_from_slice(&ams);
        out.extend_from_slice(&aar);
        out.extend_from_slice(&dkim_block);
        Ok(out)
    }
}

/// One DKIM-Signature of `domain` per (selector, key), relaxed/relaxed,
/// over the fields named in `headers` that the message has (`fields`, its
/// header), From oversigned; `bh` is the base64 body hash, `now` the `t=`.
/// Used for the relay's own signatures and for a sending domain's
/// ([`crate::rewrite::domain_keys`]).
pub(crate) fn dkim_signatures(
    domain: &str,
    keys: &[(String, DkimKey)],
    headers: &[String],
    fields: &[Field<'_>],
    bh: &str,
    now: &str,
) -> Result<Vec<u8>, mail_auth::Error> {
    let mut block = Vec::with_capacity(600 * keys.len());
    if keys.is_empty() {
        return Ok(block);
    }
    let (signed, h) = select(fields, headers);
    for (selector, key) in keys {
        let tags = [
            ("v", "1".to_string()),
            ("a", key.algorithm().name().to_string()),
            ("d", domain.to_string()),
            ("s", selector.clone()),
            ("c", "relaxed/relaxed".to_string()),
            ("h", h.clone()),
            ("t", now.to_string()),
            ("bh", bh.to_string()),
        ];
        let field = signed_field("DKIM-Signature", &tags, key, |w| {
            Canonicalization::Relaxed.canonicalize_headers(signed.iter().copied(), w)
        })?;
        block.extend_from_slice(&field);
    }
    Ok(block)
}

/// The `t=` of a signature made now: seconds since the epoch.
pub(crate) fn now_tag() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

/// A header field as (name, value), the pair canonicalization takes.
type NameValue<'a> = (&'a [u8], &'a [u8]);

/// The ARC fields of a message with their instance, in the order the seal
/// covers them: by instance, and within one, AAR, AMS, AS.
fn arc_sets<'a>(fields: &[Field<'a>]) -> Vec<(u32, Field<'a>)> {
    let kinds: [&[u8]; 3] = [
        b"ARC-Authentication-Results",
        b"ARC-Message-Signature",
        b"ARC-Seal",
    ];
    let mut sets: Vec<(u32, usize, Field<'a>)> = fields
        .iter()
        .filter_map(|f| {
            let kind = kinds.iter().position(|k| k.eq_ignore_ascii_case(f.name))?;
            Some((instance_of(f.value)?, kind, *f))
        })
        .collect();
    sets.sort_by_key(|(i, kind, _)| (*i, *kind));
    sets.into_iter().map(|(i, _, f)| (i, f)).collect()
}

/// The `i=` that starts an ARC field's value.
fn instance_of(value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?.trim_start();
    let rest = text.strip_prefix('i').or_else(|| text.strip_prefix('I'))?;
    let digits = rest.trim_start().strip_prefix('=')?.trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The header fields a signature covers: every instance of each name in
/// `names` that the message has, bottom to top (the order verifiers pick
/// them), and one more `From` (oversigning: a From added later breaks the
/// signature, RFC 6376 §8.15). Returns them in hashing order and the `h=`.
fn select<'a>(fields: &[Field<'a>], names: &[String]) -> (Vec<NameValue<'a>>, String) {
    let signed: Vec<(&[u8], &[u8])> = fields
        .iter()
        .rev()
        .filter(|f| {
            names
                .iter()
                .any(|h| h.as_bytes().eq_ignore_ascii_case(f.name))
        })
        .map(|f| (f.name, f.value))
        .collect();
    let mut h: Vec<String> = signed
        .iter()
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect();
    h.push("From".into());
    (signed, h.join(":"))
}

/// Writes a signature field `Name: tag=value; ...; b=SIGNATURE` and signs it.
/// The field is folded only between tags, never inside a value, and `b=`
/// comes last on its own line, so the bytes a verifier canonicalizes (with
/// the `b=` value removed) are exactly the bytes signed here: the relaxed
/// form of this very field with an empty `b=`, after `covered`. (mail-auth's
/// own writer folds differently when signing and when writing, which breaks
/// some signatures depending only on field lengths.)
fn signed_field(
    name: &str,
    tags: &[(&str, String)],
    key: &DkimKey,
    covered: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, mail_auth::Error> {
    let mut field = format!("{name}: ").into_bytes();
    let mut line = field.len();
    for (i, (tag, value)) in tags.iter().enumerate() {
        let item = format!("{tag}={value};");
        if i > 0 {
            if line + 1 + item.len() > 76 {
                field.extend_from_slice(b"\r\n\t");
                line = 1;
            } else {
                field.push(b' ');
                line += 1;
            }
        }
        field.extend_from_slice(item.as_bytes());
        line += item.len();
    }
    field.extend_from_slice(b"\r\n\tb=");
    let mut input = Vec::with_capacity(1024);
    covered(&mut input);
    let unsigned = [&field[..], b"\r\n"].concat();
    let (parsed, _) = header_fields(&unsigned);
    let mut own = Vec::with_capacity(unsigned.len());
    Canonicalization::Relaxed
        .canonicalize_headers(parsed.iter().map(|f| (f.name, f.value)), &mut own);
    // The signature field is hashed without its final CRLF (RFC 6376 §3.7).
    input.extend_from_slice(own.strip_suffix(b"\r\n").unwrap_or(&own));
    let signature = key.sign(input.as_slice())?;
    field.extend_from_slice(base64(&signature).as_bytes());
    field.extend_from_slice(b"\r\n");
    Ok(field)
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn signing_key(key: &SelectorKey) -> Result<DkimKey, String> {
    key.pair.signing_key().map_err(|e| {
        format!(
            "DKIM key {} (selector {}): {e}",
            key.path.display(),
            key.selector
        )
    })
}

/// The key named by arc.selector; else the first RSA key (ARC verifiers
/// expect rsa-sha256); else, with a warning, the first key.
fn arc_key<'k>(config: &Config, keys: &'k [SelectorKey]) -> Result<&'k SelectorKey, String> {
    if !config.arc.selector.is_empty() {
        return keys
            .iter()
            .find(|k| k.selector == config.arc.selector)
            .ok_or_else(|| {
                format!(
                    "invalid config: key `arc.selector` = {:?}: names none of the DKIM keys ({})",
                    config.arc.selector,
                    keys.iter()
                        .map(|k| k.selector.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
    }
    if let Some(key) = keys
        .iter()
        .find(|k| k.pair.algorithm() == KeyAlgorithm::Rsa)
    {
        return Ok(key);
    }
    let key = keys
        .first()
        .ok_or("ARC sealing needs a DKIM key, and none is configured")?;
    tracing::warn!(
        selector = %key.selector,
        "no RSA key for ARC sealing: sealing with an Ed25519 key, which many ARC \
         verifiers do not accept (add an RSA key to dkim.keys)"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_see_folding_obsolete_names_and_the_body() {
        let msg = b"Received: from a\r\n\tby b\r\nSubject : Hi\r\nFrom: \"A\r\n B\" <a@x>\r\nno colon here\r\nTo:b@y\r\n\r\nbody\r\nX: not a header\r\n";
        let (fields, body) = header_fields(msg);
        let names: Vec<&[u8]> = fields.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                &b"Received"[..],
                b"Subject",
                b"From",
                b"no colon here",
                b"To"
            ]
        );
        assert_eq!(fields[0].value, b" from a\r\n\tby b\r\n");
        assert_eq!(fields[2].value, b" \"A\r\n B\" <a@x>\r\n");
        assert_eq!(fields[3].value, b"");
        assert_eq!(&msg[fields[4].start..fields[4].end], b"To:b@y\r\n");
        assert_eq!(&msg[body..], b"body\r\nX: not a header\r\n");
    }

    #[test]
    fn header_fields_without_body() {
        let (fields, body) = header_fields(b"A: 1\r\nB: 2\r\n");
        assert_eq!(fields.len(), 2);
        assert_eq!(body, 12);
        let (fields, body) = header_fields(b"\r\nbody only");
        assert!(fields.is_empty());
        assert_eq!(body, 2);
    }
}
