//! `/agents`: the fleet — search, filter (online, OS, worst finding), sort, paginate; the
//! columns shown are each technician's choice and remembered.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::console::Console;
use crate::console::auth::{Posted, Session};
use crate::console::view::{self, Me};
use crate::service::agents::{FleetRow, fleet};

/// Rows per page.
pub const PAGE_ROWS: usize = 50;

/// The columns a technician may show, in display order: (key, heading).
pub const COLUMNS: &[(&str, &str)] = &[
    ("hostname", "Hostname"),
    ("state", "State"),
    ("os", "OS"),
    ("finding", "Worst finding"),
    ("last_seen", "Last seen"),
    ("kernel", "Kernel"),
    ("version", "Agent version"),
    ("enrolled", "Enrolled"),
    ("id", "Agent id"),
];
const DEFAULT_COLUMNS: &[&str] = &["hostname", "state", "os", "finding", "last_seen"];

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub q: String,
    /// `online`, `offline`, or anything else for both.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub os: String,
    /// `critical`, `warning`, `info`, `none`, or anything else for all.
    #[serde(default)]
    pub finding: String,
    /// `hostname`, `os`, `finding`, `last_seen`, `enrolled`.
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub desc: bool,
    #[serde(default)]
    pub page: usize,
}

fn severity_rank(s: Option<&str>) -> u8 {
    match s {
        Some("critical") => 3,
        Some("warning") => 2,
        Some("info") => 1,
        _ => 0,
    }
}

/// The rows matching `f`, sorted; the caller pages them.
pub fn select(rows: Vec<FleetRow>, f: &Filter) -> Vec<FleetRow> {
    let q = f.q.trim().to_lowercase();
    let os = f.os.trim().to_lowercase();
    let mut out: Vec<FleetRow> = rows
        .into_iter()
        .filter(|r| !r.agent.revoked)
        .filter(|r| {
            q.is_empty()
                || r.agent.hostname.to_lowercase().contains(&q)
                || r.agent.id.to_lowercase().starts_with(&q)
        })
        .filter(|r| match f.state.as_str() {
            "online" => r.agent.online,
            "offline" => !r.agent.online,
            _ => true,
        })
        .filter(|r| os.is_empty() || r.agent.os.to_lowercase().contains(&os))
        .filter(|r| match f.finding.as_str() {
            "none" => r.worst_finding.is_none(),
            wanted @ ("critical" | "warning" | "info") => {
                r.worst_finding.as_deref() == Some(wanted)
            }
            _ => true,
        })
        .collect();
    match f.sort.as_str() {
        "os" => out.sort_by(|a, b| {
            a.agent
                .os
                .cmp(&b.agent.os)
                .then(a.agent.hostname.cmp(&b.agent.hostname))
        }),
        "finding" => out.sort_by(|a, b| {
            severity_rank(b.worst_finding.as_deref())
                .cmp(&severity_rank(a.worst_finding.as_deref()))
                .then(a.agent.hostname.cmp(&b.agent.hostname))
        }),
        "last_seen" => out.sort_by_key(|r| std::cmp::Reverse(r.agent.last_seen_secs)),
        "enrolled" => out.sort_by_key(|r| std::cmp::Reverse(r.agent.enrolled_at_secs)),
        _ => out.sort_by(|a, b| {
            a.agent
                .hostname
                .cmp(&b.agent.hostname)
                .then(a.agent.id.cmp(&b.agent.id))
        }),
    }
    if f.desc {
        out.reverse();
    }
    out
}

/// One table cell's text for column `key`.
pub fn cell(row: &FleetRow, key: &str) -> String {
    let a = &row.agent;
    match key {
        "hostname" => a.hostname.clone(),
        "state" => if a.online { "online" } else { "offline" }.to_owned(),
        "os" => a.os.clone(),
        "finding" => row
            .worst_finding
            .clone()
            .unwrap_or_else(|| match row.snapshot_at_secs {
                Some(_) => "none".to_owned(),
                None => "no snapshot yet".to_owned(),
            }),
        "last_seen" => a
            .last_seen_secs
            .map_or("never".to_owned(), |s| view::relative(&s)),
        "kernel" => a.kernel.clone(),
        "version" => a.agent_version.clone(),
        "enrolled" => view::when(&a.enrolled_at_secs),
        "id" => a.id.clone(),
        _ => String::new(),
    }
}

