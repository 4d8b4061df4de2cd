//! The desktop helper's view of the control socket: a watch that wakes when a request
//! arrives and carries everything the prompt shows, answers that name who gave them, and
//! the session while it runs.

use deskside_agent::control::MAX_WATCH_SECS;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_wakes_with_the_request_and_the_answer_names_the_user() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("ann", Tier::L2).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let mut user = control(&agent).await?;
    let first = user.watch(0, MAX_WATCH_SECS).await?;
    assert!(first.status.pending.is_empty() && first.status.active.is_none());

    let tech = std::sync::Arc::new(tech);
    let asking = {
        let (tech, id) = (tech.clone(), agent.id.clone());
        tokio::spawn(async move {
            tech.request(&ask(&id, t, &[Scope::Diagnostics, Scope::Files], 1200, 90))
                .await
        })
    };
    // One watch, not a poll: it returns when the request arrives.
    let mut seen = first.generation;
    let pending = loop {
        let w = user.watch(seen, MAX_WATCH_SECS).await?;
        seen = w.generation;
        if let Some(p) = w.status.pending.first() {
            break p.clone();
        }
    };
    assert_eq!(pending.ask.technician, "ann");
    assert_eq!(pending.ask.tier, Tier::L2);
    assert_eq!(pending.ask.ticket, t);
    assert_eq!(pending.ask.ticket_title, "printer jams");
    assert_eq!(pending.ask.scopes, vec![Scope::Diagnostics, Scope::Files]);
    assert_eq!(pending.ask.duration_secs, 1200);
    let left = pending
        .answer_by_secs
        .saturating_sub(deskside_agent::now_secs());
    assert!((1..=90).contains(&left), "answer within {left} s");

    user.call(&ControlRequest::Approve { id: pending.id })
        .await?;
    let got = outcome(asking.await?)?;
    assert!(
        matches!(got, SessionOutcome::Approved(ref g) if g.origin == GrantOrigin::UserApproved),
        "{got:?}"
    );
    // The session as the helper shows it: who, ticket and title, until when.
    let active = loop {
        let w = user.watch(seen, MAX_WATCH_SECS).await?;
        seen = w.generation;
        if w.status.active.is_some() {
            break w;
        }
    };
    assert_eq!(active.active_ticket_title, "printer jams");
    assert!(active.status.pending.is_empty());
    assert_eq!(
        active
            .status
            .active
            .as_ref()
            .map(|g| (g.technician.as_str(), g.ticket)),
        Some(("ann", t))
    );

    // Ending it from the helper wakes the watch with no session.
    user.call(&ControlRequest::End).await?;
    let ended = user.watch(seen, MAX_WATCH_SECS).await?;
    assert!(ended.status.active.is_none(), "{ended:?}");

    // The audit log names who answered and who ended it (this test's own user here).
    let (entries, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    for (outcome, words) in [("answered", "approved by "), ("ended", "ended by ")] {
        assert!(
            entries
                .iter()
                .any(|e| e.outcome == outcome && e.ticket == t && e.detail.contains(words)),
            "no {outcome} entry with {words:?}: {entries:#?}"
        );
    }
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
