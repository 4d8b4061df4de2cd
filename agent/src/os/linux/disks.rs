//! The disks probe: what `df -B1` prints (the mounts and filters of `mounts.rs`, then
//! statvfs on each survivor), with read-only flags and inode counts — and always `/`,
//! also where it is no mount of its own (a chroot) or a bind of a subtree that df's
//! filters drop (LXC, systemd-nspawn): then statvfs("/") says how full it is.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use deskside_proto::msg::diag::Disk;

use super::files::{TABLE_FILE_BYTES, read_bounded};
use super::mounts::{MountEntry, dedupe_like_df, has_uuid_suffix, parse_mountinfo};
use super::sys::{self, FsUsage};
use crate::os::{Error, clip};

/// Disks reported in a snapshot.
const MAX_DISKS: usize = 256;
/// What `df` prints for a device or type it finds no mount entry for.
const UNKNOWN: &str = "-";

/// What the probe asks of the machine about paths; tests answer from fixtures.
pub(crate) trait FsView {
    /// `st_dev` of `path`.
    fn stat_dev(&self, path: &str) -> Option<u64>;
    fn statvfs(&self, path: &str) -> io::Result<FsUsage>;
    /// Where a device link (`/dev/mapper/luks-<uuid>`) points.
    fn canonical(&self, path: &str) -> Option<String>;
}

/// The running machine.
struct Live;

impl FsView for Live {
    fn stat_dev(&self, path: &str) -> Option<u64> {
        std::fs::metadata(path).ok().map(|m| m.dev())
    }
    fn statvfs(&self, path: &str) -> io::Result<FsUsage> {
        sys::statvfs(Path::new(path))
    }
    fn canonical(&self, path: &str) -> Option<String> {
        std::fs::canonicalize(path)
            .ok()
            .map(|p| clip(&p.to_string_lossy()))
    }
}

/// The disks `df -B1` lists on this machine, `/` always among them.
pub fn disks() -> Result<Vec<Disk>, Error> {
    let entries = read_bounded("/proc/self/mountinfo", TABLE_FILE_BYTES).and_then(|text| {
        let entries = parse_mountinfo(&text);
        if entries.is_empty() {
            Err(Error::parse("/proc/self/mountinfo", "no mounts listed"))
        } else {
            Ok(entries)
        }
    });
    match entries {
        Ok(entries) => Ok(disks_from(entries, &Live)),
        // A chroot without /proc: the root file system is still there to report.
        Err(e) => root_disk(&[], &Live).map(|d| vec![d]).ok_or(e),
    }
}

/// The disks `df -B1` would list for these mountinfo entries, `/` always among them
/// when statvfs("/") answers.
pub(crate) fn disks_from(entries: Vec<MountEntry>, fs: &impl FsView) -> Vec<Disk> {
    let root_dev = fs.stat_dev("/");
    let root_entries: Vec<MountEntry> = entries
        .iter()
        .filter(|e| e.mount_point == "/" || root_dev == Some(e.dev))
        .cloned()
        .collect();
    let mut disks = Vec::new();
    for me in dedupe_like_df(entries, |path| fs.stat_dev(path)) {
        if me.is_dummy() || !me.mount_point.starts_with('/') {
            continue;
        }
        // df skips what it may not or can no longer see (EACCES, ENOENT) and reports other
        // errors on stderr; a snapshot has no stderr, so those are skipped too.
        let Ok(usage) = fs.statvfs(&me.mount_point) else {
            continue;
        };
        if usage.blocks == 0 {
            continue;
        }
        let device = if has_uuid_suffix(&me.source) {
            fs.canonical(&me.source)
                .unwrap_or_else(|| me.source.clone())
        } else {
            me.source.clone()
        };
        disks.push(disk(
            &me.mount_point,
            device,
            me.fs_type.clone(),
            me.is_read_only(),
            usage,
        ));
        if disks.len() >= MAX_DISKS {
            break;
        }
    }
    if !disks.iter().any(|d| d.mount == "/")
        && let Some(root) = root_disk(&root_entries, fs)
    {
        disks.insert(0, root);
        disks.truncate(MAX_DISKS);
    }
    disks
}

/// `/` from statvfs, named after the entry mounted on `/` (the last one: it hides those
/// before it) or else one of the same device; `-` as df prints when there is none (a
/// chroot sees no mount of its root).
fn root_disk(candidates: &[MountEntry], fs: &impl FsView) -> Option<Disk> {
    let usage = fs.statvfs("/").ok()?;
    let holder = candidates
        .iter()
        .rev()
        .find(|e| e.mount_point == "/")
        .or_else(|| candidates.first());
    let (device, fs_type, read_only) = match holder {
        Some(e) => (e.source.clone(), e.fs_type.clone(), e.is_read_only()),
        None => (UNKNOWN.to_owned(), UNKNOWN.to_owned(), false),
    };
    Some(disk(
        "/",
        device,
        fs_type,
        read_only || usage.read_only,
        usage,
    ))
}

