//! Ticket requests: open, list, show (with SLA), note, resolve, escalate/export (building
//! and streaming the evidence bundle) and sync to the external ticket system.

use std::path::PathBuf;

use deskside_proto::limits::{BUNDLE_CHUNK_BYTES, MAX_NAME_BYTES};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{BundleSummary, ErrorCode, TechReply, TicketView};
use deskside_transport::framed;
use quinn::SendStream;
use tracing::info;

use super::Shared;
use super::tech::{Tech, error, record, store_error};
use crate::bundle::{self, BundleAgent, Contents, Escalation};
use crate::clock::now_secs;
use crate::outbox::{SyncPayload, enqueue_sync};
use crate::store::NewTicket;

/// Longest note or escalation text.
const MAX_NOTE_BYTES: usize = 16 * 1024;

pub(super) async fn new(
    shared: &Shared,
    tech: &Tech,
    title: String,
    agent: Option<String>,
    requester: String,
    priority: String,
) -> TechReply {
    let title = title.trim().to_owned();
    if title.is_empty() || title.len() > MAX_NAME_BYTES || requester.len() > MAX_NAME_BYTES {
        return error(
            ErrorCode::BadRequest,
            format!(
                "a ticket title must be 1 to {MAX_NAME_BYTES} bytes, a requester at most {MAX_NAME_BYTES}"
            ),
        );
    }
    let (by, tier) = (tech.name.clone(), tech.tier);
    let created = shared
        .store
        .run(move |db| {
            let agent_id = match agent {
                Some(key) => Some(db.find_agent(&key)?.id),
                None => None,
            };
            db.create_ticket(&NewTicket {
                title: &title,
                requester: requester.trim(),
                priority: priority.trim(),
                agent: agent_id.as_deref(),
                by: &by,
                tier,
            })
        })
        .await;
    match created {
        Ok(number) => {
            info!(ticket = number, "ticket opened");
            show(shared, number).await
        }
        Err(e) => store_error(e),
    }
}

