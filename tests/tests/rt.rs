//! The Request Tracker adapter against a real RT 5 on 127.0.0.1 (no mock): attachments
//! come back byte-identical, the ticket lands in the tier's queue, a second sync
//! comments on the same ticket, a move RT silently ignores is caught, and the outbox
//! keeps a sync that failed until RT answers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use deskside_controller::adapters::rt::{RtTicketSystem, parse_ref, ticket_marker};
use deskside_controller::adapters::{AdapterError, SyncJob, TicketSystem};
use deskside_controller::clock::now_secs;
use deskside_controller::outbox::{self, RunSummary, SyncPayload};
use deskside_controller::store::{NewTicket, Store};
use deskside_proto::msg::identity::Tier;
use deskside_tests::rt::{RtServer, free_port, next_sync_id, queue_name, test_origin};
use deskside_tests::sample_bundle::{sample_ticket, write_sample_bundle};
use serde_json::json;

fn job(
    ticket: deskside_proto::msg::tech::TicketSummary,
    tier: Tier,
    dir: &std::path::Path,
) -> SyncJob {
    SyncJob {
        ticket,
        tier,
        note: "spooler crashes after every print job; needs desktop engineering".into(),
        bundle_dir: dir.to_owned(),
        sync_id: next_sync_id(),
    }
}

/// Checks that the comment's attachments are exactly the bundle's files, byte for byte.
fn assert_attachments_match(
    rt: &RtServer,
    id: u64,
    files: &[(String, Vec<u8>)],
    comments: usize,
) -> Result<()> {
    let attachments = rt.attachments(id)?;
    let transactions: BTreeSet<&str> = attachments
        .iter()
        .map(|a| a.transaction_id.as_str())
        .collect();
    assert_eq!(
        transactions.len(),
        comments,
        "each sync adds one comment carrying all files"
    );
    let mut by_name: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for a in &attachments {
        assert_eq!(a.content_type, "application/octet-stream", "{}", a.filename);
        by_name
            .entry(a.filename.as_str())
            .or_default()
            .push(&a.content);
    }
    let expected: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let got: BTreeSet<&str> = by_name.keys().copied().collect();
    assert_eq!(got, expected, "attachment names");
    for (name, bytes) in files {
        let copies = &by_name[name.as_str()];
        assert_eq!(copies.len(), comments, "{name}");
        for copy in copies {
            assert!(
                *copy == bytes.as_slice(),
                "{name}: RT returned {} bytes that differ from the {} bytes sent",
                copy.len(),
                bytes.len()
            );
        }
    }
    Ok(())
}

