//! Why a configuration cannot be used ([`ConfigError`]), and the small
//! checks every section's validation shares.

use super::units::HumanDuration;
use std::fmt;
use std::path::PathBuf;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config: key `{key}` = {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub(super) fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// `value` is not 0.
pub(super) fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(key, 0, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// `value` is longer than 0s.
pub(super) fn nonzero_duration(key: &str, value: HumanDuration) -> Result<(), ConfigError> {
    if value.0.is_zero() {
        Err(ConfigError::invalid(key, value, "must be longer than 0s"))
    } else {
        Ok(())
    }
}

/// `url` with what may hold a password replaced by `***`, for error
/// messages and logs: its user information (`scheme://user:pw@host`) and
/// the value of a `password=` query parameter (PostgreSQL URLs accept one).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: everything before an `@` may be a secret.
        return match url.rfind('@') {
            Some(at) => format!("***{}", url.get(at..).unwrap_or_default()),
            None => redacted_query(url),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let shown = match rest.get(..authority_end).and_then(|a| a.rfind('@')) {
        Some(at) => format!("{scheme}://***{}", rest.get(at..).unwrap_or_default()),
        None => url.to_string(),
    };
    redacted_query(&shown)
}

/// `text` with the value of every `password=` parameter (after `?`, `&`
/// or a space, as in a `key=value` connection string) replaced by `***`.
fn redacted_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password=") {
        let starts_param = at == 0
            || rest
                .get(..at)
                .and_then(|b| b.chars().next_back())
                .is_some_and(|c| matches!(c, '?' | '&' | ' ' | ';'));
        let value_at = at + "password=".len();
        out.push_str(rest.get(..value_at).unwrap_or_default());
        let tail = rest.get(value_at..).unwrap_or_default();
        if !starts_param {
            rest = tail;
            continue;
        }
        let end = tail.find(['&', ' ', '#', ';']).unwrap_or(tail.len());
        out.push_str("***");
        rest = tail.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(redacted("redis://:pw@h/0"), "redis://***@h/0");
        assert_eq!(redacted("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
        assert_eq!(
            redacted("postgres://eas:s3cret@db.example:5432/eas?sslmode=require"),
            "postgres://***@db.example:5432/eas?sslmode=require"
        );
        assert_eq!(
            redacted("postgresql://db/eas?user=eas&password=s3cret&sslmode=require"),
            "postgresql://db/eas?user=eas&password=***&sslmode=require"
        );
        assert_eq!(
            redacted("host=db password=s3cret user=eas"),
            "host=db password=*** user=eas"
        );
        // `xpassword=` is another parameter: left as it is.
        assert_eq!(
            redacted("postgres://db/?xpassword=1"),
            "postgres://db/?xpassword=1"
        );
    }
}
