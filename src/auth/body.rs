//! DKIM body hashes of a message whose body is not in memory: mail-auth
//! hashes `raw_message[body_offset..]`, and we hand it only the header
//! section, so the hashes its signatures need are computed here from the
//! body (in memory or in its incoming file, read in chunks) and put in
//! place before verification. The relaxed/SHA-256 hash, computed while the
//! message arrived, is reused as is.

use crate::spool::Body;
use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::{HashAlgorithm, HashContext, HashImpl, Sha1, Sha256};
use mail_auth::dkim::Canonicalization;
use mail_auth::dkim::canonicalize::BodyHasher;

type Context = <Sha256 as HashImpl>::Context;

/// One body hash to compute: canonicalization, algorithm, `l=` (0: all).
pub type Wanted = (Canonicalization, HashAlgorithm, u64);

/// Hashes `prefix` followed by `body`, once per entry of `wanted`, in one
/// pass over the body (blocking: file reads).
pub fn hashes(prefix: &[u8], body: &Body, wanted: &[Wanted]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut hashers: Vec<BodyHasher<Context>> = wanted
        .iter()
        .map(|&(c, a, l)| {
            let context = match a {
                HashAlgorithm::Sha1 => Sha1::hasher(),
                HashAlgorithm::Sha256 => Sha256::hasher(),
            };
            BodyHasher::new(context, c, l)
        })
        .collect();
    if hashers.is_empty() {
        return Ok(Vec::new());
    }
    for hasher in &mut hashers {
        hasher.write(prefix);
    }
    body.for_each_chunk(|chunk| {
        for hasher in &mut hashers {
            hasher.write(chunk);
        }
    })?;
    Ok(hashers
        .into_iter()
        .map(|h| h.finish().0.complete().as_ref().to_vec())
        .collect())
}

/// Fills `message.body_hashes` for a message parsed from its `header`
/// section alone, whose body is `body`. `relaxed_sha256` is the relaxed,
/// SHA-256, unlimited hash of `body`.
pub fn fill(
    message: &mut AuthenticatedMessage<'_>,
    header: &[u8],
    body: &Body,
    relaxed_sha256: &[u8],
) -> std::io::Result<()> {
    // Where mail-auth saw the body start; normally the end of `header`.
    let prefix = header.get(message.body_offset()..).unwrap_or_default();
    let mut todo = Vec::new();
    for (i, (c, a, l, bh)) in message.body_hashes.iter_mut().enumerate() {
        if prefix.is_empty()
            && *c == Canonicalization::Relaxed
            && *a == HashAlgorithm::Sha256
            && *l == 0
        {
            *bh = relaxed_sha256.to_vec();
        } else {
            todo.push((i, (*c, *a, *l)));
        }
    }
    let wanted: Vec<Wanted> = todo.iter().map(|(_, w)| *w).collect();
    for ((i, _), hash) in todo.iter().zip(hashes(prefix, body, &wanted)?) {
        if let Some(entry) = message.body_hashes.get_mut(*i) {
            entry.3 = hash;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_mail_auths_over_the_whole_message() {
        let body = b"Hello  world \r\n\r\n.line\r\n\r\n\r\n".to_vec();
        for (c, a, l) in [
            (Canonicalization::Relaxed, HashAlgorithm::Sha256, 0),
            (Canonicalization::Simple, HashAlgorithm::Sha256, 0),
            (Canonicalization::Simple, HashAlgorithm::Sha1, 0),
            (Canonicalization::Relaxed, HashAlgorithm::Sha256, 7),
        ] {
            let expected = a.hash(c.canonical_body(&body, l));
            let got = hashes(b"", &Body::Memory(body.clone()), &[(c, a, l)]).unwrap();
            assert_eq!(got[0], expected.as_ref(), "{c:?} {a:?} l={l}");
            let got = hashes(&body[..5], &Body::Memory(body[5..].to_vec()), &[(c, a, l)]).unwrap();
            assert_eq!(got[0], expected.as_ref(), "split {c:?} {a:?} l={l}");
        }
    }
}
