//! The zone in Redis, as the CoreDNS redis plugin reads it: one connection
//! (multiplexed, reconnecting) with a deadline on connecting and on every
//! command, label sizes checked before their values are read, and writes
//! through one Lua compare-and-set script. Over `rediss://`, the server's
//! certificate is checked against the system's roots, or only against
//! `redis_ca_file`'s certificates when one is configured (a private CA).
//!
//! Why a script and not WATCH/MULTI/EXEC: WATCH is state of a connection,
//! and the relay shares one multiplexed connection among all its writes
//! (the worker's, the CLI's `--all` pipeline), where one task's WATCH
//! would guard or abort another's transaction. The script runs atomically
//! in Redis and compares exactly the labels we write with what we read:
//! the same guarantee as WATCH on those fields, on a shared connection.

use super::edit::{LabelChange, MAX_LABEL_BYTES};
use super::{ProvisionError, ZoneWriter};
use crate::config::DnsProvisioningConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError, Script, TlsCertificates};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// KEYS[1] the zone; ARGV[1] the number of labels n, then per label:
/// name, "1" if it was present, its JSON as read, "1" if it stays, its new
/// JSON (a label that does not stay is deleted). Writes all and answers 1
/// only if every label still holds what was read.
const COMPARE_AND_SET: &str = r"
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local base = 2 + i * 5
  local current = redis.call('HGET', KEYS[1], ARGV[base])
  if ARGV[base + 1] == '1' then
    if current ~= ARGV[base + 2] then return 0 end
  elseif current then
    return 0
  end
end
for i = 0, n - 1 do
  local base = 2 + i * 5
  if ARGV[base + 3] == '1' then
    redis.call('HSET', KEYS[1], ARGV[base], ARGV[base + 4])
  else
    redis.call('HDEL', KEYS[1], ARGV[base])
  end
end
return 1
";

/// KEYS[1] the zone; ARGV[1] the largest label read, then the labels.
/// Sizes and values in one atomic step (a label cannot grow between the
/// check and the read): `{"large", label}` if one is too large, else
/// `{"ok", value or nil, …}`.
const READ: &str = r"
local max = tonumber(ARGV[1])
for i = 2, #ARGV do
  if redis.call('HSTRLEN', KEYS[1], ARGV[i]) > max then
    return {'large', ARGV[i]}
  end
end
local out = {'ok'}
for i = 2, #ARGV do
  out[i] = redis.call('HGET', KEYS[1], ARGV[i])
end
return out
";

/// The PEM of `redis_ca_file`, checked to hold at least one certificate
/// and nothing unparsable (`config check` calls it too).
pub fn load_ca(path: &Path) -> Result<Vec<u8>, ProvisionError> {
    crate::tls::read_ca_file(path)
        .map(|(pem, _)| pem)
        .map_err(|reason| ProvisionError::CaFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// A zone in Redis (the CoreDNS redis plugin's hash layout).
#[derive(Clone)]
pub struct RedisZone {
    connection: ConnectionManager,
    timeout: Duration,
    script: Script,
    read: Script,
}

fn classify(e: RedisError) -> ProvisionError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        ProvisionError::Unreachable(e.to_string())
    } else {
        ProvisionError::Refused(e.to_string())
    }
}

/// A password file's content without its final newline (an editor adds
/// one); any other space is part of the password, so it is kept.
fn without_final_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

