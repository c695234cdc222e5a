//! Parsing of `--ttl` values such as `30s`, `5m`, `1h30m` or `250ms`.

use std::time::Duration;

/// The largest TTL a `google.protobuf.Duration` can carry: 10,000 years.
const MAX_TTL_SECS: u64 = 315_576_000_000;

const EXPECTED: &str = "expected a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h30m, 250ms";

/// Parses a positive duration made of `<number><unit>` parts (`ms`, `s`,
/// `m`, `h`, `d`), e.g. `30s`, `5m`, `1h30m` or `250ms`.
///
/// Used as the clap value parser of `--ttl`, so an error is shown as a
/// usage error.
pub fn parse_ttl(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {EXPECTED}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration '{text}': {EXPECTED}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration '{text}' is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3_600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            "" => return Err(format!("duration '{text}' lacks a unit; {EXPECTED}")),
            other => {
                return Err(format!(
                    "unknown unit '{other}' in duration '{text}'; {EXPECTED}"
                ));
            }
        };
        total = part
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("duration '{text}' is too large"))?;
    }
    if total.is_zero() {
        return Err(
            "a TTL must be greater than zero; omit --ttl for an item that never expires".to_owned(),
        );
    }
    if total.as_secs() > MAX_TTL_SECS {
        return Err(format!(
            "duration '{text}' is too large; the limit is 10000 years"
        ));
    }
    Ok(total)
}

/// Converts a TTL accepted by [`parse_ttl`] to its protobuf form.
pub fn to_proto(ttl: Duration) -> prost_types::Duration {
    prost_types::Duration {
        // parse_ttl bounds the seconds far below i64::MAX; nanos are < 1e9.
        seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(ttl.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_ttl("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl(" 30s "), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_ttl("1s500ms"), Ok(Duration::from_millis(1_500)));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "30", "s", "1.5h", "10x", "5 m", "-1s", "1h-", "ms5"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_ttl("30").unwrap_err().contains("lacks a unit"));
        assert!(parse_ttl("10x").unwrap_err().contains("unknown unit 'x'"));
    }

    #[test]
    fn rejects_zero_and_huge_durations() {
        assert!(parse_ttl("0s").unwrap_err().contains("greater than zero"));
        assert!(parse_ttl("0ms0s").is_err());
        assert!(parse_ttl("99999999999999999999s").is_err());
        assert!(parse_ttl("18446744073709551615d").is_err());
        assert!(parse_ttl("20000000d").unwrap_err().contains("too large"));
    }

    #[test]
    fn converts_to_proto() {
        let proto = to_proto(parse_ttl("1s250ms").unwrap());
        assert_eq!(proto.seconds, 1);
        assert_eq!(proto.nanos, 250_000_000);
    }
}
