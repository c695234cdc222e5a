//! Points in time on the command line: `now`, an age like `-15m` (that long
//! ago), or an RFC 3339 UTC time like `2026-11-23T10:00:00Z` (fractions of
//! a second to the microsecond allowed).

use std::time::{SystemTime, UNIX_EPOCH};

const EXPECTED: &str = "use now, an age like -15m or -2h, or an RFC 3339 UTC time like \
                        2026-11-23T10:00:00Z or 2026-11-23T10:00:00.250Z";

/// Microseconds since the Unix epoch of `now`.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Parses a point in time into microseconds since the Unix epoch.
pub fn parse_time(input: &str) -> Result<i64, String> {
    let text = input.trim();
    if text == "now" {
        return Ok(now_us());
    }
    if let Some(age) = text.strip_prefix('-') {
        let age = crate::ttl::parse_ttl(age).map_err(|e| format!("'{text}': {e}"))?;
        return Ok(now_us() - age.as_micros() as i64);
    }
    parse_rfc3339(text).ok_or_else(|| format!("'{text}' is not a time; {EXPECTED}"))
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, fraction) = match time.split_once('.') {
        Some((c, f)) => (c, f),
        None => (time, ""),
    };
    let mut c = clock.splitn(3, ':');
    let (hour, minute, second): (i64, i64, i64) = (
        c.next()?.parse().ok()?,
        c.next()?.parse().ok()?,
        c.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || fraction.len() > 6
        || !fraction.chars().all(|ch| ch.is_ascii_digit())
    {
        return None;
    }
    let micros: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A protobuf timestamp from microseconds.
pub fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// RFC 3339 with microseconds when not whole seconds.
pub fn render(ts: &prost_types::Timestamp) -> String {
    let whole = crate::output::rfc3339(&prost_types::Timestamp {
        seconds: ts.seconds,
        nanos: 0,
    });
    if ts.nanos == 0 {
        return whole;
    }
    let micros = ts.nanos / 1000;
    format!("{}.{micros:06}Z", whole.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_ages_and_now() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2000-03-01T00:00:01.5Z").unwrap(),
            951_868_801_500_000
        );
        let ts = timestamp(parse_time("2026-11-23T10:11:12.123456Z").unwrap());
        assert_eq!(render(&ts), "2026-11-23T10:11:12.123456Z");
        let before = now_us();
        let ago = parse_time("-15m").unwrap();
        assert!((before - 15 * 60 * 1_000_000 - ago).abs() < 5_000_000);
        assert!(parse_time("now").unwrap() >= before);
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-23T10:00:00",
            "-soon",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
