//! Consented sessions end to end: a real controller, real agents with the default
//! `prompt` policy, the user answering through the agent's control socket.

use std::time::Duration;

use anyhow::{Result, bail};
use deskside_agent::control::{ControlClient, ControlReply, ControlRequest};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_agent::session::SupportCode;
use deskside_controller::client::{Refused, TechClient};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{ErrorCode, TechReply, TechRequest};
use deskside_tests::{Cluster, control, pending_request, wait_online};

async fn ticket(tech: &TechClient, agent: &str) -> Result<u64> {
    match tech
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "printer jams".into(),
            agent: Some(agent.into()),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        other => bail!("unexpected {other:?}"),
    }
}

fn ask(
    agent: &str,
    ticket: u64,
    scopes: &[Scope],
    duration_secs: u64,
    wait_secs: u64,
) -> TechRequest {
    TechRequest::RequestSession {
        agent: agent.into(),
        ticket,
        scopes: scopes.to_vec(),
        duration_secs,
        wait_secs,
    }
}

fn outcome(reply: Result<TechReply>) -> Result<SessionOutcome> {
    match reply? {
        TechReply::Session(r) => Ok(r.outcome),
        other => bail!("unexpected {other:?}"),
    }
}

fn code_of(reply: Result<TechReply>) -> Option<ErrorCode> {
    reply
        .err()
        .and_then(|e| e.downcast::<Refused>().ok())
        .map(|r| r.0.code)
}

/// The user starts a session for diagnostics, 10 minutes, and gets a code to read out.
async fn offer_code(user: &mut ControlClient) -> Result<SupportCode> {
    match user
        .call(&ControlRequest::Support {
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
        })
        .await?
    {
        ControlReply::Code(code) => Ok(code),
        other => bail!("no code: {other:?}"),
    }
}

