//! Human data sizes: `20GiB`, `500MB`, `1 TiB`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A size in bytes, written with a unit: `B`, decimal `KB` `MB` `GB` `TB`
/// (powers of 1000) or binary `KiB` `MiB` `GiB` `TiB` (powers of 1024);
/// units are case-insensitive and a space before the unit is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("tib", 1 << 40),
    ("gib", 1 << 30),
    ("mib", 1 << 20),
    ("kib", 1 << 10),
    ("tb", 1_000_000_000_000),
    ("gb", 1_000_000_000),
    ("mb", 1_000_000),
    ("kb", 1_000),
    ("b", 1),
];

const EXPECTED: &str = "a size with a unit, such as 20GiB, 500MB or 1TiB (units B, KB, MB, GB, TB, \
                        KiB, MiB, GiB, TiB)";

impl DataSize {
    /// Parses `20GiB`; the error says what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.chars().take_while(char::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let unit = unit.trim_start().to_ascii_lowercase();
        let bad = || format!("'{text}' is not {EXPECTED}");
        if number.is_empty() {
            return Err(bad());
        }
        let (_, factor) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(bad)?;
        let number: u64 = number.parse().map_err(|_| bad())?;
        number
            .checked_mul(*factor)
            .map(DataSize)
            .ok_or_else(|| format!("'{text}' is too large"))
    }
}

/// `bytes` in the unit that divides it exactly with the smallest count:
/// `1GiB`, `20GB`, `1500B`.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    let names = ["TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB", "B"];
    // The exact unit with the smallest count; binary first on a tie.
    let (count, name) = UNITS
        .iter()
        .zip(names)
        .filter(|((_, factor), _)| bytes.is_multiple_of(*factor))
        .map(|((_, factor), name)| (bytes / factor, name))
        .min_by_key(|(count, _)| *count)
        .unwrap_or((bytes, "B"));
    format!("{count}{name}")
}

impl fmt::Display for DataSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for DataSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = DataSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DataSize, E> {
                DataSize::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DataSize, E> {
                Err(E::custom(format!(
                    "{v} has no unit; write it with one, e.g. {v}GiB or {v}MB (units B, KB, MB, \
                     GB, TB, KiB, MiB, GiB, TiB)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DataSize, E> {
                Err(E::custom(format!("{v} is not {EXPECTED}")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}
