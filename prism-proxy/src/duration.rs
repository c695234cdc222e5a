//! `google.protobuf.Duration` from a request, checked for the form its
//! definition requires: `nanos` within ±999 999 999 and of the same sign
//! as `seconds`. A lenient reading would normalise `1 s + 2·10⁹ ns` into
//! 3 s; Prism refuses it instead.

use std::time::Duration;

use crate::error::ProxyError;

/// `d` as a non-negative duration; INVALID_ARGUMENT naming `field` when
/// it is malformed or negative. The message quotes no values.
pub fn non_negative(field: &str, d: &prost_types::Duration) -> Result<Duration, ProxyError> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos) {
        return Err(ProxyError::invalid(format!(
            "{field}.nanos is outside -999999999..999999999; a google.protobuf.Duration \
             carries whole seconds in {field}.seconds"
        )));
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(ProxyError::invalid(format!(
            "{field}.seconds and {field}.nanos have opposite signs, which a \
             google.protobuf.Duration does not allow"
        )));
    }
    if d.seconds < 0 || d.nanos < 0 {
        return Err(ProxyError::invalid(format!("{field} must not be negative")));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn well_formed_durations_are_read_exactly() {
        assert_eq!(
            non_negative("ttl", &d(1, 999_999_999)).unwrap(),
            Duration::new(1, 999_999_999)
        );
        assert_eq!(non_negative("ttl", &d(0, 0)).unwrap(), Duration::ZERO);
    }

    #[test]
    fn malformed_or_negative_durations_are_refused_naming_the_field() {
        for (value, says) in [
            (d(1, 2_000_000_000), "ttl.nanos is outside"),
            (d(1, -1_000_000_000), "ttl.nanos is outside"),
            (d(2, -1), "opposite signs"),
            (d(-2, 1), "opposite signs"),
            (d(-1, 0), "must not be negative"),
            (d(0, -5), "must not be negative"),
        ] {
            let e = non_negative("ttl", &value).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains(says), "{value:?}: {e}");
        }
    }
}
