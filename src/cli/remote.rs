//! A running node reached through its own admin API: what the CLI uses
//! when a node is running (the store is then locked by that node). It
//! carries out the same [`Manage`] actions as [`crate::manage::Local`] and
//! returns the same views, so the CLI prints the same either way.

use crate::config::Config;
use crate::manage::{AliasView, DomainView, Manage, ManageError, QueueView, Removed};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a command waits out the node's rate limit before giving up.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(600);

/// Most items the API returns per request (see `api::Page::limit`).
const PAGE: usize = crate::api::MAX_LIMIT;

/// The admin API of a running node, and the key to call it with.
pub(crate) struct Remote {
    addr: SocketAddr,
    key: String,
}

impl Remote {
    /// The running node's admin API (called with the first admin key),
    /// if one answers.
    pub(super) async fn find(config: &Config) -> Option<Remote> {
        let keys = crate::api::keys::load_keys(config, false).unwrap_or_default();
        Remote::probe(config.http.listen, keys.first()?.clone()).await
    }

    /// A client when something listens on `addr`, None otherwise.
    async fn probe(addr: SocketAddr, key: String) -> Option<Remote> {
        let connected =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await;
        matches!(connected, Ok(Ok(_))).then_some(Remote { addr, key })
    }

    /// One API call; over the node's rate limit it waits as told
    /// (`Retry-After`) and tries again, for up to [`RATE_LIMIT_PATIENCE`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ManageError> {
        let started = std::time::Instant::now();
        loop {
            match self.call_once(method.clone(), path, body.clone()).await? {
                Ok(value) => return Ok(value),
                Err(wait) if started.elapsed() + wait <= RATE_LIMIT_PATIENCE => {
                    tokio::time::sleep(wait).await;
                }
                Err(_) => {
                    return Err(ManageError::Remote(format!(
                        "admin API at {}: still rate limited after {} s (http.rate_limit)",
                        self.addr,
                        RATE_LIMIT_PATIENCE.as_secs()
                    )));
                }
            }
        }
    }

    /// One request: the answer, or (Ok(Err(wait))) rate limited.
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Result<Value, Duration>, ManageError> {
        let remote = |e: &dyn std::fmt::Display| {
            ManageError::Remote(format!("admin API at {}: {e}", self.addr))
        };
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| remote(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| remote(&e))?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| remote(&e))?;
        let response = sender.send_request(request).await.map_err(|e| remote(&e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let secs = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            return Ok(Err(Duration::from_secs(secs.clamp(1, 60))));
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| remote(&e))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| remote(&e))?;
        if status.is_success() {
            return Ok(Ok(value));
        }
        let (field, message) = value["errors"]
            .as_object()
            .and_then(|errors| errors.iter().next())
            .map(|(field, msgs)| {
                let msg = msgs[0].as_str().unwrap_or("").to_string();
                (field.clone(), msg)
            })
            .unwrap_or_else(|| ("server".into(), status.to_string()));
        Err(match status {
            StatusCode::NOT_FOUND => {
                ManageError::NotFound(message.trim_end_matches(" not found").to_string())
            }
            StatusCode::BAD_REQUEST => ManageError::Invalid { field, message },
            StatusCode::CONFLICT => ManageError::Conflict { field, message },
            StatusCode::UNAUTHORIZED => ManageError::Remote(format!(
                "the admin API at {} refused the key (check http.admin_keys / admin.key)",
                self.addr
            )),
            _ => ManageError::Remote(format!("admin API at {}: {status}: {message}", self.addr)),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, field: &str) -> Result<T, ManageError> {
        let value = self.call(Method::GET, path, None).await?;
        parse(&value[field])
    }

    /// Every item of a paged list (the API serves at most [`PAGE`] per
    /// request), so that the CLI prints as much as it does offline.
    async fn all<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
    ) -> Result<Vec<T>, ManageError> {
        let mut items = Vec::new();
        for page in 1.. {
            let value = self
                .call(
                    Method::GET,
                    &format!("{path}?page={page}&limit={PAGE}"),
                    None,
                )
                .await?;
            let batch: Vec<T> = parse(&value[field])?;
            let total = value["total"].as_u64().unwrap_or(0) as usize;
            let last = batch.len() < PAGE;
            items.extend(batch);
            if last || items.len() >= total {
                break;
            }
        }
        Ok(items)
    }

    /// The watcher's state (`/v3/chain/status`).
    pub(crate) async fn chain_status(&self) -> Result<Value, ManageError> {
        let value = self.call(Method::GET, "/v3/chain/status", None).await?;
        Ok(value["chain"].clone())
    }

    /// Asks the node to re-read history from `from` (its start_block when None).
    pub(crate) async fn chain_resync(&self, from: Option<u64>) -> Result<u64, ManageError> {
        let body = json!({ "from_block": from }).to_string().into_bytes();
        let value = self
            .call(Method::POST, "/v3/chain/resync", Some(body))
            .await?;
        Ok(value["from_block"].as_u64().unwrap_or(0))
    }
}

