//! eas-relay: a forwarding-only SMTP relay for the `.country` Email Alias
//! Service. See DESIGN.md (in the shared folder) and the README for the
//! contract; each module's header says its one job.
//!
//! The map (docs/ARCHITECTURE.md; `tests/layers.rs` checks it), ground floor
//! first; a module imports only from its own layer or below:
//! 0. vocabulary: [`reply`], [`address`], [`net`], [`message`], [`files`]
//! 1. settings: [`config`], [`observe`]
//! 2. infrastructure: [`store`], `dns`, [`tls`], [`spool`], [`cluster`]
//! 3. the relay's logic: [`recipients`], [`auth`], [`rewrite`], [`chain`]
//! 4. delivery: [`outbound`], then [`queue`] above it
//! 5. faces: `smtp`, [`api`], [`manage`], `zone`, [`provision`]
//! 6. top: [`node`] (the wiring, [`run`]), [`cli`]

pub mod address;
pub mod api;
pub(crate) mod auth;
pub mod chain;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod credentials;
pub(crate) mod dns;
pub(crate) mod files;
pub mod manage;
pub(crate) mod message;
pub(crate) mod net;
pub(crate) mod node;
pub mod observe;
pub mod outbound;
pub mod provision;
pub(crate) mod queue;
pub mod recipients;
pub mod replica;
pub mod reply;
pub mod rewrite;
pub(crate) mod scan;
pub(crate) mod screen;
pub(crate) mod smtp;
pub mod spool;
pub mod store;
pub(crate) mod tls;
pub(crate) mod zone;

pub use config::Config;
pub use node::{Listeners, RunError, run};
