//! The agent page's actions. Each checks its form, then runs as a job (see `jobs.rs`)
//! whose page streams what happens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use serde::Deserialize;

use super::ask;
use crate::console::Console;
use crate::console::auth::Posted;
use crate::console::jobs;
use crate::console::view::Problem;

/// Longest session a console form asks for (the CLI's limit is the agent's to enforce).
const MAX_SESSION_MINUTES: u64 = 8 * 60;
/// Longest the page waits for the user's answer.
const MAX_WAIT_SECS: u64 = 600;

fn bad(posted_me: crate::console::view::Me, message: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, message)
        .for_me(posted_me)
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct TicketForm {
    #[serde(default)]
    ticket: String,
}

fn ticket_of(raw: &str) -> Option<u64> {
    raw.trim().trim_start_matches('#').parse().ok()
}

pub async fn diagnostics(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<TicketForm>,
) -> Response {
    let Some(ticket) = ticket_of(&posted.form.ticket) else {
        return bad(
            posted.session.me(),
            "Choose the ticket the snapshot goes on.",
        );
    };
    jobs::start(
        &console,
        &posted.session,
        format!("Pulling diagnostics from {id} onto ticket {ticket}"),
        TechRequest::Diagnostics { agent: id, ticket },
    )
    .await
}

/// The first value of field `name` in a form read as pairs (repeated keys kept).
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub async fn session(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Response {
    let me = posted.session.me();
    let form = &posted.form;
    let Some(ticket) = field(form, "ticket").and_then(ticket_of) else {
        return bad(me, "Choose the ticket the session is for.");
    };
    let mut scopes = Vec::new();
    for (_, v) in posted.form.iter().filter(|(k, _)| k == "scope") {
        match v.parse::<Scope>() {
            Ok(s) if !scopes.contains(&s) => scopes.push(s),
            Ok(_) => {}
            Err(_) => return bad(me, format!("{v:?} is not a scope.")),
        }
    }
    if scopes.is_empty() {
        return bad(me, "Tick at least one thing the session allows.");
    }
    let Some(minutes) = field(form, "minutes")
        .unwrap_or("")
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|m| (1..=MAX_SESSION_MINUTES).contains(m))
    else {
        return bad(
            me,
            format!("A session lasts 1 to {MAX_SESSION_MINUTES} minutes."),
        );
    };
    let Some(wait) = field(form, "wait")
        .unwrap_or("")
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|w| (5..=MAX_WAIT_SECS).contains(w))
    else {
        return bad(
            me,
            format!("Wait 5 to {MAX_WAIT_SECS} seconds for the answer."),
        );
    };
    jobs::start(
        &console,
        &posted.session,
        format!(
            "Asking the user of {id} for a {minutes}-minute session ({}) on ticket {ticket}; waiting up to {wait} s for their answer",
            scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
        TechRequest::RequestSession {
            agent: id,
            ticket,
            scopes,
            duration_secs: minutes * 60,
            wait_secs: wait,
        },
    )
    .await
}

pub async fn end_session(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<TicketForm>,
) -> Response {
    let Some(ticket) = ticket_of(&posted.form.ticket) else {
        return bad(posted.session.me(), "Choose the ticket of the session.");
    };
    jobs::start(
        &console,
        &posted.session,
        format!("Ending the session on {id}"),
        TechRequest::EndSession { agent: id, ticket },
    )
    .await
}

/// Runs a catalog script: the parameters are checked against the script's typed
/// parameters here, before anything is sent; a bad one comes back to the form.
pub async fn run(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Response {
    let me = posted.session.me();
    let form = &posted.form;
    let Some(ticket) = field(form, "ticket").and_then(ticket_of) else {
        return bad(me, "Choose the ticket the run goes on.");
    };
    let Some(script) = field(form, "script").map(str::to_owned) else {
        return bad(me, "Choose a script.");
    };
    let entry = match ask(
        &console,
        &posted.session,
        TechRequest::ShowScript {
            name: script.clone(),
        },
    )
    .await
    {
        Ok(TechReply::Script(view)) => view.entry,
        Ok(other) => return super::unexpected(&other),
        Err(r) => return r,
    };
    let mut params = Vec::new();
    for spec in &entry.params {
        let key = format!("p_{}", spec.name);
        let value = match &spec.kind {
            deskside_proto::msg::script::ParamKind::Bool => Some(
                if field(form, &key).is_some() {
                    "true"
                } else {
                    "false"
                }
                .to_owned(),
            ),
            _ => field(form, &key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        };
        if let Some(v) = value {
            params.push((spec.name.clone(), v));
        }
    }
    if let Err(e) = entry.resolve_params(&params) {
        return bad(me, format!("{script}: {e}"));
    }
    jobs::start(
        &console,
        &posted.session,
        format!(
            "Running {script} v{} on {id} for ticket {ticket}",
            entry.version
        ),
        TechRequest::RunScript {
            agent: id,
            ticket,
            script,
            params,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct CollectForm {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    path: String,
}

pub async fn collect(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<CollectForm>,
) -> Response {
    let me = posted.session.me();
    let Some(ticket) = ticket_of(&posted.form.ticket) else {
        return bad(me, "Choose the ticket the file goes on.");
    };
    let path = posted.form.path.trim().to_owned();
    if !path.starts_with('/') {
        return bad(
            me,
            "Give the file's absolute path on the machine, e.g. /var/log/syslog.",
        );
    }
    jobs::start(
        &console,
        &posted.session,
        format!("Collecting {path} from {id} onto ticket {ticket}"),
        TechRequest::Collect {
            agent: id,
            ticket,
            path,
        },
    )
    .await
}
