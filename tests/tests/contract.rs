//! The CLI contract, end to end through the real binaries: init, serve, token, enroll,
//! run, tech add, login, agents, ticket new/list/show, diag — fresh dirs, 127.0.0.1:0.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_tests::{Guard, bin, run};
use serde_json::Value;

mod oscheck {
    /// `sha256sum`, the OS tool an admin would use to check evidence.
    pub fn sha256_hex(path: &std::path::Path) -> anyhow::Result<String> {
        let out = std::process::Command::new("sha256sum").arg(path).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }
}

fn deskside(data: &Path) -> Result<Command> {
    let mut c = Command::new(bin("deskside")?);
    c.arg("--data").arg(data);
    Ok(c)
}

fn ok(cmd: &mut Command) -> Result<String> {
    let (code, out, err) = run(cmd)?;
    if code != 0 {
        bail!("{cmd:?} exited {code}\nstdout: {out}\nstderr: {err}");
    }
    Ok(out)
}

fn json(cmd: &mut Command) -> Result<Value> {
    let out = ok(cmd)?;
    serde_json::from_str(&out).with_context(|| format!("stdout is not one JSON document: {out}"))
}

/// Everything a child wrote on stderr, kept for the "no secrets in logs" check.
type Logs = std::sync::Arc<std::sync::Mutex<String>>;

fn keep_stderr(lines: impl Iterator<Item = std::io::Result<String>> + Send + 'static, logs: Logs) {
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(mut l) = logs.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}

