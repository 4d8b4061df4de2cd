//! Requests about agents and tickets a technician may not see: unknown and revoked agents,
//! tickets above their tier, escalated tickets, and every per-ticket request.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_an_unknown_agent_is_not_found() -> Result<()> {
    let scene = Scene::start().await?;
    let e = refusal(
        &scene.tech,
        &TechRequest::Diagnostics {
            agent: "no-such-machine".into(),
            ticket: scene.ticket,
        },
    )
    .await?;
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(
        e.message.contains("no agent with id or hostname"),
        "{}",
        e.message
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_a_revoked_agent_is_forbidden_with_the_reason() -> Result<()> {
    let scene = Scene::start().await?;
    let lost = scene
        .cluster
        .agent("stolen", deskside_tests::ALLOW_DIAGNOSTICS)
        .await?;
    deskside_tests::wait_online(&scene.tech, &lost.id).await?;
    scene
        .cluster
        .add_test_script("hello", "l1", 10, "", "echo hi\n")?;
    deskside_controller::cli::admin::revoke(&scene.cluster.data, Some(&lost.id), None)?;
    let requests = [
        TechRequest::Diagnostics {
            agent: lost.id.clone(),
            ticket: scene.ticket,
        },
        TechRequest::RequestSession {
            agent: lost.id.clone(),
            ticket: scene.ticket,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 5,
        },
        TechRequest::EndSession {
            agent: lost.id.clone(),
            ticket: scene.ticket,
        },
    ];
    for req in &requests {
        let e = refusal(&scene.tech, req).await?;
        assert_eq!(e.code, ErrorCode::Forbidden, "{req:?}");
        assert!(
            e.message.contains(&format!("agent {} is revoked", lost.id)),
            "{req:?}: {}",
            e.message
        );
    }
    let run = TechRequest::RunScript {
        agent: lost.id.clone(),
        ticket: scene.ticket,
        script: "hello".into(),
        params: Default::default(),
    };
    let e = streamed_refusal(&scene, &run).await?;
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("is revoked"), "{}", e.message);
    scene.good_still_served().await?;
    lost.stop().await;
    scene.stop().await;
    Ok(())
}

/// The error ending a streamed request (script run, escalation, export).
async fn streamed_refusal(scene: &Scene, req: &TechRequest) -> Result<ErrorReply> {
    streamed_refusal_by(&scene.tech, req).await
}

async fn streamed_refusal_by(
    client: &deskside_controller::client::TechClient,
    req: &TechRequest,
) -> Result<ErrorReply> {
    match client.stream(req, |_| {}).await {
        Ok(reply) => bail!("expected a refusal of {req:?}, got {reply:?}"),
        Err(deskside_controller::client::ClientError::Refused(r)) => Ok(r.0),
        Err(e) => Err(anyhow::Error::from(e).context("no error reply")),
    }
}

fn is_not_visible(e: &ErrorReply, number: u64, technician: &str) -> bool {
    e.code == ErrorCode::NotFound
        && e.message.starts_with(&format!(
            "no ticket #{number} visible to technician {technician};"
        ))
}

