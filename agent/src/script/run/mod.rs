//! Running a verified script: write the body to a private file, start the interpreter in
//! its own process group with a fixed environment, stream capped output, and kill the
//! whole group on timeout, cancellation, or when the script exits.

//!
//! `file.rs` owns the script file, `group.rs` the process group and how the wait ends,
//! `capture.rs` reading and capping the output.

mod capture;
mod file;
mod group;

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use deskside_proto::msg::script::{Interpreter, OutputStream, RunEvent, RunResult};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use capture::{Capture, pump};
use file::ScriptFile;
use group::{Ending, ProcessGroup, wait_for_end};

/// The only PATH a script sees, whatever the agent's own environment holds.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long to keep reading after the group is killed. Only a process that left the group
/// (`setsid`) can still hold the pipes then; we stop reading rather than wait for it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One script run, as the caller has verified and parameterised it.
#[derive(Clone)]
pub struct RunSpec {
    /// Run by its absolute [`Interpreter::path`].
    pub interpreter: Interpreter,
    /// The script text.
    pub body: String,
    /// `DESKSIDE_PARAM_*` values, already validated; the only way parameters reach a script.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// A private directory (0700); the body is written here for the run, and it is the
    /// script's current directory.
    pub work_dir: PathBuf,
}

impl fmt::Debug for RunSpec {
    /// Names, not values: parameter values and the body stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSpec")
            .field("interpreter", &self.interpreter)
            .field("body_bytes", &self.body.len())
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("work_dir", &self.work_dir)
            .finish()
    }
}

/// Why a script could not be run at all. A script that runs and fails is a [`RunResult`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(
        "cannot create the script file in {dir}: {source}; check that the directory exists \
         and the agent can write to it"
    )]
    CreateScript { dir: PathBuf, source: io::Error },
    #[error(
        "interpreter {path} is not installed on this machine; install it, or run a script \
         written for an interpreter this machine has"
    )]
    InterpreterMissing { path: PathBuf },
    #[error("cannot start {interpreter} for the script: {source}")]
    Spawn {
        interpreter: PathBuf,
        source: io::Error,
    },
    #[error("refusing environment variable {name:?} for the script: {reason}")]
    BadEnv { name: String, reason: &'static str },
    #[error("lost track of the script process: {0}")]
    Wait(io::Error),
}

/// Runs `spec` to the end, sending its output on `events` as it arrives (at most
/// [`MAX_OUTPUT_BYTES`](deskside_proto::msg::script::MAX_OUTPUT_BYTES) per stream; the
/// rest is counted). Returns how the run ended; the caller sends [`RunEvent::Finished`].
/// If `events` is closed the run goes on regardless.
/// A `cancel` that has already fired starts nothing and reports `cancelled`.
pub async fn run(
    spec: RunSpec,
    cancel: CancellationToken,
    events: mpsc::Sender<RunEvent>,
) -> Result<RunResult, RunError> {
    let interpreter = Path::new(spec.interpreter.path());
    run_with(interpreter, &spec, &cancel, &events).await
}

/// [`run`] with the interpreter given as a path, so tests can name one that is missing.
async fn run_with(
    interpreter: &Path,
    spec: &RunSpec,
    cancel: &CancellationToken,
    events: &mpsc::Sender<RunEvent>,
) -> Result<RunResult, RunError> {
    check_env(&spec.env)?;
    if cancel.is_cancelled() {
        return Ok(RunResult {
            cancelled: true,
            ..RunResult::default()
        });
    }
    if let Err(e) = tokio::fs::metadata(interpreter).await
        && e.kind() == io::ErrorKind::NotFound
    {
        return Err(RunError::InterpreterMissing {
            path: interpreter.to_owned(),
        });
    }
    let work_dir =
        std::path::absolute(&spec.work_dir).map_err(|source| RunError::CreateScript {
            dir: spec.work_dir.clone(),
            source,
        })?;
    // Declared before the child so it is dropped (the file removed) on every path.
    let script = ScriptFile::create(&work_dir, &spec.body).await?;

    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    let mut command = Command::new(interpreter);
    command
        .arg(&script.path)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", home)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => RunError::InterpreterMissing {
            path: interpreter.to_owned(),
        },
        _ => RunError::Spawn {
            interpreter: interpreter.to_owned(),
            source,
        },
    })?;
    // process_group(0) makes the child's pid its group id. Armed until the end, so that
    // dropping this future mid-run still kills the group.
    let mut group = ProcessGroup(child.id());
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(RunError::Spawn {
            interpreter: interpreter.to_owned(),
            source: io::Error::other("stdout/stderr pipes were not created"),
        });
    };

    let mut out = Capture::default();
    let mut err = Capture::default();
    let (waited, ending, elapsed) = {
        let readers = async {
            tokio::join!(
                pump(stdout, OutputStream::Stdout, events, &mut out),
                pump(stderr, OutputStream::Stderr, events, &mut err),
            )
        };
        tokio::pin!(readers);
        let waiter = wait_for_end(&mut child, &group, spec.timeout, cancel);
        tokio::pin!(waiter);
        let mut drained = false;
        let (waited, ending) = loop {
            tokio::select! {
                w = &mut waiter => break w,
                _ = &mut readers, if !drained => drained = true,
            }
        };
        let elapsed = started.elapsed();
        // The main process is gone; whatever it left in its group (a backgrounded daemon,
        // a grandchild still holding our pipes) goes too.
        group.kill();
        if !drained
            && tokio::time::timeout(DRAIN_GRACE, &mut readers)
                .await
                .is_err()
        {
            tracing::warn!(
                "a process that left the script's group still holds its output; stopped reading"
            );
        }
        (waited, ending, elapsed)
    };
    group.0 = None;
    drop(script);

    let status = waited.map_err(RunError::Wait)?;
    Ok(RunResult {
        exit_code: status.code(),
        signal: status.signal(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        stdout_bytes: out.total,
        stderr_bytes: err.total,
        truncated: out.truncated || err.truncated,
        timed_out: ending == Ending::TimedOut,
        cancelled: ending == Ending::Cancelled,
    })
}

/// Only `DESKSIDE_PARAM_<NAME>` reaches a script: never `LD_PRELOAD`, `PATH` and friends.
fn check_env(env: &[(String, String)]) -> Result<(), RunError> {
    for (name, value) in env {
        let valid_name = name.strip_prefix("DESKSIDE_PARAM_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        let reason = if !valid_name {
            "only DESKSIDE_PARAM_<NAME> variables (A-Z, 0-9, _) are passed to scripts"
        } else if value.contains('\0') {
            "the value contains a NUL byte"
        } else {
            continue;
        };
        return Err(RunError::BadEnv {
            name: name.clone(),
            reason,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
