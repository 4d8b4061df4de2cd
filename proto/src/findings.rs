//! Findings: pure rules that turn a [`Snapshot`] into plain-language observations.
//!
//! Each rule is a small function in the `RULES` table; [`evaluate`] runs them all and sorts the
//! result most severe first (stable, so rule order decides within a severity). Rules do
//! no IO and never read the clock: every time comes from the snapshot itself.
//!
//! Messages are written for an L1 engineer to read out to a user: lowercase start, no
//! trailing full stop, numbers with units ("/ is 97% full (1.2 GiB free of 40.0 GiB)").
//!
//! Missing data is not a problem to report. A probe that fails leaves its section at the
//! default, so rules that report an *absence* (no default route, no swap) only speak when
//! their section was collected: memory needs `total_bytes > 0`, network needs at least one
//! interface listed, and neither may have a failed probe named after the section (the
//! [`Snapshot`] field it fills: `memory`, `network`). `probes.failed` tells the engineer
//! which sections are missing instead.
//!
//! Which filesystems count for disk space: everything with a size, except memory-backed
//! and kernel ones (`tmpfs` such as /dev/shm, `devtmpfs`, `proc`, ... — a full tmpfs shows
//! up as memory pressure), and read-only images that are full by design (`squashfs` snap
//! packages, `iso9660` discs, `erofs`). An `overlay` counts only when it is `/` (a
//! container's root, where it reports the backing disk). A device mounted twice (bind
//! mounts) is reported once. Percentages are computed like `df`: used / (used +
//! available), rounded up, and thresholds apply to that displayed number.

use std::cmp::Reverse;

use crate::msg::diag::{Disk, Finding, Interface, Severity, Snapshot};

/// Every rule, in the order their findings appear within one severity.
const RULES: &[fn(&Snapshot, &mut Vec<Finding>)] = &[
    disk_root_read_only,
    disk_nearly_full,
    disk_inodes_low,
    memory_low,
    log_oom_kills,
    swap_pressure,
    swap_none,
    network_no_interface_up,
    network_no_default_route,
    network_no_dns_resolver,
    network_interface_errors,
    time_controller_offset,
    time_unsynchronised,
    cpu_high_load,
    process_runaway,
    process_memory_hog,
    services_failed,
    temperature_high,
    log_kernel_errors,
    updates_reboot_required,
    updates_pending,
    host_long_uptime,
    probes_failed,
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
// Thresholds
// ---------------------------------------------------------------------------------------

const DISK_WARNING_PERCENT: u64 = 90;
const DISK_CRITICAL_PERCENT: u64 = 97;
const INODES_WARNING_PERCENT: u64 = 90;
const INODES_CRITICAL_PERCENT: u64 = 97;
/// Available memory below this share of the total is a warning...
const MEMORY_WARNING_PERCENT: u64 = 10;
/// ...and below this one critical.
const MEMORY_CRITICAL_PERCENT: u64 = 5;
const SWAP_WARNING_PERCENT: u64 = 80;
const OFFSET_WARNING_MS: u64 = 60_000;
const OFFSET_CRITICAL_MS: u64 = 300_000;
const DAY_SECS: u64 = 86_400;
const UPTIME_INFO_SECS: u64 = 30 * DAY_SECS;
const UPTIME_WARNING_SECS: u64 = 90 * DAY_SECS;
/// Five-minute load average above this many times the logical cores is overload.
const LOAD_PER_CORE: f64 = 2.0;
const RUNAWAY_CPU_PERCENT: f32 = 90.0;
const MEMORY_HOG_PERCENT: u64 = 50;
/// This many kernel error lines turn the info into a warning.
const KERNEL_ERRORS_WARNING: usize = 10;
/// A sensor this close to its own critical point is a warning.
const TEMPERATURE_MARGIN_CELSIUS: f32 = 5.0;
/// Used when a sensor reports no critical point of its own.
const TEMPERATURE_DEFAULT_WARNING_CELSIUS: f32 = 90.0;
/// Names listed in one message before "and N more".
const MAX_LISTED: usize = 5;
const MAX_REBOOT_PACKAGES: usize = 3;
/// Characters of a quoted log line or probe error.
const MAX_QUOTE_CHARS: usize = 100;

/// Memory-backed and kernel filesystems: their fullness is not disk space.
const VIRTUAL_FS_TYPES: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "proc",
    "sysfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "efivarfs",
    "hugetlbfs",
    "mqueue",
    "configfs",
    "fusectl",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
];

/// Read-only images that are always 100% full and read-only by design.
const IMAGE_FS_TYPES: &[&str] = &[
    "squashfs",
    "iso9660",
    "udf",
    "erofs",
    "cramfs",
    "composefs",
    "fuse.snapfuse",
    "fuse.squashfuse",
];

/// Union/overlay filesystems: counted only as a container's root.
const OVERLAY_FS_TYPES: &[&str] = &["overlay", "aufs"];

// ---------------------------------------------------------------------------------------
// Disks
// ---------------------------------------------------------------------------------------

fn disk_root_read_only(s: &Snapshot, out: &mut Vec<Finding>) {
    let root_read_only = s
        .disks
        .iter()
        .any(|d| d.mount == "/" && d.read_only && !IMAGE_FS_TYPES.contains(&d.fs_type.as_str()));
    if root_read_only {
        out.push(finding(
            Severity::Critical,
            "disk.root_read_only",
            "the system disk (/) is read-only: nothing can be saved and updates will fail; \
             this usually follows disk errors"
                .to_owned(),
        ));
    }
}

