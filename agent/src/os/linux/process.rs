//! This process's user, and the process groups of the children the agent starts
//! (scripts, probe commands): kill a whole group, lower its priority. The libc calls
//! live here, each behind a safe function.
#![allow(unsafe_code)]

use std::io;

/// SIGKILLs every process in group `pgid` (a child we started with `process_group(0)`,
/// so its group id is its pid). Ids 0 and 1 are refused: 0 would mean the agent's own
/// group, 1 is init's. Fails with `ESRCH` when the group is already empty.
pub fn kill_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "process group id out of range")
    })?;
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group 0 or 1",
        ));
    }
    // SAFETY: killpg(2) takes two integers and touches no memory of ours. `pgid` is above
    // 1, so it names exactly one process group, never the caller's own (0) or init's (1).
    let rc = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets every process in group `pgid` (a child we started with `process_group(0)`) to
/// nice 19, the lowest CPU priority; processes it starts later inherit that.
pub fn lower_group_priority(pgid: u32) -> io::Result<()> {
    let who = libc::id_t::from(pgid);
    if who <= 1 {
        // 0 would mean our own group.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: setpriority(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PGRP, who, 19) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's effective uid: the owner of /proc/self. `None` without /proc.
pub fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_zero_one_and_out_of_range_ids() {
        // Would kill the test runner's own group if the guard were missing.
        for pgid in [0, 1, u32::MAX] {
            let err = kill_group(pgid).err().map(|e| e.kind());
            assert_eq!(err, Some(io::ErrorKind::InvalidInput), "{pgid}");
        }
    }

    #[test]
    fn an_empty_group_is_an_error() {
        // Above the kernel's largest pid_max (2^22), so no such group can exist.
        let err = kill_group(0x7fff_fff0).err().and_then(|e| e.raw_os_error());
        assert_eq!(err, Some(libc::ESRCH));
    }
}
