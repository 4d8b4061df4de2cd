//! Blocking probes over /proc, /etc and sysinfo: host, OS, CPU, memory, processes,
//! temperatures and time sync. Each returns its section or an error.

use std::cmp::Ordering;

use deskside_proto::msg::diag::{
    Cpu, Host, LoadAverage, Memory, Os, Process, Processes, Temperature, TimeSync,
};
use sysinfo::{
    Components, CpuRefreshKind, MINIMUM_CPU_UPDATE_INTERVAL, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System, UpdateKind, Users,
};

use super::linux::{
    SMALL_FILE_BYTES, clip, parse_meminfo, parse_os_release, parse_uptime, read_bounded, read_line,
};
use super::{ProbeError, sys};

/// Processes listed in each of the "top" tables.
const TOP_PROCESSES: usize = 10;
/// Sensors reported (a dual-socket server has ~100).
const MAX_SENSORS: usize = 128;

fn sysinfo_error(what: &str) -> impl FnOnce(sysinfo::Error) -> ProbeError + '_ {
    move |e| ProbeError::system(what, e)
}

/// Hostname (as `hostname` prints it: the UTS nodename), uptime and boot time.
pub(crate) fn host() -> Result<Host, ProbeError> {
    let uptime = read_bounded("/proc/uptime", SMALL_FILE_BYTES)?;
    Ok(Host {
        hostname: read_line("/proc/sys/kernel/hostname")?,
        uptime_secs: parse_uptime(&uptime)?,
        boot_time_secs: System::boot_time().map_err(sysinfo_error("boot time (/proc/stat)"))?,
        users: Vec::new(),
    })
}

/// os-release (/etc first, then /usr/lib as the spec says), `uname -r`, `uname -m`.
pub(crate) fn os() -> Result<Os, ProbeError> {
    let release = read_bounded("/etc/os-release", SMALL_FILE_BYTES)
        .or_else(|_| read_bounded("/usr/lib/os-release", SMALL_FILE_BYTES))?;
    let release = parse_os_release(&release);
    Ok(Os {
        id: release.id,
        version_id: release.version_id,
        pretty_name: release.pretty_name,
        kernel: read_line("/proc/sys/kernel/osrelease")?,
        // uname(2)'s `machine`, which is what `uname -m` prints.
        arch: clip(&System::cpu_arch()),
    })
}

/// Model, cores, frequency, load and whole-machine usage over one sampling interval.
pub(crate) fn cpu() -> Result<Cpu, ProbeError> {
    let mut system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::everything()))
            .map_err(sysinfo_error("reading CPU statistics"))?;
    std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
    system.refresh_cpu_usage();
    let first = system.cpus().first();
    let load = System::load_average().map_err(sysinfo_error("load average"))?;
    let logical_cores =
        sys::affinity_cpu_count().map_err(|e| ProbeError::system("sched_getaffinity", e))?;
    Ok(Cpu {
        model: clip(first.map(|c| c.brand()).unwrap_or_default().trim()),
        vendor: clip(first.map(|c| c.vendor_id()).unwrap_or_default()),
        logical_cores,
        physical_cores: System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok()),
        frequency_mhz: first.map(|c| c.frequency()).unwrap_or(0),
        usage_percent: system.global_cpu_usage(),
        load_average: LoadAverage {
            one: load.one,
            five: load.five,
            fifteen: load.fifteen,
        },
    })
}

/// /proc/meminfo, which is what `free -b` reads.
pub(crate) fn memory() -> Result<Memory, ProbeError> {
    parse_meminfo(&read_bounded("/proc/meminfo", SMALL_FILE_BYTES)?)
}

/// Process count and the top CPU and memory users over one sampling interval.
pub(crate) fn processes() -> Result<Processes, ProbeError> {
    let kind = ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_user(UpdateKind::OnlyIfNotSet);
    let mut system = System::new().map_err(sysinfo_error("reading processes"))?;
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    // Without user names the tables are still useful; uids are shown as numbers.
    let users = Users::new_with_refreshed_list().ok();

    let all: Vec<Process> = system
        .processes()
        .values()
        .filter(|p| p.thread_kind() != Some(sysinfo::ThreadKind::Userland))
        .map(|p| {
            let uid = p.user_id();
            let user = match (uid, &users) {
                (Some(uid), Some(users)) => users
                    .get_user_by_id(uid)
                    .map(|u| u.name().to_owned())
                    .unwrap_or_else(|| uid.to_string()),
                (Some(uid), None) => uid.to_string(),
                (None, _) => String::new(),
            };
            Process {
                pid: p.pid().as_u32(),
                name: clip(&p.name().to_string_lossy()),
                user: clip(&user),
                cpu_percent: p.cpu_usage(),
                memory_bytes: p.memory(),
                run_time_secs: p.run_time(),
            }
        })
        .collect();
    Ok(Processes {
        total: u32::try_from(all.len()).unwrap_or(u32::MAX),
        top_cpu: top_by(&all, |a, b| b.cpu_percent.total_cmp(&a.cpu_percent)),
        top_memory: top_by(&all, |a, b| b.memory_bytes.cmp(&a.memory_bytes)),
    })
}

