//! Test fixture for the findings rules: a healthy workstation's snapshot, builders for its
//! parts, and lookups of the findings one rule made.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::evaluate;
use super::fmt::DAY_SECS;
use crate::msg::diag::{
    ControllerLink, Cpu, Disk, Host, Interface, LoadAverage, LogLine, Memory, Network, Os,
    ProbeReport, Process, Processes, Route, Severity, Snapshot, Temperature, TimeSync, Updates,
    probe_names,
};

pub(super) const NONE: [Severity; 0] = [];
pub(super) const GIB: u64 = 1024 * 1024 * 1024;
pub(super) const COLLECTED_AT_MS: u64 = 1_760_000_000_000;

pub(super) fn disk(device: &str, mount: &str, fs_type: &str, used: u64, available: u64) -> Disk {
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

pub(super) fn iface(name: &str, oper_state: &str) -> Interface {
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

pub(super) fn process(pid: u32, name: &str, cpu_percent: f32, memory_bytes: u64) -> Process {
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

/// Marks the probe called `name` as failed (it timed out), leaving its section as it is.
pub(super) fn fail_probe(s: &mut Snapshot, name: &str) {
    let report = s.probes.iter_mut().find(|p| p.name == name).unwrap();
    report.ok = false;
    report.error = Some("timed out after 2 s".to_owned());
}

pub(super) fn log(source: &str, text: &str) -> LogLine {
    LogLine {
        source: source.to_owned(),
        text: text.to_owned(),
    }
}

/// A healthy workstation: no findings at all. Every probe the agent runs reported ok.
pub(super) fn healthy() -> Snapshot {
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
            reboot_required: Some(false),
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
        probes: probe_names::ALL.iter().copied().map(probe).collect(),
        findings: Vec::new(),
    }
}

/// Severities of the findings with `code`, in order.
pub(super) fn severities(s: &Snapshot, code: &str) -> Vec<Severity> {
    evaluate(s)
        .into_iter()
        .filter(|f| f.code == code)
        .map(|f| f.severity)
        .collect()
}

pub(super) fn message(s: &Snapshot, code: &str) -> String {
    evaluate(s)
        .into_iter()
        .find(|f| f.code == code)
        .unwrap()
        .message
}
