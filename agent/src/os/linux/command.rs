//! Running another program for an answer (systemctl, journalctl, dmesg, apt-get,
//! needs-restarting): each child runs with LC_ALL=C in its own process group with bounded
//! output, and the whole group dies with its caller's future.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::os::{Error, clip};

/// stderr is only read for an error message.
const STDERR_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Head,
    Tail,
}

/// What a finished child printed, each stream cut to its bound.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: String,
    pub truncated: bool,
}

/// Kills the child's process group unless disarmed: covers the probe timing out (the
/// future is dropped mid-read) as well as errors. `kill_on_drop` alone reaches only the
/// direct child, not what it spawned.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = super::process::kill_group(pgid);
        }
    }
}

/// How hard a child may compete with the user's own programs for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// A probe a snapshot waits for.
    Normal,
    /// Work nobody waits for (counting pending updates): nice 19, which on Linux also
    /// lowers its I/O priority unless one was set explicitly.
    Background,
}

/// Runs `program args` with LC_ALL=C, no stdin, in a new process group; fails with the
/// first stderr line when it exits non-zero.
pub(crate) async fn run(
    program: &str,
    args: &[&str],
    cap: usize,
    keep: Keep,
) -> Result<Output, Error> {
    run_at(Priority::Normal, program, args, cap, keep).await
}

/// [`run`] at `priority`.
pub(crate) async fn run_at(
    priority: Priority,
    program: &str,
    args: &[&str],
    cap: usize,
    keep: Keep,
) -> Result<Output, Error> {
    let (status, output, stderr) = run_to_exit(priority, program, args, cap, keep).await?;
    if !status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: first_line_or(&stderr, &status),
        });
    }
    Ok(output)
}

/// Runs a program whose exit code is its answer (`needs-restarting -r`, `zypper
/// needs-rebooting`): returns the code (`None` when a signal ended it), the first line
/// of its stderr, and never fails for a non-zero exit.
pub(crate) async fn exit_code_of(
    program: &str,
    args: &[&str],
) -> Result<(Option<i32>, String), Error> {
    let (status, _, stderr) =
        run_to_exit(Priority::Normal, program, args, STDERR_BYTES, Keep::Head).await?;
    Ok((status.code(), first_line_or(&stderr, &status)))
}

/// The first non-empty line of `stderr`, else how the child exited.
fn first_line_or(stderr: &[u8], status: &std::process::ExitStatus) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(clip)
        .unwrap_or_else(|| status.to_string())
}

/// Runs the child to its exit: status, capped stdout, capped stderr.
async fn run_to_exit(
    priority: Priority,
    program: &str,
    args: &[&str],
    cap: usize,
    keep: Keep,
) -> Result<(std::process::ExitStatus, Output, Vec<u8>), Error> {
    let command_line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Unavailable(format!("{program} is not installed (not found in PATH)"))
            }
            _ => Error::Command {
                command: command_line.clone(),
                detail: format!("could not start: {e}"),
            },
        })?;
    let mut guard = GroupGuard(child.id());
    if let (Priority::Background, Some(pgid)) = (priority, guard.0) {
        // Best effort: at worst the count runs at normal priority, as it always did.
        if let Err(e) = super::process::lower_group_priority(pgid) {
            tracing::debug!(error = %e, program, "could not lower the child's priority");
        }
    }
    let failed = |detail: String| Error::Command {
        command: command_line.clone(),
        detail,
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(failed("no stdout/stderr pipe".to_owned()));
    };
    let (stdout, stderr) = tokio::try_join!(
        read_capped(stdout, cap, keep),
        read_capped(stderr, STDERR_BYTES, Keep::Head)
    )
    .map_err(|e| failed(format!("reading its output: {e}")))?;
    let status = child
        .wait()
        .await
        .map_err(|e| failed(format!("waiting for it: {e}")))?;
    guard.0 = None;
    let output = Output {
        stdout: String::from_utf8_lossy(&stdout.0).into_owned(),
        truncated: stdout.1,
    };
    Ok((status, output, stderr.0))
}

