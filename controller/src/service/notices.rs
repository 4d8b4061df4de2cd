//! What an agent tells the controller on its own streams, outside any request: evidence
//! from its spool whose direct delivery was lost, a certificate renewal, the support code
//! its user offers, and a session that ended on the machine.

use deskside_proto::msg::agent::{AgentNotice, NoticeAck};
use rustls_pki_types::CertificateDer;
use tracing::info;

use super::common::Shared;
use super::intake::check_request_key;

/// Records one notice from agent `id` (its delivery `key` makes redelivery harmless) and
/// says what became of it. `presented` is the certificate on the agent's connection.
pub(crate) async fn agent_notice(
    shared: &Shared,
    id: &str,
    presented: Option<CertificateDer<'static>>,
    key: &str,
    notice: AgentNotice,
) -> NoticeAck {
    match notice {
        AgentNotice::AskForHelp(ask) => {
            super::selfservice::ask_for_help(shared, id, key, *ask).await
        }
        AgentNotice::Renew { csr_pem } => {
            super::renew::agent(shared, presented.as_ref(), id, &csr_pem).await
        }
        AgentNotice::Evidence { requester, item } => {
            let ticket = requester.ticket;
            let ack = super::intake::late(shared, id, &requester, *item).await;
            shared.events.send(super::events::Event::Ticket(ticket));
            ack
        }
        AgentNotice::SupportCode {
            code,
            expires_at_secs,
        } => {
            let latest = crate::clock::now_secs() + deskside_proto::msg::session::SUPPORT_CODE_SECS;
            match shared
                .agents
                .offer_code(id, &code, expires_at_secs.min(latest))
                .await
            {
                Ok(()) => {
                    info!(agent = id, "the user offered a support code");
                    NoticeAck::Recorded
                }
                // The agent keeps the notice and offers the code again.
                Err(e) => NoticeAck::Retry {
                    reason: format!("the controller could not record the support code: {e}"),
                },
            }
        }
        AgentNotice::SessionEnded { grant, by } => {
            if let Err(reason) = check_request_key(
                shared,
                id,
                &grant.request_key,
                grant.ticket,
                &grant.technician,
                &format!("notice that session {} ended", grant.id),
            ) {
                return NoticeAck::Rejected { reason };
            }
            let detail = format!(
                "session {} with {} on {id} ended ({by})",
                grant.id, grant.technician
            );
            let (actor, ticket) = (format!("agent {id}"), grant.ticket);
            let (agent, key) = (id.to_owned(), key.to_owned());
            let recorded = shared
                .store
                .run(move |db| {
                    db.ticket(ticket)?;
                    db.add_delivered_event(
                        &agent,
                        &key,
                        ticket,
                        &crate::store::NewEvent {
                            actor: &actor,
                            kind: "session_ended",
                            detail: &detail,
                            evidence_sha256: None,
                        },
                    )
                })
                .await;
            match recorded {
                Ok(_) => {
                    shared.events.send(super::events::Event::Ticket(ticket));
                    NoticeAck::Recorded
                }
                Err(crate::store::StoreError::NotFound(reason)) => NoticeAck::Rejected { reason },
                Err(e) => NoticeAck::Retry {
                    reason: e.to_string(),
                },
            }
        }
    }
}
