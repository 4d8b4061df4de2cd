//! Evidence bundles: escalate (move the ticket up a tier, then build), export (build
//! only) and sync to the external ticket system. A bundle is built on the controller and
//! streamed to the technician file by file, then its summary.

use std::path::PathBuf;

use deskside_proto::limits::BUNDLE_CHUNK_BYTES;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{BundleSummary, ErrorCode, TechReply, TicketView};

use super::common::{Failure, Principal, ReplySink, Shared, admit, record};
use super::tickets::{check_text, view};
use crate::bundle::{self, BundleAgent, Contents, Escalation};
use crate::clock::now_secs;
use crate::outbox::{SyncPayload, enqueue_sync};

/// Retries the ticket's pending sync now, or, when none is pending, queues a sync of a
/// fresh export to the external system.
pub(crate) async fn sync(
    shared: &Shared,
    tech: &Principal,
    number: u64,
) -> Result<TicketView, Failure> {
    admit(shared, tech, Some(number)).await?;
    if shared.ticketing.is_none() {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "no external ticket system is configured ([ticketing] in the controller's controller.toml)",
        ));
    }
    // A push still pending (RT down, or slow) is retried as it is: a second job would
    // send the evidence twice, and out of order.
    let now = now_secs();
    let pending = shared
        .store
        .run(move |db| {
            let pending: Vec<_> = db
                .outbox_jobs(Some(number))?
                .into_iter()
                .filter(|j| j.done_at.is_none())
                .collect();
            if !pending.is_empty() {
                db.outbox_retry_now(Some(number), now)?;
                let ids: Vec<String> = pending.iter().map(|j| j.id.to_string()).collect();
                let state = format!(
                    "retrying now (outbox job {}, {} failed attempt(s) so far{})",
                    ids.join(", "),
                    pending.iter().map(|j| j.attempts).sum::<u32>(),
                    pending
                        .iter()
                        .rev()
                        .find_map(|j| j.last_error.as_deref())
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                );
                db.set_sync_state(number, None, &state)?;
                return Ok(Some(ids.join(", ")));
            }
            Ok(None)
        })
        .await;
    if let Some(ids) = pending? {
        record(
            shared,
            number,
            &tech.name,
            "sync",
            format!(
                "sync retry requested by {}: the pending outbox job {ids} is due now",
                tech.name
            ),
        )
        .await;
        return view(shared, number).await;
    }
    let (summary, _) = build(shared, tech, number, None).await?;
    let state = queue(
        shared,
        number,
        summary.escalated_to,
        "manual sync",
        &summary.location,
    )
    .await?;
    record(
        shared,
        number,
        &tech.name,
        "sync",
        format!(
            "sync to the external ticket system requested by {}: {state}",
            tech.name
        ),
    )
    .await;
    view(shared, number).await
}

async fn queue(
    shared: &Shared,
    number: u64,
    tier: Option<Tier>,
    note: &str,
    dir: &str,
) -> Result<String, Failure> {
    if shared.ticketing.is_none() {
        return Ok("no external ticket system configured".into());
    }
    let tier = match tier {
        Some(t) => t,
        None => shared.store.run(move |db| db.ticket(number)).await?.tier,
    };
    let payload = SyncPayload {
        tier,
        note: note.to_owned(),
        bundle_dir: PathBuf::from(dir),
    };
    let id = enqueue_sync(&shared.store, number, &payload)
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    let state = format!("queued (outbox job {id})");
    let s2 = state.clone();
    let _ = shared
        .store
        .run(move |db| db.set_sync_state(number, None, &s2))
        .await;
    Ok(state)
}