impl RedisZone {
    /// A zone at `url` (the password, if any, from `password`); connects
    /// on first use, so that a node starts while Redis is down.
    pub fn new(
        url: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<RedisZone, ProvisionError> {
        Self::with_ca(url, password, None, timeout)
    }

    /// As [`RedisZone::new`], trusting only the PEM certificates `ca` (from
    /// [`load_ca`]) for a `rediss://` server when given.
    pub fn with_ca(
        url: &str,
        password: Option<&str>,
        ca: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<RedisZone, ProvisionError> {
        let mut info = url
            .into_connection_info()
            .map_err(|e| ProvisionError::Refused(format!("redis_url: {e}")))?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = match ca {
            Some(root_cert) => redis::Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(classify)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Our own queue retries with backoff; the manager tries once.
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(classify)?;
        Ok(RedisZone {
            connection,
            timeout,
            script: Script::new(COMPARE_AND_SET),
            read: Script::new(READ),
        })
    }

    /// The zone of `[dns_provisioning]`, its password read from its file.
    pub fn from_config(config: &DnsProvisioningConfig) -> Result<RedisZone, ProvisionError> {
        let password = match &config.redis_password_file {
            Some(path) => Some(
                crate::files::read_secret_string(path)
                    .map_err(|source| ProvisionError::Password {
                        path: path.clone(),
                        source,
                    })
                    .map(without_final_newline)?,
            ),
            None => None,
        };
        let ca = config.redis_ca_file.as_deref().map(load_ca).transpose()?;
        Self::with_ca(&config.redis_url, password.as_deref(), ca, config.timeout.0)
    }

    /// `f` within the deadline (the manager's own deadlines cover each
    /// command; this one also covers a reconnection in between).
    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, ProvisionError> {
        match tokio::time::timeout(self.timeout.saturating_mul(2), f).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(ProvisionError::Timeout(self.timeout)),
        }
    }
}

impl ZoneWriter for RedisZone {
    async fn read(
        &self,
        zone: &str,
        labels: &[&str],
    ) -> Result<Vec<Option<String>>, ProvisionError> {
        let mut con = self.connection.clone();
        // Sizes and values in one script: a hostile or broken zone cannot
        // make us read a huge value, not even by growing it in between.
        let mut call = self.read.key(zone);
        call.arg(MAX_LABEL_BYTES);
        for label in labels {
            call.arg(*label);
        }
        let answer: Vec<Option<Vec<u8>>> = self.timed(call.invoke_async(&mut con)).await?;
        let (marker, values) = match answer.split_first() {
            Some((Some(marker), values)) => (marker.as_slice(), values.to_vec()),
            _ => return Err(ProvisionError::Refused("empty answer to the read".into())),
        };
        if marker == b"large" {
            let label = values
                .first()
                .cloned()
                .flatten()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            return Err(super::LabelError::TooLarge { label }.into());
        }
        if marker != b"ok" {
            return Err(ProvisionError::Refused("unknown answer to the read".into()));
        }
        // A nil at the end is dropped from a Lua array: pad to one per label.
        let mut values = values;
        if values.len() > labels.len() {
            return Err(ProvisionError::Refused("long answer to the read".into()));
        }
        values.resize(labels.len(), None);
        values
            .into_iter()
            .zip(labels)
            .map(|(v, label)| match v {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                    ProvisionError::Refused(format!("label {label} is not UTF-8 text"))
                }),
            })
            .collect()
    }

    async fn compare_and_set(
        &self,
        zone: &str,
        changes: &[LabelChange],
    ) -> Result<bool, ProvisionError> {
        let mut con = self.connection.clone();
        let mut call = self.script.key(zone);
        call.arg(changes.len());
        for c in changes {
            call.arg(c.label)
                .arg(if c.before.is_some() { "1" } else { "0" })
                .arg(c.before.as_deref().unwrap_or(""))
                .arg(if c.after.is_some() { "1" } else { "0" })
                .arg(c.after.as_deref().unwrap_or(""));
        }
        let written: i64 = self.timed(call.invoke_async(&mut con)).await?;
        Ok(written == 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_with_spaces_keeps_them_only_the_final_newline_goes() {
        let f = super::without_final_newline;
        assert_eq!(f(" pass word \n".into()), " pass word ");
        assert_eq!(f("pw\r\n".into()), "pw");
        assert_eq!(f("pw\n\n".into()), "pw\n");
        assert_eq!(f("pw".into()), "pw");
    }
}
