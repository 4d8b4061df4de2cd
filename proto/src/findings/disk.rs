//! Disk rules: a read-only system disk, filesystems nearly full, and inodes running out.
//!
//! Which filesystems count for disk space: everything with a size, except memory-backed
//! and kernel ones (`tmpfs` such as /dev/shm, `devtmpfs`, `proc`, ... — a full tmpfs shows
//! up as memory pressure), and read-only images that are full by design (`squashfs` snap
//! packages, `iso9660` discs, `erofs`). An `overlay` counts only when it is `/` (a
//! container's root, where it reports the backing disk). A device mounted twice (bind
//! mounts) is reported once. Percentages are computed like `df`: used / (used +
//! available), rounded up, and thresholds apply to that displayed number.

use super::fmt::{fmt_bytes, fmt_count};
use super::{finding, percent_ceil};
use crate::msg::diag::{Disk, Finding, Severity, Snapshot};

const DISK_WARNING_PERCENT: u64 = 90;
const DISK_CRITICAL_PERCENT: u64 = 97;
const INODES_WARNING_PERCENT: u64 = 90;
const INODES_CRITICAL_PERCENT: u64 = 97;

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

pub(super) fn root_read_only(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn nearly_full(s: &Snapshot, out: &mut Vec<Finding>) {
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

pub(super) fn inodes_low(s: &Snapshot, out: &mut Vec<Finding>) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{GIB, NONE, disk, healthy, message, severities};
    use crate::msg::diag::{Disk, Severity, Snapshot};

    use Severity::{Critical, Warning};

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
}
