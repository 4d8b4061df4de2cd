//! What an operator meets first, through the real binaries: logs fit for a journal or a
//! file, a configured controller found by `status` and named in login tokens, durations
//! in words, digests in hex, and an agent that stops at once on SIGTERM.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_tests::{Cluster, Guard, bin, free_udp_addr, run};
use serde_json::Value;

/// How long a test waits for a line it expects in a log (generous: a busy 2-core machine).
const LOG_WAIT: Duration = Duration::from_secs(30);

/// SIGTERM must stop the agent at once; this bound only catches waiting out a timeout
/// (connect: 10 s), not a slow machine.
const STOP_BOUND: Duration = Duration::from_secs(5);

const ESC: u8 = 0x1b;

fn ok(cmd: &mut Command) -> Result<(String, String)> {
    let (code, out, err) = run(cmd)?;
    if code != 0 {
        bail!("{cmd:?} exited {code}\nstdout: {out}\nstderr: {err}");
    }
    Ok((out, err))
}

/// Waits until the file at `log` contains `needle`; returns its bytes.
fn wait_for_log(log: &Path, needle: &str, child: &mut Child) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        let bytes = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(&bytes).contains(needle) {
            return Ok(bytes);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "process exited ({status}) before logging {needle:?}:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if start.elapsed() > LOG_WAIT {
            bail!(
                "no {needle:?} in the log within {LOG_WAIT:?}:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {} failed: {status}", child.id());
    }
    Ok(())
}

/// Waits for the child to exit after SIGTERM; returns how long it took.
fn exits_within(child: &mut Child, bound: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("exited with {status} after SIGTERM");
            }
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            bail!("still running {bound:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_no_colour(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&ESC),
        "{what} wrote ANSI escapes to a file:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

/// An agent enrolled with a controller that is gone: nothing listens on its address.
async fn orphan_agent_state(dir: &Path) -> Result<std::path::PathBuf> {
    let mut cluster = Cluster::start().await?;
    let state = deskside_agent::state::StateDir::new(dir.join("agent"));
    deskside_agent::enroll::enroll(&state, &cluster.token(Duration::from_secs(600))?).await?;
    cluster.stop().await;
    Ok(state.root().to_path_buf())
}

/// Starts `deskside-agent run` with debug logs to `log` (a file: not a terminal).
fn agent_run(state: &Path, log: &Path) -> Result<Guard> {
    let child = Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(state)
        .arg("run")
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    Ok(Guard(child))
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_stops_at_once_on_sigterm_between_reconnects() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let state = orphan_agent_state(tmp.path()).await?;

    // While it dials a controller that never answers (the connect timeout is 10 s).
    let log = tmp.path().join("dialling.log");
    let mut agent = agent_run(&state, &log)?;
    wait_for_log(&log, "agent starting", &mut agent.0)?;
    sigterm(&agent.0)?;
    let dialling = exits_within(&mut agent.0, STOP_BOUND)?;
    assert_no_colour("deskside-agent run", &std::fs::read(&log)?);

    // While it sleeps before the next attempt.
    let log = tmp.path().join("backoff.log");
    let mut agent = agent_run(&state, &log)?;
    wait_for_log(&log, "reconnecting after", &mut agent.0)?;
    sigterm(&agent.0)?;
    let sleeping = exits_within(&mut agent.0, STOP_BOUND)?;
    let bytes = std::fs::read(&log)?;
    assert_no_colour("deskside-agent run", &bytes);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("cannot reach the controller"), "{text}");
    println!(
        "agent stopped {dialling:?} after SIGTERM while dialling, {sleeping:?} while backing off"
    );
    Ok(())
}

