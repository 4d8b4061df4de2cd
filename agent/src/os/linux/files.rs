//! Bounded reads of /proc, /sys and /etc files: the kernel reports size 0 for most of
//! them, so every read is capped on the read itself.

use std::io::Read;
use std::path::Path;

use crate::os::{Error, clip};

/// os-release, meminfo, resolv.conf, hostname, sysfs attributes: all well under 64 KiB.
pub(crate) const SMALL_FILE_BYTES: u64 = 64 * 1024;
/// Route tables and mountinfo grow with the machine; 4 MiB is ~25 000 mounts or routes.
pub(crate) const TABLE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads at most `limit` bytes of `path` as (lossy) UTF-8. /proc files report size 0, so
/// the bound is enforced on the read itself, not on the metadata.
pub(crate) fn read_bounded(path: impl AsRef<Path>, limit: u64) -> Result<String, Error> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit).read_to_end(&mut bytes))
        .map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The first line of a small file, trimmed (hostname, osrelease, sysfs attributes).
pub(crate) fn read_line(path: impl AsRef<Path>) -> Result<String, Error> {
    let text = read_bounded(path, SMALL_FILE_BYTES)?;
    Ok(clip(text.lines().next().unwrap_or_default().trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_read_stops_at_the_limit() {
        let text = read_bounded("/proc/self/status", 16).unwrap_or_default();
        assert!(text.len() <= 16);
        assert!(read_bounded("/nonexistent/deskside", 16).is_err());
    }
}
