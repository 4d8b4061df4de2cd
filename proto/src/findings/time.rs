//! Clock rules: the clock far from the controller's, and the clock not kept in step
//! with a time server.

use super::finding;
use super::fmt::fmt_duration;
use crate::msg::diag::{Finding, Severity, Snapshot};

const OFFSET_WARNING_MS: u64 = 60_000;
const OFFSET_CRITICAL_MS: u64 = 300_000;

pub(super) fn controller_offset(s: &Snapshot, out: &mut Vec<Finding>) {
    let Some(offset_ms) = s.time.controller_offset_ms else {
        return;
    };
    let distance_ms = offset_ms.unsigned_abs();
    let severity = if distance_ms >= OFFSET_CRITICAL_MS {
        Severity::Critical
    } else if distance_ms >= OFFSET_WARNING_MS {
        Severity::Warning
    } else {
        return;
    };
    let direction = if offset_ms > 0 { "ahead of" } else { "behind" };
    out.push(finding(
        severity,
        "time.controller_offset",
        format!(
            "the clock is {} {direction} the controller; sign-ins, certificates and \
             log times can go wrong",
            fmt_duration(distance_ms / 1000)
        ),
    ));
}

pub(super) fn unsynchronised(s: &Snapshot, out: &mut Vec<Finding>) {
    if s.time.synchronized == Some(false) {
        out.push(finding(
            Severity::Warning,
            "time.unsynchronised",
            "the clock is not kept in step with a time server (NTP), so it can drift".to_owned(),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{NONE, healthy, message, severities};
    use crate::msg::diag::Severity;

    use Severity::{Critical, Warning};

    #[test]
    fn time_unsynchronised_only_when_known_false() {
        let mut s = healthy();
        s.time.synchronized = None;
        assert_eq!(severities(&s, "time.unsynchronised"), NONE);
        s.time.synchronized = Some(false);
        assert_eq!(severities(&s, "time.unsynchronised"), [Warning]);
    }

    #[test]
    fn time_controller_offset_thresholds() {
        let with_offset = |ms: i64| {
            let mut s = healthy();
            s.time.controller_offset_ms = Some(ms);
            s
        };
        assert_eq!(
            severities(&with_offset(59_999), "time.controller_offset"),
            NONE
        );
        assert_eq!(
            severities(&with_offset(60_000), "time.controller_offset"),
            [Warning]
        );
        assert_eq!(
            severities(&with_offset(-60_000), "time.controller_offset"),
            [Warning]
        );
        assert_eq!(
            severities(&with_offset(299_999), "time.controller_offset"),
            [Warning]
        );
        assert_eq!(
            severities(&with_offset(-300_000), "time.controller_offset"),
            [Critical]
        );
        assert!(
            message(&with_offset(4 * 60_000 + 5_000), "time.controller_offset")
                .starts_with("the clock is 4 minutes ahead of the controller")
        );
        assert!(
            message(&with_offset(-7_200_000), "time.controller_offset")
                .starts_with("the clock is 2 hours behind")
        );
    }
}
