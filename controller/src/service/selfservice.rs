//! L0 self-service, the controller's side: the catalog's self-service scripts offered to
//! each agent ahead of time ([`offer`]), and the ticket a machine's user opens by asking
//! for help ([`ask_for_help`]), with their snapshot and self-fix runs as evidence.

use std::time::Duration;

use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::msg::agent::{
    AgentReply, AgentRequest, HelpAsk, MAX_ASK_RUNS, MAX_ASK_TEXT_BYTES, NoticeAck, SignedItem,
    valid_key,
};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::identity::valid_name;
use deskside_proto::msg::script::RunRecord;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::common::{AGENT_TIMEOUT, Shared};
use crate::store::{AskOutcome, NewAsk, NewEvidence, StoreError};

/// Requests for help one machine may open per [`ASK_WINDOW`]. A user with a real second
/// or third problem in an hour still gets through; a stuck button or a looping script
/// does not bury the hotline's queue — the earlier tickets are already there.
pub const MAX_ASKS_PER_WINDOW: u32 = 3;
pub const ASK_WINDOW: Duration = Duration::from_secs(3600);
/// A ticket title made from the user's words is cut to this many characters.
const MAX_TITLE_CHARS: usize = 80;

/// How often a connected agent's self-service scripts are compared with the catalog:
/// `deskside script add` writes the database while the controller serves, so a script
/// marked (or no longer marked) self-service reaches connected agents within this.
pub const CATALOG_RESYNC: Duration = Duration::from_secs(300);

/// What an agent was last offered: the SHA-256 over the self-service entries' names and
/// signatures (a signature changes with any field of its entry).
pub(crate) type Offered = [u8; 32];

/// Offers agent `id` the catalog's self-service scripts now and every
/// [`CATALOG_RESYNC`] while it stays connected, whenever they differ from what it was
/// last offered; stops when `closed` completes.
pub(crate) async fn keep_offered(
    shared: std::sync::Arc<Shared>,
    id: String,
    closed: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(closed);
    let mut last = None;
    loop {
        last = offer(&shared, &id, last).await;
        tokio::select! {
            () = &mut closed => return,
            () = tokio::time::sleep(CATALOG_RESYNC) => {}
        }
    }
}

