//! Ticketing config through the binaries: plain HTTP to a host that is not loopback is
//! refused with its reason, allowed only by `allow_insecure_http = true` and then warned
//! about at start and in `deskside status`; `config check --reach` looks up the queues
//! in a real Request Tracker.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use deskside_proto::msg::identity::Tier;
use deskside_tests::rt::{RtServer, queue_name};
use deskside_tests::{Guard, bin, run};

fn rt_section(url: &str, extra: &str) -> String {
    format!(
        "[ticketing]\nbackend = \"rt\"\n[ticketing.rt]\nurl = \"{url}\"\nuser = \"deskside\"\n\
         password = \"pw\"\n{extra}[ticketing.rt.queues]\nl1 = \"A\"\nl2 = \"B\"\nl3 = \"C\"\n"
    )
}

fn check(config: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    run(Command::new(bin("deskside")?)
        .arg("--config")
        .arg(config)
        .args(["config", "check"])
        .args(args))
}

#[test]
fn plain_http_off_loopback_is_refused_then_warned_about_when_allowed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("controller.toml");

    std::fs::write(&config, rt_section("http://rt.example.org", ""))?;
    let (code, _, err) = check(&config, &[])?;
    assert_eq!(code, 64, "{err}");
    for part in [
        "ticketing.rt.url",
        "rt.example.org",
        "unencrypted",
        "https://",
        "ticketing.rt.allow_insecure_http = true",
    ] {
        assert!(err.contains(part), "{err:?} should say {part:?}");
    }

    std::fs::write(&config, rt_section("http://127.0.0.1:1", ""))?;
    let (code, out, err) = check(&config, &[])?;
    assert_eq!(code, 0, "loopback is fine: {err}");
    assert!(!out.contains("warning"), "{out}");

    std::fs::write(
        &config,
        rt_section("http://rt.example.org", "allow_insecure_http = true\n"),
    )?;
    let (code, out, err) = check(&config, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning") && out.contains("plain HTTP"),
        "{out}"
    );

    // The running controller says so at start and in `deskside status`.
    let data = tmp.path().join("data");
    let (code, _, err) = run(Command::new(bin("deskside")?)
        .arg("--data")
        .arg(&data)
        .arg("init"))?;
    assert_eq!(code, 0, "{err}");
    let mut child = Command::new(bin("deskside")?)
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let _guard = Guard(child);
    let mut warned = false;
    let mut metrics = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        warned |= line.contains("plain HTTP") && line.contains("rt.example.org");
        if let Some(rest) = line.split("metrics and health on http://").nth(1) {
            metrics = rest.split('/').next().map(str::to_owned);
            break;
        }
    }
    let Some(metrics) = metrics else {
        bail!("deskside serve exited before serving metrics");
    };
    assert!(warned, "no warning at start");
    let (code, out, err) =
        run(Command::new(bin("deskside")?).args(["status", "--metrics", &metrics]))?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("warning:") && l.contains("plain HTTP")),
        "{out}"
    );
    Ok(())
}

#[test]
fn config_check_reach_finds_the_queues_in_request_tracker() -> Result<()> {
    let rt = RtServer::shared()?;
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("controller.toml");
    let rt_config = rt.config();
    let write = |l3: &str| {
        std::fs::write(
            &config,
            format!(
                "[ticketing]\nbackend = \"rt\"\n[ticketing.rt]\nurl = \"{}\"\nuser = \"{}\"\n\
                 password = \"{}\"\n[ticketing.rt.queues]\nl1 = \"{}\"\nl2 = \"{}\"\nl3 = \"{l3}\"\n",
                rt_config.url,
                rt_config.user,
                rt_config.password.expose(),
                queue_name(Tier::L1),
                queue_name(Tier::L2),
            ),
        )
    };
    write(queue_name(Tier::L3))?;
    let (code, out, err) = check(&config, &["--reach"])?;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches(": ok (RT queue ").count(), 3, "{out}");

    write("Nobody Made This Queue")?;
    let (code, out, err) = check(&config, &["--reach"])?;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("l3 queue \"Nobody Made This Queue\": MISSING"),
        "{out}"
    );
    assert!(err.contains("create the queues in RT"), "{err}");
    Ok(())
}
