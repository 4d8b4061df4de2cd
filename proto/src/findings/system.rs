//! System rules: CPU load, runaway and memory-hungry processes, failed services, hot
//! sensors, pending updates and restarts, and a long uptime.

use super::fmt::{DAY_SECS, fmt_bytes, fmt_duration, list, plural};
use super::{at_least_percent, finding, memory_collected, percent_floor};
use crate::msg::diag::{Finding, Severity, Snapshot};

/// Five-minute load average above this many times the logical cores is overload.
const LOAD_PER_CORE: f64 = 2.0;
const RUNAWAY_CPU_PERCENT: f32 = 90.0;
const MEMORY_HOG_PERCENT: u64 = 50;
/// A sensor this close to its own critical point is a warning.
const TEMPERATURE_MARGIN_CELSIUS: f32 = 5.0;
/// Used when a sensor reports no critical point of its own.
const TEMPERATURE_DEFAULT_WARNING_CELSIUS: f32 = 90.0;
const MAX_REBOOT_PACKAGES: usize = 3;
const UPTIME_INFO_SECS: u64 = 30 * DAY_SECS;
const UPTIME_WARNING_SECS: u64 = 90 * DAY_SECS;

pub(super) fn cpu_high_load(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn process_runaway(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn process_memory_hog(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn services_failed(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn temperature_high(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn updates_reboot_required(s: &Snapshot, out: &mut Vec<Finding>) {
    if s.updates.reboot_required != Some(true) {
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

pub(super) fn updates_pending(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn host_long_uptime(s: &Snapshot, out: &mut Vec<Finding>) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{
        COLLECTED_AT_MS, GIB, NONE, healthy, message, process, severities,
    };
    use crate::findings::fmt::DAY_SECS;
    use crate::msg::diag::{FailedUnit, Severity};

    use Severity::{Info, Warning};

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
    fn updates_reboot_required_names_up_to_three_packages() {
        let mut s = healthy();
        s.updates.reboot_required = Some(true);
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
}
