//! Blocking probes over sysinfo and the OS's own facts (`crate::os`): host, OS, CPU,
//! memory, processes, temperatures and time sync. Each returns its section or an error.

use std::cmp::Ordering;

use deskside_proto::msg::diag::{
    Cpu, Host, LoadAverage, Memory, Os, Process, Processes, Temperature, TimeSync,
};
use sysinfo::{
    Components, CpuRefreshKind, MINIMUM_CPU_UPDATE_INTERVAL, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System, UpdateKind, Users,
};

use crate::os::{self, Error, clip};

/// Processes listed in each of the "top" tables.
const TOP_PROCESSES: usize = 10;
/// Sensors reported (a dual-socket server has ~100).
const MAX_SENSORS: usize = 128;

fn sysinfo_error(what: &str) -> impl FnOnce(sysinfo::Error) -> Error + '_ {
    move |e| Error::system(what, e)
}

/// Hostname (as `hostname` prints it: the UTS nodename), uptime and boot time.
pub(crate) fn host() -> Result<Host, Error> {
    Ok(Host {
        hostname: os::hostname()?,
        uptime_secs: os::uptime_secs()?,
        boot_time_secs: System::boot_time().map_err(sysinfo_error("boot time (/proc/stat)"))?,
        users: Vec::new(),
    })
}

pub(crate) fn os() -> Result<Os, Error> {
    let release = os::os_release()?;
    Ok(Os {
        id: release.id,
        version_id: release.version_id,
        pretty_name: release.pretty_name,
        kernel: os::kernel_release()?,
        arch: clip(&System::cpu_arch()),
    })
}

pub(crate) fn cpu() -> Result<Cpu, Error> {
    let mut system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::everything()))
            .map_err(sysinfo_error("reading CPU statistics"))?;
    std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
    system.refresh_cpu_usage();
    let first = system.cpus().first();
    let load = System::load_average().map_err(sysinfo_error("load average"))?;
    let logical_cores = os::available_cpus()?;
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
pub(crate) fn memory() -> Result<Memory, Error> {
    os::memory()
}

/// Process count and the top CPU and memory users over one sampling interval.
pub(crate) fn processes() -> Result<Processes, Error> {
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
pub(crate) fn temperatures() -> Result<Vec<Temperature>, Error> {
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

/// Kernel clock discipline (adjtimex) and the configured time zone.
pub(crate) fn time_sync() -> Result<TimeSync, Error> {
    let clock = os::clock()?;
    Ok(TimeSync {
        synchronized: Some(clock.synchronized),
        max_error_us: Some(clock.max_error_us),
        timezone: os::timezone(),
        controller_offset_ms: None,
    })
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
    fn memory_and_os_on_this_machine() {
        assert!(memory().is_ok_and(|m| m.total_bytes > 0));
        assert!(os().is_ok_and(|o| !o.kernel.is_empty() && !o.arch.is_empty()));
    }
}