async fn diag(tech: &TechClient, agent: &str, ticket: u64) -> Result<TechReply> {
    tech.request(&TechRequest::Diagnostics {
        agent: agent.into(),
        ticket,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_deny_no_answer_and_expiry_are_distinct() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("laptop", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let mut user = control(&agent).await?;

    // Without a session, the prompt policy refuses: no session.
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::NoSession)
    );

    // Approve: the user sees who, which ticket and what; diagnostics then work.
    let (tech, req) = (
        std::sync::Arc::new(tech),
        ask(&agent.id, t, &[Scope::Diagnostics], 3, 30),
    );
    let pending = {
        let tech = tech.clone();
        tokio::spawn(async move { tech.request(&req).await })
    };
    let id = pending_request(&mut user).await?;
    let ControlReply::Status(status) = user.call(&ControlRequest::Status).await? else {
        bail!("status")
    };
    let shown = deskside_agent::consent::render(&status);
    assert!(
        shown.contains("alice (l1)")
            && shown.contains(&format!("ticket #{t}"))
            && shown.contains("printer jams")
            && shown.contains("diagnostics"),
        "{shown}"
    );
    user.call(&ControlRequest::Approve { id }).await?;
    let approved = outcome(pending.await?)?;
    let SessionOutcome::Approved(grant) = approved else {
        bail!("expected approval, got {approved:?}")
    };
    assert_eq!(grant.origin, GrantOrigin::UserApproved);
    assert!(matches!(
        diag(&tech, &agent.id, t).await?,
        TechReply::Diagnostics(_)
    ));

    // Expiry: the 3 s grant runs out, and the refusal says so.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::SessionExpired)
    );

    // Deny.
    let req = ask(&agent.id, t, &[Scope::Diagnostics], 60, 30);
    let pending = {
        let tech = tech.clone();
        tokio::spawn(async move { tech.request(&req).await })
    };
    let id = pending_request(&mut user).await?;
    user.call(&ControlRequest::Deny { id }).await?;
    assert!(
        matches!(outcome(pending.await?)?, SessionOutcome::Refused { reason } if reason.contains("declined"))
    );

    // No answer in time.
    let got = outcome(
        tech.request(&ask(&agent.id, t, &[Scope::Diagnostics], 60, 1))
            .await,
    )?;
    assert_eq!(got, SessionOutcome::NoAnswer { waited_secs: 1 });

    // The ticket timeline and the agent's audit log both tell the story.
    let TechReply::Ticket(view) = tech.request(&TechRequest::ShowTicket { number: t }).await?
    else {
        bail!("ticket")
    };
    let text: Vec<String> = view
        .timeline
        .iter()
        .map(|e| format!("{} {}", e.kind, e.detail))
        .collect();
    let text = text.join("\n");
    for needle in ["approved", "refused", "not answered", "snapshot", "expired"] {
        assert!(text.contains(needle), "timeline lacks {needle}:\n{text}");
    }
    // Each decision is also an evidence item the timeline points at.
    let records: Vec<_> = view
        .evidence
        .iter()
        .filter(|e| e.kind == "session")
        .collect();
    assert_eq!(
        records.len(),
        3,
        "approved, declined and unanswered each leave a session record"
    );
    for r in records {
        let body = std::fs::read_to_string(&r.location)?;
        assert!(body.contains("\"technician\": \"alice\""), "{body}");
        assert!(
            view.timeline
                .iter()
                .any(|e| e.evidence_sha256.as_deref() == Some(r.sha256.as_str()))
        );
    }
    let (audit, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    let outcomes: Vec<&str> = audit.iter().map(|e| e.outcome.as_str()).collect();
    for o in ["approved", "served", "refused", "no_answer"] {
        assert!(outcomes.contains(&o), "agent audit lacks {o}: {outcomes:?}");
    }
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_started_session_by_code_and_wrong_or_reused_codes() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let mut user = control(&agent).await?;
    let code = offer_code(&mut user).await?;
    match tech
        .request(&TechRequest::JoinSession {
            code: "000-000".into(),
            ticket: t,
        })
        .await
    {
        Err(e) if e.to_string().contains("no connected machine offers") => {}
        other => bail!("a wrong code must be refused, got {other:?}"),
    }
    // The code reaches the controller as a notice; wait for it to be joinable. (Each try
    // before it arrives counts as a wrong code; past the free ones the throttle makes the
    // next try wait, and this loop waits with it.)
    let mut joined = None;
    for _ in 0..100 {
        match tech
            .request(&TechRequest::JoinSession {
                code: code.code.replace('-', " "),
                ticket: t,
            })
            .await
        {
            Ok(reply) => {
                joined = Some(reply);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let got = outcome(
        joined
            .ok_or_else(|| anyhow::anyhow!("never joined"))
            .map(Ok)?,
    )?;
    let SessionOutcome::Approved(grant) = got else {
        bail!("expected approval, got {got:?}")
    };
    assert_eq!(grant.origin, GrantOrigin::UserCode);
    assert_eq!(grant.scopes, vec![Scope::Diagnostics]);
    assert!(matches!(
        diag(&tech, &agent.id, t).await?,
        TechReply::Diagnostics(_)
    ));

    // Reused: the agent refuses; codes are single-use.
    let again = tech
        .request(&TechRequest::JoinSession {
            code: code.code.clone(),
            ticket: t,
        })
        .await;
    let msg = format!(
        "{:#}",
        again.err().unwrap_or_else(|| anyhow::anyhow!("no error"))
    );
    assert!(msg.contains("already used"), "{msg}");

    // The user ends it; the technician is refused from then on and the ticket says so.
    let ControlReply::Done { message } = user.call(&ControlRequest::End).await? else {
        bail!("end")
    };
    assert!(message.contains("ended"), "{message}");
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::NoSession)
    );
    let mut ended = false;
    for _ in 0..100 {
        let TechReply::Ticket(view) = tech.request(&TechRequest::ShowTicket { number: t }).await?
        else {
            bail!("ticket")
        };
        if view
            .timeline
            .iter()
            .any(|e| e.kind == "session_ended" && e.detail.contains("(user)"))
        {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the user's end never reached the ticket timeline");
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_everything_until_enable_and_policy_deny_cannot_be_overridden() -> Result<()>
{
    let mut cluster = Cluster::start().await?;
    let managed = cluster
        .agent(
            "kiosk",
            "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"deny\"\n",
        )
        .await?;
    let (_p, tech) = cluster.technician("bob", Tier::L2).await?;
    wait_online(&tech, &managed.id).await?;
    let t = ticket(&tech, &managed.id).await?;

    // Policy allow: a session is granted without a prompt; deny is final for anyone.
    let got = outcome(
        tech.request(&ask(&managed.id, t, &[Scope::Diagnostics], 60, 5))
            .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Approved(ref g) if g.origin == GrantOrigin::Policy),
        "{got:?}"
    );
    let got = outcome(
        tech.request(&ask(
            &managed.id,
            t,
            &[Scope::Diagnostics, Scope::ScriptsL1],
            60,
            5,
        ))
        .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("denies scripts:l1")),
        "{got:?}"
    );

    let mut user = control(&managed).await?;
    user.call(&ControlRequest::Disable).await?;
    assert_eq!(
        code_of(diag(&tech, &managed.id, t).await),
        Some(ErrorCode::AgentDisabled)
    );
    let got = outcome(
        tech.request(&ask(&managed.id, t, &[Scope::Diagnostics], 60, 5))
            .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("switched Deskside off")),
        "{got:?}"
    );
    user.call(&ControlRequest::Enable).await?;
    assert!(matches!(
        diag(&tech, &managed.id, t).await?,
        TechReply::Diagnostics(_)
    ));

    let (audit, _) = deskside_agent::audit::read(&managed.state.audit_log())?;
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "refused" && e.detail.contains("switched Deskside off"))
    );
    managed.stop().await;
    cluster.stop().await;
    Ok(())
}