#[test]
fn rt_sync_creates_ticket_with_byte_exact_attachments_in_tier_queue() -> Result<()> {
    let started = Instant::now();
    let rt = RtServer::shared()?;
    let scratch = tempfile::tempdir()?;
    let ticket = sample_ticket(41, "Printer spooler crashes");
    let sample = write_sample_bundle(scratch.path(), &ticket)?;
    let system = RtTicketSystem::new(rt.config(), &test_origin());

    let outcome = system.sync(&job(ticket, Tier::L2, &sample.dir))?;
    let id = parse_ref(&outcome.external_ref)
        .ok_or_else(|| anyhow!("not an RT ref: {}", outcome.external_ref))?;

    let rt_ticket = rt
        .client()
        .ticket(id)?
        .ok_or_else(|| anyhow!("RT has no ticket {id}"))?;
    assert_eq!(rt_ticket.queue_id, rt.queue_id(queue_name(Tier::L2))?);
    assert_eq!(
        rt_ticket.subject,
        format!(
            "[Deskside #41] Printer spooler crashes {}",
            ticket_marker(system.origin(), 41)
        )
    );
    assert_attachments_match(&rt, id, &sample.files, 1)?;
    // The comment's body is report.md.
    let bodies = rt.bodies(id)?;
    assert!(
        bodies.iter().any(|b| b.trim() == sample.report_md.trim()),
        "no message body equals report.md: {bodies:?}"
    );
    eprintln!(
        "rt_sync_creates_ticket…: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn rt_sync_again_comments_on_the_linked_ticket_and_moves_it() -> Result<()> {
    let started = Instant::now();
    let rt = RtServer::shared()?;
    let scratch = tempfile::tempdir()?;
    let mut ticket = sample_ticket(42, "VPN drops every hour");
    let sample = write_sample_bundle(scratch.path(), &ticket)?;
    let system = RtTicketSystem::new(rt.config(), &test_origin());

    let first = system.sync(&job(ticket.clone(), Tier::L2, &sample.dir))?;
    ticket.external_ref = Some(first.external_ref.clone());
    let second = system.sync(&job(ticket, Tier::L3, &sample.dir))?;
    assert_eq!(second.external_ref, first.external_ref, "same RT ticket");

    let id = parse_ref(&second.external_ref).ok_or_else(|| anyhow!("ref"))?;
    let rt_ticket = rt.client().ticket(id)?.ok_or_else(|| anyhow!("ticket"))?;
    assert_eq!(rt_ticket.queue_id, rt.queue_id(queue_name(Tier::L3))?);
    assert_attachments_match(&rt, id, &sample.files, 2)?;
    eprintln!("rt_sync_again…: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// RT answers 200 to moving a ticket into a disabled queue and leaves it where it was;
/// only reading the ticket back shows that.
#[test]
fn rt_move_that_rt_ignores_is_caught_by_reading_back() -> Result<()> {
    let started = Instant::now();
    let rt = RtServer::shared()?;
    let disabled = "Deskside Disabled";
    let queue_id = rt.ensure_queue(disabled)?;
    let reply = rt.client().send_json(
        "PUT",
        &format!("/queue/{queue_id}"),
        &json!({ "Disabled": "1" }),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.excerpt());

    let scratch = tempfile::tempdir()?;
    let mut ticket = sample_ticket(43, "Outlook profile corrupt");
    let sample = write_sample_bundle(scratch.path(), &ticket)?;
    let origin = test_origin();
    let first = RtTicketSystem::new(rt.config(), &origin).sync(&job(
        ticket.clone(),
        Tier::L2,
        &sample.dir,
    ))?;
    ticket.external_ref = Some(first.external_ref.clone());

    let mut config = rt.config();
    config.queues.l3 = disabled.to_owned();
    let err = match RtTicketSystem::new(config, &origin).sync(&job(ticket, Tier::L3, &sample.dir)) {
        Ok(o) => bail!("a move into a disabled queue was reported as done: {o:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, AdapterError::Verify(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("still in queue"), "{msg}");
    assert!(msg.contains(disabled), "{msg}");

    let id = parse_ref(&first.external_ref).ok_or_else(|| anyhow!("ref"))?;
    let rt_ticket = rt.client().ticket(id)?.ok_or_else(|| anyhow!("ticket"))?;
    assert_eq!(rt_ticket.queue_id, rt.queue_id(queue_name(Tier::L2))?);
    eprintln!(
        "rt_move_that_rt_ignores…: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_keeps_a_failed_rt_sync_and_delivers_it_when_rt_answers() -> Result<()> {
    let started = Instant::now();
    let rt = tokio::task::spawn_blocking(RtServer::shared).await??;
    let scratch = tempfile::tempdir()?;
    let store = Store::open(&scratch.path().join("deskside.db"))?;
    let number = store
        .run(|db| {
            db.create_ticket(&NewTicket {
                title: "Laptop will not dock",
                requester: "Pat Doe",
                priority: "normal",
                agent: None,
                by: "alice",
                tier: Tier::L1,
            })
        })
        .await?;
    let bundle_dir = scratch.path().join("bundle");
    let ticket = store.run(move |db| db.ticket(number)).await?;
    let sample = write_sample_bundle(&bundle_dir, &ticket)?;

    outbox::enqueue_sync(
        &store,
        number,
        &SyncPayload {
            tier: Tier::L2,
            note: "dock firmware?".into(),
            bundle_dir: sample.dir.clone(),
        },
    )
    .await?;

    // RT unreachable: the attempt fails, the job stays.
    let closed = format!("http://127.0.0.1:{}", free_port()?);
    let origin = test_origin();
    let down: Arc<dyn TicketSystem> = Arc::new(RtTicketSystem::new(rt.config_at(&closed), &origin));
    assert_eq!(
        outbox::run_due_now(&store, &down).await?,
        RunSummary {
            synced: 0,
            failed: 1
        }
    );
    let ticket = store.run(move |db| db.ticket(number)).await?;
    let state = ticket.sync_state.clone().unwrap_or_default();
    assert!(state.starts_with("retrying (attempt 1)"), "{state}");
    assert!(state.contains("cannot reach Request Tracker"), "{state}");
    assert_eq!(ticket.external_ref, None);
    let jobs = store.run(move |db| db.outbox_jobs(Some(number))).await?;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 1);
    assert_eq!(jobs[0].done_at, None);
    assert!(jobs[0].next_attempt_at > now_secs(), "backing off");

    // RT back: make the job due instead of waiting out the backoff, and run it.
    store
        .run(move |db| db.outbox_retry_now(Some(number), now_secs()))
        .await?;
    let up: Arc<dyn TicketSystem> = Arc::new(RtTicketSystem::new(rt.config(), &origin));
    assert_eq!(
        outbox::run_due_now(&store, &up).await?,
        RunSummary {
            synced: 1,
            failed: 0
        }
    );
    let ticket = store.run(move |db| db.ticket(number)).await?;
    let external_ref = ticket.external_ref.clone().context("no external_ref")?;
    let id = parse_ref(&external_ref).ok_or_else(|| anyhow!("{external_ref}"))?;
    assert_eq!(external_ref, format!("rt:{id}"));
    let state = ticket.sync_state.unwrap_or_default();
    assert!(state.starts_with(&format!("synced to rt:{id}")), "{state}");
    let timeline = store.run(move |db| db.timeline(number)).await?;
    let synced = timeline
        .iter()
        .find(|e| e.kind == "synced")
        .context("no synced timeline entry")?;
    assert!(synced.detail.contains(&external_ref), "{}", synced.detail);
    let jobs = store.run(move |db| db.outbox_jobs(Some(number))).await?;
    assert!(jobs[0].done_at.is_some());

    let files = sample.files.clone();
    let rt2 = rt.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let rt_ticket = rt2.client().ticket(id)?.context("RT ticket")?;
        assert_eq!(rt_ticket.queue_id, rt2.queue_id(queue_name(Tier::L2))?);
        assert_attachments_match(&rt2, id, &files, 1)
    })
    .await??;
    // Nothing left to do.
    assert_eq!(
        outbox::run_due_now(&store, &up).await?,
        RunSummary::default()
    );
    drop(tokio::task::spawn_blocking(move || drop(rt)).await);
    eprintln!(
        "outbox_keeps_a_failed_rt_sync…: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
