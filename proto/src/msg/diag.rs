//! The diagnostics snapshot: what an agent reports about its machine.
//!
//! Plain data, versioned by [`SNAPSHOT_VERSION`]. The JSON form (serde_json) is the
//! contract that `diag --json` prints on both sides; the wire form goes through
//! [`crate::codec`]. Units are in the field names (`_bytes`, `_secs`, `_ms`, `_percent`).
//! No `skip_serializing_if`/`flatten`/`untagged`: the binary codec needs every field.

use serde::{Deserialize, Serialize};

/// Bumped whenever a field is added, removed or changes meaning.
pub const SNAPSHOT_VERSION: u32 = 2;

/// A point-in-time picture of one machine, taken by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`] of the agent that took it.
    pub version: u32,
    /// Wall-clock time on the agent when it started taking the snapshot, Unix milliseconds
    /// (the wire name stays `collected_at_ms`).
    pub collected_at_ms: u64,
    pub host: Host,
    pub os: Os,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Mounted filesystems, as `df -B1` lists them.
    pub disks: Vec<Disk>,
    pub network: Network,
    pub processes: Processes,
    /// Hardware sensors; empty where the machine exposes none.
    pub temperatures: Vec<Temperature>,
    /// systemd units in the `failed` state.
    pub failed_units: Vec<FailedUnit>,
    /// Recent error-level lines from the system log and the kernel ring buffer.
    pub log_errors: Vec<LogLine>,
    pub updates: Updates,
    pub time: TimeSync,
    /// One entry per probe that ran: how long it took and whether it worked.
    pub probes: Vec<ProbeReport>,
    /// Plain-language findings computed from the rest of the snapshot.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Host {
    /// As `hostname` prints it.
    pub hostname: String,
    pub uptime_secs: u64,
    /// Unix seconds.
    pub boot_time_secs: u64,
    pub users: Vec<LoggedInUser>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoggedInUser {
    pub name: String,
    /// Terminal or display, e.g. `pts/0` or `:0`.
    pub line: String,
    /// Remote host for network logins; empty for local ones.
    pub remote: String,
    /// Login time, Unix seconds.
    pub since_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Os {
    /// `ID` from /etc/os-release, e.g. `debian`.
    pub id: String,
    /// `VERSION_ID` from /etc/os-release, e.g. `12`.
    pub version_id: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub pretty_name: String,
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// Machine architecture, as `uname -m` prints it.
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    /// Logical CPUs this process may run on, as `nproc` prints it.
    pub logical_cores: u32,
    /// Physical cores, where the OS reports them.
    pub physical_cores: Option<u32>,
    pub frequency_mhz: u64,
    /// Whole-machine CPU usage over the sampling interval, 0–100.
    pub usage_percent: f32,
    pub load_average: LoadAverage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Memory {
    /// `MemTotal` from /proc/meminfo, in bytes.
    pub total_bytes: u64,
    /// `MemAvailable`, in bytes.
    pub available_bytes: u64,
    /// `MemFree`, in bytes.
    pub free_bytes: u64,
    /// `SwapTotal`, in bytes.
    pub swap_total_bytes: u64,
    /// `SwapFree`, in bytes.
    pub swap_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Disk {
    /// Source device or pseudo-filesystem name, as `df` prints it.
    pub device: String,
    pub mount: String,
    pub fs_type: String,
    pub total_bytes: u64,
    /// Space available to unprivileged users (`df -B1` "Avail").
    pub available_bytes: u64,
    /// Space in use (`df -B1` "Used").
    pub used_bytes: u64,
    pub read_only: bool,
    /// Inodes in total and free; 0 where the filesystem has no inode limit.
    pub inodes_total: u64,
    pub inodes_free: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    pub default_routes: Vec<Route>,
    /// Name servers from /etc/resolv.conf, in order.
    pub dns_resolvers: Vec<String>,
    pub search_domains: Vec<String>,
    /// The link to the controller, filled in when the snapshot is served over one.
    pub controller: Option<ControllerLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Interface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`; empty where the interface has none.
    pub mac: String,
    /// CIDR notation, e.g. `192.0.2.10/24`, `fe80::1/64`.
    pub addresses: Vec<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Kernel operational state (`operstate`), e.g. `up`, `down`, `unknown`.
    pub oper_state: String,
    pub mtu: u32,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Route {
    pub interface: String,
    /// Next hop; empty for an on-link default route.
    pub gateway: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ControllerLink {
    pub address: String,
    /// Round-trip time measured by QUIC.
    pub rtt_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Processes {
    pub total: u32,
    /// Highest CPU users first.
    pub top_cpu: Vec<Process>,
    /// Largest resident memory first.
    pub top_memory: Vec<Process>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub user: String,
    /// Share of one CPU over the sampling interval; may exceed 100 for multi-threaded work.
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    /// Seconds since the process started.
    pub run_time_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Temperature {
    pub label: String,
    pub celsius: f32,
    pub critical_celsius: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FailedUnit {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LogLine {
    /// `journal`, `kernel` or a log file path.
    pub source: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Updates {
    /// The distribution's own signal asks for a restart (/var/run/reboot-required,
    /// `needs-restarting -r`, `zypper needs-rebooting`, or a newer kernel installed than
    /// the one running); `None` where none of them could be read (the `reboot` probe
    /// says why).
    pub reboot_required: Option<bool>,
    /// Packages that asked for the reboot.
    pub reboot_packages: Vec<String>,
    /// Upgradable packages; `None` where the package manager could not tell.
    pub pending: Option<u32>,
    /// Of those, from a security source.
    pub pending_security: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TimeSync {
    /// Kernel clock discipline state (`adjtimex`): `Some(true)` when an NTP daemon keeps
    /// it synchronised, `None` where it cannot be read.
    pub synchronized: Option<bool>,
    /// Estimated error of the clock as the kernel reports it, in microseconds.
    pub max_error_us: Option<i64>,
    /// `/etc/timezone` or the `/etc/localtime` link target.
    pub timezone: String,
    /// Agent clock minus controller clock, filled in by the controller on receipt.
    pub controller_offset_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProbeReport {
    pub name: String,
    pub ok: bool,
    /// Why the probe failed or timed out; `None` when `ok`.
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// Probe names as they appear in [`ProbeReport::name`], in report order. The agent names
/// its probes with these; findings key on them to tell "not collected" from "absent".
pub mod probe_names {
    /// Hostname, uptime and boot time ([`super::Host`] without `users`).
    pub const HOST: &str = "host";
    /// [`super::Os`].
    pub const OS: &str = "os";
    /// [`super::Cpu`].
    pub const CPU: &str = "cpu";
    /// [`super::Memory`], swap included.
    pub const MEMORY: &str = "memory";
    /// [`super::Snapshot::disks`].
    pub const DISKS: &str = "disks";
    /// [`super::Network::interfaces`].
    pub const INTERFACES: &str = "interfaces";
    /// [`super::Network::default_routes`].
    pub const ROUTES: &str = "routes";
    /// [`super::Network::dns_resolvers`] and `search_domains`.
    pub const DNS: &str = "dns";
    /// [`super::Processes`].
    pub const PROCESSES: &str = "processes";
    /// [`super::Snapshot::temperatures`].
    pub const TEMPERATURES: &str = "temperatures";
    /// [`super::Host::users`].
    pub const USERS: &str = "users";
    /// [`super::Snapshot::failed_units`].
    pub const FAILED_UNITS: &str = "failed_units";
    /// The system log's lines in [`super::Snapshot::log_errors`].
    pub const JOURNAL: &str = "journal";
    /// The kernel ring buffer's lines in [`super::Snapshot::log_errors`].
    pub const KERNEL_LOG: &str = "kernel_log";
    /// [`super::Updates::reboot_required`] and `reboot_packages`.
    pub const REBOOT: &str = "reboot";
    /// [`super::Updates::pending`] and `pending_security`.
    pub const UPDATES: &str = "updates";
    /// [`super::TimeSync`].
    pub const TIME: &str = "time";

    /// Every probe name, in the order the agent reports them.
    pub const ALL: &[&str] = &[
        HOST,
        OS,
        CPU,
        MEMORY,
        DISKS,
        INTERFACES,
        ROUTES,
        DNS,
        PROCESSES,
        TEMPERATURES,
        USERS,
        FAILED_UNITS,
        JOURNAL,
        KERNEL_LOG,
        REBOOT,
        UPDATES,
        TIME,
    ];
}

/// How much a finding matters to the engineer reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One plain-language observation about a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier, e.g. `disk.nearly_full`; scripts and reports key on it.
    pub code: String,
    /// One sentence for a person, e.g. "/ is 97% full (1.2 GiB free)".
    pub message: String,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}