async fn ticket_numbers(client: &deskside_controller::client::TechClient) -> Result<Vec<u64>> {
    match client.request(&TechRequest::ListTickets).await? {
        TechReply::Tickets(list) => Ok(list.iter().map(|t| t.number).collect()),
        other => bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_above_the_technicians_tier_is_refused_like_a_missing_one() -> Result<()> {
    let scene = Scene::start().await?;
    scene
        .cluster
        .add_test_script("hello", "l1", 10, "", "echo hi\n")?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let high = new_ticket(&carol, &scene.good.id).await?;

    let requests = [
        TechRequest::ShowTicket { number: high },
        TechRequest::Diagnostics {
            agent: scene.good.id.clone(),
            ticket: high,
        },
    ];
    for req in &requests {
        let e = refusal(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    let run = TechRequest::RunScript {
        agent: scene.good.id.clone(),
        ticket: high,
        script: "hello".into(),
        params: Default::default(),
    };
    let e = streamed_refusal_by(&bob, &run).await?;
    assert!(is_not_visible(&e, high, "bob"), "{e:?}");
    // A missing ticket gets the very same answer: nothing tells bob the ticket exists.
    let missing = refusal(&bob, &TechRequest::ShowTicket { number: 999 }).await?;
    assert!(is_not_visible(&missing, 999, "bob"), "{missing:?}");

    // Listing: bob sees only the l1 ticket, carol (l3) sees both.
    assert_eq!(ticket_numbers(&bob).await?, vec![scene.ticket]);
    assert_eq!(ticket_numbers(&carol).await?, vec![scene.ticket, high]);
    // bob's refused attempts left no trace on carol's ticket.
    let TechReply::Ticket(view) = carol
        .request(&TechRequest::ShowTicket { number: high })
        .await?
    else {
        bail!("carol cannot see her own ticket");
    };
    assert!(view.timeline.iter().all(|e| e.actor != "bob"));
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_ticket_stays_visible_to_those_who_worked_it_only() -> Result<()> {
    let scene = Scene::start().await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let (_p, dave) = scene.cluster.technician("dave", Tier::L2).await?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let number = scene.ticket;
    assert!(ticket_numbers(&bob).await?.contains(&number));

    // alice (l1, the creator) escalates to l2; dave (l2) escalates to l3.
    let escalate = |to, note: &str| TechRequest::Escalate {
        number,
        to,
        note: note.into(),
    };
    let reply = scene
        .tech
        .stream(&escalate(Tier::L2, "disk keeps filling"), |_| {})
        .await?;
    assert!(matches!(reply, TechReply::Bundle(_)), "{reply:?}");
    let reply = dave
        .stream(&escalate(Tier::L3, "needs a storage specialist"), |_| {})
        .await?;
    assert!(matches!(reply, TechReply::Bundle(_)), "{reply:?}");

    // An unrelated l1 no longer sees it, for show, diagnostics or the list.
    for req in [
        TechRequest::ShowTicket { number },
        TechRequest::Diagnostics {
            agent: scene.good.id.clone(),
            ticket: number,
        },
    ] {
        let e = refusal(&bob, &req).await?;
        assert!(is_not_visible(&e, number, "bob"), "{req:?}: {e:?}");
    }
    assert!(!ticket_numbers(&bob).await?.contains(&number));
    // l3 lists it; the l1 who opened it and the l2 who escalated it keep working it.
    assert!(ticket_numbers(&carol).await?.contains(&number));
    assert!(ticket_numbers(&dave).await?.contains(&number));
    assert!(ticket_numbers(&scene.tech).await?.contains(&number));
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_ticket_request_on_an_invisible_ticket_is_refused() -> Result<()> {
    let scene = Scene::start().await?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let high = new_ticket(&carol, &scene.good.id).await?;
    let agent = scene.good.id.clone();
    let answered = [
        TechRequest::Note {
            number: high,
            text: "peeking".into(),
        },
        TechRequest::Resolve {
            number: high,
            note: "closing someone else's ticket".into(),
        },
        TechRequest::Sync { number: high },
        TechRequest::RequestSession {
            agent: agent.clone(),
            ticket: high,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 5,
        },
        TechRequest::JoinSession {
            code: "123456".into(),
            ticket: high,
        },
        TechRequest::EndSession {
            agent: agent.clone(),
            ticket: high,
        },
    ];
    for req in &answered {
        let e = refusal(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    let streamed = [
        TechRequest::Escalate {
            number: high,
            to: Tier::L3,
            note: "up".into(),
        },
        TechRequest::Export { number: high },
    ];
    for req in &streamed {
        let e = streamed_refusal_by(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    // Nothing happened to the ticket.
    let TechReply::Ticket(view) = carol
        .request(&TechRequest::ShowTicket { number: high })
        .await?
    else {
        bail!("carol cannot see her own ticket");
    };
    assert_eq!(view.ticket.status, "new");
    assert_eq!(view.timeline.len(), 1);
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
