//! Escalation reaches a real Request Tracker: the controller queues the sync in its
//! outbox, the worker pushes the bundle, and RT holds every evidence file byte-exact in
//! the next tier's queue.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::adapters::config::{Backend, TicketingConfig};
use deskside_controller::bundle;
use deskside_controller::server::Options;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::rt::{RtServer, free_port, queue_name};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, wait_online};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_syncs_the_bundle_to_request_tracker() -> Result<()> {
    let rt = tokio::task::spawn_blocking(RtServer::shared).await??;
    let options = Options {
        ticketing: TicketingConfig {
            backend: Backend::Rt(rt.config()),
        },
        ..Options::default()
    };
    let mut cluster = Cluster::start_with(options).await?;
    let agent = cluster.agent("desk-7", ALLOW_DIAGNOSTICS).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::NewTicket {
            title: "Outlook crashes on start".into(),
            agent: Some(agent.id.clone()),
            requester: "sam".into(),
            priority: "high".into(),
        })
        .await?
    else {
        bail!("ticket");
    };
    let t = v.ticket.number;
    let reply = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: t,
        })
        .await?;
    assert!(
        matches!(reply, TechReply::Diagnostics(_)),
        "no snapshot to push: {reply:?}"
    );

    let escalate = TechRequest::Escalate {
        number: t,
        to: Tier::L2,
        note: "crash dump attached".into(),
    };
    let summary = deskside_controller::cli::export::receive_bundle(&tech, &escalate, None).await?;
    assert!(
        summary
            .sync
            .as_deref()
            .is_some_and(|s| s.starts_with("queued")),
        "{summary:?}"
    );

    // The outbox worker polls every few seconds.
    let started = Instant::now();
    let external = loop {
        let TechReply::Ticket(v) = tech.request(&TechRequest::ShowTicket { number: t }).await?
        else {
            bail!("show")
        };
        if let (Some(r), Some(state)) = (&v.ticket.external_ref, &v.ticket.sync_state)
            && state.starts_with("synced")
        {
            assert!(v.timeline.iter().any(|e| e.kind == "synced"));
            break r.clone();
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("not synced after 90 s: {:?}", v.ticket.sync_state);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id: u64 = external
        .strip_prefix("rt:")
        .context("an rt: reference")?
        .parse()?;

    let (rt2, dir) = (rt.clone(), summary.location.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let ticket = rt2
            .client()
            .ticket(id)?
            .context("RT does not show the ticket")?;
        assert_eq!(
            ticket.queue_id,
            rt2.queue_id(queue_name(Tier::L2))?,
            "not in the L2 queue"
        );
        let attachments = rt2.attachments(id)?;
        let dir = std::path::Path::new(&dir);
        // Every file the bundle holds besides the report that became the comment's
        // body: each item, evidence.json and report.html.
        let bundle: bundle::Bundle =
            serde_json::from_slice(&std::fs::read(dir.join(bundle::EVIDENCE_JSON))?)?;
        assert!(!bundle.items.is_empty(), "the bundle has no evidence item");
        let mut expected: Vec<std::path::PathBuf> = bundle
            .items
            .iter()
            .map(|i| dir.join(bundle::ITEMS_DIR).join(&i.sha256))
            .collect();
        expected.push(dir.join(bundle::EVIDENCE_JSON));
        expected.push(dir.join(bundle::REPORT_HTML));
        let on_disk = std::fs::read_dir(dir.join(bundle::ITEMS_DIR))?.count();
        assert_eq!(on_disk, bundle.items.len(), "items/ holds the listed items");
        assert_eq!(
            attachments.len(),
            expected.len(),
            "RT holds exactly the bundle's files: {:?}",
            attachments.iter().map(|a| &a.filename).collect::<Vec<_>>()
        );
        for file in expected {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let sent = std::fs::read(&file)?;
            let got = attachments
                .iter()
                .find(|a| a.filename == name)
                .with_context(|| format!("RT has no attachment {name}"))?;
            assert!(
                got.content == sent,
                "{name}: RT holds {} bytes that differ from the {} bytes in the bundle",
                got.content.len(),
                sent.len()
            );
        }
        Ok(())
    })
    .await??;
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

/// RT down: the escalation's push waits in the outbox; `ticket sync` retries that push
/// rather than queueing a second one (the evidence would arrive twice, out of order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_sync_during_an_outage_retries_the_pending_push() -> Result<()> {
    let rt = tokio::task::spawn_blocking(RtServer::shared).await??;
    let closed = format!("http://127.0.0.1:{}", free_port()?);
    let options = Options {
        ticketing: TicketingConfig {
            backend: Backend::Rt(rt.config_at(&closed)),
        },
        ..Options::default()
    };
    let mut cluster = Cluster::start_with(options).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::NewTicket {
            title: "VPN drops".into(),
            agent: None,
            requester: "sam".into(),
            priority: "normal".into(),
        })
        .await?
    else {
        bail!("ticket");
    };
    let t = v.ticket.number;
    let escalate = TechRequest::Escalate {
        number: t,
        to: Tier::L2,
        note: "tunnel logs attached".into(),
    };
    deskside_controller::cli::export::receive_bundle(&tech, &escalate, None).await?;

    // The worker's first attempt fails against the closed port.
    let started = Instant::now();
    loop {
        let TechReply::Ticket(v) = tech.request(&TechRequest::ShowTicket { number: t }).await?
        else {
            bail!("show")
        };
        let state = v.ticket.sync_state.unwrap_or_default();
        if state.starts_with("retrying (attempt 1)") {
            assert!(state.contains("cannot reach Request Tracker"), "{state}");
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("the push was not attempted within 90 s: {state}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let TechReply::Ticket(v) = tech.request(&TechRequest::Sync { number: t }).await? else {
        bail!("sync")
    };
    let state = v.ticket.sync_state.unwrap_or_default();
    assert!(state.starts_with("retrying now (outbox job "), "{state}");
    assert!(state.contains("1 failed attempt(s)"), "{state}");
    assert!(
        v.timeline
            .iter()
            .any(|e| e.kind == "sync" && e.detail.contains("pending outbox job")),
        "{:?}",
        v.timeline
    );
    let store = cluster.store()?;
    let jobs = store.run(move |db| db.outbox_jobs(Some(t))).await?;
    assert_eq!(jobs.len(), 1, "one push for one escalation: {jobs:?}");
    assert!(jobs.iter().all(|j| j.done_at.is_none()));
    cluster.stop().await;
    Ok(())
}