#[test]
fn a_configured_controller_is_found_named_and_logs_plainly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let listen = free_udp_addr()?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let config = tmp.path().join("controller.toml");
    std::fs::write(
        &config,
        format!("listen = \"{listen}\"\n\n[metrics]\nlisten = \"{metrics}\"\n"),
    )?;
    let deskside = || -> Result<Command> {
        let mut c = Command::new(bin("deskside")?);
        c.arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .env_remove("DESKSIDE_LISTEN")
            .env_remove("DESKSIDE_METRICS_LISTEN")
            .env_remove("NO_COLOR");
        Ok(c)
    };
    ok(deskside()?.arg("init"))?;

    // Logs to a file carry no colour codes, at info level and with warnings.
    let log = tmp.path().join("serve.log");
    let mut server = Guard(
        deskside()?
            .arg("serve")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    wait_for_log(&log, "metrics and health on", &mut server.0)?;

    // `status` asks the metrics address from the config, not 127.0.0.1:9464.
    let (out, _) = ok(deskside()?.args(["status", "--json"]))?;
    let status: Value = serde_json::from_str(&out).context("status --json")?;
    assert_eq!(status["health"]["status"], "ok", "{status}");

    // Durations read as words.
    let (_, err) = ok(deskside()?.args(["token", "create", "--controller", &listen]))?;
    assert!(err.contains("valid for 1 day;"), "{err}");

    // Without --controller, the login token names the configured listen address and
    // says so; logging in with it reaches this controller.
    let (token, err) = ok(deskside()?.args(["tech", "add", "alice", "--tier", "l2"]))?;
    assert!(err.contains("valid for 1 day;"), "{err}");
    assert!(
        err.contains(&format!("the token names {listen}")) && err.contains("--controller"),
        "{err}"
    );
    let profile = tmp.path().join("alice.toml");
    let tech = || -> Result<Command> {
        let mut c = Command::new(bin("deskside")?);
        c.env("DESKSIDE_PROFILE", &profile);
        Ok(c)
    };
    let (out, _) = ok(tech()?.args(["login", token.trim()]))?;
    assert!(out.contains("logged in as alice (l2)"), "{out}");

    // Catalog digests are hex in JSON, like every other digest.
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
    ok(deskside()?
        .args(["script", "add"])
        .arg(catalog.join("disk-usage.toml")))?;
    let body_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(
        catalog.join("disk-usage.sh"),
    )?));
    let (out, _) = ok(tech()?.args(["script", "list", "--json"]))?;
    let list: Value = serde_json::from_str(&out)?;
    assert_eq!(list[0]["body_sha256"], body_sha256.as_str(), "{list}");
    let (out, _) = ok(tech()?.args(["script", "show", "disk-usage", "--json"]))?;
    let view: Value = serde_json::from_str(&out)?;
    assert_eq!(view["entry"]["body_sha256"], body_sha256.as_str(), "{view}");
    assert_eq!(view["body_sha256"], body_sha256.as_str(), "{view}");

    sigterm(&server.0)?;
    exits_within(&mut server.0, LOG_WAIT)?;
    let bytes = std::fs::read(&log)?;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("INFO") && text.contains("DEBUG"), "{text}");
    assert_no_colour("deskside serve", &bytes);
    Ok(())
}

/// `deskside status` against a closed loopback port, with debug logs: a command that logs
/// a few lines through tracing and exits at once.
fn status_to_nowhere() -> Result<Command> {
    let mut c = Command::new(bin("deskside")?);
    c.args(["status", "--metrics", "127.0.0.1:1"])
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    Ok(c)
}

/// Runs `cmd` with stderr on a pseudo-terminal (util-linux `script`); returns what the
/// terminal showed.
fn on_a_terminal(cmd: &Command) -> Result<Vec<u8>> {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    Ok(script.output().context("running util-linux script")?.stdout)
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() -> Result<()> {
    // To a file (or a pipe, or the journal): the same lines, no escapes.
    let out = status_to_nowhere()?.output()?;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("DEBUG") && text.contains("cannot reach"),
        "{text}"
    );
    assert_no_colour("deskside status", &out.stderr);

    // On a terminal: coloured, unless NO_COLOR says otherwise.
    let shown = on_a_terminal(&status_to_nowhere()?)?;
    assert!(
        String::from_utf8_lossy(&shown).contains("DEBUG") && shown.contains(&ESC),
        "a terminal should get colour:\n{}",
        String::from_utf8_lossy(&shown)
    );
    let shown = on_a_terminal(status_to_nowhere()?.env("NO_COLOR", "1"))?;
    assert!(
        String::from_utf8_lossy(&shown).contains("DEBUG"),
        "{shown:?}"
    );
    assert_no_colour("deskside status with NO_COLOR=1 on a terminal", &shown);
    Ok(())
}
