//! Child processes in process groups of their own, so that whatever they start goes
//! with them: SIGKILLed as a group and reaped when dropped, on error paths too.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};

use anyhow::{Context, Result};

/// A child process in a process group of its own (its pid is the group id), so that
/// everything it starts goes with it: SIGKILLed as a group and reaped on drop.
#[derive(Debug)]
pub struct Group {
    child: Child,
    reaped: bool,
}

impl Group {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, what: &str, log: &Path) -> Result<Group> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Group {
            child,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    pub fn exited(&mut self) -> Result<bool> {
        Ok(self.try_wait()?.is_some())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Only while the leader is unreaped: until then its pid, and so the group id,
        // cannot name anyone else's processes.
        if !self.reaped {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// SIGKILLs process group `pgid`; ids 0 and 1 (our own group, init's) are refused.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg(2) takes two integers and touches no memory of ours; `pgid` is
    // above 1, so it names one process group, never ours (0) or init's (1).
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_dropped_group_takes_what_its_leader_started_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 300 & echo $! > {}; wait",
            pid_file.display()
        ));
        let group = Group::spawn(cmd, "sh", &dir.path().join("log")).expect("spawn");
        let start = Instant::now();
        let grandchild = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sh never started sleep"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(Path::new(&format!("/proc/{grandchild}")).exists());
        drop(group);
        // SIGKILLed and reparented: reaped by init (or a subreaper) shortly after.
        let start = Instant::now();
        while std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the sleep outlived its group"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
