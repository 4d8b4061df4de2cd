//! What changed between two snapshots of one machine, as short plain-language lines.

use std::collections::BTreeSet;

use deskside_proto::msg::diag::{Disk, Route, Snapshot};

use super::size;
use crate::clock::format_secs;

/// Boot times computed as "now − uptime" wobble by a second or two; a reboot moves them
/// by far more.
const BOOT_TIME_SLACK_SECS: u64 = 120;

/// One line per thing compared, in a fixed order; unchanged things say so briefly.
pub(super) fn changes(first: &Snapshot, last: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    findings(first, last, &mut out);
    disks(first, last, &mut out);
    let (m1, m2) = (&first.memory, &last.memory);
    out.push(change(
        "Memory available",
        size(m1.available_bytes),
        size(m2.available_bytes),
        &format!(" (of {})", size(m2.total_bytes)),
    ));
    if m1.swap_total_bytes == 0 && m2.swap_total_bytes == 0 {
        out.push("Swap: none configured.".into());
    } else {
        let used = |m: &deskside_proto::msg::diag::Memory| {
            size(m.swap_total_bytes.saturating_sub(m.swap_free_bytes))
        };
        out.push(change(
            "Swap used",
            used(m1),
            used(m2),
            &format!(" (of {})", size(m2.swap_total_bytes)),
        ));
    }
    reboot(first, last, &mut out);
    let units = |s: &Snapshot| -> BTreeSet<String> {
        s.failed_units.iter().map(|u| u.name.clone()).collect()
    };
    set_change("Failed unit", &units(first), &units(last), &mut out);
    let routes = |s: &Snapshot| list(s.network.default_routes.iter().map(route).collect());
    out.push(change("Default route", routes(first), routes(last), ""));
    let dns = |s: &Snapshot| list(s.network.dns_resolvers.clone());
    out.push(change("DNS resolvers", dns(first), dns(last), ""));
    let pending = |s: &Snapshot| match s.updates.pending {
        Some(n) => n.to_string(),
        None => "unknown".into(),
    };
    out.push(change("Pending updates", pending(first), pending(last), ""));
    let yes_no = |b: Option<bool>| {
        match b {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
        .to_owned()
    };
    out.push(change(
        "Reboot required",
        yes_no(first.updates.reboot_required),
        yes_no(last.updates.reboot_required),
        "",
    ));
    let top = |s: &Snapshot| match s.processes.top_cpu.first() {
        Some(p) => format!("{} ({:.0}% CPU)", p.name, p.cpu_percent),
        None => "none recorded".into(),
    };
    out.push(change("Top CPU process", top(first), top(last), ""));
    out
}

/// `Label: a → b`, or `Label: unchanged, a` when equal.
fn change(label: &str, a: String, b: String, suffix: &str) -> String {
    if a == b {
        format!("{label}: unchanged, {a}{suffix}.")
    } else {
        format!("{label}: {a} → {b}{suffix}.")
    }
}

fn findings(first: &Snapshot, last: &Snapshot, out: &mut Vec<String>) {
    let codes =
        |s: &Snapshot| -> BTreeSet<String> { s.findings.iter().map(|f| f.code.clone()).collect() };
    let (before, after) = (codes(first), codes(last));
    for f in last.findings.iter().filter(|f| !before.contains(&f.code)) {
        out.push(format!(
            "Finding appeared: {} ({}): {}",
            f.code, f.severity, f.message
        ));
    }
    for f in first.findings.iter().filter(|f| !after.contains(&f.code)) {
        out.push(format!("Finding gone: {} (was: {})", f.code, f.message));
    }
    if before == after {
        out.push("Findings: the same codes in both snapshots.".into());
    }
}

fn disks(first: &Snapshot, last: &Snapshot, out: &mut Vec<String>) {
    for d2 in &last.disks {
        match first.disks.iter().find(|d| d.mount == d2.mount) {
            Some(d1) => {
                let usage =
                    |d: &Disk| format!("{} used, {} free", percent(d), size(d.available_bytes));
                out.push(change(
                    &format!("Disk {}", d2.mount),
                    usage(d1),
                    usage(d2),
                    "",
                ));
            }
            None => out.push(format!(
                "Disk {} is new: {} used, {} free.",
                d2.mount,
                percent(d2),
                size(d2.available_bytes)
            )),
        }
    }
    for d1 in first
        .disks
        .iter()
        .filter(|d| !last.disks.iter().any(|d2| d2.mount == d.mount))
    {
        out.push(format!("Disk {} is no longer mounted.", d1.mount));
    }
}

/// Used share as `df` computes it: used / (used + available), whole percent.
fn percent(d: &Disk) -> String {
    let room = d.used_bytes.saturating_add(d.available_bytes);
    if room == 0 {
        return "0%".into();
    }
    format!("{:.0}%", d.used_bytes as f64 * 100.0 / room as f64)
}

fn reboot(first: &Snapshot, last: &Snapshot, out: &mut Vec<String>) {
    let (b1, b2) = (first.host.boot_time_secs, last.host.boot_time_secs);
    if b1.abs_diff(b2) > BOOT_TIME_SLACK_SECS || last.host.uptime_secs < first.host.uptime_secs {
        out.push(format!(
            "The machine rebooted between the snapshots: booted {}, before that {}.",
            format_secs(b2),
            format_secs(b1)
        ));
    } else {
        out.push(format!(
            "No reboot between the snapshots: up since {} ({}).",
            format_secs(b2),
            uptime(last.host.uptime_secs)
        ));
    }
}

fn set_change(
    label: &str,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    out: &mut Vec<String>,
) {
    let added: Vec<&str> = after.difference(before).map(String::as_str).collect();
    let removed: Vec<&str> = before.difference(after).map(String::as_str).collect();
    if !added.is_empty() {
        out.push(format!("{label}s added: {}.", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!("{label}s cleared: {}.", removed.join(", ")));
    }
    if added.is_empty() && removed.is_empty() {
        out.push(format!(
            "{label}s: unchanged, {}.",
            list(after.iter().cloned().collect())
        ));
    }
}

fn route(r: &Route) -> String {
    match r.gateway.as_str() {
        "" => format!("on-link via {} ({})", r.interface, r.family),
        gw => format!("{gw} on {} ({})", r.interface, r.family),
    }
}

fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn uptime(secs: u64) -> String {
    match secs {
        0..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
        _ => format!("{} d {} h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_reboot_need_reads_unknown_not_no() {
        let mut first = Snapshot::default();
        first.updates.reboot_required = Some(false);
        let last = Snapshot::default();
        let lines = changes(&first, &last);
        let line = lines
            .iter()
            .find(|l| l.starts_with("Reboot required"))
            .cloned()
            .unwrap_or_default();
        assert!(line.contains("no") && line.ends_with("unknown."), "{line}");
    }
}
