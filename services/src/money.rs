//! Money as exact decimal strings ("9.99"), never floats.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A non-negative amount with at most two decimal places, as stored in `DECIMAL(12,2)` / `DECIMAL(14,2)` columns.
/// JSON carries it as a string ("9.99"); a JSON number is accepted on input when it has at most two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(Decimal);

/// Why a text is not an amount.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a decimal number.
    #[error("`{0}` is not a decimal amount (expected a string like \"9.99\")")]
    Syntax(String),
    /// Below zero.
    #[error("`{0}` is negative; amounts must be zero or more")]
    Negative(String),
    /// More than two decimals.
    #[error("`{0}` has more than two decimal places")]
    Scale(String),
    /// Does not fit the column.
    #[error("`{0}` is too large (at most {1} digits before the decimal point)")]
    TooLarge(String, u32),
}

impl Money {
    /// Largest number of integer digits of a `DECIMAL(12,2)` price.
    pub const PRICE_DIGITS: u32 = 10;

    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Parses a price: non-negative, at most two decimals, at most [`Money::PRICE_DIGITS`] integer digits.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let t = text.trim();
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        let plain = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.bytes().filter(|&b| b == b'.').count() <= 1
            && digits.bytes().any(|b| b.is_ascii_digit());
        if !plain {
            return Err(MoneyError::Syntax(text.to_owned()));
        }
        let d = Decimal::from_str(t).map_err(|_| MoneyError::Syntax(text.to_owned()))?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative(text.to_owned()));
        }
        if d.normalize().scale() > 2 {
            return Err(MoneyError::Scale(text.to_owned()));
        }
        if d.trunc() >= Decimal::from(10_i64.pow(Self::PRICE_DIGITS)) {
            return Err(MoneyError::TooLarge(text.to_owned(), Self::PRICE_DIGITS));
        }
        Ok(Money(d.abs().round_dp(2)))
    }

    /// `self * quantity`.
    pub fn times(self, quantity: u32) -> Money {
        Money(self.0 * Decimal::from(quantity))
    }

    /// `self + other`.
    pub fn plus(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl fmt::Display for Money {
    /// Always two decimals: "9.90".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string, like \"9.99\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                Money::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                Money::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                // The shortest text that reads back as `v`: 9.99 stays "9.99", 0.1 + 0.2 is refused.
                Money::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_two_decimals() {
        for (input, shown) in [("9.99", "9.99"), ("9.9", "9.90"), ("10", "10.00"), ("0", "0.00"), ("-0", "0.00"), ("9.990", "9.99")] {
            assert_eq!(Money::parse(input).unwrap().to_string(), shown, "{input}");
        }
        assert_eq!(Money::parse("9999999999.99").unwrap().to_string(), "9999999999.99");
    }

    #[test]
    fn refuses_what_the_column_cannot_hold() {
        assert_eq!(Money::parse("-1.00"), Err(MoneyError::Negative("-1.00".into())));
        assert_eq!(Money::parse("1.001"), Err(MoneyError::Scale("1.001".into())));
        assert_eq!(Money::parse("abc"), Err(MoneyError::Syntax("abc".into())));
        assert_eq!(Money::parse("1e3"), Err(MoneyError::Syntax("1e3".into())));
        assert!(matches!(Money::parse("10000000000"), Err(MoneyError::TooLarge(..))));
    }

    #[test]
    fn json_accepts_strings_and_exact_numbers() {
        let m: Money = serde_json::from_str("\"12.30\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"12.30\"");
        let m: Money = serde_json::from_str("9.99").unwrap();
        assert_eq!(m.to_string(), "9.99");
        assert!(serde_json::from_str::<Money>("0.30000000000000004").is_err());
        assert!(serde_json::from_str::<Money>("true").is_err());
    }

    #[test]
    fn arithmetic_is_exact() {
        let p = Money::parse("0.10").unwrap();
        assert_eq!(p.times(3).plus(Money::parse("0.20").unwrap()).to_string(), "0.50");
    }
}
