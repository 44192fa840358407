//! The compact binary form of the records every alias has (its alias
//! record, the reveal of a chain alias, the state of its name): a version
//! byte, then flags, LEB128 varints and length-prefixed strings, with
//! 0x-hex hashes and addresses as raw bytes and without what the record's
//! key already says (the domain's sld and tld, the alias when it is the
//! local part). A store of 1,000,000 aliases is mostly these records.
//!
//! Stores written before hold JSON records, which start with `{`: reading
//! accepts both (the first byte tells which), writing writes this form.
//! Every other record of the store (domains, queue, log, marks) stays JSON.
//!
//! Decoding is of bytes from the file, which may be damaged: nothing here
//! indexes or unwraps, every read is checked, and a record that does not
//! decode exactly (trailing bytes included) is a `StoreError::Corrupt`.

use super::db::StoreError;
use super::records::{AliasRecord, ChainBinding, NameState, Reveal, Source};
use super::tables::split_alias_key;
use serde::de::DeserializeOwned;

/// The first byte of a record in the first binary form. JSON records
/// start with `{` (0x7B), so the two cannot be mistaken for each other.
pub(crate) const BINARY_V1: u8 = 0x01;

/// A record with a compact binary form. `key` is the key the record is
/// stored under (what the form may leave out is recovered from it).
pub(crate) trait Compact: Sized + DeserializeOwned {
    fn write(&self, key: &str, out: &mut Vec<u8>);
    fn read(key: &str, r: &mut Reader<'_>) -> Option<Self>;
}

/// `value` in binary form, to be stored under `key`.
pub(crate) fn encode_compact<T: Compact>(key: &str, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(BINARY_V1);
    value.write(key, &mut out);
    out
}

/// The record stored under `key` in `table`, binary or (from an older
/// store) JSON.
pub(crate) fn decode_compact<T: Compact>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table,
        key: key.to_string(),
        reason,
    };
    match bytes.split_first() {
        Some((&BINARY_V1, rest)) => {
            let mut r = Reader { rest };
            match T::read(key, &mut r) {
                Some(v) if r.rest.is_empty() => Ok(v),
                Some(_) => Err(corrupt("trailing bytes after the record".into())),
                None => Err(corrupt("binary record does not decode".into())),
            }
        }
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string())),
        Some((b, _)) => Err(corrupt(format!("unknown record form {b:#04x}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// The records with a binary form are read by [`Store::read_all`] in
/// either form.
///
/// [`Store::read_all`]: super::db::Store::read_all
macro_rules! stored_compact {
    ($($t:ty),*) => {$(
        impl super::db::Stored for $t {
            fn decode_stored(table: &'static str, key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
                decode_compact(table, key, bytes)
            }
        }
    )*};
}
stored_compact!(AliasRecord, Reveal, NameState);

/// The record under `key` in a table keyed by name, decoded as
/// [`decode_compact`] does; works on read and write tables.
pub(crate) fn get_compact<T: Compact>(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(v) => Ok(Some(decode_compact(name, key, v.value())?)),
        None => Ok(None),
    }
}

/// Reads a binary record: every read checks what is left and answers
/// None past the end or on a malformed field.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    /// An unsigned LEB128 varint of at most 10 bytes that fits in a u64.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7F);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// A string written by [`put_hexish`].
    fn hexish(&mut self) -> Option<String> {
        let tag = self.len()?;
        let bytes = self.take(tag >> 1)?;
        if tag & 1 == 1 {
            let mut s = String::with_capacity(2 + 2 * bytes.len());
            s.push_str("0x");
            for b in bytes {
                s.push(char::from(HEX[usize::from(b >> 4)]));
                s.push(char::from(HEX[usize::from(b & 0xF)]));
            }
            Some(s)
        } else {
            std::str::from_utf8(bytes).ok().map(str::to_string)
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The value of a lower-case hex digit.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The bytes of `s` when it is `0x` and lower-case hex digits in pairs
/// (the form the relay writes hashes, addresses and signatures in).
fn canonical_hex(s: &str) -> Option<Vec<u8>> {
    let digits = s.strip_prefix("0x")?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// A string that is usually 0x-hex: its bytes when it is canonical hex
/// (rendered back exactly), else the string itself. One varint says which
/// and how long: length × 2, plus 1 for raw bytes.
fn put_hexish(out: &mut Vec<u8>, s: &str) {
    match canonical_hex(s) {
        Some(bytes) => {
            put_varint(out, (bytes.len() as u64) << 1 | 1);
            out.extend_from_slice(&bytes);
        }
        None => {
            put_varint(out, (s.len() as u64) << 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// (sld, tld) of `domain` when the tld is its last `tld_len` bytes after
/// a dot.
fn split_name(domain: &str, tld_len: usize) -> Option<(String, String)> {
    let dot = domain.len().checked_sub(tld_len)?.checked_sub(1)?;
    if domain.as_bytes().get(dot) != Some(&b'.') {
        return None;
    }
    Some((
        domain.get(..dot)?.to_string(),
        domain.get(dot + 1..)?.to_string(),
    ))
}

/// Whether `domain` is exactly `sld.tld`.
fn is_name(domain: &str, sld: &str, tld: &str) -> bool {
    domain.len() == sld.len() + 1 + tld.len()
        && domain.starts_with(sld)
        && domain.ends_with(tld)
        && domain.as_bytes().get(sld.len()) == Some(&b'.')
}

/// Writes (sld, tld): only the tld's length when the key's domain is
/// `sld.tld`, flagged by `from_key`.
fn put_name(out: &mut Vec<u8>, from_key: bool, sld: &str, tld: &str) {
    if from_key {
        put_varint(out, tld.len() as u64);
    } else {
        put_str(out, tld);
        put_str(out, sld);
    }
}

fn read_name(r: &mut Reader<'_>, from_key: bool, domain: &str) -> Option<(String, String)> {
    if from_key {
        split_name(domain, r.len()?)
    } else {
        let tld = r.str()?.to_string();
        let sld = r.str()?.to_string();
        Some((sld, tld))
    }
}

// AliasRecord flags.
const A_ACTIVE: u8 = 1;
const A_CHAIN_SOURCE: u8 = 2;
const A_BINDING: u8 = 4;
// ChainBinding flags.
const B_NAME_FROM_KEY: u8 = 1;
const B_ALIAS_IS_LOCAL: u8 = 2;
const B_OBSERVED_SAME: u8 = 4;

/// Stored under `domain NUL local`: flags, id, created, forwards, then
/// the binding (flags, [tld, sld], [alias], commitment, [observed],
/// signer, checked block), where the bracketed fields are left out when
/// the key or the commitment already says them.
impl Compact for AliasRecord {
    fn write(&self, key: &str, out: &mut Vec<u8>) {
        let (domain, local) = split_alias_key(key);
        let mut flags = 0;
        if self.active {
            flags |= A_ACTIVE;
        }
        if self.source == Source::Chain {
            flags |= A_CHAIN_SOURCE;
        }
        if self.chain.is_some() {
            flags |= A_BINDING;
        }
        out.push(flags);
        put_varint(out, self.id);
        put_varint(out, self.created);
        put_varint(out, self.forwards.len() as u64);
        for f in &self.forwards {
            put_str(out, f);
        }
        let Some(b) = &self.chain else {
            return;
        };
        let from_key = is_name(domain, &b.sld, &b.tld);
        let mut flags = 0;
        if from_key {
            flags |= B_NAME_FROM_KEY;
        }
        if b.alias == local {
            flags |= B_ALIAS_IS_LOCAL;
        }
        if b.observed == b.commitment {
            flags |= B_OBSERVED_SAME;
        }
        out.push(flags);
        put_name(out, from_key, &b.sld, &b.tld);
        if b.alias != local {
            put_str(out, &b.alias);
        }
        put_hexish(out, &b.commitment);
        if b.observed != b.commitment {
            put_hexish(out, &b.observed);
        }
        put_hexish(out, &b.signer);
        put_varint(out, b.checked_block);
    }

    fn read(key: &str, r: &mut Reader<'_>) -> Option<Self> {
        let (domain, local) = split_alias_key(key);
        let flags = r.byte()?;
        let id = r.varint()?;
        let created = r.varint()?;
        let count = r.len()?;
        // Each forward takes at least its length byte: a count beyond
        // what is left is damage, not a reason to allocate.
        if count > r.rest.len() {
            return None;
        }
        let forwards = (0..count)
            .map(|_| r.str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?;
        let chain = if flags & A_BINDING != 0 {
            let bf = r.byte()?;
            let (sld, tld) = read_name(r, bf & B_NAME_FROM_KEY != 0, domain)?;
            let alias = if bf & B_ALIAS_IS_LOCAL != 0 {
                local.to_string()
            } else {
                r.str()?.to_string()
            };
            let commitment = r.hexish()?;
            let observed = if bf & B_OBSERVED_SAME != 0 {
                commitment.clone()
            } else {
                r.hexish()?
            };
            Some(ChainBinding {
                tld,
                sld,
                alias,
                commitment,
                observed,
                signer: r.hexish()?,
                checked_block: r.varint()?,
            })
        } else {
            None
        };
        Some(AliasRecord {
            id,
            forwards,
            created,
            active: flags & A_ACTIVE != 0,
            source: if flags & A_CHAIN_SOURCE != 0 {
                Source::Chain
            } else {
                Source::Static
            },
            chain,
        })
    }
}

/// Stored under the alias key: forward, signature.
impl Compact for Reveal {
    fn write(&self, _key: &str, out: &mut Vec<u8>) {
        put_str(out, &self.forward);
        put_hexish(out, &self.signature);
    }

    fn read(_key: &str, r: &mut Reader<'_>) -> Option<Self> {
        Some(Reveal {
            forward: r.str()?.to_string(),
            signature: r.hexish()?,
        })
    }
}

// NameState flags.
const N_MAINTAINER_ALLOWED: u8 = 1;
const N_NAME_FROM_KEY: u8 = 2;

/// Stored under the domain: flags, [tld, sld], owner, expires, checked block.
impl Compact for NameState {
    fn write(&self, key: &str, out: &mut Vec<u8>) {
        let from_key = is_name(key, &self.sld, &self.tld);
        let mut flags = 0;
        if self.maintainer_allowed {
            flags |= N_MAINTAINER_ALLOWED;
        }
        if from_key {
            flags |= N_NAME_FROM_KEY;
        }
        out.push(flags);
        put_name(out, from_key, &self.sld, &self.tld);
        put_hexish(out, &self.owner);
        put_varint(out, self.expires);
        put_varint(out, self.checked_block);
    }

    fn read(key: &str, r: &mut Reader<'_>) -> Option<Self> {
        let flags = r.byte()?;
        let (sld, tld) = read_name(r, flags & N_NAME_FROM_KEY != 0, key)?;
        Some(NameState {
            tld,
            sld,
            owner: r.hexish()?,
            expires: r.varint()?,
            maintainer_allowed: flags & N_MAINTAINER_ALLOWED != 0,
            checked_block: r.varint()?,
        })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
