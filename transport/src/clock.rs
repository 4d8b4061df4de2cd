//! The wall clock as Unix time, the one way the agent and the controller read it: the
//! wire and the stores carry Unix seconds and milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of `t`, 0 for times before 1970.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds now, 0 if the clock is set before 1970.
pub fn now_secs() -> u64 {
    secs(SystemTime::now())
}

/// Unix milliseconds now, 0 before 1970, saturating far in the future.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_before_1970_read_as_zero() {
        let before = UNIX_EPOCH.checked_sub(Duration::from_secs(5));
        assert_eq!(before.map(secs), Some(0));
        assert_eq!(secs(UNIX_EPOCH + Duration::from_secs(42)), 42);
    }

    #[test]
    fn seconds_and_milliseconds_agree() {
        let (s, ms) = (now_secs(), now_ms());
        assert!(ms / 1000 >= s && ms / 1000 <= s + 1, "{s} s, {ms} ms");
    }
}
