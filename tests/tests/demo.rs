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
        "web console on https://127.0.0.1:",
        "the web console login's one-time setup link",
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

/// `GET path` over HTTPS from `addr`, trusting only the CA in `ca_pem`: the status line
/// and the body.
fn https_get(addr: &str, path: &str, ca_pem: &str) -> Result<(String, String)> {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost")?.to_owned();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(addr)?);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    // The server closes after the response; a missing close_notify is not our concern.
    let _ = tls.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

#[test]
fn demo_with_console_keeps_serving_the_console_until_stopped() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let marker = format!("demo-console-{}", std::process::id());
    let out_path = tmp.path().join("demo.out");
    let mut child = demo(&bin("deskside")?, tmp.path(), &marker)
        .arg("--console")
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let started = std::time::Instant::now();
    let out = loop {
        let out = std::fs::read_to_string(&out_path)?;
        if out.contains("Ctrl-C stops everything") {
            break out;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the demo ended early ({status}):\n{out}");
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            bail!("the demo did not get to the console within 120 s:\n{out}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let link = out
        .split_whitespace()
        .find(|w| w.starts_with("https://127.0.0.1:") && w.contains("/setup/"))
        .context("no setup link in the demo's output")?;
    let (addr, path) = link
        .trim_start_matches("https://")
        .split_once('/')
        .context("a setup link without a path")?;
    // The console is served with a certificate from the demo's CA, which
    // `deskside console ca` prints.
    let dir = demo_dir(tmp.path())?.context("the demo made no directory")?;
    let (code, ca_pem, err) = run(std::process::Command::new(bin("deskside")?)
        .arg("--data")
        .arg(dir.join("controller"))
        .args(["console", "ca"]))?;
    assert_eq!(code, 0, "{err}");
    let (status, body) = https_get(addr, &format!("/{path}"), &ca_pem)?;
    assert!(status.contains(" 200 "), "{status}\n{body}");
    assert!(
        body.contains("Set up the console login for demo-hotline"),
        "{body}"
    );
    assert!(body.contains("id=\"totp-secret\""), "{body}");
    // Ctrl-C (SIGTERM here) stops the controller and the agent.
    let pid = i32::try_from(child.id())?;
    run(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let status = child.wait()?;
    assert!(status.success(), "{status}");
    let left = processes_with_marker(&format!("DESKSIDE_DEMO_TEST={marker}"));
    assert!(left.is_empty(), "still running: {left:?}");
    Ok(())
}
