//! Our authserv-id in arriving mail (RFC 8601 §5). An
//! `Authentication-Results` field naming the relay's authserv-id can only
//! be a forgery (or an old result of ours that nothing vouches for): it is
//! removed before the message is signed and sealed, so the destination
//! sees only the relay's own, on top. An `ARC-Authentication-Results`
//! naming our authserv-id in a set that is not sealed by our own signing
//! domain is not trusted: such a chain is not continued.

use crate::rewrite::sign::without_fields;
use mail_auth::AuthenticatedMessage;

/// `header` without its `Authentication-Results` fields of `authserv_id`;
/// None when there are none (the header stays as it is).
pub fn strip_own(header: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    without_fields(header, |f| {
        f.name.eq_ignore_ascii_case(b"Authentication-Results")
            && names(authserv_id_of(f.value), authserv_id)
    })
}

/// The arriving ARC chain has a set whose `ARC-Authentication-Results`
/// names our authserv-id but whose seal is not ours (`d=` other than our
/// signing domain): someone speaks in our name.
pub fn forged_arc_results(
    message: &AuthenticatedMessage<'_>,
    authserv_id: &str,
    our_domain: &str,
) -> bool {
    message.aar_headers.iter().any(|aar| {
        // The value is "i=N; authserv-id; ...".
        let after_instance = aar
            .value
            .iter()
            .position(|b| *b == b';')
            .and_then(|p| aar.value.get(p + 1..))
            .unwrap_or_default();
        names(authserv_id_of(after_instance), authserv_id)
            && !message.as_headers.iter().any(|seal| {
                seal.header.i == aar.header.i && seal.header.d.eq_ignore_ascii_case(our_domain)
            })
    })
}

fn names(found: Option<&[u8]>, authserv_id: &str) -> bool {
    found.is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.as_bytes()))
}

/// The authserv-id that starts an `Authentication-Results` value: after
/// whitespace and comments, a token or a quoted string.
fn authserv_id_of(value: &[u8]) -> Option<&[u8]> {
    let mut rest = skip_cfws(value);
    if let Some(quoted) = rest.strip_prefix(b"\"") {
        let end = quoted.iter().position(|b| *b == b'"')?;
        return quoted.get(..end);
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    rest = rest.get(..end)?;
    (!rest.is_empty()).then_some(rest)
}

/// Skips folding whitespace and (possibly nested) comments.
fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        match s.first() {
            Some(b' ' | b'\t' | b'\r' | b'\n') => s = s.get(1..).unwrap_or_default(),
            Some(b'(') => {
                let mut depth = 0usize;
                let mut end = s.len();
                let mut escaped = false;
                for (i, &b) in s.iter().enumerate() {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                s = s.get(end..).unwrap_or_default();
            }
            _ => return s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mx.relay.test";

    #[test]
    fn our_results_are_removed_and_others_kept() {
        let header = b"Received: x\r\nAuthentication-Results: MX.Relay.Test; dkim=pass\r\n\
Authentication-Results: other.example;\r\n\tspf=pass\r\nauthentication-results:  (c (n)) mx.relay.test ;\r\n dmarc=pass\r\n\
Authentication-Results: \"mx.relay.test\"; arc=pass\r\nSubject: hi\r\n\r\n";
        let out = strip_own(header, ID).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: x\r\nAuthentication-Results: other.example;\r\n\tspf=pass\r\nSubject: hi\r\n\r\n"
        );
        assert!(strip_own(b"Subject: x\r\n\r\n", ID).is_none());
        assert!(strip_own(b"Authentication-Results: mx.relay.test.evil; x\r\n\r\n", ID).is_none());
    }

    fn arc_header(seal_domain: &str, aar_id: &str) -> String {
        format!(
            "ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none; d={seal_domain}; s=s1; b=AAAA\r\n\
             ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d={seal_domain}; s=s1;\r\n\
             \th=from; t=1; bh=AAAA; b=AAAA\r\n\
             ARC-Authentication-Results: i=1; {aar_id}; dkim=pass header.d=bank.example\r\n\
             From: <a@b.example>\r\n\r\n"
        )
    }

    #[test]
    fn arc_results_in_our_name_are_trusted_only_under_our_seal() {
        let judge = |seal: &str, id: &str| {
            let header = arc_header(seal, id);
            let message = AuthenticatedMessage::parse(header.as_bytes()).unwrap();
            assert_eq!(message.aar_headers.len(), 1, "{header}");
            forged_arc_results(&message, ID, "relay.test")
        };
        assert!(judge("evil.example", "mx.relay.test"), "forged in our name");
        assert!(judge("evil.example", "MX.RELAY.TEST"), "in any case");
        assert!(
            !judge("relay.test", "mx.relay.test"),
            "our own earlier seal"
        );
        assert!(
            !judge("evil.example", "evil.example"),
            "someone else's results"
        );
    }

    proptest::proptest! {
        /// Any header: never panics, only ever removes whole fields.
        #[test]
        fn stripping_is_total(header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Some(out) = strip_own(&header, ID) {
                proptest::prop_assert!(out.len() < header.len());
            }
            let _ = authserv_id_of(&header);
        }
    }
}
