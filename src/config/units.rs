//! Quantities written with a unit in the config: durations ("30s", "7d")
//! and sizes ("25MiB"). One parsed-unit type, [`Unit`], reads, shows and
//! (de)serializes both; a [`Measure`] holds what differs (the suffix table,
//! the words of its errors, how the value is stored).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// What one kind of quantity accepts and how it shows.
pub trait Measure {
    /// The value a parsed quantity holds.
    type Value: Copy + fmt::Debug + PartialEq + Eq + PartialOrd + Ord;
    /// Suffixes accepted after the number and the base units each stands
    /// for; "" is a bare number.
    const SUFFIXES: &'static [(&'static str, u64)];
    /// Suffixes a value is shown in, largest first; a value none of them
    /// divides is shown in base units followed by [`Measure::BASE`].
    const SHOWN: &'static [(&'static str, u64)];
    /// Suffix of a value shown in base units.
    const BASE: &'static str;
    /// The name its values show under in debug output.
    const NAME: &'static str;
    /// What the quantity is, in errors ("duration", "size").
    const NOUN: &'static str;
    /// Examples of valid text, in errors.
    const EXAMPLES: &'static str;
    /// The suffixes, listed in errors.
    const HINT: &'static str;
    /// The value of `n` units of `factor` base units each; None when it
    /// does not fit.
    fn scale(n: u64, factor: u64) -> Option<Self::Value>;
    /// The value in base units (what [`Unit`] shows).
    fn base_units(value: Self::Value) -> u64;
    /// The value of a plain number in the config (not text).
    fn from_number(n: u64) -> Self::Value;
}

/// A quantity written as a number and a unit suffix.
pub struct Unit<M: Measure>(pub M::Value, PhantomData<M>);

/// A duration written as "30s", "5m", "2h", "7d", "250ms" or whole seconds.
pub type HumanDuration = Unit<Time>;

/// A size written as "25MiB", "512KiB", "10MB", "4096" (bytes).
pub type ByteSize = Unit<Bytes>;

/// Durations: base unit the millisecond; a bare number is seconds. A value
/// too large saturates (it means "never").
pub enum Time {}

impl Measure for Time {
    type Value = Duration;
    const SUFFIXES: &'static [(&'static str, u64)] = &[
        ("ms", 1),
        ("", 1000),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    const SHOWN: &'static [(&'static str, u64)] = &[
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ];
    const BASE: &'static str = "ms";
    const NAME: &'static str = "HumanDuration";
    const NOUN: &'static str = "duration";
    const EXAMPLES: &'static str = "a duration such as \"30s\", \"5m\", \"7d\"";
    const HINT: &'static str = "ms, s, m, h or d";

    fn scale(n: u64, factor: u64) -> Option<Duration> {
        Some(Duration::from_millis(n.saturating_mul(factor)))
    }

    fn base_units(value: Duration) -> u64 {
        value.as_millis() as u64
    }

    fn from_number(n: u64) -> Duration {
        Duration::from_secs(n)
    }
}

/// Sizes: base unit the byte; binary (KiB) and decimal (kB) multiples. A
/// value too large is an error.
pub enum Bytes {}

impl Measure for Bytes {
    type Value = u64;
    const SUFFIXES: &'static [(&'static str, u64)] = &[
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("K", 1 << 10),
        ("MiB", 1 << 20),
        ("M", 1 << 20),
        ("GiB", 1 << 30),
        ("G", 1 << 30),
        ("kB", 1000),
        ("KB", 1000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];
    const SHOWN: &'static [(&'static str, u64)] =
        &[("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    const BASE: &'static str = "";
    const NAME: &'static str = "ByteSize";
    const NOUN: &'static str = "size";
    const EXAMPLES: &'static str = "a size such as \"25MiB\" or \"4096\"";
    const HINT: &'static str = "B, KiB, MiB, GiB, kB, MB, GB";

    fn scale(n: u64, factor: u64) -> Option<u64> {
        n.checked_mul(factor)
    }

    fn base_units(value: u64) -> u64 {
        value
    }

    fn from_number(n: u64) -> u64 {
        n
    }
}

impl<M: Measure> Unit<M> {
    pub const fn new(value: M::Value) -> Self {
        Unit(value, PhantomData)
    }

    /// Reads "<digits><suffix>" (spaces around and between allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not {}", M::EXAMPLES))?;
        let suffix = suffix.trim();
        let Some(&(_, factor)) = M::SUFFIXES.iter().find(|(name, _)| *name == suffix) else {
            return Err(format!(
                "unknown {} unit `{suffix}` (use {})",
                M::NOUN,
                M::HINT
            ));
        };
        M::scale(n, factor)
            .map(Unit::new)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl Unit<Time> {
    pub const fn secs(s: u64) -> Self {
        Unit::new(Duration::from_secs(s))
    }
}

// By hand rather than derived: a derive would ask the marker `M` (never a
// value) for each trait instead of the value it holds.
impl<M: Measure> Clone for Unit<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Measure> Copy for Unit<M> {}

impl<M: Measure> PartialEq for Unit<M> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<M: Measure> Eq for Unit<M> {}

impl<M: Measure> PartialOrd for Unit<M> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<M: Measure> Ord for Unit<M> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<M: Measure> fmt::Debug for Unit<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(M::NAME).field(&self.0).finish()
    }
}

impl<M: Measure> fmt::Display for Unit<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = M::base_units(self.0);
        for (suffix, size) in M::SHOWN {
            if n != 0 && n.is_multiple_of(*size) {
                return write!(f, "{}{suffix}", n / size);
            }
        }
        write!(f, "{n}{}", M::BASE)
    }
}

impl<M: Measure> Serialize for Unit<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de, M: Measure> Deserialize<'de> for Unit<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Unit::new(M::from_number(n))),
            Raw::Text(t) => Unit::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_round_trip() {
        for s in ["250ms", "30s", "5m", "2h", "7d"] {
            assert_eq!(HumanDuration::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(HumanDuration::parse("90").unwrap(), HumanDuration::secs(90));
        assert_eq!(ByteSize::parse("25MiB").unwrap().0, 25 << 20);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().to_string(), "4KiB");
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }
}
