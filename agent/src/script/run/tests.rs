//! Real runs of `/bin/sh` scripts: exit codes, signals, output streaming and caps, the
//! environment, and that timeouts, cancellation and drops kill the whole group.

use deskside_proto::msg::script::MAX_OUTPUT_BYTES;

use super::capture::CHUNK_BYTES;
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
        let expected =
            ["PATH", "LANG", "HOME", "DESKSIDE_PARAM_MODE"].contains(&k) || shell_own.contains(&k);
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
