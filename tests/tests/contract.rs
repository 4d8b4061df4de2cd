//! The CLI contract, end to end through the real binaries: init, serve, token, enroll,
//! run, tech add, login, agents, ticket new/list/show, diag — fresh dirs, 127.0.0.1:0.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_tests::{bin, run};
use serde_json::Value;

/// Kills the child on drop so a failing test leaves no server behind.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// Starts `deskside serve` on port 0 and reads the address it prints.
fn serve(data: &Path) -> Result<(Guard, String)> {
    let mut child = deskside(data)?
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let guard = Guard(child);
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next().transpose()? {
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((guard, addr));
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

    let (mut server, addr) = serve(&data)?;

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
    let _agent = Guard(
        Command::new(bin("deskside-agent")?)
            .arg("--state")
            .arg(&state)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );

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