/// The tickets `tech` may see (see `store::visibility`).
pub(super) async fn list(shared: &Shared, tech: &Tech) -> TechReply {
    let (name, tier) = (tech.name.clone(), tech.tier);
    match shared
        .store
        .run(move |db| db.visible_tickets(&name, tier))
        .await
    {
        Ok(mut tickets) => {
            let now = now_secs();
            tickets.iter_mut().for_each(|t| shared.sla.apply(t, now));
            TechReply::Tickets(tickets)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn show(shared: &Shared, number: u64) -> TechReply {
    match view(shared, number).await {
        Ok(v) => TechReply::Ticket(Box::new(v)),
        Err(reply) => reply,
    }
}

async fn view(shared: &Shared, number: u64) -> Result<TicketView, TechReply> {
    let (mut ticket, timeline, mut evidence) = shared
        .store
        .run(move |db| {
            Ok((
                db.ticket(number)?,
                db.timeline(number)?,
                db.evidence(number)?,
            ))
        })
        .await
        .map_err(store_error)?;
    shared.sla.apply(&mut ticket, now_secs());
    for e in &mut evidence {
        e.location = shared.blobs.location(&e.sha256);
    }
    Ok(TicketView {
        ticket,
        timeline,
        evidence,
    })
}

fn check_text(text: &str) -> Result<(), TechReply> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(error(
            ErrorCode::BadRequest,
            format!("notes are at most {MAX_NOTE_BYTES} bytes"),
        ));
    }
    Ok(())
}

pub(super) async fn note(shared: &Shared, tech: &Tech, number: u64, text: String) -> TechReply {
    if let Err(r) = check_text(&text) {
        return r;
    }
    if text.trim().is_empty() {
        return error(ErrorCode::BadRequest, "the note is empty");
    }
    let by = tech.name.clone();
    let added = shared
        .store
        .run(move |db| {
            db.ticket(number)?;
            db.add_event(
                number,
                &crate::store::NewEvent {
                    actor: &by,
                    kind: "note",
                    detail: text.trim(),
                    evidence_sha256: None,
                },
            )
        })
        .await;
    match added {
        Ok(_) => show(shared, number).await,
        Err(e) => store_error(e),
    }
}

pub(super) async fn resolve(shared: &Shared, tech: &Tech, number: u64, note: String) -> TechReply {
    if let Err(r) = check_text(&note) {
        return r;
    }
    let by = tech.name.clone();
    match shared
        .store
        .run(move |db| db.resolve(number, note.trim(), &by))
        .await
    {
        Ok(_) => show(shared, number).await,
        Err(e) => store_error(e),
    }
}

/// Retries the ticket's pending sync now, or, when none is pending, queues a sync of a
/// fresh export to the external system.
pub(super) async fn sync(shared: &Shared, tech: &Tech, number: u64) -> TechReply {
    if shared.ticketing.is_none() {
        return error(
            ErrorCode::BadRequest,
            "no external ticket system is configured ([ticketing] in the controller's controller.toml)",
        );
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
    match pending {
        Ok(Some(ids)) => {
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
            return show(shared, number).await;
        }
        Ok(None) => {}
        Err(e) => return store_error(e),
    }
    let (summary, _) = match build(shared, tech, number, None).await {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    match queue(
        shared,
        number,
        summary.escalated_to,
        "manual sync",
        &summary.location,
    )
    .await
    {
        Ok(state) => {
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
            show(shared, number).await
        }
        Err(reply) => reply,
    }
}

async fn queue(
    shared: &Shared,
    number: u64,
    tier: Option<Tier>,
    note: &str,
    dir: &str,
) -> Result<String, TechReply> {
    if shared.ticketing.is_none() {
        return Ok("no external ticket system configured".into());
    }
    let tier = match tier {
        Some(t) => t,
        None => {
            shared
                .store
                .run(move |db| db.ticket(number))
                .await
                .map_err(store_error)?
                .tier
        }
    };
    let payload = SyncPayload {
        tier,
        note: note.to_owned(),
        bundle_dir: PathBuf::from(dir),
    };
    let id = enqueue_sync(&shared.store, number, &payload)
        .await
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
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
    tech: &Tech,
    number: u64,
    escalate: Option<(Tier, String)>,
) -> Result<(BundleSummary, PathBuf), TechReply> {
    let mut escalation = None;
    if let Some((to, note)) = escalate {
        check_text(&note)?;
        if note.trim().is_empty() {
            return Err(error(
                ErrorCode::BadRequest,
                "an escalation needs a note for the next engineer (--note)",
            ));
        }
        let by = tech.name.clone();
        let n = note.clone();
        let (from, entry) = shared
            .store
            .run(move |db| db.escalate(number, to, n.trim(), &by))
            .await
            .map_err(store_error)?;
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
        .await
        .map_err(store_error)?;
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
            .map_err(|e| error(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
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

/// Escalation or export: build on the controller, stream every file to the technician
/// in chunks, then the summary.
pub(super) async fn bundle(
    shared: &Shared,
    tech: &Tech,
    number: u64,
    escalate: Option<(Tier, String)>,
    out: &mut SendStream,
) -> String {
    let note = escalate
        .as_ref()
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    let reply = match build(shared, tech, number, escalate).await {
        Err(reply) => reply,
        Ok((mut summary, dir)) => {
            if summary.escalated_to.is_some() {
                match queue(
                    shared,
                    number,
                    summary.escalated_to,
                    &note,
                    &summary.location,
                )
                .await
                {
                    Ok(state) => summary.sync = Some(state),
                    Err(reply) => {
                        let _ = framed::send(out, &reply).await;
                        return super::tech::outcome_of(&reply);
                    }
                }
            }
            if let Err(e) = stream_dir(&dir, out).await {
                error(ErrorCode::Internal, format!("sending the bundle: {e}"))
            } else {
                TechReply::Bundle(Box::new(summary))
            }
        }
    };
    let _ = framed::send(out, &reply).await;
    super::tech::outcome_of(&reply)
}

async fn stream_dir(dir: &std::path::Path, out: &mut SendStream) -> anyhow::Result<()> {
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
                framed::send(
                    out,
                    &TechReply::BundleFile {
                        path: rel.clone(),
                        offset,
                        data: chunk,
                    },
                )
                .await?;
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
) -> Result<(), TechReply> {
    for e in evidence
        .iter_mut()
        .filter(|e| e.signature.is_none() && crate::records::controller_made(&e.kind))
    {
        let digest: [u8; 32] = hex::decode(&e.sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| {
                error(
                    ErrorCode::Internal,
                    format!("stored evidence name {:?} is not a SHA-256", e.sha256),
                )
            })?;
        let signature = shared
            .records
            .sign_digest(&digest)
            .map_err(|reason| error(ErrorCode::Internal, reason.to_string()))?;
        e.signature = Some(signature);
    }
    Ok(())
}
