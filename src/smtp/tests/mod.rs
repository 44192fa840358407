//! Session-level tests of the inbound SMTP server, on real parts: a store
//! and a queue (committer thread, real fsyncs, no scheduler, so nothing is
//! delivered) in a temporary directory, the static domain `d.country`, and
//! sessions driven over `tokio::io::duplex` (conversations) or a scripted
//! stream that hands out given chunks, one per read (pipelining, splits,
//! fuzzing).
//!
//! `harness.rs` builds the relay and starts sessions, `client.rs` talks to
//! them, `scripted.rs` feeds them fixed chunks; every other file is one
//! section of the protocol, in the order a session meets it.

mod client;
mod harness;
mod scripted;

mod bdat;
mod data;
mod fuzz;
mod greeting;
mod limits;
mod pipelining;
mod recipients;
mod sequence;
mod shutdown;
mod size;
mod smtputf8;
mod starttls;

use std::time::Duration;

const HOST: &str = "relay.test";
const SENDER: &str = "sender@origin.test";
/// Longest any single step may take: a stuck session fails its test
/// instead of hanging the suite.
const WAIT: Duration = Duration::from_secs(10);