/// The first [`TOP_PROCESSES`] by `order`, ties broken by pid for a stable report.
fn top_by(all: &[Process], order: impl Fn(&Process, &Process) -> Ordering) -> Vec<Process> {
    let mut sorted: Vec<&Process> = all.iter().collect();
    sorted.sort_by(|a, b| order(a, b).then(a.pid.cmp(&b.pid)));
    sorted.into_iter().take(TOP_PROCESSES).cloned().collect()
}

/// hwmon sensors via sysinfo. None at all (VMs) is a normal, empty answer.
pub(crate) fn temperatures() -> Result<Vec<Temperature>, ProbeError> {
    let components =
        Components::new_with_refreshed_list().map_err(sysinfo_error("reading sensors"))?;
    Ok(components
        .iter()
        .filter_map(|c| {
            Some(Temperature {
                label: clip(c.label()),
                celsius: c.temperature().filter(|t| t.is_finite())?,
                critical_celsius: c.critical().filter(|t| t.is_finite()),
            })
        })
        .take(MAX_SENSORS)
        .collect())
}

/// Non-empty trimmed lines, first occurrence kept, at most `max`.
pub(crate) fn unique_lines(text: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if out.len() >= max {
            break;
        }
        if !out.iter().any(|seen| seen == line) {
            out.push(clip(line));
        }
    }
    out
}

/// Kernel clock discipline (adjtimex) and the configured time zone.
pub(crate) fn time_sync() -> Result<TimeSync, ProbeError> {
    let clock = sys::clock_state().map_err(|e| ProbeError::system("adjtimex", e))?;
    Ok(TimeSync {
        synchronized: Some(clock.synchronized),
        max_error_us: Some(clock.max_error_us),
        timezone: timezone(),
        controller_offset_ms: None,
    })
}

/// /etc/timezone (Debian) or the zone the /etc/localtime link points at; empty if neither
/// says (glibc then uses UTC).
fn timezone() -> String {
    if let Ok(zone) = read_line("/etc/timezone")
        && !zone.is_empty()
    {
        return zone;
    }
    std::fs::read_link("/etc/localtime")
        .map(|target| zone_from_link(&target.to_string_lossy()))
        .unwrap_or_default()
}

/// `/usr/share/zoneinfo/Europe/Berlin` or `../usr/share/zoneinfo/UTC` → the zone name.
pub(crate) fn zone_from_link(target: &str) -> String {
    match target.split_once("zoneinfo/") {
        Some((_, zone)) => clip(zone),
        None => clip(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, cpu_percent: f32, memory_bytes: u64) -> Process {
        Process {
            pid,
            cpu_percent,
            memory_bytes,
            ..Process::default()
        }
    }

    #[test]
    fn top_tables_are_sorted_and_capped() {
        let all: Vec<Process> = (1..=30)
            .map(|pid| process(pid, (pid % 7) as f32, u64::from(pid) * 10))
            .chain([process(99, f32::NAN, 0)])
            .collect();
        let top = top_by(&all, |a, b| b.memory_bytes.cmp(&a.memory_bytes));
        assert_eq!(top.len(), TOP_PROCESSES);
        assert_eq!(top.first().map(|p| p.pid), Some(30));
        let cpu = top_by(&all, |a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
        assert_eq!(cpu.len(), TOP_PROCESSES);
    }

    #[test]
    fn reboot_packages_deduplicated() {
        let pkgs = unique_lines("linux-image-6.1.0\nlibc6\n\nlibc6\n", 10);
        assert_eq!(pkgs, ["linux-image-6.1.0", "libc6"]);
        assert_eq!(unique_lines("a\nb\nc\n", 2), ["a", "b"]);
    }

    #[test]
    fn zone_names_from_localtime_links() {
        assert_eq!(zone_from_link("/usr/share/zoneinfo/Etc/UTC"), "Etc/UTC");
        assert_eq!(
            zone_from_link("../usr/share/zoneinfo/Europe/Berlin"),
            "Europe/Berlin"
        );
        assert_eq!(zone_from_link("/etc/zones/custom"), "/etc/zones/custom");
    }

    #[test]
    fn memory_and_os_on_this_machine() {
        assert!(memory().is_ok_and(|m| m.total_bytes > 0));
        assert!(os().is_ok_and(|o| !o.kernel.is_empty() && !o.arch.is_empty()));
    }
}
