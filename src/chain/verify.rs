//! Pure EAS cryptography (no network): the hashes the contract keys aliases
//! by, the text the owner signs, signature parsing and signer recovery, and
//! the commitment that binds a reveal to what is on-chain (DESIGN §2).
//!
//! Signature policy: `parse_signature` takes exactly 65 bytes as 130 hex
//! digits, with an optional `0x`/`0X` prefix and nothing else (no spaces, no
//! trailing newline). `v` must be 27/28 (what wallets produce) or 0/1 (some
//! hardware wallets); anything else is refused. High-`s` signatures are
//! refused (EIP-2): wallets never produce them, OpenZeppelin's `ECDSA` (which
//! the EAS contract's `verify` uses) rejects them, so a reveal this relay
//! accepts is one the contract would accept too. Malleability itself is
//! harmless here, because the commitment binds the exact signature bytes.

use alloy::primitives::{Address, B256, Signature, U256, b256, eip191_hash_message, keccak256};

/// `keccak256("MAINTAINER_ROLE")`, the AccessControl role of EAS maintainers.
pub const MAINTAINER_ROLE: B256 =
    b256!("0x339759585899103d2ace64958e37e18ccb0504652c81d4a1b8aa80fe2126ab95");

/// Half the secp256k1 group order: the largest `s` EIP-2 allows.
const SECP256K1_HALF_N: U256 = U256::from_limbs([
    0xdfe9_2f46_681b_20a0,
    0x5d57_6e73_57a4_501d,
    0xffff_ffff_ffff_ffff,
    0x7fff_ffff_ffff_ffff,
]);

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not 130 hex digits (65 bytes) after the optional `0x`.
    #[error(
        "signature must be 65 bytes (130 hex digits, optional 0x prefix), got {digits} characters"
    )]
    Length { digits: usize },
    /// A character that is not a hex digit (position counts from the start
    /// of the input, prefix included).
    #[error("signature is not hex: {found:?} at position {position}")]
    NotHex { position: usize, found: char },
    /// The recovery byte is none of 27, 28, 0, 1.
    #[error("signature recovery byte v = {0} (expected 27, 28, 0 or 1)")]
    BadV(u8),
    /// `s` is in the upper half of the curve order (EIP-2).
    #[error("signature has a high s value (non-canonical, EIP-2)")]
    HighS,
    /// `r`/`s` out of range, or no public key recovers from them.
    #[error("signature does not recover a public key: {0}")]
    Unrecoverable(String),
}

/// The EAS node of a second-level name: `keccak256(utf8(sld))` (also the
/// base registrar's ERC-721 token id).
pub fn node(sld: &str) -> B256 {
    keccak256(sld.as_bytes())
}

/// The on-chain key of an alias: `keccak256(utf8(alias))`, of the alias
/// exactly as given (the frontend hashes what the user typed).
pub fn alias_hash(alias: &str) -> B256 {
    keccak256(alias.as_bytes())
}

/// The text the owner signs to authorize `alias@sld.tld → forward`.
pub fn message(alias: &str, sld: &str, tld: &str, forward: &str) -> String {
    format!(
        "You are about to authorize forwarding all emails sent to [{alias}@{sld}.{tld}] to [{forward}] instead"
    )
}

/// The EIP-191 (`personal_sign`) digest of `text`:
/// `keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ text)`.
pub fn message_digest(text: &str) -> B256 {
    eip191_hash_message(text.as_bytes())
}