fn disk_nearly_full(s: &Snapshot, out: &mut Vec<Finding>) {
    for disk in space_checked_disks(s) {
        let Some(percent) = percent_ceil(
            disk.used_bytes,
            disk.used_bytes.saturating_add(disk.available_bytes),
        ) else {
            continue;
        };
        let severity = if percent >= DISK_CRITICAL_PERCENT {
            Severity::Critical
        } else if percent >= DISK_WARNING_PERCENT {
            Severity::Warning
        } else {
            continue;
        };
        out.push(finding(
            severity,
            "disk.nearly_full",
            format!(
                "{} is {percent}% full ({} free of {})",
                disk.mount,
                fmt_bytes(disk.available_bytes),
                fmt_bytes(disk.total_bytes)
            ),
        ));
    }
}

fn disk_inodes_low(s: &Snapshot, out: &mut Vec<Finding>) {
    for disk in space_checked_disks(s) {
        let used = disk.inodes_total.saturating_sub(disk.inodes_free);
        let Some(percent) = percent_ceil(used, disk.inodes_total) else {
            continue;
        };
        let severity = if percent >= INODES_CRITICAL_PERCENT {
            Severity::Critical
        } else if percent >= INODES_WARNING_PERCENT {
            Severity::Warning
        } else {
            continue;
        };
        out.push(finding(
            severity,
            "disk.inodes_low",
            format!(
                "{} has used {percent}% of its file slots (inodes): {} of {} left; \
                 new files cannot be created when none are left, even with space free",
                disk.mount,
                fmt_count(disk.inodes_free),
                fmt_count(disk.inodes_total)
            ),
        ));
    }
}

/// Filesystems whose space and inodes mean something, each device once.
fn space_checked_disks(s: &Snapshot) -> impl Iterator<Item = &Disk> {
    let mut seen_devices: Vec<&str> = Vec::new();
    s.disks.iter().filter(move |disk| {
        if !counts_for_space(disk) {
            return false;
        }
        if !disk.device.is_empty() {
            if seen_devices.contains(&disk.device.as_str()) {
                return false;
            }
            seen_devices.push(disk.device.as_str());
        }
        true
    })
}

fn counts_for_space(disk: &Disk) -> bool {
    let fs_type = disk.fs_type.as_str();
    if disk.total_bytes == 0
        || VIRTUAL_FS_TYPES.contains(&fs_type)
        || IMAGE_FS_TYPES.contains(&fs_type)
    {
        return false;
    }
    !OVERLAY_FS_TYPES.contains(&fs_type) || disk.mount == "/"
}

// ---------------------------------------------------------------------------------------
// Memory and swap
// ---------------------------------------------------------------------------------------

/// Memory figures were collected (a failed probe leaves them at zero).
fn memory_collected(s: &Snapshot) -> bool {
    s.memory.total_bytes > 0 && !probe_failed(s, "memory")
}

