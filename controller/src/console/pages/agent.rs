//! `/agents/{id}`: one machine — identity, its newest snapshot rendered for people,
//! findings by severity, earlier snapshots and what changed between two, and the actions
//! (pull diagnostics, ask for a session, run a catalog script, collect a file).

use std::io::Read;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use deskside_proto::findings;
use deskside_proto::msg::diag::{Finding, Severity, Snapshot};
use deskside_proto::msg::script::{CatalogEntry, ParamKind};
use deskside_proto::msg::tech::{AgentSummary, EvidenceRef, TechReply, TechRequest, TicketSummary};
use serde::Deserialize;

use super::{ask, unexpected};
use crate::console::Console;
use crate::console::auth::Session;
use crate::console::view::{self, Me};
use crate::service::{Failure, agents, tickets};

/// Largest snapshot item the page reads; real ones are tens of KiB.
const MAX_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct Choice {
    /// `TICKET:SHA256` of the snapshot to show (default: the newest).
    #[serde(default)]
    snapshot: String,
    /// `TICKET:SHA256` of an earlier snapshot to compare it with.
    #[serde(default)]
    compare: String,
    /// The catalog script whose form to show.
    #[serde(default)]
    script: String,
}

/// One parameter's form field.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub description: String,
    /// `text`, `number`, `select` or `checkbox`.
    pub input: &'static str,
    pub pattern: String,
    pub max_len: u32,
    pub min: String,
    pub max: String,
    pub options: Vec<String>,
    pub default: String,
    pub required: bool,
}

/// The form fields for a script's typed parameters; the browser checks what it can
/// (pattern, length, range, choices) and the server checks everything again.
pub fn fields(entry: &CatalogEntry) -> Vec<Field> {
    entry
        .params
        .iter()
        .map(|p| {
            let mut f = Field {
                name: p.name.clone(),
                description: p.description.clone(),
                input: "text",
                pattern: String::new(),
                max_len: 0,
                min: String::new(),
                max: String::new(),
                options: Vec::new(),
                default: p.default.clone().unwrap_or_default(),
                required: p.default.is_none(),
            };
            match &p.kind {
                ParamKind::String { pattern, max_len } => {
                    f.pattern = pattern.clone();
                    f.max_len = *max_len;
                }
                ParamKind::Integer { min, max } => {
                    f.input = "number";
                    f.min = min.to_string();
                    f.max = max.to_string();
                }
                ParamKind::Enum { values } => {
                    f.input = "select";
                    f.options = values.clone();
                }
                ParamKind::Bool => {
                    f.input = "checkbox";
                    f.required = false;
                }
            }
            f
        })
        .collect()
}

/// A snapshot ready for the template.
pub struct Shown {
    pub ticket: u64,
    pub item: EvidenceRef,
    pub snapshot: Snapshot,
    /// When the agent took it (its clock), seconds.
    pub taken_secs: u64,
    /// Critical first.
    pub findings: Vec<Finding>,
}

#[derive(askama::Template)]
#[template(path = "console/agent.html")]
struct AgentPage {
    me: Option<Me>,
    agent: AgentSummary,
    /// `(ticket, item)`, newest first.
    snapshots: Vec<(u64, EvidenceRef)>,
    shown: Option<Shown>,
    compared: Option<(String, Vec<String>)>,
    tickets: Vec<TicketSummary>,
    scripts: Vec<CatalogEntry>,
    script: Option<(CatalogEntry, Vec<Field>)>,
    problem: Option<String>,
}

fn parse_key(key: &str) -> Option<(u64, &str)> {
    let (ticket, sha) = key.split_once(':')?;
    Some((ticket.parse().ok()?, sha))
}

