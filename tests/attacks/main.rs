//! Attack tests: each test is named after what an attacker tries, runs the
//! attack against a real relay on loopback (in-process, or the real binary),
//! and asserts the safe outcome and that ordinary mail still flows after it.
//! `SECURITY.md` lists every attack class with the tests that cover it.
//!
//! One module per area; they share the harness in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod chain;
mod files;
mod http_slots;
mod message;
mod outbound;
mod queue;
mod scan;
mod screen;
mod smtp_slots;
mod srs;
