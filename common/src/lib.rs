//! Infrastructure shared by the capture, the services and the views, kept here once instead of copied.
//!
//! What it holds, and nothing else:
//! - [`backoff`]: the one retry delay of the workspace ([`Backoff`], capped exponential with jitter);
//! - [`mysql`]: the one MySQL error classifier ([`mysql_error_kind`] -> [`MySqlErrorKind`]: retry, bad data, or
//!   an operator's problem);
//! - [`Secret`]: a string (a URL with a password) that serializes as itself and does not show in `Debug`;
//! - [`now_ms`]: the wall clock in milliseconds since the Unix epoch.
//!
//! The crate holds no pipeline logic and does no I/O; the wire contract lives in `cdc-contract`.

pub mod backoff;
pub mod mysql;
mod secret;

pub use backoff::Backoff;
pub use mysql::{mysql_error_kind, MySqlErrorKind};
pub use secret::Secret;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020_and_does_not_go_back() {
        let first = super::now_ms();
        assert!(first > 1_577_836_800_000, "{first}");
        assert!(super::now_ms() >= first);
    }
}
