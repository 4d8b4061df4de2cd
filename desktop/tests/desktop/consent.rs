//! The desktop helper end to end: a real controller and agent, the real helper binary on
//! a private session bus with a mock notification server. A technician asks; the user
//! reads the prompt and clicks Allow, Deny, or nothing; the technician gets today's
//! distinct outcomes. The helper follows the agent through a restart and leaves with
//! the desktop session. Run as root (as CI does), the helper runs as another user who
//! is logged in at the machine, as it would on a desktop.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{Bus, MockNotifications};
use anyhow::{Context, Result, bail};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_controller::client::TechClient;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::local::{User, ensure_user, is_root};
use deskside_tests::{Cluster, Guard, wait_online};

/// The desktop user, with a console login in the agent's utmp.
const AT_THE_MACHINE: &str = "deskside-seat";

async fn new_ticket(tech: &TechClient, agent: &str) -> Result<u64> {
    match tech
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "Printer jams".into(),
            agent: Some(agent.into()),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        other => bail!("unexpected {other:?}"),
    }
}

/// The technician asks in the background; the handle yields the outcome.
fn ask(
    tech: &Arc<TechClient>,
    agent: &str,
    ticket: u64,
    scopes: &[Scope],
    wait_secs: u64,
) -> tokio::task::JoinHandle<Result<SessionOutcome>> {
    let (tech, req) = (
        Arc::clone(tech),
        TechRequest::RequestSession {
            agent: agent.into(),
            ticket,
            scopes: scopes.to_vec(),
            duration_secs: 1800,
            wait_secs,
        },
    );
    tokio::spawn(async move {
        match tech.request(&req).await? {
            TechReply::Session(r) => Ok(r.outcome),
            other => bail!("unexpected {other:?}"),
        }
    })
}

fn write_utmp(path: &Path) -> Result<()> {
    let pid = i32::try_from(std::process::id())?;
    let record = deskside_agent::os::user_process_record(pid, "tty2", AT_THE_MACHINE, "", 1);
    std::fs::write(path, record)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_allows_denies_or_ignores_a_request_from_a_desktop_notification() -> Result<()> {
    // The socket's directory is 0755 like /run/deskside-agent; the helper is copied there
    // so another uid can run it whatever the checkout's permissions.
    let shared = tempfile::Builder::new()
        .prefix("deskside-desktop")
        .tempdir()?;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755))?;
    let exe = shared.path().join("deskside-desktop");
    std::fs::copy(env!("CARGO_BIN_EXE_deskside-desktop"), &exe)?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    let socket = shared.path().join("run").join("control.sock");
    let utmp = shared.path().join("utmp");
    write_utmp(&utmp)?;
    let user: Option<User> = if is_root() {
        Some(ensure_user(AT_THE_MACHINE)?)
    } else {
        eprintln!(
            "note: not root, so the helper runs as this test's own user (the agent's), not as a second uid"
        );
        None
    };

    let mut bus = Bus::start(shared.path())?;
    let mock = MockNotifications::start(&bus).await?;
    let mut cluster = Cluster::start().await?;
    let agent = cluster
        .agent_for_local_users("desk", DEFAULT_POLICY, &socket, &utmp)
        .await?;
    let (_p, tech) = cluster.technician("ann", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;
    let tech = Arc::new(tech);

    let mut cmd = Command::new(&exe);
    cmd.arg("--socket")
        .arg(&socket)
        .env_clear()
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info")
        .env("HOME", shared.path())
        .stdin(Stdio::null());
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut helper = Guard(cmd.spawn().context("starting deskside-desktop")?);

    // 1. Allow: the prompt says who, which ticket, what in plain words, for how long.
    let asked_at = Instant::now();
    let asking = ask(
        &tech,
        &agent.id,
        ticket,
        &[Scope::Diagnostics, Scope::ScriptsL1],
        120,
    );
    let (prompt, shown) = mock.wait_notify(1).await?;
    eprintln!(
        "request -> notification: {:?} (includes the technician's round trip)",
        asked_at.elapsed()
    );
    assert_eq!(shown.summary, "ann asks to help on this computer");
    for words in [
        "ann (help desk, level 1)",
        &format!("ticket #{ticket} \u{201c}Printer jams\u{201d}"),
        "see this computer's system information",
        "run approved fixes of level 1",
        "for 30 minutes",
        "no answer means no",
    ] {
        assert!(
            shown.body.contains(words),
            "{words:?} not in {:?}",
            shown.body
        );
    }
    assert_eq!(
        shown.actions,
        ["deny", "Deny", "allow", "Allow", "details", "Details"]
    );
    mock.click(prompt, "allow").await?;
    let got = asking.await??;
    assert!(matches!(got, SessionOutcome::Approved(_)), "{got:?}");
    mock.wait_closed(prompt).await?;

    // The running session is shown, and ending it from there ends it.
    let (running, shown) = mock.wait_notify(2).await?;
    assert_eq!(shown.summary, "ann is helping on this computer");
    assert!(
        shown.body.contains(&format!("ticket #{ticket}")),
        "{:?}",
        shown.body
    );
    assert_eq!(shown.actions, ["end", "End session", "details", "Details"]);
    mock.click(running, "end").await?;
    mock.wait_closed(running).await?;

    // Who answered and who ended it: the desktop user, in the audit log.
    let (entries, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    let who = match user {
        Some(u) => format!("{AT_THE_MACHINE} (uid {}, local session tty2)", u.uid),
        None => "the agent's own user".to_owned(),
    };
    for (outcome, words) in [("answered", "approved by "), ("ended", "ended by ")] {
        assert!(
            entries.iter().any(|e| e.outcome == outcome
                && e.ticket == ticket
                && e.detail.contains(words)
                && e.detail.contains(&who)),
            "no {outcome} entry naming {who}: {entries:#?}"
        );
    }

    // 2. Deny.
    let asking = ask(&tech, &agent.id, ticket, &[Scope::Files], 120);
    let (prompt, shown) = mock.wait_notify(3).await?;
    assert!(
        shown.body.contains("copy files from this computer"),
        "{:?}",
        shown.body
    );
    mock.click(prompt, "deny").await?;
    let got = asking.await??;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("declined")),
        "{got:?}"
    );

    // 3. No answer: the technician hears so, and the prompt goes away.
    let asking = ask(&tech, &agent.id, ticket, &[Scope::Diagnostics], 2);
    let (prompt, _) = mock.wait_notify(4).await?;
    let got = asking.await??;
    assert!(
        matches!(got, SessionOutcome::NoAnswer { waited_secs: 2 }),
        "{got:?}"
    );
    mock.wait_closed(prompt).await?;

    // 4. The agent restarts (here: a new one on the same socket); the helper follows.
    agent.stop().await;
    let agent = cluster
        .agent_for_local_users("desk-again", DEFAULT_POLICY, &socket, &utmp)
        .await?;
    wait_online(&tech, &agent.id).await?;
    let again = new_ticket(&tech, &agent.id).await?;
    let asking = ask(&tech, &agent.id, again, &[Scope::Diagnostics], 120);
    let (prompt, shown) = mock.wait_notify(5).await?;
    assert!(
        shown.body.contains(&format!("ticket #{again}")),
        "{:?}",
        shown.body
    );
    mock.click(prompt, "deny").await?;
    assert!(matches!(asking.await??, SessionOutcome::Refused { .. }));

    // 5. The desktop session ends: the helper leaves with it, cleanly.
    bus.stop();
    let bound = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = helper.0.try_wait()? {
            break status;
        }
        if Instant::now() > bound {
            bail!("the helper outlived its desktop session's bus by 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
