//! Environment overrides: `EAS_RELAY_A__B=value` sets key `a.b` over the
//! file and the defaults, and an error in such a value names the variable.

use super::error::ConfigError;
use std::collections::BTreeMap;

/// Prefix of environment variables that override config keys.
const ENV_PREFIX: &str = "EAS_RELAY_";
/// Environment variable naming the config file (read by the CLI, not a key).
pub(crate) const ENV_CONFIG_FILE: &str = "EAS_RELAY_CONFIG";

/// Names the environment variable behind a bad value, so that nobody
/// searches the file for it.
pub(super) fn attribute(err: ConfigError, origins: &BTreeMap<String, String>) -> ConfigError {
    match err {
        ConfigError::Invalid { key, value, reason } => {
            let origin = origins.iter().find(|(path, _)| {
                key == **path
                    || key.starts_with(&format!("{path}."))
                    || key.starts_with(&format!("{path}["))
            });
            let value = match origin {
                Some((_, var)) => format!("{value} (set by {var})"),
                None => value,
            };
            ConfigError::Invalid { key, value, reason }
        }
        other => other,
    }
}

/// Applies `EAS_RELAY_A__B=value` variables onto the table as key `a.b`;
/// returns which key path each variable set.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origins = BTreeMap::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE || path.is_empty() {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::invalid(
                &name,
                &raw,
                "environment override has an empty key segment",
            ));
        }
        let value = env_value(&raw);
        let mut cursor = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = cursor
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::invalid(
                        &keys.join("."),
                        &raw,
                        format!("`{key}` is not a section, so {name} cannot set a key inside it"),
                    ));
                }
            };
        }
        cursor.insert(keys[keys.len() - 1].clone(), value);
        origins.insert(keys.join("."), name);
    }
    Ok(origins)
}

/// An environment value is read as a TOML value when it is one (numbers,
/// booleans, arrays, quoted strings) and as a plain string otherwise.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}
