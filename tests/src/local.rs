//! Local users for tests that run a program as another uid: the test runs as root (as
//! CI does), makes a system user and drops to it.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// A local user's ids.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// `id -u NAME` / `id -g NAME`, creating the user first if needed (idempotent; another
/// test binary may be creating the same user at the same moment).
pub fn ensure_user(name: &str) -> Result<User> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", name])
            .status()
            .context("running useradd (package passwd)")?;
        // 9: the name exists (made in the meantime).
        if !status.success() && status.code() != Some(9) {
            bail!("useradd {name} failed: {status}");
        }
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok(User { uid, gid }),
        _ => bail!("user {name} has no uid/gid after useradd"),
    }
}

/// Whether this test process runs as root (it may then make users and drop to them).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
