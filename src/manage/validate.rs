//! The checks of operator input: domain names, alias local parts, queue
//! ids, and the relay's own domains (never a forwarding target); and the
//! refusals they produce.

use super::ManageError;
use crate::address::parse_domain_name;
use crate::store::parse_queue_id;

pub(super) fn invalid(field: &str, message: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub(super) fn conflict(field: &str, message: impl Into<String>) -> ManageError {
    ManageError::Conflict {
        field: field.into(),
        message: message.into(),
    }
}

/// A domain name as operators may register it (the same rules as mail
/// addresses: no code point IDNA2008 disallows, nothing silently dropped).
pub(crate) fn parse_domain(domain: &str) -> Result<String, ManageError> {
    parse_domain_name(domain).map_err(|e| {
        invalid(
            "domain",
            format!(
                "`{}` is not a valid domain name: {e}",
                domain.escape_debug()
            ),
        )
    })
}

/// An alias local part: `*` (catch-all) or letters, digits, `.`, `_`, `-`,
/// `+`, 1 to 64 characters, not starting or ending with `.`.
pub(crate) fn parse_alias(alias: &str) -> Result<String, ManageError> {
    let alias = alias.to_lowercase();
    let ok = alias == crate::recipients::CATCH_ALL
        || (!alias.is_empty()
            && alias.len() <= 64
            && !alias.starts_with('.')
            && !alias.ends_with('.')
            && !alias.contains("..")
            && alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')));
    if ok {
        Ok(alias)
    } else {
        Err(invalid(
            "alias",
            format!("`{alias}` is not a valid alias (letters, digits, . _ - +, or *)"),
        ))
    }
}

pub(super) fn parse_id(id: &str) -> Result<u64, ManageError> {
    parse_queue_id(&id.to_ascii_uppercase())
        .ok_or_else(|| invalid("id", format!("`{id}` is not a queue id (16 hex digits)")))
}