/// Reads and decodes a snapshot item of a ticket `session` may see.
async fn load(
    console: &Console,
    session: &Session,
    ticket: u64,
    sha: &str,
) -> Result<(EvidenceRef, Snapshot), Failure> {
    let (item, reader) =
        tickets::evidence(&console.shared, &session.principal, ticket, sha).await?;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        reader
            .take(MAX_SNAPSHOT_BYTES)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    })
    .await
    .map_err(|e| {
        Failure::new(
            deskside_proto::msg::tech::ErrorCode::Internal,
            e.to_string(),
        )
    })?
    .map_err(|e| {
        Failure::new(
            deskside_proto::msg::tech::ErrorCode::Internal,
            e.to_string(),
        )
    })?;
    let mut snapshot: Snapshot =
        deskside_proto::evidence::open(deskside_proto::evidence::EvidenceKind::Snapshot, &bytes)
            .map_err(|e| {
                Failure::new(
                    deskside_proto::msg::tech::ErrorCode::Internal,
                    format!("evidence {sha} is not a readable snapshot: {e}"),
                )
            })?;
    snapshot.findings = findings::evaluate(&snapshot);
    Ok((item, snapshot))
}

/// Open tickets the page's forms offer: this machine's first, then the newest others.
/// Each of its five forms lists them; with every open ticket of a large help desk
/// (10,000) the page was megabytes and took a browser half a second to lay out.
pub const TICKETS_OFFERED: usize = 100;

pub async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Query(choice): Query<Choice>,
) -> Response {
    let (agent, snapshots) = match agents::snapshots(&console.shared, &session.principal, &id).await
    {
        Ok(found) => found,
        Err(f) => return view::failure(session.me(), &f),
    };
    let mut problem = None;
    let wanted = parse_key(&choice.snapshot)
        .map(|(t, s)| (t, s.to_owned()))
        .or_else(|| snapshots.first().map(|(t, e)| (*t, e.sha256.clone())));
    let mut shown = None;
    if let Some((ticket, sha)) = wanted {
        match load(&console, &session, ticket, &sha).await {
            Ok((item, snapshot)) => {
                let mut findings = snapshot.findings.clone();
                findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
                shown = Some(Shown {
                    ticket,
                    item,
                    taken_secs: snapshot.collected_at_ms / 1000,
                    snapshot,
                    findings,
                });
            }
            Err(f) => problem = Some(f.message),
        }
    }
    let mut compared = None;
    if let (Some((ticket, sha)), Some(current)) = (parse_key(&choice.compare), &shown) {
        match load(&console, &session, ticket, sha).await {
            Ok((item, earlier)) => {
                compared = Some((
                    view::when(&item.created_at_secs),
                    crate::report::snapshot_changes(&earlier, &current.snapshot),
                ));
            }
            Err(f) => problem = Some(f.message),
        }
    }
    let tickets = match ask(&console, &session, TechRequest::ListTickets).await {
        Ok(TechReply::Tickets(t)) => {
            let mut open: Vec<_> = t.into_iter().filter(|t| t.status != "resolved").collect();
            // This machine's tickets first, newest first.
            open.sort_by_key(|t| {
                (
                    t.agent.as_deref() != Some(agent.id.as_str()),
                    std::cmp::Reverse(t.number),
                )
            });
            open.truncate(TICKETS_OFFERED);
            open
        }
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    let scripts = match ask(&console, &session, TechRequest::ListScripts).await {
        Ok(TechReply::Scripts(s)) => s,
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    let script = scripts
        .iter()
        .find(|s| s.name == choice.script)
        .map(|s| (s.clone(), fields(s)));
    view::render(&AgentPage {
        me: Some(session.me()),
        agent,
        snapshots,
        shown,
        compared,
        tickets,
        scripts,
        script,
        problem,
    })
}

/// The raw snapshot item as JSON, for people who want every field.
pub async fn snapshot(
    State(console): State<Arc<Console>>,
    session: Session,
    Path((_id, ticket, sha)): Path<(String, u64, String)>,
) -> Response {
    match load(&console, &session, ticket, &sha).await {
        Ok((_, snapshot)) => match serde_json::to_string_pretty(&snapshot) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => view::internal(&e.to_string()),
        },
        Err(f) => view::failure(session.me(), &f),
    }
}

/// The CSS class of a severity.
pub fn severity_class(s: &Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}