fn disk(mount: &str, device: String, fs_type: String, read_only: bool, usage: FsUsage) -> Disk {
    Disk {
        device,
        read_only,
        mount: clip(mount),
        fs_type,
        total_bytes: usage.total_bytes,
        available_bytes: usage.available_bytes,
        used_bytes: usage.total_bytes.saturating_sub(usage.free_bytes),
        inodes_total: usage.inodes_total,
        inodes_free: usage.inodes_free,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::mounts::makedev;
    use super::*;

    /// A machine described by tables: `st_dev` per path, sizes per path.
    struct Fixture {
        devs: HashMap<&'static str, u64>,
        sizes: HashMap<&'static str, FsUsage>,
    }

    impl FsView for Fixture {
        fn stat_dev(&self, path: &str) -> Option<u64> {
            self.devs.get(path).copied()
        }
        fn statvfs(&self, path: &str) -> io::Result<FsUsage> {
            self.sizes
                .get(path)
                .copied()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn canonical(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn usage(gib: u64, read_only: bool) -> FsUsage {
        let bytes = gib << 30;
        FsUsage {
            total_bytes: bytes,
            free_bytes: bytes / 2,
            available_bytes: bytes / 4,
            blocks: bytes / 4096,
            inodes_total: 1000,
            inodes_free: 500,
            read_only,
        }
    }

    fn mounts(disks: &[Disk]) -> Vec<&str> {
        disks.iter().map(|d| d.mount.as_str()).collect()
    }

    #[test]
    fn a_plain_machine_lists_root_as_df_does() {
        let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 8:17 / /home rw,relatime - xfs /dev/sdb1 rw
";
        let fs = Fixture {
            devs: HashMap::from([("/", 0xfe00), ("/home", 0x811), ("/proc", 21)]),
            sizes: HashMap::from([("/", usage(100, false)), ("/home", usage(500, false))]),
        };
        let disks = disks_from(parse_mountinfo(text), &fs);
        assert_eq!(mounts(&disks), ["/", "/home"]);
        assert_eq!(disks.first().map(|d| d.device.as_str()), Some("/dev/vda"));
    }

    #[test]
    fn a_chroot_without_a_root_mount_still_reports_root() {
        // Inside a chroot the kernel lists only mounts below the new root: /proc and /dev
        // mounted for it, none on / itself.
        let text = "\
812 27 0:21 / /proc rw,relatime - proc proc rw
813 27 0:6 / /dev rw,relatime - devtmpfs udev rw,size=8k
814 27 0:45 / /tmp rw,relatime - tmpfs tmpfs rw
";
        let fs = Fixture {
            devs: HashMap::from([("/", 0x801), ("/proc", 21), ("/dev", 6), ("/tmp", 45)]),
            sizes: HashMap::from([("/", usage(40, false)), ("/tmp", usage(1, false))]),
        };
        let disks = disks_from(parse_mountinfo(text), &fs);
        assert_eq!(mounts(&disks), ["/", "/tmp"]);
        let root = disks.first();
        assert_eq!(
            root.map(|d| (d.device.as_str(), d.fs_type.as_str())),
            Some(("-", "-"))
        );
        assert_eq!(root.map(|d| d.total_bytes), Some(40 << 30));
        assert_eq!(root.map(|d| d.available_bytes), Some(10 << 30));
        assert_eq!(root.map(|d| d.used_bytes), Some(20 << 30));
    }

    #[test]
    fn a_container_root_bound_from_a_subtree_is_kept() {
        // LXC / systemd-nspawn: / is a bind of the host's /var/lib/machines/deb, listed
        // after a bind of the same file system with a shorter root, which df's duplicate
        // filter prefers.
        let text = "\
601 600 259:2 /home /home rw,relatime - ext4 /dev/nvme0n1p2 rw
600 590 259:2 /var/lib/machines/deb / ro,relatime - ext4 /dev/nvme0n1p2 rw
602 600 0:60 / /run rw,nosuid - tmpfs tmpfs rw
";
        let dev = makedev(259, 2);
        let fs = Fixture {
            devs: HashMap::from([("/", dev), ("/home", dev), ("/run", 60)]),
            sizes: HashMap::from([
                ("/", usage(200, false)),
                ("/home", usage(200, false)),
                ("/run", usage(1, false)),
            ]),
        };
        let disks = disks_from(parse_mountinfo(text), &fs);
        assert_eq!(mounts(&disks), ["/", "/home", "/run"]);
        let root = disks.first();
        assert_eq!(
            root.map(|d| (d.device.as_str(), d.fs_type.as_str(), d.read_only)),
            Some(("/dev/nvme0n1p2", "ext4", true))
        );
    }

    #[test]
    fn a_root_listed_under_another_mount_point_names_its_device() {
        // / is no mount of its own, but the same file system is mounted elsewhere in view.
        let text = "812 27 8:1 /srv /srv rw - btrfs /dev/sda1 rw\n";
        let fs = Fixture {
            devs: HashMap::from([("/", 0x801), ("/srv", 0x801)]),
            sizes: HashMap::from([("/", usage(10, true)), ("/srv", usage(10, false))]),
        };
        let disks = disks_from(parse_mountinfo(text), &fs);
        assert_eq!(mounts(&disks), ["/", "/srv"]);
        let root = disks.first();
        assert_eq!(
            root.map(|d| (d.device.as_str(), d.fs_type.as_str(), d.read_only)),
            Some(("/dev/sda1", "btrfs", true)),
            "read-only from statvfs's ST_RDONLY"
        );
    }

    #[test]
    fn no_root_disk_when_statvfs_cannot_see_root() {
        let text = "814 27 0:45 / /tmp rw,relatime - tmpfs tmpfs rw\n";
        let fs = Fixture {
            devs: HashMap::from([("/tmp", 45)]),
            sizes: HashMap::from([("/tmp", usage(1, false))]),
        };
        assert_eq!(mounts(&disks_from(parse_mountinfo(text), &fs)), ["/tmp"]);
    }

    #[test]
    fn disks_on_this_machine_include_root() {
        let disks = disks().unwrap_or_default();
        assert!(disks.iter().any(|d| d.mount == "/" && d.total_bytes > 0));
        assert!(
            disks
                .iter()
                .all(|d| d.fs_type != "proc" && d.fs_type != "sysfs")
        );
    }
}
