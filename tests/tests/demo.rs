//! `deskside demo`, the README's first command, end to end: the real `deskside` runs the
//! real `deskside-agent` binary next to it, enrolls it, approves a session through the
//! agent's own command line, and leaves no agent running behind it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use deskside_tests::{bin, processes_with_marker, run};

/// The one scratch directory the demo made under `tmp`.
fn demo_dir(tmp: &Path) -> Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(tmp)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("deskside-demo-"))
        {
            found.push(path);
        }
    }
    if found.len() > 1 {
        bail!("more than one demo directory: {found:?}");
    }
    Ok(found.pop())
}

fn demo(deskside: &Path, tmp: &Path, marker: &str) -> Command {
    let mut c = Command::new(deskside);
    c.arg("demo")
        .env("TMPDIR", tmp)
        .env("DESKSIDE_DEMO_TEST", marker)
        // The machine's or the developer's own settings are not the demo's.
        .env_remove("DESKSIDE_AGENT_STATE")
        .env_remove("DESKSIDE_AGENT_SOCKET")
        .env_remove("DESKSIDE_AGENT_CONFIG");
    c
}

#[test]
fn demo_runs_the_real_agent_binary_and_stops_it() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let marker = format!("demo-{}", std::process::id());
    let (code, out, err) = run(&mut demo(&bin("deskside")?, tmp.path(), &marker))?;
    if code != 0 {
        bail!("deskside demo exited {code}\nstdout: {out}\nstderr: {err}");
    }
    for want in [
        "enrolled as ag-",
        "deskside-agent run: the agent dials out",
        "is online",
        "the user sees: [request 1] demo-hotline (l1) asks",
        "DEMO: approving on the user's behalf (deskside-agent approve 1)",
        "approved: scripts:l1 until",
        "all 3 items signed: 2 on the machine by the agent, 1 by the controller",
        "entries intact",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let dir = demo_dir(tmp.path())?.context("the demo made no directory")?;
    // The answer came through the agent's control socket, from this user's command line.
    let log = std::fs::read_to_string(dir.join("agent.log"))?;
    assert!(log.contains("request 1 approved by"), "{log}");
    assert!(log.contains("deskside_agent::link: connected"), "{log}");
    // The agent the demo started is stopped and reaped before the demo exits.
    let left = processes_with_marker(&format!("DESKSIDE_DEMO_TEST={marker}"));
    assert!(left.is_empty(), "still running: {left:?}");
    Ok(())
}

#[test]
fn demo_without_the_agent_binary_says_how_to_build_it() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let alone = tmp.path().join("bin");
    std::fs::create_dir(&alone)?;
    let deskside = alone.join("deskside");
    std::fs::copy(bin("deskside")?, &deskside)?;
    let (code, out, err) = run(&mut demo(&deskside, tmp.path(), "demo-missing-agent"))?;
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains(&format!(
            "{} does not exist; build both binaries first: cargo build --bin deskside --bin deskside-agent",
            alone.join("deskside-agent").display()
        )),
        "{err}"
    );
    // Nothing was made before the check.
    assert_eq!(demo_dir(tmp.path())?, None);
    Ok(())
}
