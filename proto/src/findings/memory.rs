//! Memory rules: available memory running low, swap nearly used up, and no swap at all.
//! All stay quiet when the `memory` probe failed.

use super::fmt::fmt_bytes;
use super::{
    at_least_percent, below_percent, finding, memory_collected, percent_floor, probe_failed,
};
use crate::msg::diag::{Finding, Severity, Snapshot, probe_names};

/// Available memory below this share of the total is a warning...
const MEMORY_WARNING_PERCENT: u64 = 10;
/// ...and below this one critical.
const MEMORY_CRITICAL_PERCENT: u64 = 5;
const SWAP_WARNING_PERCENT: u64 = 80;

pub(super) fn low(s: &Snapshot, out: &mut Vec<Finding>) {
    if !memory_collected(s) {
        return;
    }
    let total = s.memory.total_bytes;
    let available = s.memory.available_bytes;
    let severity = if below_percent(available, total, MEMORY_CRITICAL_PERCENT) {
        Severity::Critical
    } else if below_percent(available, total, MEMORY_WARNING_PERCENT) {
        Severity::Warning
    } else {
        return;
    };
    let percent = percent_floor(available, total).unwrap_or(0);
    out.push(finding(
        severity,
        "memory.low",
        format!(
            "memory is nearly exhausted: only {} of {} is available ({percent}%); \
             programs will slow down or be closed",
            fmt_bytes(available),
            fmt_bytes(total)
        ),
    ));
}

pub(super) fn swap_pressure(s: &Snapshot, out: &mut Vec<Finding>) {
    if probe_failed(s, probe_names::MEMORY) {
        return;
    }
    let total = s.memory.swap_total_bytes;
    let used = total.saturating_sub(s.memory.swap_free_bytes);
    if total == 0 || !at_least_percent(used, total, SWAP_WARNING_PERCENT) {
        return;
    }
    let percent = percent_floor(used, total).unwrap_or(0);
    out.push(finding(
        Severity::Warning,
        "swap.pressure",
        format!(
            "swap is {percent}% used ({} of {}): the machine has been short of memory \
             and may feel slow",
            fmt_bytes(used),
            fmt_bytes(total)
        ),
    ));
}

pub(super) fn swap_none(s: &Snapshot, out: &mut Vec<Finding>) {
    if memory_collected(s) && s.memory.swap_total_bytes == 0 {
        out.push(finding(
            Severity::Info,
            "swap.none",
            format!(
                "no swap space is configured (common on virtual machines); with {} of \
                 memory, running out of it closes programs instead of slowing down",
                fmt_bytes(s.memory.total_bytes)
            ),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{GIB, NONE, fail_probe, healthy, message, severities};
    use crate::msg::diag::{Severity, Snapshot, probe_names};

    use Severity::{Critical, Info, Warning};

    fn with_available(available: u64) -> Snapshot {
        let mut s = healthy();
        s.memory.total_bytes = 100 * GIB;
        s.memory.available_bytes = available;
        s
    }

    #[test]
    fn memory_low_thresholds() {
        assert_eq!(severities(&with_available(10 * GIB), "memory.low"), NONE);
        assert_eq!(
            severities(&with_available(10 * GIB - 1), "memory.low"),
            [Warning]
        );
        assert_eq!(
            severities(&with_available(5 * GIB), "memory.low"),
            [Warning]
        );
        assert_eq!(
            severities(&with_available(5 * GIB - 1), "memory.low"),
            [Critical]
        );
        assert!(message(&with_available(3 * GIB), "memory.low").contains("3.0 GiB of 100.0 GiB"));
    }

    #[test]
    fn memory_rules_skip_a_failed_memory_probe() {
        let mut s = with_available(0);
        s.memory.swap_total_bytes = 0;
        fail_probe(&mut s, probe_names::MEMORY);
        assert_eq!(severities(&s, "memory.low"), NONE);
        assert_eq!(severities(&s, "swap.none"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
    }

    fn with_swap_used(used: u64) -> Snapshot {
        let mut s = healthy();
        s.memory.swap_total_bytes = 10 * GIB;
        s.memory.swap_free_bytes = 10 * GIB - used;
        s
    }

    #[test]
    fn swap_pressure_thresholds() {
        assert_eq!(
            severities(&with_swap_used(8 * GIB - 1), "swap.pressure"),
            NONE
        );
        assert_eq!(
            severities(&with_swap_used(8 * GIB), "swap.pressure"),
            [Warning]
        );
        assert_eq!(
            message(&with_swap_used(8 * GIB), "swap.pressure"),
            "swap is 80% used (8.0 GiB of 10.0 GiB): the machine has been short of memory \
             and may feel slow"
        );
    }

    #[test]
    fn swap_pressure_needs_swap() {
        let mut s = healthy();
        s.memory.swap_total_bytes = 0;
        s.memory.swap_free_bytes = 0;
        assert_eq!(severities(&s, "swap.pressure"), NONE);
    }

    #[test]
    fn swap_pressure_skips_a_failed_memory_probe() {
        let mut s = with_swap_used(9 * GIB);
        assert_eq!(severities(&s, "swap.pressure"), [Warning]);
        fail_probe(&mut s, probe_names::MEMORY);
        assert_eq!(severities(&s, "swap.pressure"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
    }

    #[test]
    fn swap_none_is_info() {
        let mut s = healthy();
        s.memory.swap_total_bytes = 0;
        s.memory.swap_free_bytes = 0;
        assert_eq!(severities(&s, "swap.none"), [Info]);
    }
}