/// Starts `deskside serve` on port 0 (debug logs as JSON) and reads the QUIC and metrics
/// addresses it prints.
fn serve(data: &Path, logs: &Logs) -> Result<(Guard, String, String)> {
    let mut child = deskside(data)?
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let guard = Guard(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    while let Some(line) = lines.next().transpose()? {
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
        if let (Some(a), Some(rest)) = (&addr, line.split("metrics and health on http://").nth(1)) {
            let metrics = rest.split('/').next().unwrap_or_default().to_owned();
            // Keep draining stderr so the server never blocks on a full pipe.
            keep_stderr(lines, logs.clone());
            return Ok((guard, a.clone(), metrics));
        }
    }
    bail!("deskside serve exited before listening")
}

#[test]
fn contract_sequence_through_the_binaries() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let state = tmp.path().join("agent");
    let profile = tmp.path().join("tech/profile.toml");

    ok(deskside(&data)?.arg("init"))?;
    let (code, _, err) = run(deskside(&data)?.arg("init"))?;
    assert_eq!(code, 1, "second init must fail");
    assert!(err.contains("already initialised"), "{err}");

    let logs = Logs::default();
    let (mut server, addr, metrics) = serve(&data, &logs)?;

    let token =
        ok(deskside(&data)?.args(["token", "create", "--controller", &addr, "--ttl", "10m"]))?;
    let token = token.trim();
    assert!(token.starts_with("dsk1-"), "{token}");
    let out = ok(Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(&state)
        .args(["enroll", token]))?;
    assert!(out.contains("enrolled as ag-"), "{out}");
    // The same token again is refused, and says why.
    let (code, _, err) = run(Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(tmp.path().join("again"))
        .args(["enroll", token]))?;
    assert_eq!(code, 1);
    assert!(err.contains("already used"), "{err}");

    std::fs::write(
        state.join("policy.toml"),
        "[scopes]\ndiagnostics = \"allow\"\n",
    )?;
    let mut agent_child = Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(&state)
        .arg("run")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(stderr) = agent_child.stderr.take() {
        keep_stderr(BufReader::new(stderr).lines(), logs.clone());
    }
    let _agent = Guard(agent_child);

    let tech_token = ok(deskside(&data)?.args([
        "tech",
        "add",
        "alice",
        "--tier",
        "l1",
        "--controller",
        &addr,
    ]))?;
    let tech = || -> Result<Command> {
        let mut c = Command::new(bin("deskside")?);
        c.env("DESKSIDE_PROFILE", &profile);
        Ok(c)
    };
    let out = ok(tech()?.args(["login", tech_token.trim()]))?;
    assert!(out.contains("logged in as alice (l1)"), "{out}");

    // Wait for the agent to check in.
    let start = Instant::now();
    let agent_id = loop {
        let agents = json(tech()?.args(["agents", "--json"]))?;
        let online = agents
            .as_array()
            .and_then(|a| a.iter().find(|a| a["online"] == true))
            .cloned();
        if let Some(a) = online {
            assert_eq!(a["hostname"].as_str().map(str::to_owned), Some(hostname()?));
            break a["id"].as_str().unwrap_or_default().to_owned();
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("agent never came online: {agents}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let ticket = json(tech()?.args([
        "ticket",
        "new",
        "--title",
        "laptop is slow",
        "--agent",
        &agent_id,
        "--json",
    ]))?;
    let number = ticket["number"].as_u64().context("ticket number")?;
    let plain = ok(tech()?.args(["ticket", "new", "--title", "second"]))?;
    assert_eq!(plain.trim(), (number + 1).to_string());

    let diag = json(tech()?.args(["diag", &agent_id, "--ticket", &number.to_string(), "--json"]))?;
    for path in [
        "/version",
        "/host/hostname",
        "/os/kernel",
        "/os/id",
        "/cpu/logical_cores",
        "/memory/total_bytes",
        "/memory/swap_total_bytes",
        "/disks",
        "/network/interfaces",
        "/probes",
        "/findings",
    ] {
        assert!(
            diag.pointer(path).is_some(),
            "missing {path} in diag --json"
        );
    }
    assert_eq!(
        diag["os"]["kernel"].as_str().map(str::to_owned),
        Some(std_out("uname", &["-r"])?)
    );
    assert_eq!(
        diag["cpu"]["logical_cores"].as_u64(),
        std_out("nproc", &[])?.parse().ok()
    );
    assert!(
        diag["network"]["controller"]["address"]
            .as_str()
            .is_some_and(|a| a == addr)
    );
    let sha = diag["evidence"]["sha256"]
        .as_str()
        .context("evidence sha")?
        .to_owned();
    let location = diag["evidence"]["location"]
        .as_str()
        .context("evidence location")?
        .to_owned();
    assert_eq!(
        oscheck::sha256_hex(Path::new(&location))?,
        sha,
        "stored evidence must hash to its name"
    );

    let show = json(tech()?.args(["ticket", "show", &number.to_string(), "--json"]))?;
    assert_eq!(show["evidence"][0]["sha256"].as_str(), Some(sha.as_str()));
    let timeline = show["timeline"].as_array().context("timeline")?;
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[1]["evidence_sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(timeline[1]["prev_hash"], timeline[0]["hash"]);

    let list = json(tech()?.args(["ticket", "list", "--json"]))?;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[0]["evidence_count"].as_u64(), Some(1));
    let human = ok(tech()?.args(["ticket", "show", &number.to_string()]))?;
    assert!(
        human.contains("laptop is slow") && human.contains(&sha),
        "{human}"
    );

    // Unknown ticket and unknown agent: clear errors, exit 1.
    let (code, _, err) = run(tech()?.args(["diag", &agent_id, "--ticket", "999"]))?;
    assert_eq!(code, 1);
    assert!(err.contains("no ticket #999"), "{err}");
    let (code, _, err) = run(tech()?.args(["diag", "nosuch", "--ticket", &number.to_string()]))?;
    assert_eq!(code, 1);
    assert!(err.contains("no agent with id or hostname"), "{err}");

    // The agent's own view: audit log and status.
    let audit = json(
        Command::new(bin("deskside-agent")?)
            .arg("--state")
            .arg(&state)
            .args(["audit", "--json"]),
    )?;
    assert_eq!(audit[0]["outcome"].as_str(), Some("served"));
    assert_eq!(audit[0]["technician"].as_str(), Some("alice"));
    let status = json(
        Command::new(bin("deskside-agent")?)
            .arg("--state")
            .arg(&state)
            .args(["status", "--json"]),
    )?;
    assert_eq!(
        status["enrollment"]["agent_id"].as_str(),
        Some(agent_id.as_str())
    );
    assert_eq!(status["link"]["state"].as_str(), Some("connected"));

    // The admin's glance: health and counters from the metrics endpoint.
    let status =
        json(Command::new(bin("deskside")?).args(["status", "--json", "--metrics", &metrics]))?;
    assert_eq!(status["health"]["status"], "ok");
    assert_eq!(status["health"]["agents_connected"].as_i64(), Some(1));
    // Every command above was a process that connected, asked and exited. Each told the
    // controller it was done before it exited: none is left to its 60-s idle timeout.
    let mut techs = status["health"]["technicians_connected"].as_i64();
    let since = Instant::now();
    while techs != Some(0) && since.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        let again =
            json(Command::new(bin("deskside")?).args(["status", "--json", "--metrics", &metrics]))?;
        techs = again["health"]["technicians_connected"].as_i64();
    }
    assert_eq!(
        techs,
        Some(0),
        "technician connections outlived their commands"
    );
    assert!(
        status["requests_ok"].as_u64().is_some_and(|n| n >= 5),
        "{status}"
    );
    assert!(
        status["requests_failed"].as_u64().is_some_and(|n| n >= 2),
        "{status}"
    );

    // No secret reaches a log line, even at debug level: not the tokens, not their
    // secrets, not a private key. The controller's JSON log lines carry the request's
    // technician, ticket and agent.
    let logged = logs.lock().map(|l| l.clone()).unwrap_or_default();
    let tech_token = tech_token.trim();
    for secret in [token, tech_token] {
        assert!(!logged.contains(secret), "a token was logged");
        let body = secret.trim_start_matches("dsk1-");
        assert!(
            !logged.contains(body.get(body.len() - 40..).unwrap_or(body)),
            "token material was logged"
        );
    }
    assert!(!logged.contains("PRIVATE KEY"), "a private key was logged");
    let key_pem = deskside_controller::profile::Profile::load(&profile)?.key_pem;
    let key_line = key_pem.lines().nth(1).unwrap_or("-");
    assert!(!logged.contains(key_line.trim()), "key material was logged");
    let json_lines: Vec<Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json_lines.len() > 5,
        "the controller did not log JSON lines:\n{logged}"
    );
    assert!(
        json_lines
            .iter()
            .any(|l| l["fields"]["message"] == "request done"
                && l["span"]["technician"] == "alice"
                && l["span"]["ticket"].as_u64() == Some(number)
                && l["span"]["agent"].as_str() == Some(agent_id.as_str())),
        "no log line carries the technician and ticket"
    );

    // An online backup while serving, restored into a new data dir with every evidence
    // item checked against its hash.
    let archive = tmp.path().join("backup.tar");
    let out = ok(deskside(&data)?.args(["backup", "--out"]).arg(&archive))?;
    assert!(
        out.contains("CA"),
        "the backup summary must warn that it holds the CA key: {out}"
    );
    let restored = tmp.path().join("restored");
    let out = ok(deskside(&restored)?.args(["restore"]).arg(&archive))?;
    assert!(out.contains("1 evidence"), "{out}");
    let stored = restored
        .join("evidence")
        .join(sha.get(..2).unwrap_or_default())
        .join(&sha);
    assert_eq!(oscheck::sha256_hex(&stored)?, sha);
    let (code, _, err) = run(deskside(&restored)?.args(["restore"]).arg(&archive))?;
    assert_eq!(code, 1, "restoring over a non-empty data dir must fail");
    assert!(err.contains("not empty"), "{err}");

    // SIGTERM drains and exits 0.
    let pid = server.0.id().to_string();
    ok(Command::new("kill").args(["-TERM", &pid]))?;
    let status = server.0.wait()?;
    assert!(status.success(), "serve exited with {status}");
    Ok(())
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("agent");
    let agent = || -> Result<Command> {
        let mut c = Command::new(bin("deskside-agent")?);
        c.arg("--state").arg(&state);
        Ok(c)
    };
    for (token, expect) in [
        ("", "empty"),
        ("hello", "not a Deskside enrollment token"),
        ("dsk1-AAAA", "damaged"),
        (&"x".repeat(5000)[..], "characters long"),
    ] {
        let (code, _, err) = run(agent()?.args(["enroll", token]))?;
        assert_eq!(code, 1, "{token:?}");
        assert!(err.contains(expect), "{token:?}: {err}");
    }
    let (code, _, err) = run(agent()?.arg("run"))?;
    assert_eq!(code, 1);
    assert!(err.contains("not enrolled"), "{err}");

    std::fs::create_dir_all(&state)?;
    std::fs::write(state.join("enrollment.toml"), "agent_id = \"x\"\n")?;
    let (code, _, err) = run(agent()?.arg("status"))?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("enrollment.toml"), "{err}");

    let (code, _, err) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", tmp.path().join("none.toml"))
        .arg("agents"))?;
    assert_eq!(code, 1);
    assert!(err.contains("deskside login"), "{err}");
    let (code, _, err) = run(Command::new(bin("deskside")?).args([
        "--data",
        "/nonexistent/x",
        "token",
        "create",
        "--controller",
        "h:1",
    ]))?;
    assert_eq!(code, 1);
    assert!(err.contains("init"), "{err}");
    let (code, _, _) = run(Command::new(bin("deskside")?).args(["ticket", "show", "abc"]))?;
    assert_eq!(code, 2);

    // Configuration is checked before anything starts; a bad value exits 64 naming it.
    let bad = tmp.path().join("controller.toml");
    std::fs::write(&bad, "listen = \"localhost:99999\"\n")?;
    let (code, _, err) = run(Command::new(bin("deskside")?)
        .arg("--config")
        .arg(&bad)
        .args(["config", "check"]))?;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("listen") && err.contains("localhost:99999"),
        "{err}"
    );
    std::fs::write(
        &bad,
        "[metrics]\nlisten = \"127.0.0.1:9999\"\n[sla.high]\nresponse = \"2h\"\nresolution = \"1h\"\n",
    )?;
    let (code, _, err) = run(Command::new(bin("deskside")?)
        .arg("--config")
        .arg(&bad)
        .args(["serve", "--listen", "127.0.0.1:0"]))?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("sla.high"), "{err}");
    let (code, out, err) = run(Command::new(bin("deskside")?).args(["config", "example"]))?;
    assert_eq!(code, 0, "{err}");
    let example = tmp.path().join("example.toml");
    std::fs::write(&example, out)?;
    let (code, out, err) = run(Command::new(bin("deskside")?)
        .arg("--config")
        .arg(&example)
        .args(["config", "check"]))?;
    assert_eq!(code, 0, "the shipped example must be valid: {err}");
    assert!(out.contains("valid"), "{out}");
    // A cluster's shared evidence directory is shown where the blobs will go.
    let shared = tmp.path().join("shared.toml");
    std::fs::write(&shared, "[evidence]\ndir = \"/srv/deskside/evidence\"\n")?;
    let (code, out, err) = run(Command::new(bin("deskside")?)
        .arg("--config")
        .arg(&shared)
        .args(["config", "check"]))?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("evidence") && l.contains("/srv/deskside/evidence")),
        "{out}"
    );
    let agent_bad = tmp.path().join("agent.toml");
    std::fs::write(&agent_bad, "[reconnect]\nbase = \"10s\"\ncap = \"1s\"\n")?;
    let (code, _, err) = run(agent()?
        .arg("--config")
        .arg(&agent_bad)
        .args(["config", "check"]))?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("reconnect"), "{err}");
    let (code, _, err) = run(Command::new(bin("deskside")?).args([
        "--data",
        tmp.path().to_str().unwrap_or("."),
        "token",
        "create",
        "--controller",
        "nohost",
    ]))?;
    assert_eq!(code, 1);
    assert!(err.contains("HOST:PORT"), "{err}");
    Ok(())
}

fn std_out(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn hostname() -> Result<String> {
    std_out("hostname", &[])
}
