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
use deskside_tests::rt::{RtServer, queue_name};
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
    tech.request(&TechRequest::Diagnostics {
        agent: agent.id.clone(),
        ticket: t,
    })
    .await?;

    let escalate = TechRequest::Escalate {
        number: t,
        to: Tier::L2,
        note: "crash dump attached".into(),
    };
    let summary = deskside_controller::cli::tech::receive_bundle(&tech, &escalate, None).await?;
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
        let mut expected: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join(bundle::ITEMS_DIR))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        expected.push(dir.join(bundle::EVIDENCE_JSON));
        for file in expected {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let sent = std::fs::read(&file)?;
            let got = attachments
                .iter()
                .find(|a| a.filename.ends_with(&name))
                .with_context(|| format!("RT has no attachment {name}"))?;
            assert_eq!(got.content, sent, "{name} is not byte-identical in RT");
        }
        Ok(())
    })
    .await??;
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
