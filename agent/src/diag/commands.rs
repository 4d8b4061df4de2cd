//! Probes that ask another program (systemctl, journalctl, dmesg, apt-get): each child
//! runs in its own process group with bounded output and dies with its probe.

use std::process::Stdio;

use deskside_proto::msg::diag::{FailedUnit, LogLine};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::linux::{clip, read_line};
use super::{ProbeError, blocking};

/// Log lines kept from each source (the newest).
const LOG_LINES: usize = 20;
/// Failed units reported (a broken machine has a handful; thousands means a template storm).
const MAX_FAILED_UNITS: usize = 256;
/// stdout kept from a command: the beginning (`Head`) or the end (`Tail`).
const LOG_OUTPUT_BYTES: usize = 256 * 1024;
const UNITS_OUTPUT_BYTES: usize = 1024 * 1024;
/// `apt-get -s upgrade` prints ~400 bytes per package; 8 MiB is ~20 000 packages.
const APT_OUTPUT_BYTES: usize = 8 * 1024 * 1024;
/// stderr is only read for an error message.
const STDERR_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Head,
    Tail,
}

/// What a finished child printed, each stream cut to its bound.
#[derive(Debug)]
struct Output {
    stdout: String,
    truncated: bool,
}

/// Kills the child's process group unless disarmed: covers the probe timing out (the
/// future is dropped mid-read) as well as errors. `kill_on_drop` alone reaches only the
/// direct child, not what it spawned.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = crate::process::kill_group(pgid);
        }
    }
}

/// How hard a child may compete with the user's own programs for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    /// A probe a snapshot waits for.
    Normal,
    /// Work nobody waits for (counting pending updates): nice 19, which on Linux also
    /// lowers its I/O priority unless one was set explicitly.
    Background,
}

/// Runs `program args` with LC_ALL=C, no stdin, in a new process group; fails with the
/// first stderr line when it exits non-zero.
async fn run(program: &str, args: &[&str], cap: usize, keep: Keep) -> Result<Output, ProbeError> {
    run_at(Priority::Normal, program, args, cap, keep).await
}

/// [`run`] at `priority`.
async fn run_at(
    priority: Priority,
    program: &str,
    args: &[&str],
    cap: usize,
    keep: Keep,
) -> Result<Output, ProbeError> {
    let (status, output, stderr) = run_to_exit(priority, program, args, cap, keep).await?;
    if !status.success() {
        return Err(ProbeError::Command {
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
) -> Result<(Option<i32>, String), ProbeError> {
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
) -> Result<(std::process::ExitStatus, Output, Vec<u8>), ProbeError> {
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
                ProbeError::Unavailable(format!("{program} is not installed (not found in PATH)"))
            }
            _ => ProbeError::Command {
                command: command_line.clone(),
                detail: format!("could not start: {e}"),
            },
        })?;
    let mut guard = GroupGuard(child.id());
    if let (Priority::Background, Some(pgid)) = (priority, guard.0) {
        // Best effort: at worst the count runs at normal priority, as it always did.
        if let Err(e) = crate::process::lower_group_priority(pgid) {
            tracing::debug!(error = %e, program, "could not lower the child's priority");
        }
    }
    let failed = |detail: String| ProbeError::Command {
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

/// Failed units and the journal are systemd's; without systemd as init (containers,
/// WSL1, other inits) there is nothing to ask. `sd_booted(3)` checks /run/systemd/system.
async fn require_systemd() -> Result<(), ProbeError> {
    blocking(|| {
        if std::path::Path::new("/run/systemd/system").is_dir() {
            return Ok(());
        }
        let init = read_line("/proc/1/comm").unwrap_or_else(|_| "unknown".to_owned());
        Err(ProbeError::Unavailable(format!(
            "systemd is not running (PID 1 is {init})"
        )))
    })
    .await
}

/// `systemctl --failed`.
pub(crate) async fn failed_units() -> Result<Vec<FailedUnit>, ProbeError> {
    require_systemd().await?;
    let args = ["--failed", "--no-legend", "--plain", "--no-pager"];
    let output = run("systemctl", &args, UNITS_OUTPUT_BYTES, Keep::Head).await?;
    Ok(parse_failed_units(&output.stdout))
}

/// `systemctl --failed --no-legend --plain`: `UNIT LOAD ACTIVE SUB DESCRIPTION...`.
fn parse_failed_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let description: Vec<&str> = words.skip(3).collect();
            Some(FailedUnit {
                name: clip(name),
                description: clip(&description.join(" ")),
            })
        })
        .take(MAX_FAILED_UNITS)
        .collect()
}

/// The newest error-or-worse journal messages of the last 24 hours.
pub(crate) async fn journal_errors() -> Result<Vec<LogLine>, ProbeError> {
    require_systemd().await?;
    let args = [
        "-p",
        "err",
        "-n",
        "20",
        "--no-pager",
        "-o",
        "cat",
        "--since=-24h",
        "--quiet",
    ];
    let output = run("journalctl", &args, LOG_OUTPUT_BYTES, Keep::Tail).await?;
    Ok(last_lines(&output.stdout, LOG_LINES, "journal"))
}

/// The newest emerg..err kernel messages (`dmesg` needs root where dmesg_restrict=1).
pub(crate) async fn kernel_errors() -> Result<Vec<LogLine>, ProbeError> {
    let args = ["--level=emerg,alert,crit,err"];
    let output = run("dmesg", &args, LOG_OUTPUT_BYTES, Keep::Tail).await?;
    Ok(last_lines(&output.stdout, LOG_LINES, "kernel"))
}

/// The last `n` non-empty lines of `text`, oldest first.
fn last_lines(text: &str, n: usize, source: &str) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = text
        .lines()
        .rev()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| LogLine {
            source: source.to_owned(),
            text: clip(l),
        })
        .collect();
    lines.reverse();
    lines
}

/// Upgradable packages as apt would install them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PendingUpdates {
    pub pending: u32,
    pub security: u32,
}

/// `apt-get -s upgrade` (a simulation: changes nothing, needs no lock). Seconds of CPU
/// where apt has no pkgcache.bin, so it runs in the background at low priority and
/// snapshots read its result from [`super::updates`].
pub(crate) async fn pending_updates() -> Result<PendingUpdates, ProbeError> {
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
        return Err(ProbeError::parse(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_units_plain_output() {
        let text = "nginx.service loaded failed failed A high performance web server\n\
                    backup@home.timer loaded failed failed\n\n";
        let units = parse_failed_units(text);
        assert_eq!(units.len(), 2);
        assert_eq!(
            units.first().map(|u| u.name.as_str()),
            Some("nginx.service")
        );
        assert_eq!(
            units.first().map(|u| u.description.as_str()),
            Some("A high performance web server")
        );
        assert_eq!(units.get(1).map(|u| u.description.as_str()), Some(""));
    }

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
    fn last_lines_keeps_the_newest_in_order() {
        let text: String = (1..=30).map(|i| format!("[{i}] error {i}\n")).collect();
        let lines = last_lines(&text, LOG_LINES, "kernel");
        assert_eq!(lines.len(), LOG_LINES);
        assert_eq!(
            lines.first().map(|l| l.text.as_str()),
            Some("[11] error 11")
        );
        assert_eq!(lines.last().map(|l| l.text.as_str()), Some("[30] error 30"));
        assert!(lines.iter().all(|l| l.source == "kernel"));
    }

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
