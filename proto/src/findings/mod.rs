//! Findings: pure rules that turn a [`Snapshot`] into plain-language observations.
//!
//! Each rule is a small function in the `RULES` table; [`evaluate`] runs them all and sorts the
//! result most severe first (stable, so rule order decides within a severity). Rules do
//! no IO and never read the clock: every time comes from the snapshot itself. The rules live
//! in one file per area (`disk`, `memory`, `network`, `time`, `system`, `logs`, `probes`);
//! number and text formatting is in `fmt`.
//!
//! Messages are written for an L1 engineer to read out to a user: lowercase start, no
//! trailing full stop, numbers with units ("/ is 97% full (1.2 GiB free of 40.0 GiB)").
//!
//! Missing data is not a problem to report. A probe that fails leaves its section at the
//! default, so rules that report an *absence* (no default route, no swap) only speak when
//! their section was collected: memory needs `total_bytes > 0` and no failed `memory`
//! probe; network needs at least one interface listed and no failed `interfaces` probe,
//! and each network rule also needs its own probe (`routes` for the default route, `dns`
//! for resolvers). Probe names are the agent's, in [`probe_names`]. `probes.failed`
//! tells the engineer which sections are missing instead.

mod disk;
mod fmt;
mod logs;
mod memory;
mod network;
mod probes;
mod system;
mod time;

#[cfg(test)]
mod fixture;

use std::cmp::Reverse;

use crate::msg::diag::{Finding, Severity, Snapshot, probe_names};

/// Every rule, in the order their findings appear within one severity.
const RULES: &[fn(&Snapshot, &mut Vec<Finding>)] = &[
    disk::root_read_only,
    disk::nearly_full,
    disk::inodes_low,
    memory::low,
    logs::oom_kills,
    memory::swap_pressure,
    memory::swap_none,
    network::no_interface_up,
    network::no_default_route,
    network::no_dns_resolver,
    network::interface_errors,
    time::controller_offset,
    time::unsynchronised,
    system::cpu_high_load,
    system::process_runaway,
    system::process_memory_hog,
    system::services_failed,
    system::temperature_high,
    logs::kernel_errors,
    system::updates_reboot_required,
    system::updates_pending,
    system::host_long_uptime,
    probes::failed,
];

/// Every finding the rules make for `snapshot`, most severe first.
pub fn evaluate(snapshot: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in RULES {
        rule(snapshot, &mut out);
    }
    // `sort_by_key` is stable: rule order survives within a severity.
    out.sort_by_key(|finding| Reverse(finding.severity));
    out
}

// ---------------------------------------------------------------------------------------
// Was the section collected?
// ---------------------------------------------------------------------------------------

/// The probe called `name` ran and failed, so its section is at the default.
fn probe_failed(s: &Snapshot, name: &str) -> bool {
    s.probes.iter().any(|p| !p.ok && p.name == name)
}

/// Memory figures were collected (a failed probe leaves them at zero).
fn memory_collected(s: &Snapshot) -> bool {
    s.memory.total_bytes > 0 && !probe_failed(s, probe_names::MEMORY)
}

/// Interfaces were collected: every Linux machine lists at least `lo`. The network rules
/// stand on this; those about routes and resolvers also check their own probe.
fn network_collected(s: &Snapshot) -> bool {
    !s.network.interfaces.is_empty() && !probe_failed(s, probe_names::INTERFACES)
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn finding(severity: Severity, code: &str, message: String) -> Finding {
    Finding {
        severity,
        code: code.to_owned(),
        message,
    }
}

/// `part / whole` as a percentage rounded up, like `df`; `None` when `whole` is 0.
fn percent_ceil(part: u64, whole: u64) -> Option<u64> {
    if whole == 0 {
        return None;
    }
    u64::try_from((u128::from(part) * 100).div_ceil(u128::from(whole))).ok()
}

/// `part / whole` as a percentage rounded down; `None` when `whole` is 0.
fn percent_floor(part: u64, whole: u64) -> Option<u64> {
    if whole == 0 {
        return None;
    }
    u64::try_from(u128::from(part) * 100 / u128::from(whole)).ok()
}

/// `part < percent% of whole`, exactly (no rounding).
fn below_percent(part: u64, whole: u64, percent: u64) -> bool {
    u128::from(part) * 100 < u128::from(whole) * u128::from(percent)
}

/// `part >= percent% of whole`, exactly (no rounding); false when `whole` is 0.
fn at_least_percent(part: u64, whole: u64, percent: u64) -> bool {
    whole > 0 && u128::from(part) * 100 >= u128::from(whole) * u128::from(percent)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::fixture::healthy;
    use super::fmt::DAY_SECS;
    use super::*;
    use crate::msg::diag::FailedUnit;

    use Severity::{Critical, Info, Warning};

    #[test]
    fn healthy_snapshot_has_no_findings() {
        assert_eq!(evaluate(&healthy()), Vec::new());
    }

    #[test]
    fn default_snapshot_reports_no_absences() {
        // Everything missing (all probes failed) is not "no route, no swap, no DNS".
        assert_eq!(evaluate(&Snapshot::default()), Vec::new());
    }

    #[test]
    fn at_least_fourteen_rules() {
        assert!(RULES.len() >= 14);
    }

    #[test]
    fn ordering_is_critical_then_warning_then_info_in_rule_order() {
        let mut s = healthy();
        s.host.uptime_secs = 40 * DAY_SECS; // info, last rule group
        s.updates.pending = Some(3); // info
        s.failed_units.push(FailedUnit {
            name: "cups.service".to_owned(),
            description: "CUPS".to_owned(),
        }); // warning
        s.time.synchronized = Some(false); // warning, earlier rule than services
        s.network.dns_resolvers.clear(); // critical
        s.disks[0].read_only = true; // critical, first rule
        let codes: Vec<(String, Severity)> = evaluate(&s)
            .into_iter()
            .map(|f| (f.code, f.severity))
            .collect();
        let expected = [
            ("disk.root_read_only", Critical),
            ("network.no_dns_resolver", Critical),
            ("time.unsynchronised", Warning),
            ("services.failed", Warning),
            ("updates.pending", Info),
            ("host.long_uptime", Info),
        ];
        let expected: Vec<(String, Severity)> = expected
            .iter()
            .map(|(c, sev)| ((*c).to_owned(), *sev))
            .collect();
        assert_eq!(codes, expected);
    }
}
