//! `[smtp]`: the inbound SMTP listener, its session limits and message
//! size limits.

use super::error::{ConfigError, nonzero_duration, positive};
use super::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Sessions one client network (an IPv4 address, an IPv6 /64) may hold;
    /// `max_connections_per_ip`, its former name, is still read.
    #[serde(alias = "max_connections_per_ip")]
    pub max_connections_per_network: usize,
    /// Share of `max_connections` (percent, rounded up) kept for networks
    /// that hold no session yet, so that no single network takes them all.
    pub reserved_percent: u8,
    /// Longest a session may last, whatever it does.
    pub max_session_time: HumanDuration,
    /// Commands without progress (NOOP, RSET, VRFY, EXPN, HELP, HELO/EHLO)
    /// a session may send between two accepted messages.
    pub max_junk_commands: usize,
    pub command_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    pub max_line_length: usize,
    pub max_recipients: usize,
    pub max_message_size: ByteSize,
    /// Header section of a message (refused with 552 5.3.4 beyond it).
    pub max_header_size: ByteSize,
    /// Header fields of a message (refused with 554 5.6.0 beyond it).
    pub max_header_fields: usize,
    pub max_received_headers: usize,
    pub max_errors: usize,
    pub starttls: bool,
    pub shutdown_grace: HumanDuration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".parse().expect("literal address"),
            max_connections: 1000,
            max_connections_per_network: 50,
            reserved_percent: 10,
            max_session_time: HumanDuration::secs(30 * 60),
            max_junk_commands: 50,
            command_timeout: HumanDuration::secs(300),
            data_timeout: HumanDuration::secs(600),
            max_line_length: 2048,
            max_recipients: 100,
            max_message_size: ByteSize::new(25 * 1024 * 1024),
            max_header_size: ByteSize::new(256 * 1024),
            max_header_fields: 1000,
            max_received_headers: 50,
            max_errors: 20,
            starttls: true,
            shutdown_grace: HumanDuration::secs(30),
        }
    }
}

impl SmtpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("smtp.max_connections", self.max_connections)?;
        positive(
            "smtp.max_connections_per_network",
            self.max_connections_per_network,
        )?;
        if self.reserved_percent > 50 {
            return Err(ConfigError::invalid(
                "smtp.reserved_percent",
                self.reserved_percent,
                "must be between 0 and 50 (percent of smtp.max_connections)",
            ));
        }
        nonzero_duration("smtp.max_session_time", self.max_session_time)?;
        positive("smtp.max_junk_commands", self.max_junk_commands)?;
        positive("smtp.max_recipients", self.max_recipients)?;
        positive("smtp.max_errors", self.max_errors)?;
        positive("smtp.max_received_headers", self.max_received_headers)?;
        if !(512..=65536).contains(&self.max_line_length) {
            return Err(ConfigError::invalid(
                "smtp.max_line_length",
                self.max_line_length,
                "must be between 512 (RFC 5321 minimum) and 65536",
            ));
        }
        if !(1..=100_000).contains(&self.max_header_fields) {
            return Err(ConfigError::invalid(
                "smtp.max_header_fields",
                self.max_header_fields,
                "must be between 1 and 100000",
            ));
        }
        if self.max_header_size.0 < 1024
            || self.max_header_size.0 > self.max_message_size.0.max(1024)
        {
            return Err(ConfigError::invalid(
                "smtp.max_header_size",
                self.max_header_size,
                "must be at least 1KiB and at most smtp.max_message_size",
            ));
        }
        if self.max_message_size.0 < 1024 {
            return Err(ConfigError::invalid(
                "smtp.max_message_size",
                self.max_message_size,
                "must be at least 1KiB",
            ));
        }
        nonzero_duration("smtp.command_timeout", self.command_timeout)?;
        nonzero_duration("smtp.data_timeout", self.data_timeout)?;
        Ok(())
    }
}
