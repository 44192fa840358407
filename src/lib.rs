//! eas-relay: a forwarding-only SMTP relay for the `.country` Email Alias
//! Service. See DESIGN.md (in the shared folder) and the README for the
//! contract; each module's header says its one job.

pub mod address;
pub mod api;
pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub(crate) mod dns;
pub mod files;
pub mod manage;
pub mod message;
pub mod net;
pub mod node;
pub mod observe;
pub mod outbound;
pub mod queue;
pub mod recipients;
pub mod reply;
pub mod rewrite;
pub(crate) mod smtp;
pub mod spool;
pub mod store;
pub mod tls;
pub(crate) mod zone;

pub use config::Config;
pub use node::{Listeners, RunError, run};