/// Parses a 65-byte `r ‖ s ‖ v` signature written as 130 hex digits with an
/// optional `0x`/`0X` prefix; the whole input must match (anchored).
pub fn parse_signature(hex: &str) -> Result<[u8; 65], VerifyError> {
    let (prefix, digits) = match hex.as_bytes() {
        [b'0', b'x' | b'X', ..] => (2, &hex[2..]),
        _ => (0, hex),
    };
    if digits.len() != 130 {
        return Err(VerifyError::Length {
            digits: digits.chars().count(),
        });
    }
    let mut out = [0u8; 65];
    let bytes = digits.as_bytes();
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = hex_value(bytes[2 * i]).ok_or_else(|| not_hex(hex, prefix + 2 * i))?;
        let lo = hex_value(bytes[2 * i + 1]).ok_or_else(|| not_hex(hex, prefix + 2 * i + 1))?;
        *byte = (hi << 4) | lo;
    }
    parity(out[64])?;
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The error for a non-hex byte at byte offset `at` of `input` (which may
/// fall inside a multi-byte character: report the character there).
fn not_hex(input: &str, at: usize) -> VerifyError {
    let start = (0..=at)
        .rev()
        .find(|&i| input.is_char_boundary(i))
        .unwrap_or(0);
    let found = input[start..].chars().next().unwrap_or('\u{fffd}');
    VerifyError::NotHex {
        position: input[..start].chars().count(),
        found,
    }
}

/// The y-parity encoded by a recovery byte (27/28 or 0/1).
fn parity(v: u8) -> Result<bool, VerifyError> {
    match v {
        27 | 0 => Ok(false),
        28 | 1 => Ok(true),
        other => Err(VerifyError::BadV(other)),
    }
}

/// Recovers the address that produced `sig65` (`r ‖ s ‖ v`) over `digest`.
/// Never panics: malformed signatures are errors.
pub fn recover_signer(digest: B256, sig65: &[u8; 65]) -> Result<Address, VerifyError> {
    let y_parity = parity(sig65[64])?;
    let r = U256::from_be_slice(&sig65[..32]);
    let s = U256::from_be_slice(&sig65[32..64]);
    if r.is_zero() || s.is_zero() {
        return Err(VerifyError::Unrecoverable("r or s is zero".into()));
    }
    if s > SECP256K1_HALF_N {
        return Err(VerifyError::HighS);
    }
    Signature::new(r, s, y_parity)
        .recover_address_from_prehash(&digest)
        .map_err(|e| VerifyError::Unrecoverable(e.to_string()))
}

/// The commitment stored on-chain for a reveal:
/// `keccak256(utf8(alias) ‖ "|" ‖ utf8(forward) ‖ "|" ‖ sig65)`.
pub fn commitment(alias: &str, forward: &str, sig65: &[u8; 65]) -> B256 {
    let mut buf = Vec::with_capacity(alias.len() + forward.len() + 2 + 65);
    buf.extend_from_slice(alias.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(forward.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(sig65);
    keccak256(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use proptest::prelude::*;

    fn dummy_sig() -> [u8; 65] {
        let mut sig = [0x11u8; 65];
        sig[64] = 0x1b;
        sig
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn design_vectors() {
        assert_eq!(
            node("fsociety"),
            b256!("0xeb188ab663fcb210e0e5f0ff9c81a1260e28db0e4cb3eca20675e02a1fd672f8")
        );
        assert_eq!(
            alias_hash("hello"),
            b256!("0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8")
        );
        assert_eq!(
            commitment("hello", "mr.robot@gmail.com", &dummy_sig()),
            b256!("0xf3cf51937c452cb825888838caaca862fbfde52c516d84dfd71e54a9033af10f")
        );
        let text = message("hello", "fsociety", "country", "mr.robot@gmail.com");
        assert_eq!(
            text,
            "You are about to authorize forwarding all emails sent to [hello@fsociety.country] to [mr.robot@gmail.com] instead"
        );
        assert_eq!(text.len(), 113);
        assert_eq!(
            message_digest(&text),
            b256!("0x42a0a3be50a6c6b562bcfff01bad1bc7f3c9db5eba4cb9a552879e8349735bf0")
        );
        assert_eq!(MAINTAINER_ROLE, keccak256("MAINTAINER_ROLE"));
    }

    #[test]
    fn alias_is_hashed_as_given() {
        assert_ne!(alias_hash("Hello"), alias_hash("hello"));
        assert_eq!(alias_hash(""), keccak256([]));
    }

    #[test]
    fn wallet_signature_round_trip() {
        let signer = PrivateKeySigner::random();
        let text = message("hello", "fsociety", "country", "mr.robot@gmail.com");
        let sig = signer
            .sign_message_sync(text.as_bytes())
            .expect("local signing cannot fail")
            .as_bytes();
        assert!(sig[64] == 27 || sig[64] == 28, "wallets use v = 27/28");
        for written in [
            format!("0x{}", hex_of(&sig)),
            hex_of(&sig),
            format!("0X{}", hex_of(&sig).to_uppercase()),
        ] {
            let parsed = parse_signature(&written).expect("valid signature");
            assert_eq!(parsed, sig);
            assert_eq!(
                recover_signer(message_digest(&text), &parsed),
                Ok(signer.address())
            );
        }
        // v = 0/1 recovers the same signer.
        let mut low_v = sig;
        low_v[64] -= 27;
        assert_eq!(
            recover_signer(message_digest(&text), &low_v),
            Ok(signer.address())
        );
        // Another text recovers someone else (never an error, never the signer).
        let other = message("hello", "fsociety", "country", "evil@example.com");
        let recovered = recover_signer(message_digest(&other), &sig);
        assert!(recovered.is_err() || recovered != Ok(signer.address()));
    }

    #[test]
    fn high_s_is_refused() {
        let signer = PrivateKeySigner::random();
        let text = "x";
        let sig = signer.sign_message_sync(text.as_bytes()).unwrap();
        // The malleated twin: s' = n - s, parity flipped. Same signer
        // mathematically, refused by policy.
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        assert_eq!(SECP256K1_HALF_N, n / U256::from(2));
        let twin = Signature::new(sig.r(), n - sig.s(), !sig.v()).as_bytes();
        assert_eq!(
            recover_signer(message_digest(text), &twin),
            Err(VerifyError::HighS)
        );
        assert_eq!(
            recover_signer(message_digest(text), &sig.as_bytes()),
            Ok(signer.address())
        );
    }

    #[test]
    fn malformed_signatures() {
        let good = format!("0x{}", hex_of(&dummy_sig()));
        assert_eq!(parse_signature(&good), Ok(dummy_sig()));

        assert_eq!(parse_signature(""), Err(VerifyError::Length { digits: 0 }));
        assert_eq!(
            parse_signature("0x"),
            Err(VerifyError::Length { digits: 0 })
        );
        assert_eq!(
            parse_signature(&good[..good.len() - 2]),
            Err(VerifyError::Length { digits: 128 })
        );
        assert_eq!(
            parse_signature(&format!("{good}00")),
            Err(VerifyError::Length { digits: 132 })
        );
        assert_eq!(
            parse_signature(&format!("{good}\n")),
            Err(VerifyError::Length { digits: 131 })
        );
        assert_eq!(
            parse_signature(&format!(" {}", &hex_of(&dummy_sig())[1..])),
            Err(VerifyError::NotHex {
                position: 0,
                found: ' '
            })
        );
        let mut bad = good.clone();
        bad.replace_range(10..11, "g");
        assert_eq!(
            parse_signature(&bad),
            Err(VerifyError::NotHex {
                position: 10,
                found: 'g'
            })
        );
        // Non-ASCII: counted in characters, reported where it stands.
        let mut wide = good.clone();
        wide.replace_range(4..6, "é"); // two bytes for two digits
        assert_eq!(
            parse_signature(&wide),
            Err(VerifyError::NotHex {
                position: 4,
                found: 'é'
            })
        );
        let mut wide = good.clone();
        wide.replace_range(5..6, "é"); // lands on the low nibble's position
        wide.pop();
        assert_eq!(
            parse_signature(&wide),
            Err(VerifyError::NotHex {
                position: 5,
                found: 'é'
            })
        );
        assert_eq!(
            parse_signature(&format!("{good}é")),
            Err(VerifyError::Length { digits: 131 })
        );
        // Bad v.
        let mut v2 = dummy_sig();
        v2[64] = 2;
        assert_eq!(parse_signature(&hex_of(&v2)), Err(VerifyError::BadV(2)));
        assert_eq!(recover_signer(B256::ZERO, &v2), Err(VerifyError::BadV(2)));
        v2[64] = 37; // an EIP-155 style v is not a personal_sign signature
        assert_eq!(recover_signer(B256::ZERO, &v2), Err(VerifyError::BadV(37)));
        // Zero r/s, r beyond the field.
        let mut zero = [0u8; 65];
        zero[64] = 27;
        assert!(matches!(
            recover_signer(B256::ZERO, &zero),
            Err(VerifyError::Unrecoverable(_))
        ));
        let mut big_r = dummy_sig();
        big_r[..32].fill(0xff);
        assert!(matches!(
            recover_signer(B256::ZERO, &big_r),
            Err(VerifyError::Unrecoverable(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,140}") {
            let _ = parse_signature(&input);
        }

        #[test]
        fn parse_accepts_exactly_130_hex_digits(
            digits in "[0-9a-fA-F]{128}",
            v in prop::sample::select(vec!["1b", "1c", "00", "01", "1B", "1C"]),
            prefix in prop::sample::select(vec!["", "0x", "0X"]),
        ) {
            let text = format!("{prefix}{digits}{v}");
            let sig = parse_signature(&text).unwrap();
            prop_assert_eq!(hex_of(&sig), format!("{digits}{v}").to_lowercase());
        }

        #[test]
        fn recover_never_panics(bytes in prop::collection::vec(any::<u8>(), 65), digest in any::<[u8; 32]>()) {
            let mut sig = [0u8; 65];
            sig.copy_from_slice(&bytes);
            let _ = recover_signer(B256::from(digest), &sig);
            // With a valid v, too (the interesting path).
            sig[64] = 27 + (bytes[64] & 1);
            let _ = recover_signer(B256::from(digest), &sig);
        }
    }
}
