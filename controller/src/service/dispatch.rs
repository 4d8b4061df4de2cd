//! The one dispatch: a technician's request to the operation that serves it, counted in
//! the metrics and logged by kind and outcome.

use std::time::Instant;

use deskside_proto::msg::tech::{TechReply, TechRequest};
use tracing::{debug, info};

use super::common::{Failure, Principal, ReplySink, Shared};
use super::events::Event;
use super::{agents, bundles, collect, diagnostics, renew, scripts, sessions, tickets};

/// Serves `req` for `who`. Replies that stream before the last (script output, file
/// progress, bundle files) go to `out`; the last reply is returned for the front end to
/// send. The current tracing span gets the request's kind, ticket and agent.
pub(crate) async fn handle<S: ReplySink>(
    shared: &Shared,
    who: &Principal,
    req: TechRequest,
    out: &mut S,
) -> TechReply {
    let started = Instant::now();
    let kind = req.kind();
    let span = tracing::Span::current();
    span.record("kind", kind);
    if let Some(ticket) = req.ticket() {
        span.record("ticket", ticket);
    }
    if let Some(agent) = req.agent() {
        span.record("agent", agent);
    }
    debug!(?req, "request");
    let about = req.ticket();
    let reply = serve(shared, who, req, out)
        .await
        .unwrap_or_else(TechReply::from);
    // Whatever succeeded on a ticket may have added to its timeline; a new ticket is news.
    match (&reply, about) {
        (TechReply::Error(_), _) => {}
        (TechReply::Ticket(view), None) => shared.events.send(Event::Ticket(view.ticket.number)),
        (_, Some(number)) => shared.events.send(Event::Ticket(number)),
        (_, None) => {}
    }
    let elapsed = started.elapsed();
    let outcome = outcome_of(&reply);
    shared.metrics.observe(kind, &outcome, elapsed);
    info!(kind, %outcome, elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), "request done");
    reply
}

async fn serve<S: ReplySink>(
    shared: &Shared,
    who: &Principal,
    req: TechRequest,
    out: &mut S,
) -> Result<TechReply, Failure> {
    Ok(match req {
        TechRequest::ListAgents => TechReply::Agents(agents::list(shared, who).await?),
        TechRequest::NewTicket {
            title,
            agent,
            requester,
            priority,
        } => {
            let opened = tickets::NewTicket {
                title,
                agent,
                requester,
                priority,
            };
            TechReply::Ticket(Box::new(tickets::open(shared, who, opened).await?))
        }
        TechRequest::ListTickets => TechReply::Tickets(tickets::list(shared, who).await?),
        TechRequest::ShowTicket { number } => {
            TechReply::Ticket(Box::new(tickets::show(shared, who, number).await?))
        }
        TechRequest::Note { number, text } => {
            TechReply::Ticket(Box::new(tickets::note(shared, who, number, &text).await?))
        }
        TechRequest::Resolve { number, note } => TechReply::Ticket(Box::new(
            tickets::resolve(shared, who, number, &note).await?,
        )),
        TechRequest::Sync { number } => {
            TechReply::Ticket(Box::new(bundles::sync(shared, who, number).await?))
        }
        TechRequest::Escalate { number, to, note } => TechReply::Bundle(Box::new(
            bundles::escalate(shared, who, number, to, &note, out).await?,
        )),
        TechRequest::Export { number } => {
            TechReply::Bundle(Box::new(bundles::export(shared, who, number, out).await?))
        }
        TechRequest::Diagnostics { agent, ticket } => TechReply::Diagnostics(Box::new(
            diagnostics::pull(shared, who, &agent, ticket).await?,
        )),
        TechRequest::RequestSession {
            agent,
            ticket,
            scopes,
            duration_secs,
            wait_secs,
        } => {
            let ask = sessions::SessionRequest {
                agent,
                ticket,
                scopes,
                duration_secs,
                wait_secs,
            };
            TechReply::Session(Box::new(sessions::request(shared, who, ask).await?))
        }
        TechRequest::JoinSession { code, ticket } => {
            TechReply::Session(Box::new(sessions::join(shared, who, &code, ticket).await?))
        }
        TechRequest::EndSession { agent, ticket } => {
            let (agent, grant) = sessions::end(shared, who, &agent, ticket).await?;
            TechReply::SessionEnded {
                agent,
                grant: grant.map(Box::new),
            }
        }
        TechRequest::ListScripts => TechReply::Scripts(scripts::list(shared, who).await?),
        TechRequest::ShowScript { name } => {
            TechReply::Script(Box::new(scripts::show(shared, who, name).await?))
        }
        TechRequest::RunScript {
            agent,
            ticket,
            script,
            params,
        } => {
            let run = scripts::Run {
                agent,
                ticket,
                script,
                params,
            };
            TechReply::RunFinished(Box::new(scripts::run(shared, who, run, out).await?))
        }
        TechRequest::Collect {
            agent,
            ticket,
            path,
        } => TechReply::Collected(Box::new(
            collect::collect(shared, who, &agent, ticket, &path, out).await?,
        )),
        TechRequest::RenewCertificate { csr_pem } => {
            let (cert_pem, not_after_secs) = renew::technician(shared, who, &csr_pem).await?;
            TechReply::Renewed {
                cert_pem,
                not_after_secs,
            }
        }
    })
}

/// `ok`, or the error code as it appears in JSON (`agent_refused`, …).
pub(crate) fn outcome_of(reply: &TechReply) -> String {
    match reply {
        TechReply::Error(e) => serde_json::to_value(e.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "error".into()),
        _ => "ok".into(),
    }
}