#[derive(askama::Template)]
#[template(path = "console/agents.html")]
struct AgentsPage {
    me: Option<Me>,
    filter: Filter,
    /// (key, heading) of the chosen columns.
    columns: Vec<(&'static str, &'static str)>,
    /// (key, heading, chosen) of every column, for the chooser.
    choices: Vec<(&'static str, &'static str, bool)>,
    /// (agent id, cells as (CSS class, text)).
    rows: Vec<(String, Vec<(&'static str, String)>)>,
    total: usize,
    page: usize,
    pages: usize,
    /// The query string without `page`, for the pager's links.
    query: String,
}

pub async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Response {
    let rows = match fleet(&console.shared, &session.principal).await {
        Ok(r) => r,
        Err(f) => return view::failure(session.me(), &f),
    };
    let name = session.principal.name.clone();
    let chosen = console
        .shared
        .store
        .run(move |db| db.console_columns(&name))
        .await
        .ok()
        .flatten();
    let chosen: Vec<&str> = match &chosen {
        Some(list) => list.split(',').collect(),
        None => DEFAULT_COLUMNS.to_vec(),
    };
    let columns: Vec<_> = COLUMNS
        .iter()
        .copied()
        .filter(|(k, _)| chosen.contains(k))
        .collect();
    let selected = select(rows, &filter);
    let total = selected.len();
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let page = filter.page.min(pages - 1);
    let rows = selected
        .iter()
        .skip(page * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|r| {
            let class = |k: &str| match (k, r.agent.online) {
                ("state", true) => "state online",
                ("state", false) => "state offline",
                _ => "",
            };
            (
                r.agent.id.clone(),
                columns
                    .iter()
                    .map(|(k, _)| (class(k), cell(r, k)))
                    .collect(),
            )
        })
        .collect();
    let query = serde_urlencoded::to_string([
        ("q", filter.q.as_str()),
        ("state", filter.state.as_str()),
        ("os", filter.os.as_str()),
        ("finding", filter.finding.as_str()),
        ("sort", filter.sort.as_str()),
        ("desc", if filter.desc { "true" } else { "false" }),
    ])
    .unwrap_or_default();
    view::render(&AgentsPage {
        me: Some(session.me()),
        choices: COLUMNS
            .iter()
            .map(|(k, h)| (*k, *h, chosen.contains(k)))
            .collect(),
        columns,
        rows,
        total,
        page,
        pages,
        query,
        filter,
    })
}

/// The column chooser's form: a `col` field per ticked column (repeated keys).
pub async fn columns(
    State(console): State<Arc<Console>>,
    posted: Posted<Vec<(String, String)>>,
) -> Response {
    let chosen: Vec<&str> = COLUMNS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| posted.form.iter().any(|(f, v)| f == "col" && v == k))
        .collect();
    let list = if chosen.is_empty() {
        DEFAULT_COLUMNS.join(",")
    } else {
        chosen.join(",")
    };
    let name = posted.session.principal.name.clone();
    if let Err(e) = console
        .shared
        .store
        .run(move |db| db.set_console_columns(&name, &list))
        .await
    {
        return view::internal(&e.to_string());
    }
    Redirect::to("/agents").into_response()
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::tech::AgentSummary;

    use super::*;

    fn row(host: &str, os: &str, online: bool, worst: Option<&str>) -> FleetRow {
        FleetRow {
            agent: AgentSummary {
                id: format!("id-{host}"),
                hostname: host.into(),
                os: os.into(),
                kernel: String::new(),
                agent_version: String::new(),
                enrolled_at_secs: 0,
                last_seen_secs: None,
                online,
                revoked: false,
            },
            worst_finding: worst.map(str::to_owned),
            snapshot_at_secs: worst.map(|_| 1),
        }
    }

    #[test]
    fn filters_combine_and_sorting_puts_the_worst_first() {
        let rows = vec![
            row("pc-02", "Debian 12", true, Some("warning")),
            row("pc-01", "Ubuntu 24.04", false, Some("critical")),
            row("lab-1", "Debian 12", true, None),
        ];
        let f = Filter {
            os: "debian".into(),
            state: "online".into(),
            ..Filter::default()
        };
        let hosts: Vec<_> = select(rows.clone(), &f)
            .into_iter()
            .map(|r| r.agent.hostname)
            .collect();
        assert_eq!(hosts, ["lab-1", "pc-02"]);
        let f = Filter {
            sort: "finding".into(),
            ..Filter::default()
        };
        let hosts: Vec<_> = select(rows.clone(), &f)
            .into_iter()
            .map(|r| r.agent.hostname)
            .collect();
        assert_eq!(hosts, ["pc-01", "pc-02", "lab-1"]);
        let f = Filter {
            q: "PC-0".into(),
            finding: "critical".into(),
            ..Filter::default()
        };
        assert_eq!(select(rows, &f).len(), 1);
    }
}