/// Builds the bundle (escalating first when `escalate` is given) on the controller.
async fn build(
    shared: &Shared,
    tech: &Principal,
    number: u64,
    escalate: Option<(Tier, &str)>,
) -> Result<(BundleSummary, PathBuf), Failure> {
    let mut escalation = None;
    if let Some((to, note)) = escalate {
        check_text(note)?;
        if note.trim().is_empty() {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "an escalation needs a note for the next engineer (--note)",
            ));
        }
        let by = tech.name.clone();
        let n = note.trim().to_owned();
        let (from, entry) = shared
            .store
            .run(move |db| db.escalate(number, to, &n, &by))
            .await?;
        escalation = Some(Escalation {
            from,
            to,
            note: note.trim().to_owned(),
            by: tech.name.clone(),
            at_secs: entry.at_secs,
        });
    }
    let mut v = view(shared, number).await?;
    sign_unsigned_records(shared, &mut v.evidence)?;
    let agent_ids: Vec<String> = {
        let mut ids: Vec<String> = v
            .evidence
            .iter()
            .filter_map(|e| e.agent.clone())
            .chain(v.ticket.agent.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let agents = shared
        .store
        .run(move |db| {
            agent_ids
                .iter()
                .map(|id| {
                    let hostname = db.find_agent(id).map(|a| a.hostname).unwrap_or_default();
                    Ok(BundleAgent {
                        id: id.clone(),
                        hostname,
                        cert_pem: db.agent_cert(id)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let dir = shared.bundles.join(format!(
        "ticket-{number}-{stamp}-{}",
        hex::encode(rand::random::<[u8; 3]>())
    ));
    let contents = Contents {
        ticket: v.ticket,
        escalation: escalation.clone(),
        timeline: v.timeline,
        evidence: v.evidence,
        agents,
        ca_pem: shared.ca.cert_pem.clone(),
        controller_cert_pem: shared.records.cert_pem.clone(),
    };
    let blobs = shared.blobs.clone();
    let d = dir.clone();
    let (_, files) =
        tokio::task::spawn_blocking(move || bundle::write(&d, contents, blobs.as_ref()))
            .await
            .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    let bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let kind = if escalation.is_some() {
        "escalation bundle"
    } else {
        "export"
    };
    record(
        shared,
        number,
        &tech.name,
        "bundle",
        format!(
            "{kind} built by {}: {} files, {bytes} bytes",
            tech.name,
            files.len()
        ),
    )
    .await;
    Ok((
        BundleSummary {
            ticket: number,
            location: dir.display().to_string(),
            files: u32::try_from(files.len()).unwrap_or(u32::MAX),
            bytes,
            escalated_to: escalation.map(|e| e.to),
            sync: None,
        },
        dir,
    ))
}

/// `deskside escalate`: moves the ticket up to tier `to` with `note` for the next
/// engineer, builds its bundle, streams it to `out` and queues the sync to the external
/// ticket system.
pub(crate) async fn escalate<S: ReplySink>(
    shared: &Shared,
    tech: &Principal,
    number: u64,
    to: Tier,
    note: &str,
    out: &mut S,
) -> Result<BundleSummary, Failure> {
    admit(shared, tech, Some(number)).await?;
    let (mut summary, dir) = build(shared, tech, number, Some((to, note))).await?;
    summary.sync = Some(
        queue(
            shared,
            number,
            summary.escalated_to,
            note,
            &summary.location,
        )
        .await?,
    );
    stream(&dir, out).await?;
    Ok(summary)
}

/// `deskside export`: builds the ticket's bundle and streams it to `out`.
pub(crate) async fn export<S: ReplySink>(
    shared: &Shared,
    tech: &Principal,
    number: u64,
    out: &mut S,
) -> Result<BundleSummary, Failure> {
    admit(shared, tech, Some(number)).await?;
    let (summary, dir) = build(shared, tech, number, None).await?;
    stream(&dir, out).await?;
    Ok(summary)
}

async fn stream<S: ReplySink>(dir: &std::path::Path, out: &mut S) -> Result<(), Failure> {
    stream_dir(dir, out)
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("sending the bundle: {e}")))
}

async fn stream_dir<S: ReplySink>(dir: &std::path::Path, out: &mut S) -> std::io::Result<()> {
    let mut paths = vec![
        bundle::EVIDENCE_JSON.to_owned(),
        bundle::REPORT_MD.to_owned(),
        bundle::REPORT_HTML.to_owned(),
    ];
    let mut items: Vec<String> = std::fs::read_dir(dir.join(bundle::ITEMS_DIR))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()
                .map(|n| format!("{}/{n}", bundle::ITEMS_DIR))
        })
        .collect();
    items.sort();
    paths.extend(items);
    for rel in paths {
        use tokio::io::AsyncReadExt;
        if out.gone() {
            return Err(std::io::Error::other("the technician went away"));
        }
        // Read in chunks: an item may be a collected file of a GiB.
        let mut file = tokio::fs::File::open(dir.join(&rel)).await?;
        let mut offset = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(BUNDLE_CHUNK_BYTES);
            (&mut file)
                .take(BUNDLE_CHUNK_BYTES as u64)
                .read_to_end(&mut chunk)
                .await?;
            let last = chunk.len() < BUNDLE_CHUNK_BYTES;
            // An empty file still gets one (empty) chunk so the technician creates it.
            if !chunk.is_empty() || offset == 0 {
                let len = chunk.len() as u64;
                out.send(&TechReply::BundleFile {
                    path: rel.clone(),
                    offset,
                    data: chunk,
                })
                .await;
                offset += len;
            }
            if last {
                break;
            }
        }
    }
    Ok(())
}

/// Session records stored before the controller signed them are signed as they are
/// exported, so that every item in a bundle carries a signature. The blob is
/// content-addressed and the bundle writer checks each copy against its name, so
/// signing the name signs the bytes.
fn sign_unsigned_records(
    shared: &Shared,
    evidence: &mut [deskside_proto::msg::tech::EvidenceRef],
) -> Result<(), Failure> {
    for e in evidence
        .iter_mut()
        .filter(|e| e.signature.is_none() && crate::records::controller_made(&e.kind))
    {
        let digest: [u8; 32] = hex::decode(&e.sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("stored evidence name {:?} is not a SHA-256", e.sha256),
                )
            })?;
        let signature = shared
            .records
            .sign_digest(&digest)
            .map_err(|reason| Failure::new(ErrorCode::Internal, reason.to_string()))?;
        e.signature = Some(signature);
    }
    Ok(())
}
