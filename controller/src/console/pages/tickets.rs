//! `/tickets`: the tickets I may see with their SLA, status, tier and owner, filtered;
//! and the form that opens one.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use deskside_proto::msg::tech::{TechReply, TechRequest, TicketSummary};
use serde::Deserialize;

use super::{ask, dashboard::by_urgency, unexpected};
use crate::console::Console;
use crate::console::auth::{Posted, Session};
use crate::console::view::{self, Me};

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// `open` (default: everything not resolved), `resolved`, `all`, or one status.
    #[serde(default)]
    pub status: String,
    /// `L1`, `L2`, `L3` or anything else for all.
    #[serde(default)]
    pub tier: String,
    /// `me`, `nobody`, or anything else for all.
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: usize,
}

/// Rows per page of the list.
pub const PAGE_ROWS: usize = 100;

pub fn select(tickets: Vec<TicketSummary>, f: &Filter, me: &str) -> Vec<TicketSummary> {
    let q = f.q.trim().to_lowercase();
    let mut out: Vec<_> = tickets
        .into_iter()
        .filter(|t| match f.status.as_str() {
            "" | "open" => t.status != "resolved",
            "all" => true,
            s => t.status == s,
        })
        .filter(|t| match f.tier.as_str() {
            tier @ ("L1" | "L2" | "L3") => t.tier.to_string() == tier,
            _ => true,
        })
        .filter(|t| match f.owner.as_str() {
            "me" => t.owner.as_deref() == Some(me),
            "nobody" => t.owner.is_none(),
            _ => true,
        })
        .filter(|t| {
            q.is_empty()
                || t.title.to_lowercase().contains(&q)
                || t.requester.to_lowercase().contains(&q)
                || t.number.to_string() == q.trim_start_matches('#')
        })
        .collect();
    by_urgency(&mut out);
    out
}

#[derive(askama::Template)]
#[template(path = "console/tickets.html")]
struct TicketsPage {
    me: Option<Me>,
    filter: Filter,
    /// This page's tickets.
    tickets: Vec<TicketSummary>,
    /// How many match the filter, on every page.
    total: usize,
    page: usize,
    pages: usize,
    /// The query string without `page`, for the pager's links.
    query: String,
    priorities: &'static [&'static str],
}

pub async fn list(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Response {
    let tickets = match ask(&console, &session, TechRequest::ListTickets).await {
        Ok(TechReply::Tickets(t)) => t,
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    let selected = select(tickets, &filter, &session.principal.name);
    let total = selected.len();
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let page = filter.page.min(pages - 1);
    let tickets = selected
        .into_iter()
        .skip(page * PAGE_ROWS)
        .take(PAGE_ROWS)
        .collect();
    let query = serde_urlencoded::to_string([
        ("status", filter.status.as_str()),
        ("tier", filter.tier.as_str()),
        ("owner", filter.owner.as_str()),
        ("q", filter.q.as_str()),
    ])
    .unwrap_or_default();
    view::render(&TicketsPage {
        me: Some(session.me()),
        filter,
        tickets,
        total,
        page,
        pages,
        query,
        priorities: &crate::store::PRIORITIES,
    })
}

#[derive(Debug, Deserialize)]
pub struct NewTicket {
    #[serde(default)]
    title: String,
    #[serde(default)]
    requester: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    agent: String,
}

pub async fn open(State(console): State<Arc<Console>>, posted: Posted<NewTicket>) -> Response {
    let f = posted.form;
    let agent = Some(f.agent.trim().to_owned()).filter(|a| !a.is_empty());
    // Back to the machine's page when the form came from there (by the id the store
    // resolved, never the text typed).
    let back = agent.is_some();
    let req = TechRequest::NewTicket {
        title: f.title,
        agent,
        requester: f.requester,
        priority: if f.priority.is_empty() {
            "normal".to_owned()
        } else {
            f.priority
        },
    };
    match ask(&console, &posted.session, req).await {
        Ok(TechReply::Ticket(view)) => match view.ticket.agent.as_deref() {
            Some(id) if back && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                Redirect::to(&format!("/agents/{id}")).into_response()
            }
            _ => Redirect::to(&format!("/tickets/{}", view.ticket.number)).into_response(),
        },
        Ok(other) => unexpected(&other),
        Err(r) => r,
    }
}
