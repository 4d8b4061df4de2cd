//! Mounted filesystems as /proc/self/mountinfo lists them, and GNU df's filters on them
//! (pseudo filesystems, remote ones, duplicates). The disks probe is in `disks.rs`.

use std::collections::HashMap;

use crate::os::clip;

/// A workstation has tens of mounts, a container host a few thousand; past this we stop.
const MAX_MOUNTS: usize = 16_384;

/// One line of /proc/self/mountinfo, escapes (`\040` etc.) decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// `st_dev` of the mounted filesystem (from `major:minor`).
    pub dev: u64,
    /// Root of the mount within its filesystem (`/` unless a bind mount of a subtree).
    pub root: String,
    pub mount_point: String,
    pub mount_options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// gnulib's ME_DUMMY: pseudo filesystems `df` hides unless given `-a`.
    pub(crate) fn is_dummy(&self) -> bool {
        matches!(
            self.fs_type.as_str(),
            "autofs"
                | "proc"
                | "subfs"
                | "debugfs"
                | "devpts"
                | "fusectl"
                | "fuse.portal"
                | "mqueue"
                | "rpc_pipefs"
                | "sysfs"
                | "devfs"
                | "kernfs"
                | "ignore"
                | "none"
        )
    }

    /// gnulib's ME_REMOTE: `host:path`, `//server/share` (smb/cifs) or autofs `-hosts`.
    pub(crate) fn is_remote(&self) -> bool {
        self.source.contains(':')
            || (self.source.starts_with("//") && matches!(self.fs_type.as_str(), "smbfs" | "cifs"))
            || self.source == "-hosts"
    }

    /// Mounted read-only, per mount (`ro` in field 6) or per superblock.
    pub(crate) fn is_read_only(&self) -> bool {
        let has_ro = |options: &str| options.split(',').any(|o| o == "ro");
        has_ro(&self.mount_options) || has_ro(&self.super_options)
    }
}

/// Parses mountinfo(5): `id parent major:minor root mountpoint options [optional...] -
/// fstype source superoptions`. Malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(parse_mountinfo_line)
        .take(MAX_MOUNTS)
        .collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut head = before.split(' ');
    let _id = head.next()?;
    let _parent = head.next()?;
    let (major, minor) = head.next()?.split_once(':')?;
    let root = head.next()?;
    let mount_point = head.next()?;
    let mount_options = head.next()?;
    let mut tail = after.split(' ');
    let fs_type = tail.next()?;
    let source = tail.next()?;
    let super_options = tail.next().unwrap_or_default();
    Some(MountEntry {
        dev: makedev(major.parse().ok()?, minor.parse().ok()?),
        root: unescape_octal(root),
        mount_point: unescape_octal(mount_point),
        mount_options: clip(mount_options),
        fs_type: clip(&unescape_octal(fs_type)),
        source: clip(&unescape_octal(source)),
        super_options: clip(super_options),
    })
}

/// glibc's `makedev`, so mountinfo numbers compare with `stat`'s `st_dev`.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash) in mountinfo.
pub(crate) fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let digits = bytes.get(i + 1..i + 4);
        let value = digits
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (b, value) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GNU df's `filter_mount_list`: one entry per device (`st_dev` of the mount point, which
/// sees through over-mounts). Among duplicates, a source with a `/` beats a pseudo name,
/// then the mount point nearer the root wins (unless it is a bind of a deeper subtree),
/// then a different source on the same mount point (over-mount) wins. The winner keeps
/// the first duplicate's position. Remote entries with different sources are all kept.
pub(crate) fn dedupe_like_df(
    entries: Vec<MountEntry>,
    stat_dev: impl Fn(&str) -> Option<u64>,
) -> Vec<MountEntry> {
    let mut kept: Vec<MountEntry> = Vec::new();
    let mut slot_of_dev: HashMap<u64, usize> = HashMap::new();
    for me in entries {
        let Some(dev) = stat_dev(&me.mount_point) else {
            // df keeps entries it cannot stat (to complain about them later).
            kept.push(me);
            continue;
        };
        let Some(seen) = slot_of_dev.get(&dev).and_then(|&i| kept.get_mut(i)) else {
            slot_of_dev.insert(dev, kept.len());
            kept.push(me);
            continue;
        };
        let target_nearer_root = seen.mount_point.len() > me.mount_point.len();
        let source_below_root = seen.root.len() < me.root.len();
        if me.is_remote() && seen.is_remote() && seen.source != me.source {
            kept.push(me);
        } else if (me.source.contains('/') && !seen.source.contains('/'))
            || (target_nearer_root && !source_below_root)
            || (seen.source != me.source && seen.mount_point == me.mount_point)
        {
            *seen = me;
        }
    }
    kept
}

