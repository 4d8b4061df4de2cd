//! Ticket operations: open, list, show (with SLA), note and resolve.

use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::tech::{ErrorCode, TicketSummary, TicketView};
use tracing::info;

use super::common::{Failure, Principal, Shared, admit};
use crate::clock::now_secs;

/// Longest note or escalation text.
pub(super) const MAX_NOTE_BYTES: usize = 16 * 1024;

/// A ticket to open.
#[derive(Debug, Clone)]
pub(crate) struct NewTicket {
    pub title: String,
    /// The agent (id or unique hostname) the ticket is about, if any.
    pub agent: Option<String>,
    /// Who reported the problem (free text: a name or an e-mail address).
    pub requester: String,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: String,
}

/// Opens a ticket owned by `who` at their tier.
pub(crate) async fn open(
    shared: &Shared,
    who: &Principal,
    new: NewTicket,
) -> Result<TicketView, Failure> {
    admit(shared, who, None).await?;
    let NewTicket {
        title,
        agent,
        requester,
        priority,
    } = new;
    let title = title.trim().to_owned();
    if title.is_empty() || title.len() > MAX_NAME_BYTES || requester.len() > MAX_NAME_BYTES {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "a ticket title must be 1 to {MAX_NAME_BYTES} bytes, a requester at most {MAX_NAME_BYTES}"
            ),
        ));
    }
    let (by, tier) = (who.name.clone(), who.tier);
    let number = shared
        .store
        .run(move |db| {
            let agent_id = match agent {
                Some(key) => Some(db.find_agent(&key)?.id),
                None => None,
            };
            db.create_ticket(&crate::store::NewTicket {
                title: &title,
                requester: requester.trim(),
                priority: priority.trim(),
                agent: agent_id.as_deref(),
                by: &by,
                tier,
            })
        })
        .await?;
    info!(ticket = number, "ticket opened");
    view(shared, number).await
}

/// The tickets `who` may see (see `store::visibility`).
pub(crate) async fn list(shared: &Shared, who: &Principal) -> Result<Vec<TicketSummary>, Failure> {
    admit(shared, who, None).await?;
    let (name, tier) = (who.name.clone(), who.tier);
    let mut tickets = shared
        .store
        .run(move |db| db.visible_tickets(&name, tier))
        .await?;
    let now = now_secs();
    tickets.iter_mut().for_each(|t| shared.sla.apply(t, now));
    Ok(tickets)
}

/// Ticket `number` with its timeline and evidence, if `who` may see it.
pub(crate) async fn show(
    shared: &Shared,
    who: &Principal,
    number: u64,
) -> Result<TicketView, Failure> {
    admit(shared, who, Some(number)).await?;
    view(shared, number).await
}

/// Ticket `number` with its SLA, timeline and evidence (visibility already checked).
pub(super) async fn view(shared: &Shared, number: u64) -> Result<TicketView, Failure> {
    let (mut ticket, timeline, mut evidence) = shared
        .store
        .run(move |db| {
            Ok((
                db.ticket(number)?,
                db.timeline(number)?,
                db.evidence(number)?,
            ))
        })
        .await?;
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

pub(super) fn check_text(text: &str) -> Result<(), Failure> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!("notes are at most {MAX_NOTE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A note by `who` on the ticket's timeline.
pub(crate) async fn note(
    shared: &Shared,
    who: &Principal,
    number: u64,
    text: &str,
) -> Result<TicketView, Failure> {
    admit(shared, who, Some(number)).await?;
    check_text(text)?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(Failure::new(ErrorCode::BadRequest, "the note is empty"));
    }
    let by = who.name.clone();
    shared
        .store
        .run(move |db| {
            db.ticket(number)?;
            db.add_event(
                number,
                &crate::store::NewEvent {
                    actor: &by,
                    kind: "note",
                    detail: &text,
                    evidence_sha256: None,
                },
            )
        })
        .await?;
    view(shared, number).await
}

/// Resolves the ticket with `note`.
pub(crate) async fn resolve(
    shared: &Shared,
    who: &Principal,
    number: u64,
    note: &str,
) -> Result<TicketView, Failure> {
    admit(shared, who, Some(number)).await?;
    check_text(note)?;
    let (by, note) = (who.name.clone(), note.trim().to_owned());
    shared
        .store
        .run(move |db| db.resolve(number, &note, &by))
        .await?;
    view(shared, number).await
}

/// One evidence item of a ticket `who` may see: its record, and a reader of its bytes.
pub(crate) async fn evidence(
    shared: &Shared,
    who: &Principal,
    number: u64,
    sha256: &str,
) -> Result<
    (
        deskside_proto::msg::tech::EvidenceRef,
        Box<dyn std::io::Read + Send>,
    ),
    Failure,
> {
    let view = show(shared, who, number).await?;
    let Some(item) = view.evidence.into_iter().find(|e| e.sha256 == sha256) else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            format!("ticket {number} has no evidence {sha256}"),
        ));
    };
    let reader = shared.blobs.open(&item.sha256).map_err(|e| {
        tracing::warn!(error = %e, "reading an evidence blob failed");
        Failure::new(
            ErrorCode::Internal,
            format!("reading evidence {sha256}: {e}"),
        )
    })?;
    Ok((item, reader))
}
