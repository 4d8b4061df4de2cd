//! `/`: my open tickets with their SLA clocks (breached first), agents online, and
//! escalations waiting for my tier.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use deskside_proto::msg::tech::{TechReply, TechRequest, TicketSummary};

use super::{ask, unexpected};
use crate::console::Console;
use crate::console::auth::Session;
use crate::console::view::{self, Me};

#[derive(askama::Template)]
#[template(path = "console/dashboard.html")]
struct Dashboard {
    me: Option<Me>,
    mine: Vec<TicketSummary>,
    waiting: Vec<TicketSummary>,
    online: usize,
    enrolled: usize,
}

/// Breached first, then by the nearest deadline.
pub(super) fn by_urgency(tickets: &mut [TicketSummary]) {
    tickets.sort_by_key(|t| {
        let breached = t.sla.response_breached || t.sla.resolution_breached;
        let due = if t.first_response_at_secs.is_none() {
            t.sla.response_due_secs
        } else {
            t.sla.resolution_due_secs
        };
        (!breached, due, t.number)
    });
}

pub async fn page(
    axum::extract::State(console): State<Arc<Console>>,
    session: Session,
) -> Response {
    let tickets = match ask(&console, &session, TechRequest::ListTickets).await {
        Ok(TechReply::Tickets(t)) => t,
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    let agents = match ask(&console, &session, TechRequest::ListAgents).await {
        Ok(TechReply::Agents(a)) => a,
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    let me = &session.principal;
    let (mut mine, mut waiting): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for t in tickets {
        if t.status == "resolved" {
            continue;
        }
        if t.owner.as_deref() == Some(me.name.as_str()) {
            mine.push(t);
        } else if t.status == "escalated" && t.tier == me.tier {
            waiting.push(t);
        }
    }
    by_urgency(&mut mine);
    by_urgency(&mut waiting);
    view::render(&Dashboard {
        me: Some(session.me()),
        mine,
        waiting,
        online: agents.iter().filter(|a| a.online && !a.revoked).count(),
        enrolled: agents.iter().filter(|a| !a.revoked).count(),
    })
}
