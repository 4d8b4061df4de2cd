//! The swarm simulator keeps working at a tiny size: every agent connects, the fan-out
//! stores a snapshot from each selected agent, and all come back after the controller
//! is killed and restarted. Figures are printed, never asserted.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The `deskside` controller binary of this build profile, built if the test run did not.
fn controller_bin() -> Result<PathBuf> {
    let swarm = PathBuf::from(env!("CARGO_BIN_EXE_deskside-swarm"));
    let dir = swarm
        .parent()
        .context("the swarm binary has no directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "deskside-controller", "--bin", "deskside"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() {
        bail!("building the controller failed: {status}");
    }
    Ok(dir.join("deskside"))
}

#[test]
fn tiny_swarm_connects_fans_out_and_reconnects() -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_deskside-swarm"))
        .args(["--agents", "20", "--fanout", "10", "--reconnect", "20"])
        .args(["--idle-secs", "1", "--json", "--controller-bin"])
        .arg(controller_bin()?)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "swarm failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .with_context(|| format!("stdout is not one JSON object: {stdout}\n{stderr}"))?;
    eprintln!("{doc}");
    assert_eq!(doc["agents"], 20, "{doc}");
    assert_eq!(doc["connected"], 20, "{doc}");
    assert_eq!(doc["fanout"]["agents"], 10, "{doc}");
    assert_eq!(doc["fanout"]["stored"], 10, "{doc}");
    assert_eq!(doc["reconnect"]["back"], 20, "{doc}");
    for key in [
        "enroll_secs",
        "connect_secs",
        "controller_rss_bytes",
        "controller_cpu_pct_idle",
        "swarm_rss_bytes",
    ] {
        assert!(doc[key].is_number(), "{key} missing: {doc}");
    }
    Ok(())
}

#[test]
fn a_holding_swarm_says_where_its_console_is_and_stops_when_stdin_closes() -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_deskside-swarm"))
        .args(["--agents", "4", "--fanout", "2", "--idle-secs", "0"])
        .args(["--console", "--hold", "--controller-bin"])
        .arg(controller_bin()?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("the swarm's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let doc: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("the hold line is not one JSON object: {line:?}"))?;
    assert_eq!(doc["connected"], 4, "{doc}");
    assert_eq!(
        doc["snapshot_agents"].as_array().map(Vec::len),
        Some(2),
        "{doc}"
    );
    let console = doc["console"].as_str().context("no console address")?;
    std::net::TcpStream::connect(console).context("the console does not accept connections")?;
    assert!(
        std::path::Path::new(doc["profile"].as_str().unwrap_or("")).exists(),
        "{doc}"
    );
    drop(stdin);
    let status = child.wait()?;
    assert!(status.success(), "the swarm ended with {status}");
    Ok(())
}
