//! `/events`: what changes while a page is open, as server-sent events. Every page gets
//! agents going online and offline (`agent`, data `ID online|offline`); a ticket's page
//! asks with `?ticket=N` and also gets `ticket` when that ticket's timeline grows — only
//! for a ticket the technician may see, checked as any request about it is.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::Console;
use super::auth::Session;
use super::view;
use crate::service::{self, Event};

#[derive(Debug, Deserialize)]
pub struct Watch {
    ticket: Option<u64>,
}

/// Sink for requests that stream nothing.
pub(super) struct NoStream;

impl service::ReplySink for NoStream {
    async fn send(&mut self, _: &TechReply) {}

    fn gone(&self) -> bool {
        true
    }
}

pub async fn events(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(watch): Query<Watch>,
) -> Response {
    if let Some(number) = watch.ticket {
        let reply = service::handle(
            &console.shared,
            &session.principal,
            TechRequest::ShowTicket { number },
            &mut NoStream,
        )
        .await;
        if let TechReply::Error(e) = reply {
            let f = service::Failure::new(e.code, e.message);
            return view::failure(session.me(), &f);
        }
    }
    let receiver = console.shared.events.subscribe();
    let stream = futures_util::stream::unfold(
        (receiver, watch.ticket),
        |(mut receiver, ticket)| async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(Event::AgentOnline(id)) => SseEvent::default()
                        .event("agent")
                        .data(format!("{id} online")),
                    Ok(Event::AgentOffline(id)) => SseEvent::default()
                        .event("agent")
                        .data(format!("{id} offline")),
                    Ok(Event::Ticket(n)) if Some(n) == ticket => {
                        SseEvent::default().event("ticket").data(n.to_string())
                    }
                    Ok(Event::Ticket(_)) => continue,
                    // Missed some: tell the page to reload what it shows.
                    Err(RecvError::Lagged(_)) => SseEvent::default().event("stale").data("reload"),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok::<_, Infallible>(event), (receiver, ticket)));
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
