//! Request Tracker behind a proxy that holds RT's reply past the adapter's timeout (RT
//! is real; the proxy only delays): a create or a comment RT carried out but never
//! answered is found on the retry, not repeated. One RT ticket, one comment per sync.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use deskside_controller::adapters::http::MAX_RESPONSE_BYTES;
use deskside_controller::adapters::rt::{RtTicketSystem, comment_marker, parse_ref, ticket_marker};
use deskside_controller::adapters::{AdapterError, SyncJob, TicketSystem};
use deskside_proto::msg::identity::Tier;
use deskside_tests::delay_proxy::DelayProxy;
use deskside_tests::rt::{RtServer, next_sync_id, queue_name, test_origin};
use deskside_tests::sample_bundle::{sample_ticket, write_sample_bundle};
use serde_json::Value;

/// The adapter's per-request timeout here: the held replies cost this much each. Long
/// enough that RT's ordinary answers on a busy machine come in time.
const TIMEOUT: Duration = Duration::from_secs(8);

/// How long RT may take to finish a request whose reply the proxy holds (the outbox's
/// first retry is 15 s or more after the failure; this is a ceiling, not a measure).
const SETTLE: Duration = Duration::from_secs(60);

fn job(
    ticket: &deskside_proto::msg::tech::TicketSummary,
    tier: Tier,
    dir: &std::path::Path,
) -> SyncJob {
    SyncJob {
        ticket: ticket.clone(),
        tier,
        note: "held by a slow proxy".into(),
        bundle_dir: dir.to_owned(),
        sync_id: next_sync_id(),
    }
}

fn expect_timeout(
    result: Result<deskside_controller::adapters::SyncOutcome, AdapterError>,
) -> Result<String> {
    let err = match result {
        Ok(o) => bail!("a held request was reported as done: {o:?}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, AdapterError::Timeout { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("within {} s", TIMEOUT.as_secs())),
        "{msg}"
    );
    assert!(!msg.contains("check that it is running"), "{msg}");
    Ok(msg)
}

/// The ids of RT tickets whose subject contains `text`, by a TicketSQL query written
/// here rather than the adapter's own search.
fn tickets_titled(rt: &RtServer, text: &str) -> Result<Vec<String>> {
    let query: String = format!("Subject LIKE '{text}'")
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v = rt.client().get_json(
        &format!("/tickets?query={query}&per_page=100"),
        MAX_RESPONSE_BYTES,
    )?;
    Ok(v.get("items")
        .and_then(Value::as_array)
        .context("search answer without items")?
        .iter()
        .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// Waits until `done` holds: RT finishing a request whose reply was held.
fn settle(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !done()? {
        if started.elapsed() > SETTLE {
            bail!("RT did not finish {what} within {SETTLE:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

#[test]
fn rt_held_create_and_comment_leave_one_ticket_and_one_comment_per_sync() -> Result<()> {
    let started = Instant::now();
    let rt = RtServer::shared()?;
    let proxy = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], rt.port)))?;
    let mut config = rt.config_at(&proxy.url);
    config.timeout = TIMEOUT;
    let origin = test_origin();
    let system = RtTicketSystem::new(config, &origin);
    let scratch = tempfile::tempdir()?;
    let title = format!("Held reply {origin}");
    let mut ticket = sample_ticket(61, &title);
    let sample = write_sample_bundle(scratch.path(), &ticket)?;

    // The create reaches RT, its answer does not reach the adapter.
    proxy.hold("POST /REST/2.0/ticket ", "", 1)?;
    let first = job(&ticket, Tier::L2, &sample.dir);
    expect_timeout(system.sync(&first))?;
    let held = proxy.held()?;
    assert_eq!(held.len(), 1, "{held:?}");
    settle("the held create", || {
        Ok(!tickets_titled(&rt, &title)?.is_empty())
    })?;

    // The outbox retries the same job, still unlinked: it finds that ticket.
    let outcome = system.sync(&first)?;
    let id = parse_ref(&outcome.external_ref).ok_or_else(|| anyhow!("{outcome:?}"))?;
    assert_eq!(
        tickets_titled(&rt, &title)?,
        vec![id.to_string()],
        "one RT ticket"
    );
    let subject = rt.client().ticket(id)?.context("RT ticket")?.subject;
    assert!(subject.contains(&ticket_marker(&origin, 61)), "{subject}");

    // The next sync's comment reaches RT, its answer does not.
    ticket.external_ref = Some(outcome.external_ref.clone());
    proxy.hold("POST /REST/2.0/ticket/", "/comment ", 1)?;
    let second = job(&ticket, Tier::L3, &sample.dir);
    expect_timeout(system.sync(&second))?;
    assert_eq!(proxy.held()?.len(), 2);
    let marker = comment_marker(&origin, 61, second.sync_id);
    settle("the held comment", || {
        Ok(rt.client().has_message_with_subject(id, &marker)?)
    })?;
    let again = system.sync(&second)?;
    assert!(again.detail.contains("already there"), "{again:?}");

    // One comment per sync, each with every file byte for byte; the ticket moved.
    let attachments = rt.attachments(id)?;
    for (name, bytes) in &sample.files {
        let copies: Vec<_> = attachments.iter().filter(|a| &a.filename == name).collect();
        assert_eq!(copies.len(), 2, "{name}: one copy per sync");
        for copy in copies {
            assert!(copy.content == *bytes, "{name} differs in RT");
        }
    }
    let mut transactions: Vec<&str> = attachments
        .iter()
        .map(|a| a.transaction_id.as_str())
        .collect();
    transactions.sort_unstable();
    transactions.dedup();
    assert_eq!(transactions.len(), 2, "two comments for two syncs");
    assert_eq!(tickets_titled(&rt, &title)?.len(), 1, "still one RT ticket");
    let rt_ticket = rt.client().ticket(id)?.context("RT ticket")?;
    assert_eq!(rt_ticket.queue_id, rt.queue_id(queue_name(Tier::L3))?);
    eprintln!("rt_held…: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
