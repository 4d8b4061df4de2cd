//! Consented sessions end to end: a real controller, real agents with the default
//! `prompt` policy, the user answering through the agent's control socket.

use std::time::Duration;

use anyhow::{Result, bail};
use deskside_agent::control::{ControlClient, ControlReply, ControlRequest};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_agent::session::SupportCode;
use deskside_controller::client::{ClientError, TechClient};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{ErrorCode, TechReply, TechRequest};
use deskside_tests::{Cluster, control, pending_request, wait_online};

mod codes;
mod user_controls;
mod watch;

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

fn outcome(reply: Result<TechReply, ClientError>) -> Result<SessionOutcome> {
    match reply? {
        TechReply::Session(r) => Ok(r.outcome),
        other => bail!("unexpected {other:?}"),
    }
}

fn code_of(reply: Result<TechReply, ClientError>) -> Option<ErrorCode> {
    reply.err().and_then(|e| e.refused().map(|r| r.code))
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

async fn diag(tech: &TechClient, agent: &str, ticket: u64) -> Result<TechReply, ClientError> {
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