fn memory_low(s: &Snapshot, out: &mut Vec<Finding>) {
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

fn swap_pressure(s: &Snapshot, out: &mut Vec<Finding>) {
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

fn swap_none(s: &Snapshot, out: &mut Vec<Finding>) {
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

// ---------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------

/// Network figures were collected: every Linux machine lists at least `lo`.
fn network_collected(s: &Snapshot) -> bool {
    !s.network.interfaces.is_empty() && !probe_failed(s, "network")
}

fn is_loopback(iface: &Interface) -> bool {
    iface.name == "lo"
}

/// Enabled and with a link: `unknown` is normal for tunnels and some virtual NICs.
fn is_connected(iface: &Interface) -> bool {
    iface.up
        && !matches!(
            iface.oper_state.as_str(),
            "down" | "lowerlayerdown" | "notpresent" | "dormant"
        )
}

fn network_no_interface_up(s: &Snapshot, out: &mut Vec<Finding>) {
    if !network_collected(s) {
        return;
    }
    let others: Vec<&Interface> = s
        .network
        .interfaces
        .iter()
        .filter(|i| !is_loopback(i))
        .collect();
    if others.iter().any(|i| is_connected(i)) {
        return;
    }
    let message = if others.is_empty() {
        "no network connection: no network adapter was found besides loopback".to_owned()
    } else {
        let states: Vec<String> = others
            .iter()
            .map(|i| {
                let state = if !i.up {
                    "disabled"
                } else if i.oper_state.is_empty() {
                    "no link"
                } else {
                    i.oper_state.as_str()
                };
                format!("{} {state}", i.name)
            })
            .collect();
        format!(
            "no network connection: no network adapter is up ({}); check the cable, \
             Wi-Fi or that networking is switched on",
            list(&states)
        )
    };
    out.push(finding(
        Severity::Critical,
        "network.no_interface_up",
        message,
    ));
}

fn network_no_default_route(s: &Snapshot, out: &mut Vec<Finding>) {
    if network_collected(s) && s.network.default_routes.is_empty() {
        out.push(finding(
            Severity::Critical,
            "network.no_default_route",
            "no default route: this machine cannot reach anything outside its local \
             network (no internet, no company servers elsewhere)"
                .to_owned(),
        ));
    }
}

fn network_no_dns_resolver(s: &Snapshot, out: &mut Vec<Finding>) {
    if network_collected(s) && s.network.dns_resolvers.is_empty() {
        out.push(finding(
            Severity::Critical,
            "network.no_dns_resolver",
            "no DNS server is configured: names such as websites and servers cannot be \
             looked up, even if the network works"
                .to_owned(),
        ));
    }
}

fn network_interface_errors(s: &Snapshot, out: &mut Vec<Finding>) {
    for iface in &s.network.interfaces {
        if !iface.up || is_loopback(iface) || (iface.rx_errors == 0 && iface.tx_errors == 0) {
            continue;
        }
        let counts = match (iface.rx_errors, iface.tx_errors) {
            (rx, 0) => format!(
                "{} receive {}",
                fmt_count(rx),
                plural(rx, "error", "errors")
            ),
            (0, tx) => format!(
                "{} transmit {}",
                fmt_count(tx),
                plural(tx, "error", "errors")
            ),
            (rx, tx) => format!(
                "{} receive and {} transmit errors",
                fmt_count(rx),
                fmt_count(tx)
            ),
        };
        out.push(finding(
            Severity::Warning,
            "network.interface_errors",
            format!(
                "network adapter {} has {counts} since start-up; a bad cable, port or \
                 driver is the usual cause",
                iface.name
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

fn time_controller_offset(s: &Snapshot, out: &mut Vec<Finding>) {
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

fn time_unsynchronised(s: &Snapshot, out: &mut Vec<Finding>) {
    if s.time.synchronized == Some(false) {
        out.push(finding(
            Severity::Warning,
            "time.unsynchronised",
            "the clock is not kept in step with a time server (NTP), so it can drift".to_owned(),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// CPU and processes
// ---------------------------------------------------------------------------------------

fn cpu_high_load(s: &Snapshot, out: &mut Vec<Finding>) {
    let cores = s.cpu.logical_cores;
    let load = s.cpu.load_average.five;
    if cores == 0 || load <= LOAD_PER_CORE * f64::from(cores) {
        return;
    }
    out.push(finding(
        Severity::Warning,
        "cpu.high_load",
        format!(
            "the machine is overloaded: 5-minute load average {load:.1} on {cores} CPU {}, \
             more than twice what it can run at once",
            plural(u64::from(cores), "core", "cores")
        ),
    ));
}

fn process_runaway(s: &Snapshot, out: &mut Vec<Finding>) {
    let mut seen_pids: Vec<u32> = Vec::new();
    for process in &s.processes.top_cpu {
        if process.cpu_percent < RUNAWAY_CPU_PERCENT || seen_pids.contains(&process.pid) {
            continue;
        }
        seen_pids.push(process.pid);
        let percent = process.cpu_percent;
        let cores = if percent > 100.0 {
            format!(" ({:.1} cores' worth)", percent / 100.0)
        } else {
            String::new()
        };
        out.push(finding(
            Severity::Warning,
            "process.runaway",
            format!(
                "process {} (pid {}{}) is using {percent:.0}% CPU{cores}",
                process.name,
                process.pid,
                owner(&process.user)
            ),
        ));
    }
}

fn process_memory_hog(s: &Snapshot, out: &mut Vec<Finding>) {
    if !memory_collected(s) {
        return;
    }
    let total = s.memory.total_bytes;
    let mut seen_pids: Vec<u32> = Vec::new();
    for process in &s.processes.top_memory {
        if !at_least_percent(process.memory_bytes, total, MEMORY_HOG_PERCENT)
            || seen_pids.contains(&process.pid)
        {
            continue;
        }
        seen_pids.push(process.pid);
        let percent = percent_floor(process.memory_bytes, total).unwrap_or(0);
        out.push(finding(
            Severity::Warning,
            "process.memory_hog",
            format!(
                "process {} (pid {}{}) is using {}, {percent}% of the machine's {} memory",
                process.name,
                process.pid,
                owner(&process.user),
                fmt_bytes(process.memory_bytes),
                fmt_bytes(total)
            ),
        ));
    }
}

fn owner(user: &str) -> String {
    if user.is_empty() {
        String::new()
    } else {
        format!(", user {user}")
    }
}

// ---------------------------------------------------------------------------------------
// Services, hardware, logs
// ---------------------------------------------------------------------------------------

fn services_failed(s: &Snapshot, out: &mut Vec<Finding>) {
    let count = s.failed_units.len();
    if count == 0 {
        return;
    }
    let names: Vec<String> = s.failed_units.iter().map(|u| u.name.clone()).collect();
    let message = if count == 1 {
        format!("1 service has failed: {}", list(&names))
    } else {
        format!("{count} services have failed: {}", list(&names))
    };
    out.push(finding(Severity::Warning, "services.failed", message));
}

fn temperature_high(s: &Snapshot, out: &mut Vec<Finding>) {
    for sensor in &s.temperatures {
        let critical = sensor
            .critical_celsius
            .filter(|c| c.is_finite() && *c > 0.0);
        let limit = critical.map_or(TEMPERATURE_DEFAULT_WARNING_CELSIUS, |c| {
            c - TEMPERATURE_MARGIN_CELSIUS
        });
        if sensor.celsius < limit || !sensor.celsius.is_finite() {
            continue;
        }
        let label = if sensor.label.is_empty() {
            "a temperature sensor".to_owned()
        } else {
            format!("sensor \"{}\"", sensor.label)
        };
        let against = critical.map_or(String::new(), |c| format!(" (critical at {c:.0}°C)"));
        out.push(finding(
            Severity::Warning,
            "temperature.high",
            format!(
                "{label} is at {:.0}°C{against}; check that fans turn and air vents are clear",
                sensor.celsius
            ),
        ));
    }
}

fn is_oom_line(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("out of memory")
        || lower.contains("oom-kill")
        || lower.contains("killed process")
}

/// `java (pid 4242)` from "Out of memory: Killed process 4242 (java) total-vm:...".
fn killed_process(text: &str) -> Option<String> {
    const MARKER: &str = "killed process ";
    let start = text.to_ascii_lowercase().find(MARKER)? + MARKER.len();
    let rest = text.get(start..)?;
    let (pid, rest) = rest.split_once(" (")?;
    let (name, _) = rest.split_once(')')?;
    Some(format!("{name} (pid {pid})"))
}

fn log_oom_kills(s: &Snapshot, out: &mut Vec<Finding>) {
    let oom_lines: Vec<&str> = s
        .log_errors
        .iter()
        .map(|line| line.text.as_str())
        .filter(|text| is_oom_line(text))
        .collect();
    if oom_lines.is_empty() {
        return;
    }
    let mut killed: Vec<String> = Vec::new();
    for victim in oom_lines.iter().filter_map(|text| killed_process(text)) {
        if !killed.contains(&victim) {
            killed.push(victim);
        }
    }
    let message = if killed.is_empty() {
        format!(
            "the machine ran out of memory recently ({} log {} mention it); programs \
             may have been closed without warning",
            oom_lines.len(),
            plural(count_u64(oom_lines.len()), "line", "lines")
        )
    } else {
        format!(
            "the machine ran out of memory and the system closed {} to recover: {}; \
             unsaved work in {} is lost",
            plural(count_u64(killed.len()), "a program", "programs"),
            list(&killed),
            plural(count_u64(killed.len()), "it", "them")
        )
    };
    out.push(finding(Severity::Critical, "log.oom_kills", message));
}

fn log_kernel_errors(s: &Snapshot, out: &mut Vec<Finding>) {
    let kernel_lines: Vec<&str> = s
        .log_errors
        .iter()
        .filter(|line| line.source == "kernel" && !is_oom_line(&line.text))
        .map(|line| line.text.as_str())
        .collect();
    let Some(first) = kernel_lines.first() else {
        return;
    };
    let count = kernel_lines.len();
    let severity = if count >= KERNEL_ERRORS_WARNING {
        Severity::Warning
    } else {
        Severity::Info
    };
    let message = if count == 1 {
        format!(
            "the system core (kernel) logged an error recently: \"{}\"",
            quote(first)
        )
    } else {
        format!(
            "the system core (kernel) logged {count} errors recently, the first: \"{}\"",
            quote(first)
        )
    };
    out.push(finding(severity, "log.kernel_errors", message));
}

// ---------------------------------------------------------------------------------------
// Updates, uptime, probes
// ---------------------------------------------------------------------------------------

fn updates_reboot_required(s: &Snapshot, out: &mut Vec<Finding>) {
    if !s.updates.reboot_required {
        return;
    }
    let packages = &s.updates.reboot_packages;
    let message = if packages.is_empty() {
        "a restart is needed to finish installing updates".to_owned()
    } else {
        let shown: Vec<&str> = packages
            .iter()
            .take(MAX_REBOOT_PACKAGES)
            .map(String::as_str)
            .collect();
        let more = packages.len().saturating_sub(shown.len());
        let extra = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "a restart is needed to finish installing updates ({}{extra})",
            shown.join(", ")
        )
    };
    out.push(finding(
        Severity::Warning,
        "updates.reboot_required",
        message,
    ));
}

fn updates_pending(s: &Snapshot, out: &mut Vec<Finding>) {
    let security = s.updates.pending_security.unwrap_or(0);
    let pending = s.updates.pending.unwrap_or(0).max(security);
    if pending == 0 {
        return;
    }
    let waiting = format!(
        "{pending} {} waiting to be installed",
        plural(u64::from(pending), "update is", "updates are")
    );
    let (severity, message) = if security > 0 {
        let fixes = plural(
            u64::from(security),
            "is a security fix",
            "are security fixes",
        );
        (
            Severity::Warning,
            format!("{waiting}; {security} of them {fixes}"),
        )
    } else {
        (Severity::Info, waiting)
    };
    out.push(finding(severity, "updates.pending", message));
}

/// `host.uptime_secs`, or the time since `boot_time_secs` when the uptime is missing.
fn uptime_secs(s: &Snapshot) -> Option<u64> {
    if s.host.uptime_secs > 0 {
        return Some(s.host.uptime_secs);
    }
    let now_secs = s.collected_at_ms / 1000;
    if s.host.boot_time_secs == 0 || now_secs < s.host.boot_time_secs {
        return None;
    }
    Some(now_secs - s.host.boot_time_secs)
}

fn host_long_uptime(s: &Snapshot, out: &mut Vec<Finding>) {
    let Some(uptime) = uptime_secs(s) else {
        return;
    };
    let severity = if uptime >= UPTIME_WARNING_SECS {
        Severity::Warning
    } else if uptime >= UPTIME_INFO_SECS {
        Severity::Info
    } else {
        return;
    };
    out.push(finding(
        severity,
        "host.long_uptime",
        format!(
            "uptime {}: the machine has not been restarted in that time; a restart \
             applies updates and clears many slowdowns",
            fmt_duration(uptime)
        ),
    ));
}

fn probe_failed(s: &Snapshot, name: &str) -> bool {
    s.probes.iter().any(|p| !p.ok && p.name == name)
}

fn probes_failed(s: &Snapshot, out: &mut Vec<Finding>) {
    let failed: Vec<String> = s
        .probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| match p.error.as_deref() {
            Some(error) if !error.is_empty() => format!("{} ({})", p.name, quote(error)),
            _ => p.name.clone(),
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    let count = failed.len();
    out.push(finding(
        Severity::Info,
        "probes.failed",
        format!(
            "{count} {} could not run, so {} of this report {} missing: {}",
            plural(count_u64(count), "check", "checks"),
            plural(count_u64(count), "that part", "those parts"),
            plural(count_u64(count), "is", "are"),
            list(&failed)
        ),
    ));
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

fn count_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// "a, b, c, d, e and 2 more".
fn list<T: AsRef<str>>(items: &[T]) -> String {
    let shown: Vec<&str> = items.iter().take(MAX_LISTED).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(shown.len());
    let mut text = shown.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// At most [`MAX_QUOTE_CHARS`] characters of `text`, trimmed, with "…" when cut.
fn quote(text: &str) -> String {
    let text = text.trim();
    let mut quoted: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// "900 B", "512.0 MiB", "1.2 GiB": binary units, one decimal from KiB up.
fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let tenths_in = |divisor: u128| (u128::from(bytes) * 10 + divisor / 2) / divisor;
    let mut unit = 0;
    let mut divisor: u128 = 1024;
    let mut tenths = tenths_in(divisor);
    // Step up while rounding would print "1024.0" of the smaller unit.
    while tenths >= 10_240 && unit + 1 < UNITS.len() {
        unit += 1;
        divisor *= 1024;
        tenths = tenths_in(divisor);
    }
    let name = UNITS.get(unit).copied().unwrap_or("EiB");
    format!("{}.{} {name}", tenths / 10, tenths % 10)
}

/// "63 days", "5 hours", "4 minutes", "30 seconds": the largest whole unit, rounded down.
fn fmt_duration(secs: u64) -> String {
    const UNITS: [(u64, &str, &str); 4] = [
        (DAY_SECS, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
        (1, "second", "seconds"),
    ];
    let (size, one, many) = UNITS
        .into_iter()
        .find(|(size, _, _)| secs >= *size)
        .unwrap_or((1, "second", "seconds"));
    let n = secs / size;
    format!("{n} {}", plural(n, one, many))
}

/// "1,234,567".
fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::msg::diag::{
        ControllerLink, Cpu, FailedUnit, Host, LoadAverage, LogLine, Memory, Network, Os,
        ProbeReport, Process, Processes, Route, Temperature, TimeSync, Updates,
    };

    use Severity::{Critical, Info, Warning};

    const NONE: [Severity; 0] = [];
    const GIB: u64 = 1024 * 1024 * 1024;
    const COLLECTED_AT_MS: u64 = 1_760_000_000_000;

    fn disk(device: &str, mount: &str, fs_type: &str, used: u64, available: u64) -> Disk {
        Disk {
            device: device.to_owned(),
            mount: mount.to_owned(),
            fs_type: fs_type.to_owned(),
            total_bytes: used + available,
            available_bytes: available,
            used_bytes: used,
            read_only: false,
            inodes_total: 1_000_000,
            inodes_free: 800_000,
        }
    }

    fn iface(name: &str, oper_state: &str) -> Interface {
        Interface {
            name: name.to_owned(),
            mac: "52:54:00:12:34:56".to_owned(),
            addresses: vec!["192.0.2.10/24".to_owned()],
            up: true,
            oper_state: oper_state.to_owned(),
            mtu: 1500,
            rx_bytes: 1_000_000,
            tx_bytes: 500_000,
            rx_errors: 0,
            tx_errors: 0,
        }
    }

    fn process(pid: u32, name: &str, cpu_percent: f32, memory_bytes: u64) -> Process {
        Process {
            pid,
            name: name.to_owned(),
            user: "alice".to_owned(),
            cpu_percent,
            memory_bytes,
            run_time_secs: 3_600,
        }
    }

    fn probe(name: &str) -> ProbeReport {
        ProbeReport {
            name: name.to_owned(),
            ok: true,
            error: None,
            elapsed_ms: 12,
        }
    }

    fn log(source: &str, text: &str) -> LogLine {
        LogLine {
            source: source.to_owned(),
            text: text.to_owned(),
        }
    }

    /// A healthy workstation: no findings at all.
    fn healthy() -> Snapshot {
        let uptime_secs = 5 * DAY_SECS;
        let mut boot_efi = disk(
            "/dev/sda1",
            "/boot/efi",
            "vfat",
            6 * 1024 * 1024,
            500 * 1024 * 1024,
        );
        boot_efi.inodes_total = 0;
        boot_efi.inodes_free = 0;
        let mut root = disk("/dev/sda2", "/", "ext4", 40 * GIB, 55 * GIB);
        root.total_bytes = 100 * GIB; // 5% reserved for root, as ext4 does
        Snapshot {
            version: crate::msg::diag::SNAPSHOT_VERSION,
            collected_at_ms: COLLECTED_AT_MS,
            host: Host {
                hostname: "ws-0042".to_owned(),
                uptime_secs,
                boot_time_secs: COLLECTED_AT_MS / 1000 - uptime_secs,
                users: Vec::new(),
            },
            os: Os {
                id: "debian".to_owned(),
                version_id: "12".to_owned(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".to_owned(),
                kernel: "6.1.0-18-amd64".to_owned(),
                arch: "x86_64".to_owned(),
            },
            cpu: Cpu {
                model: "Intel(R) Core(TM) i5-8250U".to_owned(),
                vendor: "GenuineIntel".to_owned(),
                logical_cores: 8,
                physical_cores: Some(4),
                frequency_mhz: 1_800,
                usage_percent: 12.5,
                load_average: LoadAverage {
                    one: 1.5,
                    five: 1.2,
                    fifteen: 0.9,
                },
            },
            memory: Memory {
                total_bytes: 16 * GIB,
                available_bytes: 9 * GIB,
                free_bytes: 4 * GIB,
                swap_total_bytes: 4 * GIB,
                swap_free_bytes: 3 * GIB,
            },
            disks: vec![
                root,
                boot_efi,
                disk("tmpfs", "/dev/shm", "tmpfs", 0, 8 * GIB),
                // Snap packages are always 100% full and read-only.
                Disk {
                    read_only: true,
                    ..disk(
                        "/dev/loop0",
                        "/snap/core22/1380",
                        "squashfs",
                        77 * 1024 * 1024,
                        0,
                    )
                },
            ],
            network: Network {
                interfaces: vec![iface("lo", "unknown"), iface("eth0", "up")],
                default_routes: vec![Route {
                    interface: "eth0".to_owned(),
                    gateway: "192.0.2.1".to_owned(),
                    family: "ipv4".to_owned(),
                }],
                dns_resolvers: vec!["192.0.2.53".to_owned()],
                search_domains: vec!["corp.example".to_owned()],
                controller: Some(ControllerLink {
                    address: "198.51.100.7:4433".to_owned(),
                    rtt_ms: 18.5,
                }),
            },
            processes: Processes {
                total: 312,
                top_cpu: vec![process(1234, "firefox", 12.0, 2 * GIB)],
                top_memory: vec![process(1234, "firefox", 12.0, 2 * GIB)],
            },
            temperatures: vec![Temperature {
                label: "Package id 0".to_owned(),
                celsius: 55.0,
                critical_celsius: Some(100.0),
            }],
            failed_units: Vec::new(),
            log_errors: vec![log("journal", "gnome-shell[1502]: Failed to load icon")],
            updates: Updates {
                reboot_required: false,
                reboot_packages: Vec::new(),
                pending: Some(0),
                pending_security: Some(0),
            },
            time: TimeSync {
                synchronized: Some(true),
                max_error_us: Some(16_000),
                timezone: "Europe/Berlin".to_owned(),
                controller_offset_ms: Some(120),
            },
            probes: ["host", "cpu", "memory", "disks", "network"]
                .into_iter()
                .map(probe)
                .collect(),
            findings: Vec::new(),
        }
    }

    /// Severities of the findings with `code`, in order.
    fn severities(s: &Snapshot, code: &str) -> Vec<Severity> {
        evaluate(s)
            .into_iter()
            .filter(|f| f.code == code)
            .map(|f| f.severity)
            .collect()
    }

    fn message(s: &Snapshot, code: &str) -> String {
        evaluate(s)
            .into_iter()
            .find(|f| f.code == code)
            .unwrap()
            .message
    }

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

    // --- disks ----------------------------------------------------------------------

    fn with_root_usage(used: u64, available: u64) -> Snapshot {
        let mut s = healthy();
        s.disks[0].used_bytes = used;
        s.disks[0].available_bytes = available;
        s.disks[0].total_bytes = used + available;
        s
    }

    #[test]
    fn disk_nearly_full_thresholds() {
        assert_eq!(
            severities(&with_root_usage(89 * GIB, 11 * GIB), "disk.nearly_full"),
            NONE
        );
        assert_eq!(
            severities(&with_root_usage(90 * GIB, 10 * GIB), "disk.nearly_full"),
            [Warning]
        );
        assert_eq!(
            severities(&with_root_usage(96 * GIB, 4 * GIB), "disk.nearly_full"),
            [Warning]
        );
        assert_eq!(
            severities(&with_root_usage(97 * GIB, 3 * GIB), "disk.nearly_full"),
            [Critical]
        );
    }

    #[test]
    fn disk_nearly_full_rounds_up_like_df() {
        // 89.01% shows as 90% in df, so it is a warning too.
        assert_eq!(
            severities(&with_root_usage(8_901, 1_099), "disk.nearly_full"),
            [Warning]
        );
    }

    #[test]
    fn disk_nearly_full_uses_used_plus_available_and_says_free_of_total() {
        // 38.8 of 40 GiB used with 1.2 GiB available: 97%.
        let mut s = with_root_usage(38 * GIB + 800 * 1024 * 1024, 1_288_490_189);
        s.disks[0].total_bytes = 40 * GIB;
        assert_eq!(
            message(&s, "disk.nearly_full"),
            "/ is 97% full (1.2 GiB free of 40.0 GiB)"
        );
    }

    #[test]
    fn disk_nearly_full_skips_virtual_and_image_filesystems() {
        let mut s = healthy();
        s.disks
            .push(disk("tmpfs", "/run/user/1000", "tmpfs", 100, 0));
        s.disks.push(disk("udev", "/dev", "devtmpfs", 100, 0));
        s.disks
            .push(disk("/dev/sr0", "/media/cdrom", "iso9660", 100, 0));
        s.disks.push(disk(
            "overlay",
            "/var/lib/docker/overlay2/x/merged",
            "overlay",
            100,
            0,
        ));
        s.disks.push(disk("none", "/empty", "ext4", 0, 0));
        assert_eq!(severities(&s, "disk.nearly_full"), NONE);
    }

    #[test]
    fn disk_nearly_full_counts_overlay_root_and_network_shares() {
        let mut s = healthy();
        s.disks[0] = disk("overlay", "/", "overlay", 95, 5);
        s.disks.push(disk("fs01:/home", "/home", "nfs4", 99, 1));
        assert_eq!(severities(&s, "disk.nearly_full"), [Critical, Warning]);
    }

    #[test]
    fn disk_nearly_full_reports_a_device_once() {
        let mut s = with_root_usage(95, 5);
        let mut bind = s.disks[0].clone();
        bind.mount = "/srv/data".to_owned();
        s.disks.push(bind);
        assert_eq!(severities(&s, "disk.nearly_full"), [Warning]);
    }

    #[test]
    fn disk_inodes_low_thresholds() {
        let with_free = |free: u64| {
            let mut s = healthy();
            s.disks[0].inodes_total = 1_000_000;
            s.disks[0].inodes_free = free;
            s
        };
        assert_eq!(severities(&with_free(110_000), "disk.inodes_low"), NONE);
        assert_eq!(
            severities(&with_free(100_000), "disk.inodes_low"),
            [Warning]
        );
        assert_eq!(severities(&with_free(40_000), "disk.inodes_low"), [Warning]);
        assert_eq!(
            severities(&with_free(30_000), "disk.inodes_low"),
            [Critical]
        );
        assert!(
            message(&with_free(30_000), "disk.inodes_low").contains("30,000 of 1,000,000 left")
        );
    }

    #[test]
    fn disk_root_read_only_is_critical() {
        let mut s = healthy();
        s.disks[0].read_only = true;
        assert_eq!(severities(&s, "disk.root_read_only"), [Critical]);
    }

    #[test]
    fn disk_root_read_only_ignores_other_mounts_and_live_images() {
        let mut s = healthy();
        s.disks[1].read_only = true;
        assert_eq!(severities(&s, "disk.root_read_only"), NONE);
        s.disks[0] = Disk {
            read_only: true,
            ..disk("/dev/loop0", "/", "squashfs", 100, 0)
        };
        assert_eq!(severities(&s, "disk.root_read_only"), NONE);
    }

    // --- memory and swap ------------------------------------------------------------

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
        s.probes[2].ok = false;
        s.probes[2].error = Some("timed out after 2 s".to_owned());
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
    fn swap_none_is_info() {
        let mut s = healthy();
        s.memory.swap_total_bytes = 0;
        s.memory.swap_free_bytes = 0;
        assert_eq!(severities(&s, "swap.none"), [Info]);
    }

    // --- network --------------------------------------------------------------------

    #[test]
    fn network_no_default_route_is_critical() {
        let mut s = healthy();
        s.network.default_routes.clear();
        assert_eq!(severities(&s, "network.no_default_route"), [Critical]);
    }

    #[test]
    fn network_no_dns_resolver_is_critical() {
        let mut s = healthy();
        s.network.dns_resolvers.clear();
        assert_eq!(severities(&s, "network.no_dns_resolver"), [Critical]);
    }

    #[test]
    fn network_no_interface_up_when_only_loopback_is_up() {
        let mut s = healthy();
        s.network.interfaces[1].oper_state = "down".to_owned();
        s.network.interfaces.push(Interface {
            up: false,
            ..iface("wlan0", "down")
        });
        assert_eq!(severities(&s, "network.no_interface_up"), [Critical]);
        assert!(message(&s, "network.no_interface_up").contains("eth0 down, wlan0 disabled"));
    }

    #[test]
    fn network_no_interface_up_accepts_unknown_oper_state() {
        let mut s = healthy();
        s.network.interfaces[1] = iface("wg0", "unknown");
        assert_eq!(severities(&s, "network.no_interface_up"), NONE);
        s.network.interfaces.truncate(1);
        assert_eq!(severities(&s, "network.no_interface_up"), [Critical]);
    }

    #[test]
    fn network_rules_skip_a_failed_network_probe() {
        let mut s = healthy();
        s.network = Network::default();
        assert_eq!(evaluate(&s), Vec::new());
        s.network.interfaces.push(iface("lo", "unknown"));
        s.probes[4].ok = false;
        let codes: Vec<String> = evaluate(&s).into_iter().map(|f| f.code).collect();
        assert_eq!(codes, ["probes.failed"]);
    }

    #[test]
    fn network_interface_errors_counts_errors_on_up_interfaces() {
        let mut s = healthy();
        s.network.interfaces[1].rx_errors = 1_200;
        s.network.interfaces[1].tx_errors = 3;
        assert_eq!(severities(&s, "network.interface_errors"), [Warning]);
        assert!(
            message(&s, "network.interface_errors")
                .contains("eth0 has 1,200 receive and 3 transmit errors")
        );
        s.network.interfaces[1].up = false;
        assert_eq!(severities(&s, "network.interface_errors"), NONE);
    }

    #[test]
    fn network_interface_errors_single_direction() {
        let mut s = healthy();
        s.network.interfaces[1].tx_errors = 1;
        assert!(message(&s, "network.interface_errors").contains("1 transmit error since"));
    }

    // --- time -----------------------------------------------------------------------

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

    // --- host, cpu, processes -------------------------------------------------------

    #[test]
    fn host_long_uptime_thresholds() {
        let with_uptime = |secs: u64| {
            let mut s = healthy();
            s.host.uptime_secs = secs;
            s
        };
        assert_eq!(
            severities(&with_uptime(30 * DAY_SECS - 1), "host.long_uptime"),
            NONE
        );
        assert_eq!(
            severities(&with_uptime(30 * DAY_SECS), "host.long_uptime"),
            [Info]
        );
        assert_eq!(
            severities(&with_uptime(90 * DAY_SECS - 1), "host.long_uptime"),
            [Info]
        );
        assert_eq!(
            severities(&with_uptime(90 * DAY_SECS), "host.long_uptime"),
            [Warning]
        );
        assert!(
            message(&with_uptime(63 * DAY_SECS + 7), "host.long_uptime")
                .starts_with("uptime 63 days:")
        );
    }

    #[test]
    fn host_long_uptime_falls_back_to_boot_time() {
        let mut s = healthy();
        s.host.uptime_secs = 0;
        s.host.boot_time_secs = COLLECTED_AT_MS / 1000 - 40 * DAY_SECS;
        assert_eq!(severities(&s, "host.long_uptime"), [Info]);
        s.host.boot_time_secs = COLLECTED_AT_MS / 1000 + 10; // clock went backwards
        assert_eq!(severities(&s, "host.long_uptime"), NONE);
    }

    #[test]
    fn cpu_high_load_thresholds() {
        let mut s = healthy();
        s.cpu.logical_cores = 4;
        s.cpu.load_average.five = 8.0;
        assert_eq!(severities(&s, "cpu.high_load"), NONE);
        s.cpu.load_average.five = 8.01;
        assert_eq!(severities(&s, "cpu.high_load"), [Warning]);
        s.cpu.logical_cores = 0;
        assert_eq!(severities(&s, "cpu.high_load"), NONE);
    }

    #[test]
    fn process_runaway_thresholds() {
        let mut s = healthy();
        s.processes.top_cpu = vec![process(4242, "java", 89.9, GIB)];
        assert_eq!(severities(&s, "process.runaway"), NONE);
        s.processes.top_cpu = vec![
            process(4242, "java", 95.0, GIB),
            process(17, "chrome", 350.0, GIB),
        ];
        assert_eq!(severities(&s, "process.runaway"), [Warning, Warning]);
        assert_eq!(
            message(&s, "process.runaway"),
            "process java (pid 4242, user alice) is using 95% CPU"
        );
        s.processes.top_cpu[0].cpu_percent = 90.0;
        assert_eq!(severities(&s, "process.runaway"), [Warning, Warning]);
    }

    #[test]
    fn process_memory_hog_thresholds() {
        let mut s = healthy();
        s.processes.top_memory = vec![process(4242, "java", 1.0, 8 * GIB - 1)];
        assert_eq!(severities(&s, "process.memory_hog"), NONE);
        s.processes.top_memory = vec![process(4242, "java", 1.0, 8 * GIB)];
        assert_eq!(severities(&s, "process.memory_hog"), [Warning]);
        assert!(
            message(&s, "process.memory_hog").contains("8.0 GiB, 50% of the machine's 16.0 GiB")
        );
    }

    // --- services, hardware, logs ---------------------------------------------------

    #[test]
    fn services_failed_lists_names_and_count() {
        let mut s = healthy();
        for name in ["cups.service", "nginx.service"] {
            s.failed_units.push(FailedUnit {
                name: name.to_owned(),
                description: String::new(),
            });
        }
        assert_eq!(severities(&s, "services.failed"), [Warning]);
        assert_eq!(
            message(&s, "services.failed"),
            "2 services have failed: cups.service, nginx.service"
        );
    }

    #[test]
    fn temperature_high_thresholds() {
        let mut s = healthy();
        s.temperatures[0].celsius = 94.9;
        assert_eq!(severities(&s, "temperature.high"), NONE);
        s.temperatures[0].celsius = 95.0;
        assert_eq!(severities(&s, "temperature.high"), [Warning]);
        s.temperatures[0].critical_celsius = None;
        s.temperatures[0].celsius = 89.9;
        assert_eq!(severities(&s, "temperature.high"), NONE);
        s.temperatures[0].celsius = 90.0;
        assert_eq!(severities(&s, "temperature.high"), [Warning]);
        // A bogus critical point of 0 °C falls back to 90 °C.
        s.temperatures[0].critical_celsius = Some(0.0);
        s.temperatures[0].celsius = 60.0;
        assert_eq!(severities(&s, "temperature.high"), NONE);
    }

    #[test]
    fn log_oom_kills_names_the_killed_program() {
        let mut s = healthy();
        s.log_errors.push(log(
            "kernel",
            "Out of memory: Killed process 4242 (java) total-vm:9000000kB, anon-rss:8000000kB",
        ));
        assert_eq!(severities(&s, "log.oom_kills"), [Critical]);
        assert!(message(&s, "log.oom_kills").contains("java (pid 4242)"));
        // The OOM line is not also counted as a kernel error.
        assert_eq!(severities(&s, "log.kernel_errors"), NONE);
    }

    #[test]
    fn log_oom_kills_matches_oom_killer_lines() {
        let mut s = healthy();
        s.log_errors
            .push(log("journal", "systemd-oomd: oom-kill of user session"));
        assert_eq!(severities(&s, "log.oom_kills"), [Critical]);
    }

    #[test]
    fn log_kernel_errors_thresholds() {
        let with_lines = |n: usize| {
            let mut s = healthy();
            for i in 0..n {
                s.log_errors.push(log(
                    "kernel",
                    &format!("ata1.00: failed command: READ FPDMA QUEUED ({i})"),
                ));
            }
            s
        };
        assert_eq!(severities(&with_lines(0), "log.kernel_errors"), NONE);
        assert_eq!(severities(&with_lines(1), "log.kernel_errors"), [Info]);
        assert_eq!(severities(&with_lines(9), "log.kernel_errors"), [Info]);
        assert_eq!(severities(&with_lines(10), "log.kernel_errors"), [Warning]);
        assert!(message(&with_lines(10), "log.kernel_errors").starts_with(
            "the system core (kernel) logged 10 errors recently, the first: \"ata1.00"
        ));
    }

    // --- updates, probes ------------------------------------------------------------

    #[test]
    fn updates_reboot_required_names_up_to_three_packages() {
        let mut s = healthy();
        s.updates.reboot_required = true;
        assert_eq!(severities(&s, "updates.reboot_required"), [Warning]);
        s.updates.reboot_packages = ["linux-image-6.1.0-20-amd64", "libc6", "dbus", "systemd"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            message(&s, "updates.reboot_required"),
            "a restart is needed to finish installing updates \
             (linux-image-6.1.0-20-amd64, libc6, dbus and 1 more)"
        );
    }

    #[test]
    fn updates_pending_info_then_warning_with_security() {
        let mut s = healthy();
        s.updates.pending = None;
        s.updates.pending_security = None;
        assert_eq!(severities(&s, "updates.pending"), NONE);
        s.updates.pending = Some(12);
        assert_eq!(severities(&s, "updates.pending"), [Info]);
        s.updates.pending_security = Some(3);
        assert_eq!(severities(&s, "updates.pending"), [Warning]);
        assert_eq!(
            message(&s, "updates.pending"),
            "12 updates are waiting to be installed; 3 of them are security fixes"
        );
    }

    #[test]
    fn probes_failed_lists_probe_names() {
        let mut s = healthy();
        s.probes.push(ProbeReport {
            name: "temperatures".to_owned(),
            ok: false,
            error: Some("timed out after 2 s".to_owned()),
            elapsed_ms: 2_000,
        });
        assert_eq!(severities(&s, "probes.failed"), [Info]);
        assert_eq!(
            message(&s, "probes.failed"),
            "1 check could not run, so that part of this report is missing: \
             temperatures (timed out after 2 s)"
        );
    }

    // --- helpers --------------------------------------------------------------------

    #[test]
    fn fmt_bytes_examples() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(900), "900 B");
        assert_eq!(fmt_bytes(1024), "1.0 KiB");
        assert_eq!(fmt_bytes(512 * 1024 * 1024), "512.0 MiB");
        assert_eq!(fmt_bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(fmt_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(fmt_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn fmt_duration_examples() {
        assert_eq!(fmt_duration(0), "0 seconds");
        assert_eq!(fmt_duration(1), "1 second");
        assert_eq!(fmt_duration(245), "4 minutes");
        assert_eq!(fmt_duration(5 * 3_600 + 59), "5 hours");
        assert_eq!(fmt_duration(DAY_SECS), "1 day");
        assert_eq!(fmt_duration(63 * DAY_SECS), "63 days");
    }

    #[test]
    fn fmt_count_examples() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_000), "1,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }
}
