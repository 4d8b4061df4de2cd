//! The script's process group: how the wait for the main process ends (exit, timeout,
//! cancellation), and killing the whole group then, or whenever the run is dropped.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::os;

/// How the wait for the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// Waits for the script's main process; on timeout or cancellation kills its group first.
pub(super) async fn wait_for_end(
    child: &mut Child,
    group: &ProcessGroup,
    timeout: Duration,
    cancel: &CancellationToken,
) -> (io::Result<ExitStatus>, Ending) {
    let ending = tokio::select! {
        biased;
        status = child.wait() => return (status, Ending::Exited),
        () = cancel.cancelled() => Ending::Cancelled,
        () = tokio::time::sleep(timeout) => Ending::TimedOut,
    };
    group.kill();
    // Also by pid: the main process may have moved itself to another group of our session.
    if let Err(e) = child.start_kill() {
        tracing::debug!("killing the script process by pid: {e}");
    }
    (child.wait().await, ending)
}

/// The script's process group; SIGKILLed on drop while armed (`Some`).
#[derive(Debug)]
pub(super) struct ProcessGroup(pub(super) Option<u32>);

impl ProcessGroup {
    /// SIGKILLs the group; an already empty group is not an error. After the main process
    /// is reaped its pid, which is the group id, stays reserved while any member lives, so
    /// this reaches only the script's leftovers (or nothing).
    pub(super) fn kill(&self) {
        let Some(pgid) = self.0 else { return };
        match os::kill_group(pgid) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                tracing::warn!("cannot kill the script's process group {pgid}: {e}");
            }
            _ => {}
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
