//! Shared helpers of the integration tests: a DNS server, a destination
//! SMTP server, an in-process relay, the real binary as a child process,
//! an SMTP client and an HTTP client, real scanner peers (rspamd, clamd)
//! and a real PostgreSQL.
// Each test binary uses only part of the helpers.
#![allow(dead_code)]

pub mod anvil;
pub mod api;
pub mod clamd;
pub mod dns;
pub mod eas;
pub mod http;
pub mod node;
pub mod postgres;
pub mod proxy;
pub mod pyverify;
pub mod redis;
pub mod relay;
pub mod rspamd;
pub mod sink;
pub mod smtp;