/// The user's screen: `deskside-agent support` (the real binary) shows a code, sees the
/// technician join, and ends the session from the keyboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_screen_shows_a_code_and_ends_the_session_on_a_key() -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("home-pc", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    control(&agent).await?; // the service's socket is up

    let mut screen = Command::new(deskside_tests::bin("deskside-agent")?)
        .arg("--state")
        .arg(agent.state.root())
        .args(["support", "--scopes", "diagnostics", "--for", "10m"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut keys = screen
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdin"))?;
    let stdout = screen
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    async fn until(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        needle: &str,
    ) -> Result<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(_)) => {}
                _ => bail!("the support screen never showed {needle:?}"),
            }
        }
    }
    let line = until(&mut lines, "Your support code is").await?;
    let code: String = line
        .split_whitespace()
        .find(|w| w.len() == 7 && w.contains('-'))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 7, "{line}");

    let mut joined = None;
    for _ in 0..100 {
        if let Ok(reply) = tech
            .request(&TechRequest::JoinSession {
                code: code.clone(),
                ticket: t,
            })
            .await
        {
            joined = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(joined, Some(TechReply::Session(_))), "{joined:?}");
    until(&mut lines, "Active session").await?;
    until(&mut lines, "hotline (l1)").await.ok();

    keys.write_all(b"e\n")?;
    until(&mut lines, "ended").await?;
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::NoSession)
    );
    keys.write_all(b"q\n")?;
    let status = tokio::task::spawn_blocking(move || screen.wait()).await??;
    assert!(status.success());
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_whose_sender_cannot_be_checked_is_deferred_not_taken() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let tech = &tech;
    let join = move |code: String| async move {
        tech.request(&TechRequest::JoinSession { code, ticket: t })
            .await
    };

    // The column every delivery's revocation check reads is gone. The user's support
    // code reaches the controller as a notice; it must not be taken while the controller
    // cannot tell whether this machine was revoked.
    cluster.sql("ALTER TABLE agents RENAME COLUMN revoked_at TO revoked_at_gone")?;
    let mut user = control(&agent).await?;
    let code = offer_code(&mut user).await?;
    // Each refused try counts as a wrong code: stay within the free ones, so that every
    // try is looked up rather than held back by the throttle.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            code_of(join(code.code.clone()).await),
            Some(ErrorCode::NotFound),
            "a code was offered by a machine whose revocation could not be checked"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    // Once the store is whole again, the agent's next delivery of the same notice is
    // taken and the code works.
    cluster.sql("ALTER TABLE agents RENAME COLUMN revoked_at_gone TO revoked_at")?;
    let mut joined = None;
    for _ in 0..300 {
        match join(code.code.clone()).await {
            Ok(reply) => {
                joined = Some(reply);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let Some(reply) = joined else {
        bail!("the deferred support code never arrived");
    };
    assert!(
        matches!(outcome(Ok(reply))?, SessionOutcome::Approved(_)),
        "the user's own code must open the session"
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
