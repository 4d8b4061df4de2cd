//! The details window end to end, driven as a screen reader would (AT-SPI): on Xvfb and a
//! private session bus, against a real controller and agent, opened from the helper's
//! notification (Details) as on a desktop. It shows the request in
//! plain words with Deny focused, takes Allow and Deny, shows the running session and
//! ends it, gets a support code, checks the computer, runs a self-service fix and asks
//! for help (`window_l0.rs`); and where no notification service runs, the window alone
//! asks. Screenshots land in
//! target/desktop-screens/.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{Bus, MockNotifications};
use crate::screen::{Screen, start_x};
use anyhow::{Context, Result, bail};
use deskside_agent::control::{ControlClient, ControlReply, ControlRequest};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_controller::client::TechClient;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{Cluster, Guard, wait_online};

/// The helper on the test's display and bus, watching the agent at `socket`.
fn start_helper(socket: &Path, display: &str, bus: &Bus) -> Result<Guard> {
    Ok(Guard(
        Command::new(env!("CARGO_BIN_EXE_deskside-desktop"))
            .arg("--socket")
            .arg(socket)
            .env("DISPLAY", display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("XDG_RUNTIME_DIR", &bus.runtime)
            .env_remove("GSK_RENDERER")
            .env("GDK_DEBUG", "gl-disable")
            .stdin(Stdio::null())
            .spawn()
            .context("starting deskside-desktop")?,
    ))
}

/// Stops the helper as the session would (SIGTERM) and waits for it to exit.
async fn stop_helper(mut helper: Guard) -> Result<()> {
    let stopped = Command::new("kill")
        .args(["-TERM", &helper.0.id().to_string()])
        .status()?;
    assert!(stopped.success());
    let bound = Instant::now() + Duration::from_secs(30);
    while helper.0.try_wait()?.is_none() {
        if Instant::now() > bound {
            bail!("the helper did not stop on SIGTERM within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn ask(
    tech: &Arc<TechClient>,
    agent: &str,
    ticket: u64,
    scopes: &[Scope],
) -> tokio::task::JoinHandle<Result<SessionOutcome>> {
    let (tech, req) = (
        Arc::clone(tech),
        TechRequest::RequestSession {
            agent: agent.into(),
            ticket,
            scopes: scopes.to_vec(),
            duration_secs: 1800,
            wait_secs: 120,
        },
    );
    tokio::spawn(async move {
        match tech.request(&req).await? {
            TechReply::Session(r) => Ok(r.outcome),
            other => bail!("unexpected {other:?}"),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_shows_the_request_the_session_a_support_code_a_check_a_fix_and_an_ask()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let x = start_x()?;
    let bus = Bus::start(dir.path())?;
    let screen = Screen {
        bus: &bus,
        x: &x,
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/desktop/atspi.py"),
    };
    let mut cluster = Cluster::start().await?;
    crate::window_l0::add_fix(&cluster)?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("ann", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = match tech
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "Printer jams".into(),
            agent: Some(agent.id.clone()),
        })
        .await?
    {
        TechReply::Ticket(v) => v.ticket.number,
        other => bail!("unexpected {other:?}"),
    };
    let tech = Arc::new(tech);

    let asking = ask(
        &tech,
        &agent.id,
        ticket,
        &[Scope::Diagnostics, Scope::Files],
    );
    // The helper raises the prompt; Details on it opens the window (the helper starts
    // deskside-desktop-window from beside itself).
    let mock = MockNotifications::start(&bus).await?;
    let helper = start_helper(&agent.state.control_socket(), &x.display, &bus)?;
    let (prompt, _) = mock.wait_notify(1).await?;
    mock.click(prompt, "details").await?;

    // The request, in plain words, with Deny focused.
    let nodes = screen
        .wait_for(&[
            "ann asks to help on this computer",
            "Technician: ann (help desk, level 1)",
            &format!("Ticket: #{ticket} \u{201c}Printer jams\u{201d}"),
            "see this computer's system information",
            "copy files from this computer",
            "For: 30 minutes",
            "Time left to answer: 1:",
            "Deny",
            "Allow",
        ])
        .await?;
    let deny = nodes
        .iter()
        .find(|n| n.role == "push button" && n.name == "Deny");
    assert!(
        deny.is_some_and(|d| d.focused),
        "Deny is not focused: {nodes:#?}"
    );
    screen.shot("prompt")?;
    screen.press("Allow")?;
    let got = asking.await??;
    assert!(matches!(got, SessionOutcome::Approved(_)), "{got:?}");

    // The running session, and ending it.
    screen
        .wait_for(&[
            "ann is helping on this computer",
            &format!("Ticket: #{ticket}"),
            "Ends in: 29:",
            "Right now: nothing",
            "End session",
        ])
        .await?;
    screen.shot("session")?;
    screen.press("End session")?;

    // Get help: a support code, the same the agent holds.
    screen
        .wait_for(&["Get help from the help desk", "Get a support code"])
        .await?;
    screen.press("Get a support code")?;
    let mut control = ControlClient::connect(&agent.state).await?;
    let bound = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let ControlReply::Status(s) = control.call(&ControlRequest::Status).await?
            && let Some(c) = s.code
        {
            break c.code;
        }
        if Instant::now() > bound {
            bail!("pressing Get a support code made no code");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    screen
        .wait_for(&[
            &code,
            "It works once, for 9:",
            "Read it to the help desk engineer",
        ])
        .await?;
    screen.shot("help")?;

    // Check my computer: the findings of a local snapshot, in plain words (the agent
    // answers a second check within 30 s with the same result, which the test reads).
    screen.press("Check my computer")?;
    let check = match control.call(&ControlRequest::Check).await? {
        ControlReply::Checked(c) => c,
        other => bail!("unexpected {other:?}"),
    };
    let mut expected = vec![if check.findings.is_empty() {
        "No problems found.".to_owned()
    } else {
        format!("found {} thing", check.findings.len())
    }];
    expected.extend(check.findings.iter().map(|f| f.message.clone()));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    screen.wait_for(&expected).await?;
    screen.shot("check")?;

    // Fix it myself, and Ask for help.
    crate::window_l0::fix_and_ask(&screen, &agent, &tech).await?;

    // Deny from the keyboard: Enter on a fresh request is Deny, the focused default.
    let asking = ask(&tech, &agent.id, ticket, &[Scope::ScriptsL1]);
    screen
        .wait_for(&["run approved fixes of level 1", "Deny"])
        .await?;
    screen.key("Return")?;
    let got = asking.await??;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("declined")),
        "{got:?}"
    );

    // The helper stops on SIGTERM and takes its window with it.
    stop_helper(helper).await?;
    let bound = Instant::now() + Duration::from_secs(10);
    loop {
        let windows = Command::new("pgrep")
            .args(["-f", env!("CARGO_BIN_EXE_deskside-desktop-window")])
            .output()?;
        if windows.stdout.is_empty() {
            break;
        }
        if Instant::now() > bound {
            bail!(
                "the window outlived its helper: {}",
                String::from_utf8_lossy(&windows.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Where no notification service runs, the window alone asks.
    drop(mock);
    let helper = start_helper(&agent.state.control_socket(), &x.display, &bus)?;
    let asking = ask(&tech, &agent.id, ticket, &[Scope::Diagnostics]);
    screen
        .wait_for(&["ann asks to help on this computer", "Deny", "Allow"])
        .await?;
    screen.shot("prompt-without-notifications")?;
    screen.press("Deny")?;
    let got = asking.await??;
    assert!(matches!(got, SessionOutcome::Refused { .. }), "{got:?}");
    stop_helper(helper).await?;

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
