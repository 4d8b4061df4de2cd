//! Durations as people write them in config files, environment variables and flags:
//! `500ms`, `30s`, `2m`, `1h 30m`, `24h`, `7d` (humantime's syntax, the one every
//! Deskside duration has always accepted).

use std::ops::RangeInclusive;
use std::time::Duration;

/// Any duration longer than zero, for flags where zero means nothing useful.
pub const POSITIVE: RangeInclusive<Duration> = Duration::from_nanos(1)..=Duration::MAX;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("not a duration: {source} (e.g. 500ms, 30s, 2m, 24h, 7d)")]
    Syntax {
        #[source]
        source: humantime::DurationError,
    },
    #[error("{}", out_of_range(*min, *max))]
    OutOfRange { min: Duration, max: Duration },
}

fn out_of_range(min: Duration, max: Duration) -> String {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    match (min, max) {
        (min, Duration::MAX) if min <= Duration::from_nanos(1) => {
            "must be longer than zero".to_owned()
        }
        (min, Duration::MAX) => format!("must be at least {}", show(min)),
        (min, max) => format!("must be between {} and {}", show(min), show(max)),
    }
}

/// Parses a duration; zero is accepted (callers that refuse it say why, or use
/// [`parse_duration_in`]).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s).map_err(|source| DurationError::Syntax { source })
}

/// Parses a duration and checks it lies in `range` (e.g. [`POSITIVE`]).
pub fn parse_duration_in(
    s: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(DurationError::OutOfRange {
            min: *range.start(),
            max: *range.end(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_forms_people_write() -> Result<(), DurationError> {
        for (s, want) in [
            ("500ms", Duration::from_millis(500)),
            ("1s", Duration::from_secs(1)),
            ("2m", Duration::from_secs(120)),
            ("30m", Duration::from_secs(1800)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("24h", 24 * HOUR),
            ("7d", 7 * 24 * HOUR),
            ("1day", 24 * HOUR),
            ("2 minutes", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(s)?, want, "{s}");
        }
        Ok(())
    }

    #[test]
    fn not_a_duration_says_so_with_examples() {
        for bad in ["", "soon", "60", "1 fortnight", "-1s", "1h-"] {
            let e = parse_duration(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("not a duration: "), "{bad:?}: {e}");
            assert!(
                e.ends_with("(e.g. 500ms, 30s, 2m, 24h, 7d)"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn ranges_are_checked_with_a_reason() -> Result<(), DurationError> {
        let reason = |s: &str, r: RangeInclusive<Duration>| {
            parse_duration_in(s, r)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(reason("0s", POSITIVE), "must be longer than zero");
        assert_eq!(
            parse_duration_in("1ms", POSITIVE)?,
            Duration::from_millis(1)
        );
        let session = Duration::from_secs(1)..=8 * HOUR;
        assert_eq!(reason("0s", session.clone()), "must be between 1s and 8h");
        assert_eq!(reason("9h", session.clone()), "must be between 1s and 8h");
        assert_eq!(parse_duration_in("8h", session.clone())?, 8 * HOUR);
        assert_eq!(
            reason("1m", Duration::from_secs(300)..=Duration::MAX),
            "must be at least 5m"
        );
        assert!(reason("x", session).starts_with("not a duration"));
        Ok(())
    }
}
