//! Pending package updates (`apt-get -s upgrade`) and the package state a count depends
//! on (dpkg's status file, apt's lists).

use std::time::SystemTime;

use super::command::{Keep, Priority, run_at};
use crate::os::Error;

/// `apt-get -s upgrade` prints ~400 bytes per package; 8 MiB is ~20 000 packages.
const APT_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Upgradable packages as apt would install them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingUpdates {
    pub pending: u32,
    pub security: u32,
}

/// `apt-get -s upgrade` (a simulation: changes nothing, needs no lock). Seconds of CPU
/// where apt has no pkgcache.bin, so it runs in the background at low priority and
/// snapshots read its result from the diagnostics cache.
pub async fn pending_updates() -> Result<PendingUpdates, Error> {
    let args = ["-s", "-o", "Debug::NoLocking=1", "upgrade"];
    let output = run_at(
        Priority::Background,
        "apt-get",
        &args,
        APT_OUTPUT_BYTES,
        Keep::Head,
    )
    .await?;
    if output.truncated {
        return Err(Error::parse(
            "apt-get -s upgrade",
            format!("output exceeds {APT_OUTPUT_BYTES} bytes; not counted"),
        ));
    }
    Ok(parse_apt_simulation(&output.stdout))
}

/// Counts `Inst pkg [old] (new-version origin [arch])` lines; a security update is one
/// whose origin (the parenthesised part) names a security suite.
fn parse_apt_simulation(text: &str) -> PendingUpdates {
    let mut counts = PendingUpdates::default();
    for line in text.lines().filter(|l| l.starts_with("Inst ")) {
        counts.pending = counts.pending.saturating_add(1);
        let origin = line.split_once('(').map(|(_, o)| o).unwrap_or_default();
        if origin.to_ascii_lowercase().contains("security") {
            counts.security = counts.security.saturating_add(1);
        }
    }
    counts
}

const APT_GET: &str = "apt-get";
/// Rewritten by dpkg on every install, upgrade and removal.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// `apt update` renames fetched lists into this directory when they changed.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// What a snapshot says while a count runs and no current count exists.
pub const COUNTING_UPDATES: &str = "pending updates are being counted in the background \
(`apt-get -s upgrade` can take several seconds); a snapshot taken once it finishes will \
include them";

/// What a count depends on that a few `stat` calls can check: a count is current only
/// while dpkg's status file and apt's lists directory are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackageState {
    pub(crate) dpkg_status: Option<SystemTime>,
    pub(crate) apt_lists: Option<SystemTime>,
}

impl PackageState {
    /// Blocking (a few `stat` calls). Fails when there is no apt-get to count with, so
    /// that apt is never started on such a machine.
    pub fn read() -> Result<Self, Error> {
        if !on_path(APT_GET) {
            return Err(Error::Unavailable(format!(
                "{APT_GET} is not installed (not found in PATH)"
            )));
        }
        let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(Self {
            dpkg_status: modified(DPKG_STATUS),
            apt_lists: modified(APT_LISTS),
        })
    }
}

/// Whether `program` is an executable file in a `$PATH` directory, where starting it by
/// name would find it.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_simulation_counts_installs_and_security() {
        let text = "Reading package lists...\nBuilding dependency tree...\n\
Inst openssl [3.0.19-1~deb12u1] (3.0.20-1~deb12u1 Debian:12.14/oldstable [amd64])\n\
Inst libssl3 [3.0.19-1~deb12u1] (3.0.20-1~deb12u1 Debian-Security:12/oldstable-security [amd64])\n\
Inst python3-security-tools [1] (2 Debian:12.14/oldstable [all])\n\
Conf openssl (3.0.20-1~deb12u1 Debian:12.14/oldstable [amd64])\n\
Inst libc6 [2.36] (2.36-9+deb12u10 Ubuntu:22.04/jammy-security [amd64])\n";
        assert_eq!(
            parse_apt_simulation(text),
            PendingUpdates {
                pending: 4,
                security: 2
            }
        );
        assert_eq!(parse_apt_simulation(""), PendingUpdates::default());
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("deskside-no-such-program"));
    }
}