impl Manage for Remote {
    async fn domains(&self) -> Result<Vec<DomainView>, ManageError> {
        self.all("/v3/domains", "domains").await
    }

    async fn add_domain(&self, domain: &str) -> Result<DomainView, ManageError> {
        let body = json!({ "domain": domain }).to_string().into_bytes();
        let value = self.call(Method::POST, "/v3/domains", Some(body)).await?;
        parse(&value["domain"])
    }

    async fn remove_domain(&self, domain: &str) -> Result<(), ManageError> {
        self.call(
            Method::DELETE,
            &format!("/v3/domains/{}", enc(domain)),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn aliases(&self, domain: &str) -> Result<Vec<AliasView>, ManageError> {
        self.all(&format!("/v3/domains/{}/aliases", enc(domain)), "aliases")
            .await
    }

    async fn add_alias(
        &self,
        domain: &str,
        alias: &str,
        forward: &str,
    ) -> Result<AliasView, ManageError> {
        let body = json!({ "alias": alias, "forward": forward })
            .to_string()
            .into_bytes();
        let value = self
            .call(
                Method::POST,
                &format!("/v3/domains/{}/aliases", enc(domain)),
                Some(body),
            )
            .await?;
        parse(&value["alias"])
    }

    async fn remove_alias(&self, domain: &str, alias: &str) -> Result<Removed, ManageError> {
        let path = format!("/v3/domains/{}/aliases/{}", enc(domain), enc(alias));
        let value = self.call(Method::DELETE, &path, None).await?;
        Ok(if value["suspended"] == true {
            Removed::Suspended
        } else {
            Removed::Deleted
        })
    }

    async fn import_aliases(&self, text: &str) -> Result<usize, ManageError> {
        let value = self
            .call(
                Method::POST,
                "/v3/aliases/import",
                Some(text.as_bytes().to_vec()),
            )
            .await?;
        Ok(value["imported"].as_u64().unwrap_or(0) as usize)
    }

    async fn queue(&self) -> Result<Vec<QueueView>, ManageError> {
        self.get("/v3/queue", "queue").await
    }

    async fn queue_entry(&self, id: &str) -> Result<QueueView, ManageError> {
        self.get(&format!("/v3/queue/{}", enc(id)), "message").await
    }

    async fn retry(&self, id: Option<&str>) -> Result<usize, ManageError> {
        let path = match id {
            Some(id) => format!("/v3/queue/{}/retry", enc(id)),
            None => "/v3/queue/retry".to_string(),
        };
        let value = self.call(Method::POST, &path, None).await?;
        Ok(value["retried"].as_u64().unwrap_or(0) as usize)
    }

    async fn drop_message(&self, id: &str) -> Result<(), ManageError> {
        self.call(Method::DELETE, &format!("/v3/queue/{}", enc(id)), None)
            .await
            .map(|_| ())
    }

    /// The raw log items (rendered by the API).
    async fn logs(
        &self,
        domain: &str,
        alias: Option<&str>,
        limit: usize,
    ) -> Result<Value, ManageError> {
        let path = match alias {
            Some(a) => format!("/v3/domains/{}/logs/{}", enc(domain), enc(a)),
            None => format!("/v3/domains/{}/logs", enc(domain)),
        };
        // Pages of one size (offsets depend on it) until `limit` items.
        let size = limit.min(PAGE);
        let mut items = Vec::new();
        let mut page = 1;
        while items.len() < limit {
            let value = self
                .call(
                    Method::GET,
                    &format!("{path}?page={page}&limit={size}"),
                    None,
                )
                .await?;
            let batch = value["logs"].as_array().cloned().unwrap_or_default();
            let last = batch.len() < size;
            items.extend(batch);
            if last {
                break;
            }
            page += 1;
        }
        items.truncate(limit);
        Ok(Value::Array(items))
    }
}

/// Why the store cannot be opened here: a running node holds it, but its
/// admin API did not answer.
pub(super) fn store_in_use(path: &str, config: &Config) -> ManageError {
    ManageError::Remote(format!(
        "the store {path} is in use by a running node, but its admin API at {} did not answer",
        config.http.listen
    ))
}

fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, ManageError> {
    serde_json::from_value(value.clone())
        .map_err(|e| ManageError::Remote(format!("unexpected answer from the admin API: {e}")))
}

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