/// Sends agent `id` the catalog's self-service scripts unless they are what it was
/// offered `last`: first their names (it drops any other it cached), then each signed
/// script, which it verifies before caching. An agent never offered any, of a catalog
/// without any, is not bothered. Returns what it now holds from us.
pub(crate) async fn offer(shared: &Shared, id: &str, last: Option<Offered>) -> Option<Offered> {
    let scripts = shared
        .store
        .run(|db| {
            let entries = db.scripts()?;
            entries
                .into_iter()
                .filter(|e| e.self_service)
                .map(|e| db.script(&e.name).map(|s| s.script))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await;
    let scripts = match scripts {
        Ok(s) => s,
        Err(e) => {
            warn!(agent = id, error = %e, "self-service scripts not offered: the catalog cannot be read");
            return last;
        }
    };
    let mut hash = Sha256::new();
    for s in &scripts {
        hash.update(s.entry.name.as_bytes());
        hash.update([0]);
        hash.update(&s.signature);
    }
    let now: Offered = hash.finalize().into();
    if Some(now) == last || (scripts.is_empty() && last.is_none()) {
        return Some(now);
    }
    let names = scripts.iter().map(|s| s.entry.name.clone()).collect();
    let list = AgentRequest::SelfServiceList { names };
    match shared.agents.call(id, &list, AGENT_TIMEOUT).await {
        Ok(AgentReply::SelfService { .. }) => {}
        // An agent that does not keep self-service scripts gets none.
        Ok(other) => {
            info!(agent = id, reply = ?other, "the agent does not cache self-service scripts");
            return Some(now);
        }
        Err(e) => {
            warn!(agent = id, error = %e, "self-service list not delivered");
            return last;
        }
    }
    for script in scripts {
        let name = script.entry.name.clone();
        let req = AgentRequest::SelfServiceScript {
            script: Box::new(script),
        };
        match shared.agents.call(id, &req, AGENT_TIMEOUT).await {
            Ok(AgentReply::SelfService { .. }) => {
                info!(agent = id, script = %name, "self-service script cached by the agent");
            }
            Ok(AgentReply::Refused(r)) => {
                warn!(agent = id, script = %name, reason = %r.reason, "the agent refused a self-service script");
            }
            Ok(other) => {
                warn!(agent = id, script = %name, reply = ?other, "unexpected answer to a self-service script");
            }
            Err(e) => {
                warn!(agent = id, script = %name, error = %e, "self-service script not delivered");
                return last;
            }
        }
    }
    Some(now)
}

/// `text` cut to a ticket title: its first line, at most [`MAX_TITLE_CHARS`] characters.
fn title(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= MAX_TITLE_CHARS {
        return line.to_owned();
    }
    let cut: String = line.chars().take(MAX_TITLE_CHARS - 1).collect();
    format!("{cut}…")
}

/// Checks `item`'s kind and signature against agent `id`'s certificate (`cert_pem`);
/// returns the evidence row for it.
fn verified(
    id: &str,
    cert_pem: &str,
    item: &SignedItem,
    kind: EvidenceKind,
) -> Result<NewEvidence, String> {
    if item.kind != kind || !valid_key(&item.key) {
        return Err(format!(
            "agent {id} sent a request for help with a malformed {kind} item"
        ));
    }
    let digest: [u8; 32] = Sha256::digest(&item.bytes).into();
    let cert = deskside_transport::pki::cert_from_pem(cert_pem)
        .map_err(|e| format!("agent {id}'s certificate on record is unusable: {e}"))?;
    deskside_transport::pki::verify_evidence(&cert, &digest, &item.signature)
        .map_err(|e| format!("evidence from {id} rejected: {e}"))?;
    Ok(NewEvidence {
        sha256: hex::encode(digest),
        kind: item.kind,
        size_bytes: item.bytes.len() as u64,
        agent_id: Some(id.to_owned()),
        signature: Some(hex::encode(&item.signature)),
        redaction: item.redaction.clone(),
    })
}

/// An evidence row with its timeline kind and text.
type Item = (NewEvidence, &'static str, String);

/// The checks that need no store: the user's name and words, the number of runs, and
/// what each item says. Returns the host name the snapshot gives and each item's row.
fn examine(id: &str, cert_pem: &str, ask: &HelpAsk) -> Result<(String, Vec<Item>), String> {
    if !valid_name(&ask.user) {
        return Err(format!(
            "agent {id} named its user {:?}, which is not a user name",
            ask.user
        ));
    }
    let text = ask.text.trim();
    if text.is_empty() || text.len() > MAX_ASK_TEXT_BYTES || ask.runs.len() > MAX_ASK_RUNS {
        return Err(format!(
            "agent {id} sent a request for help outside the limits (1–{MAX_ASK_TEXT_BYTES} bytes of text, at most {MAX_ASK_RUNS} runs)"
        ));
    }
    let snapshot: Snapshot = evidence::open(EvidenceKind::Snapshot, &ask.snapshot.bytes)
        .map_err(|e| format!("agent {id} sent an unreadable snapshot: {e}"))?;
    let host = if valid_name(&snapshot.host.hostname) {
        snapshot.host.hostname.clone()
    } else {
        id.to_owned()
    };
    let mut items = vec![(
        verified(id, cert_pem, &ask.snapshot, EvidenceKind::Snapshot)?,
        "snapshot",
        format!(
            "diagnostics snapshot from {id} ({host}) taken when {} asked for help: {} findings",
            ask.user,
            snapshot.findings.len()
        ),
    )];
    for run in &ask.runs {
        let row = verified(id, cert_pem, run, EvidenceKind::ScriptRun)?;
        let r: RunRecord = evidence::open(EvidenceKind::ScriptRun, &run.bytes)
            .map_err(|e| format!("agent {id} sent an unreadable run record: {e}"))?;
        if r.ticket != 0 || r.agent != id {
            return Err(format!(
                "agent {id} attached a run record that is not a self-fix on that machine"
            ));
        }
        let exit = r
            .result
            .exit_code
            .map_or_else(|| "by signal".to_owned(), |c| c.to_string());
        items.push((
            row,
            "script",
            format!(
                "self-service run of {} v{} on {id} by {}: exit {exit}",
                r.script, r.version, r.technician
            ),
        ));
    }
    Ok((host, items))
}

/// Opens a ticket for agent `id`'s user from their request for help (delivery `key`
/// makes a redelivery answer with the same ticket), at most [`MAX_ASKS_PER_WINDOW`] per
/// machine per [`ASK_WINDOW`].
pub(crate) async fn ask_for_help(shared: &Shared, id: &str, key: &str, ask: HelpAsk) -> NoticeAck {
    let agent = id.to_owned();
    let cert_pem = match shared.store.run(move |db| db.agent_cert(&agent)).await {
        Ok(pem) => pem,
        Err(StoreError::NotFound(reason)) => return NoticeAck::Rejected { reason },
        Err(e) => {
            return NoticeAck::Retry {
                reason: e.to_string(),
            };
        }
    };
    let (host, items) = match examine(id, &cert_pem, &ask) {
        Ok(v) => v,
        Err(reason) => {
            warn!(agent = id, %reason, "request for help refused");
            return NoticeAck::Rejected { reason };
        }
    };
    let blobs: Vec<Vec<u8>> = std::iter::once(ask.snapshot.bytes)
        .chain(ask.runs.into_iter().map(|r| r.bytes))
        .collect();
    let store = shared.blobs.clone();
    let put = tokio::task::spawn_blocking(move || {
        blobs.iter().try_for_each(|b| store.put(b).map(|_| ()))
    })
    .await;
    if !matches!(put, Ok(Ok(()))) {
        return NoticeAck::Retry {
            reason: "the controller could not store the evidence now".into(),
        };
    }
    let (requester, by, text) = (
        format!("{}@{host}", ask.user),
        format!("agent {id}"),
        ask.text.trim().to_owned(),
    );
    let (agent, key_owned, title) = (id.to_owned(), key.to_owned(), title(&text));
    let now = crate::clock::now_secs();
    let outcome = shared
        .store
        .run(move |db| {
            db.open_asked_ticket(&NewAsk {
                agent: &agent,
                key: &key_owned,
                title: &title,
                requester: &requester,
                by: &by,
                text: &text,
                items,
                max_per_window: MAX_ASKS_PER_WINDOW,
                window_secs: ASK_WINDOW.as_secs(),
                now_secs: now,
            })
        })
        .await;
    match outcome {
        Ok(AskOutcome::Opened(ticket) | AskOutcome::Again(ticket)) => {
            info!(
                agent = id,
                ticket, "a user opened a ticket by asking for help"
            );
            shared.events.send(super::events::Event::Ticket(ticket));
            NoticeAck::Opened { ticket }
        }
        Ok(AskOutcome::Limited { retry_at_secs }) => {
            let minutes = retry_at_secs.saturating_sub(now).div_ceil(60).max(1);
            NoticeAck::Rejected {
                reason: format!(
                    "this computer already asked for help {MAX_ASKS_PER_WINDOW} times in the last hour, the most allowed; your earlier requests are with the help desk — try again in {minutes} minutes, or call them"
                ),
            }
        }
        Err(StoreError::NotFound(reason) | StoreError::Conflict(reason)) => {
            NoticeAck::Rejected { reason }
        }
        Err(e) => NoticeAck::Retry {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_the_first_line_cut_to_length() {
        assert_eq!(title("printer\nmore"), "printer");
        let long = "x".repeat(200);
        assert_eq!(title(&long).chars().count(), MAX_TITLE_CHARS);
        assert!(title(&long).ends_with('…'));
    }
}
