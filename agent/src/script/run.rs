//! Running a verified script: write the body to a private file, start the interpreter in
//! its own process group with a fixed environment, stream capped output, and kill the
//! whole group on timeout, cancellation, or when the script exits.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use deskside_proto::msg::script::{
    Interpreter, MAX_OUTPUT_BYTES, OutputStream, RunEvent, RunResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process;

/// The only PATH a script sees, whatever the agent's own environment holds.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest read from a script's stdout or stderr, and so the largest `Output` event.
const CHUNK_BYTES: usize = 16 * 1024;
/// How long to keep reading after the group is killed. Only a process that left the group
/// (`setsid`) can still hold the pipes then; we stop reading rather than wait for it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Attempts at a fresh script file name before giving up (a clash is already unlikely).
const NAME_ATTEMPTS: u32 = 8;

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
/// [`MAX_OUTPUT_BYTES`] per stream; the rest is counted). Returns how the run ended; the
/// caller sends [`RunEvent::Finished`]. If `events` is closed the run goes on regardless.
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

/// How the wait for the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// Waits for the script's main process; on timeout or cancellation kills its group first.
async fn wait_for_end(
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
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    /// SIGKILLs the group; an already empty group is not an error. After the main process
    /// is reaped its pid, which is the group id, stays reserved while any member lives, so
    /// this reaches only the script's leftovers (or nothing).
    fn kill(&self) {
        let Some(pgid) = self.0 else { return };
        match process::kill_group(pgid) {
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

/// The body written for one run; removed when dropped.
#[derive(Debug)]
struct ScriptFile {
    path: PathBuf,
}

impl ScriptFile {
    async fn create(dir: &Path, body: &str) -> Result<Self, RunError> {
        let failed = |source| RunError::CreateScript {
            dir: dir.to_owned(),
            source,
        };
        let mut attempt = 0;
        let (script, mut file) = loop {
            let path = dir.join(format!("deskside-script-{:016x}", rand::random::<u64>()));
            let opened = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&path)
                .await;
            match opened {
                Ok(file) => break (ScriptFile { path }, file),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(failed(e)),
            }
        };
        // `script` now owns the file: a failed write below still removes it.
        file.write_all(body.as_bytes()).await.map_err(failed)?;
        file.flush().await.map_err(failed)?;
        Ok(script)
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove script file {}: {e}", self.path.display());
        }
    }
}

/// What one output stream produced.
#[derive(Debug, Default)]
struct Capture {
    /// Everything the script wrote.
    total: u64,
    /// What was kept (sent as events, or would have been had the receiver stayed).
    kept: usize,
    truncated: bool,
}

/// Reads `reader` to the end in chunks, sending the first [`MAX_OUTPUT_BYTES`] on
/// `events` and only counting the rest, so the script never blocks on a full pipe.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: OutputStream,
    events: &mpsc::Sender<RunEvent>,
    capture: &mut Capture,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut receiver_gone = false;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading the script's {stream:?}: {e}");
                return;
            }
        };
        capture.total = capture.total.saturating_add(n as u64);
        let keep = n.min(MAX_OUTPUT_BYTES.saturating_sub(capture.kept));
        capture.kept += keep;
        if keep < n {
            capture.truncated = true;
        }
        if keep == 0 || receiver_gone {
            continue;
        }
        let data = buf.get(..keep).unwrap_or_default().to_vec();
        if events
            .send(RunEvent::Output { stream, data })
            .await
            .is_err()
        {
            receiver_gone = true;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TEN_SECONDS: Duration = Duration::from_secs(10);

    /// The output events of one run, per stream.
    #[derive(Debug, Default)]
    struct Collected {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        largest_event: usize,
    }

    async fn collect(mut rx: mpsc::Receiver<RunEvent>) -> Collected {
        let mut c = Collected::default();
        while let Some(event) = rx.recv().await {
            if let RunEvent::Output { stream, data } = event {
                c.largest_event = c.largest_event.max(data.len());
                match stream {
                    OutputStream::Stdout => c.stdout.extend_from_slice(&data),
                    OutputStream::Stderr => c.stderr.extend_from_slice(&data),
                }
            }
        }
        c
    }

    fn sh(work_dir: &Path, body: &str, env: &[(&str, &str)], timeout: Duration) -> RunSpec {
        RunSpec {
            interpreter: Interpreter::Sh,
            body: body.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timeout,
            work_dir: work_dir.to_owned(),
        }
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Runs `body` with /bin/sh in a fresh work dir, collecting its events; checks that
    /// the script file is gone afterwards.
    async fn run_sh(
        body: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> (Result<RunResult, RunError>, Collected) {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let collector = tokio::spawn(collect(rx));
        let result = run(
            sh(dir.path(), body, env, timeout),
            CancellationToken::new(),
            tx,
        )
        .await;
        assert_eq!(
            entries(dir.path()),
            Vec::<PathBuf>::new(),
            "script file left behind"
        );
        (result, collector.await.unwrap())
    }

    fn unique_marker() -> String {
        format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
    }

    /// Live processes whose environment holds `DESKSIDE_PARAM_MARKER=<marker>` (a zombie's
    /// environment reads empty, so the dead do not count).
    fn processes_with(marker: &str) -> usize {
        let needle = format!("DESKSIDE_PARAM_MARKER={marker}");
        let Ok(proc_dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        proc_dir
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
            .filter(|environ| environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
            .count()
    }

    /// Polls for up to 2 s until `done` holds.
    async fn within_two_seconds(done: impl Fn() -> bool) -> bool {
        for _ in 0..40 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done()
    }

    /// A script whose main process and a backgrounded grandchild both outlive any test.
    const SLEEPERS: &str = "sleep 1000 &\nsleep 1000\n";

    #[tokio::test]
    async fn exit_code_propagates() {
        let (result, _) = run_sh("exit 3", &[], TEN_SECONDS).await;
        let r = result.unwrap();
        assert_eq!(
            (r.exit_code, r.signal, r.timed_out, r.cancelled),
            (Some(3), None, false, false)
        );
    }

    #[tokio::test]
    async fn death_by_signal_is_recorded() {
        let (result, _) = run_sh("kill -TERM $$", &[], TEN_SECONDS).await;
        let r = result.unwrap();
        assert_eq!((r.exit_code, r.signal), (None, Some(libc::SIGTERM)));
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_separate_events() {
        let (result, c) = run_sh("printf out; printf err >&2; printf more", &[], TEN_SECONDS).await;
        let r = result.unwrap();
        assert_eq!(
            (c.stdout.as_slice(), c.stderr.as_slice()),
            (&b"outmore"[..], &b"err"[..])
        );
        assert_eq!((r.stdout_bytes, r.stderr_bytes, r.truncated), (7, 3, false));
    }

    #[tokio::test]
    async fn output_is_streamed_while_the_script_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let spec = sh(dir.path(), "printf ready\nsleep 30\n", &[], TEN_SECONDS);
        let task = tokio::spawn(run(spec, cancel.clone(), tx));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        let ready = RunEvent::Output {
            stream: OutputStream::Stdout,
            data: b"ready".to_vec(),
        };
        assert_eq!(first, Some(ready));
        assert!(
            !task.is_finished(),
            "the event arrived only after the script ended"
        );
        cancel.cancel();
        let r = task.await.unwrap().unwrap();
        assert!(r.cancelled && !r.timed_out);
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn params_arrive_as_inert_data() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let pwned = dir.path().join("pwned");
        std::fs::write(&canary, b"").unwrap();
        let value = format!(
            "$(id); rm -rf {c} `touch {p}` $(touch {p}) \"'\n; touch {p}",
            c = canary.display(),
            p = pwned.display()
        );
        let (result, c) = run_sh(
            "printf '%s' \"$DESKSIDE_PARAM_X\"",
            &[("DESKSIDE_PARAM_X", &value)],
            TEN_SECONDS,
        )
        .await;
        assert_eq!(result.unwrap().exit_code, Some(0));
        assert_eq!(c.stdout, value.as_bytes());
        assert!(canary.exists() && !pwned.exists());
    }

    #[tokio::test]
    async fn stdin_is_empty() {
        let started = Instant::now();
        let (result, c) = run_sh("cat\necho \"rc=$?\"", &[], TEN_SECONDS).await;
        assert!(!result.unwrap().timed_out);
        assert_eq!(c.stdout, b"rc=0\n");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn script_runs_from_a_private_file_with_a_fixed_environment() {
        let body = "printf '%s|%s|%s|%s\\n' \"$(dirname \"$0\")\" \"$(pwd -P)\" \"$(stat -c %a \"$0\")\" $#\nenv";
        let (result, c) = run_sh(body, &[("DESKSIDE_PARAM_MODE", "fast")], TEN_SECONDS).await;
        assert_eq!(result.unwrap().exit_code, Some(0));
        let text = String::from_utf8(c.stdout).unwrap();
        let mut lines = text.lines();
        let facts: Vec<&str> = lines.next().unwrap().split('|').collect();
        assert_eq!(facts[0], facts[1], "the script runs from its own directory");
        assert_eq!(&facts[2..], ["700", "0"], "mode 0700, no arguments");
        let env: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
        assert!(env.contains(&("PATH", SAFE_PATH)) && env.contains(&("LANG", "C.UTF-8")));
        assert!(env.contains(&("DESKSIDE_PARAM_MODE", "fast")));
        assert!(env.iter().any(|(k, _)| *k == "HOME"));
        // Cargo gives this test process CARGO_* variables; none may reach the script.
        let shell_own = ["PWD", "OLDPWD", "SHLVL", "_"];
        for (k, _) in env {
            let expected = ["PATH", "LANG", "HOME", "DESKSIDE_PARAM_MODE"].contains(&k)
                || shell_own.contains(&k);
            assert!(expected, "{k} leaked into the script's environment");
        }
    }

    #[tokio::test]
    async fn output_is_capped_but_counted() {
        let (result, c) = run_sh("head -c 3145728 /dev/zero\nprintf e >&2", &[], TEN_SECONDS).await;
        let r = result.unwrap();
        assert!(r.truncated);
        assert_eq!((r.stdout_bytes, r.stderr_bytes), (3 * 1024 * 1024, 1));
        assert_eq!((c.stdout.len(), c.stderr.len()), (MAX_OUTPUT_BYTES, 1));
        assert!(c.largest_event <= CHUNK_BYTES);
    }

    #[tokio::test]
    async fn closed_event_receiver_does_not_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let spec = sh(
            dir.path(),
            "head -c 2097152 /dev/zero\nexit 4",
            &[],
            TEN_SECONDS,
        );
        let r = run(spec, CancellationToken::new(), tx).await.unwrap();
        assert_eq!(
            (r.exit_code, r.stdout_bytes, r.truncated),
            (Some(4), 2 * 1024 * 1024, true)
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let marker = unique_marker();
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(16);
        drop(rx);
        let spec = sh(
            dir.path(),
            SLEEPERS,
            &[("DESKSIDE_PARAM_MARKER", &marker)],
            Duration::from_secs(1),
        );
        let task = tokio::spawn(run(spec, CancellationToken::new(), tx));
        // The scan must see the script's processes while they live, or the check below
        // would prove nothing.
        assert!(within_two_seconds(|| processes_with(&marker) >= 2).await);
        let r = task.await.unwrap().unwrap();
        assert!(r.timed_out && !r.cancelled);
        assert_eq!((r.exit_code, r.signal), (None, Some(libc::SIGKILL)));
        assert!((1000..5000).contains(&r.duration_ms), "{}", r.duration_ms);
        assert!(
            within_two_seconds(|| processes_with(&marker) == 0).await,
            "a script process survived"
        );
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn cancellation_kills_the_whole_group() {
        let marker = unique_marker();
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(16);
        drop(rx);
        let cancel = CancellationToken::new();
        let spec = sh(
            dir.path(),
            SLEEPERS,
            &[("DESKSIDE_PARAM_MARKER", &marker)],
            Duration::from_secs(60),
        );
        let task = tokio::spawn(run(spec, cancel.clone(), tx));
        assert!(within_two_seconds(|| processes_with(&marker) >= 2).await);
        cancel.cancel();
        let r = task.await.unwrap().unwrap();
        assert!(r.cancelled && !r.timed_out);
        assert_eq!((r.exit_code, r.signal), (None, Some(libc::SIGKILL)));
        assert!(
            within_two_seconds(|| processes_with(&marker) == 0).await,
            "a script process survived"
        );
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn leftovers_are_killed_when_the_script_exits() {
        let marker = unique_marker();
        // One leftover holds our pipes, one has let go of them like a daemon would.
        let body = "sleep 1000 &\nsleep 1000 >/dev/null 2>&1 &\nprintf started\nexit 0";
        let started = Instant::now();
        let (result, c) = run_sh(body, &[("DESKSIDE_PARAM_MARKER", &marker)], TEN_SECONDS).await;
        let r = result.unwrap();
        assert_eq!(
            (r.exit_code, r.timed_out, r.cancelled),
            (Some(0), false, false)
        );
        assert_eq!(c.stdout, b"started");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            within_two_seconds(|| processes_with(&marker) == 0).await,
            "a script process survived"
        );
    }

    #[tokio::test]
    async fn dropping_the_run_future_kills_the_group() {
        let marker = unique_marker();
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let spec = sh(
            dir.path(),
            SLEEPERS,
            &[("DESKSIDE_PARAM_MARKER", &marker)],
            Duration::from_secs(60),
        );
        let running = run(spec, CancellationToken::new(), tx);
        tokio::select! {
            _ = running => panic!("the script ended by itself"),
            seen = within_two_seconds(|| processes_with(&marker) >= 2) => assert!(seen),
        }
        assert!(
            within_two_seconds(|| processes_with(&marker) == 0).await,
            "a script process survived"
        );
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn an_already_cancelled_run_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let touched = dir.path().join("touched");
        let (tx, _rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let spec = sh(
            dir.path(),
            &format!("touch {}", touched.display()),
            &[],
            TEN_SECONDS,
        );
        let r = run(spec, cancel, tx).await.unwrap();
        assert!(r.cancelled && r.exit_code.is_none());
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let spec = sh(dir.path(), "exit 0", &[], TEN_SECONDS);
        let missing = Path::new("/nonexistent/deskside/python9");
        let err = run_with(missing, &spec, &CancellationToken::new(), &tx)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunError::InterpreterMissing { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("/nonexistent/deskside/python9 is not installed"),
            "{err}"
        );
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn a_missing_work_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-there");
        let (tx, _rx) = mpsc::channel(16);
        let err = run(
            sh(&missing, "exit 0", &[], TEN_SECONDS),
            CancellationToken::new(),
            tx,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::CreateScript { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "cannot create the script file in {}",
                missing.display()
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn only_param_variables_reach_a_script() {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [
            ("LD_PRELOAD", "/tmp/x.so"),
            ("PATH", "/tmp"),
            ("DESKSIDE_PARAM_", "x"),
            ("DESKSIDE_PARAM_a", "x"),
            ("DESKSIDE_PARAM_X=Y", "x"),
            ("DESKSIDE_PARAM_X", "a\0b"),
        ] {
            let (tx, _rx) = mpsc::channel(16);
            let spec = sh(dir.path(), "exit 0", &[(name, value)], TEN_SECONDS);
            let err = run(spec, CancellationToken::new(), tx).await.unwrap_err();
            assert!(matches!(err, RunError::BadEnv { .. }), "{name}: {err:?}");
        }
        assert_eq!(entries(dir.path()), Vec::<PathBuf>::new());
    }
}
