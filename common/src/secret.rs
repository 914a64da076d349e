//! A secret string (a database URL with its password) that configuration can carry without printing it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: it serializes and deserializes as the plain string, and its `Debug` does not show it (it has
/// no `Display`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("mysql://u:hunter2@h/db");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_serialize_as_the_plain_string() {
        let s: Secret = serde_json::from_str(r#""mysql://u:p@h/db""#).unwrap();
        assert_eq!(s.expose(), "mysql://u:p@h/db");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""mysql://u:p@h/db""#);
    }
}