/// Reads a stream to its end, keeping at most `cap` bytes (its head or its tail) so the
/// child never blocks on a full pipe and we never hold more than ~2×`cap`.
async fn read_capped(
    mut stream: impl AsyncRead + Unpin,
    cap: usize,
    keep: Keep,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        let Some(data) = chunk.get(..n).filter(|d| !d.is_empty()) else {
            break;
        };
        match keep {
            Keep::Head => {
                let room = cap.saturating_sub(kept.len());
                truncated |= data.len() > room;
                kept.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
            }
            Keep::Tail => {
                kept.extend_from_slice(data);
                if kept.len() > cap.saturating_mul(2) {
                    truncated = true;
                    kept.drain(..kept.len() - cap);
                }
            }
        }
    }
    if keep == Keep::Tail && kept.len() > cap {
        truncated = true;
        kept.drain(..kept.len() - cap);
    }
    Ok((kept, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_reads_keep_head_or_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (head, cut) = read_capped(data.as_slice(), 1000, Keep::Head)
            .await
            .unwrap_or_default();
        assert!(cut);
        assert_eq!(head.as_slice(), data.get(..1000).unwrap_or_default());
        let (tail, cut) = read_capped(data.as_slice(), 1000, Keep::Tail)
            .await
            .unwrap_or_default();
        assert!(cut);
        assert_eq!(
            tail.as_slice(),
            data.get(data.len() - 1000..).unwrap_or_default()
        );
        let (all, cut) = read_capped(b"short".as_slice(), 1000, Keep::Tail)
            .await
            .unwrap_or_default();
        assert!(!cut);
        assert_eq!(all, b"short");
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let err = run("deskside-no-such-program", &[], 10, Keep::Head)
            .await
            .err();
        assert!(err.is_some_and(|e| e.to_string().contains("is not installed")));
    }

    #[tokio::test]
    async fn failing_program_reports_its_stderr() {
        let err = run("sh", &["-c", "echo nope >&2; exit 3"], 10, Keep::Head)
            .await
            .err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("`sh -c echo nope >&2; exit 3` failed: nope".to_owned())
        );
    }

    #[tokio::test]
    async fn a_background_run_is_niced() {
        let output = run_at(
            Priority::Background,
            "sh",
            // (after a moment: the priority is lowered just after the child starts)
            &["-c", "sleep 0.2; cut -d' ' -f19 /proc/$$/stat"],
            100,
            Keep::Head,
        )
        .await;
        assert_eq!(output.map(|o| o.stdout).ok().as_deref(), Some("19\n"));
    }

    #[tokio::test]
    async fn a_dropped_run_kills_the_whole_process_group() {
        // The shell starts a grandchild; dropping the run (as a probe timeout does) must
        // take the grandchild down too, not only the shell.
        let marker = std::env::temp_dir().join(format!("deskside-pg-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let args = ["-c", script.as_str()];
        let run = run("sh", &args, 10, Keep::Head);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), run).await;
        let pid = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = std::fs::remove_file(&marker);
        let pid = pid.trim();
        assert!(!pid.is_empty(), "the grandchild never started");
        // Give the kernel a moment to reap the killed group (its parent is gone).
        let mut alive = true;
        for _ in 0..50 {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = !state.is_empty() && !state.contains(") Z ");
            if !alive {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!alive, "grandchild {pid} survived the dropped probe");
    }

    #[tokio::test]
    async fn an_exit_code_is_an_answer_not_a_failure() {
        let got = exit_code_of("sh", &["-c", "echo 'Reboot is required' >&2; exit 102"]).await;
        assert_eq!(got.ok(), Some((Some(102), "Reboot is required".to_owned())));
        let got = exit_code_of("sh", &["-c", "exit 0"]).await;
        assert_eq!(got.ok().map(|(code, _)| code), Some(Some(0)));
        let missing = exit_code_of("deskside-no-such-program", &[]).await;
        assert!(missing.is_err_and(|e| e.to_string().contains("not installed")));
    }
}