/// gnulib's `has_uuid_suffix`: df resolves such device names (`/dev/mapper/luks-<uuid>`)
/// to the device they link to.
pub(crate) fn has_uuid_suffix(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 36
        && bytes
            .iter()
            .rev()
            .take(36)
            .all(|b| b.is_ascii_hexdigit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/My\\040Drive ro,nosuid,nodev,relatime master:2 - tmpfs model\\134tools ro,size=4k
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
garbage line without separator
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let entries = parse_mountinfo(SAMPLE);
        assert_eq!(entries.len(), 7);
        let drive = entries.get(4).cloned();
        assert_eq!(
            drive.as_ref().map(|e| e.mount_point.as_str()),
            Some("/mnt/My Drive")
        );
        assert_eq!(
            drive.as_ref().map(|e| e.source.as_str()),
            Some("model\\tools")
        );
        assert_eq!(drive.as_ref().map(MountEntry::is_read_only), Some(true));
        let root = entries.get(3).cloned();
        assert_eq!(root.as_ref().map(|e| e.fs_type.as_str()), Some("ext4"));
        assert_eq!(root.as_ref().map(|e| e.dev), Some(makedev(254, 0)));
        assert_eq!(root.map(|e| e.is_read_only()), Some(false));
    }

    #[test]
    fn unescape_leaves_incomplete_or_invalid_escapes_alone() {
        assert_eq!(unescape_octal("a\\040b\\011c\\012d"), "a b\tc\nd");
        assert_eq!(unescape_octal("tail\\04"), "tail\\04");
        assert_eq!(unescape_octal("nine\\090"), "nine\\090");
        assert_eq!(unescape_octal("\\"), "\\");
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(254, 0), 0xfe00);
        assert_eq!(makedev(0, 300), 0x1_0002c);
        assert_eq!(makedev(4096, 0), 0x1000_0000_0000);
    }

    #[test]
    fn dummies_and_remotes() {
        let entries = parse_mountinfo(SAMPLE);
        assert!(entries.first().is_some_and(MountEntry::is_dummy));
        assert!(!entries.get(1).is_some_and(MountEntry::is_dummy));
        let nfs = parse_mountinfo("40 1 0:50 / /home rw - nfs4 srv:/home rw\n");
        assert!(nfs.first().is_some_and(MountEntry::is_remote));
    }

    #[test]
    fn dedupe_keeps_first_of_same_device_at_its_position() {
        // The two /dev/shm lines stat to the same (top) device: df keeps the first.
        let stat = |path: &str| match path {
            "/dev/shm" => Some(27),
            "/" => Some(1),
            other => Some(100 + other.len() as u64),
        };
        let kept = dedupe_like_df(parse_mountinfo(SAMPLE), stat);
        let points: Vec<&str> = kept.iter().map(|e| e.mount_point.as_str()).collect();
        assert_eq!(
            points,
            [
                "/proc",
                "/dev",
                "/dev/shm",
                "/",
                "/mnt/My Drive",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn dedupe_prefers_real_devices_and_shorter_bind_targets() {
        let text = "\
1 0 8:1 / /srv/data rw - ext4 /dev/sda1 rw
2 0 8:1 / /data rw - ext4 /dev/sda1 rw
3 0 0:9 / /x rw - tmpfs tmpfs rw
4 0 0:9 / /y/z rw - tmpfs /dev/fake rw
5 0 8:1 /sub /a rw - ext4 /dev/sda1 rw
";
        let stat = |path: &str| match path {
            "/x" | "/y/z" => Some(9),
            _ => Some(0x801),
        };
        let kept = dedupe_like_df(parse_mountinfo(text), stat);
        let points: Vec<&str> = kept.iter().map(|e| e.mount_point.as_str()).collect();
        // /data (nearer the root) replaced /srv/data in its slot; /a is a bind of a
        // subtree, so it does not win; /dev/fake has a '/' and beats "tmpfs".
        assert_eq!(points, ["/data", "/y/z"]);
    }

    #[test]
    fn uuid_suffix() {
        assert!(has_uuid_suffix(
            "/dev/mapper/luks-828fc648-9f30-43d8-a0b1-f7196a2edb66"
        ));
        assert!(!has_uuid_suffix("/dev/sda1"));
        assert!(!has_uuid_suffix("828fc648-9f30-43d8-a0b1-f7196a2edb66"));
    }
}
