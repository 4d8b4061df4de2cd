//! Human and JSON output for technician commands. `--json` prints exactly one JSON
//! document on stdout; human output is for people and may change.

use anyhow::Result;
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::script::{CatalogEntry, ParamKind};
use deskside_proto::msg::tech::{
    AgentSummary, DiagReport, EvidenceRef, ScriptView, TicketSummary, TicketView,
};
use deskside_proto::summary;
use serde::Serialize;

use crate::clock::{ago, format_secs};

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `deskside diag --json`: the snapshot's own paths at the top level (the contract shared
/// with `deskside-agent diag --json`), plus where it was stored.
#[derive(Debug, Serialize)]
pub struct DiagJson<'a> {
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
    pub ticket: u64,
    pub agent: &'a str,
    pub evidence: &'a EvidenceRef,
}

impl<'a> From<&'a DiagReport> for DiagJson<'a> {
    fn from(r: &'a DiagReport) -> Self {
        DiagJson {
            snapshot: &r.snapshot,
            ticket: r.ticket,
            agent: &r.agent,
            evidence: &r.evidence,
        }
    }
}

pub fn agents(list: &[AgentSummary]) {
    if list.is_empty() {
        println!(
            "no agents enrolled yet (deskside token create, then deskside-agent enroll TOKEN)"
        );
        return;
    }
    println!(
        "{:<16} {:<20} {:<8} {:<12} OS",
        "ID", "HOSTNAME", "STATE", "LAST SEEN"
    );
    for a in list {
        let state = if a.revoked {
            "revoked"
        } else if a.online {
            "online"
        } else {
            "offline"
        };
        println!(
            "{:<16} {:<20} {:<8} {:<12} {}",
            a.id,
            a.hostname,
            state,
            ago(a.last_seen_secs),
            a.os
        );
    }
}

/// "2h10m left", "breached 35m ago", "met".
fn sla_text(due: u64, done_at: Option<u64>, breached: bool) -> String {
    let now = crate::clock::now_secs();
    let span = |secs: u64| {
        humantime::format_duration(std::time::Duration::from_secs(secs / 60 * 60)).to_string()
    };
    match (done_at, breached) {
        (Some(_), false) => "met".into(),
        (Some(at), true) => format!("missed by {}", span(at.saturating_sub(due))),
        (None, true) => format!("BREACHED {} ago", span(now.saturating_sub(due))),
        (None, false) => format!("{} left", span(due.saturating_sub(now))),
    }
}

pub fn tickets(list: &[TicketSummary]) {
    if list.is_empty() {
        println!("no tickets yet (deskside ticket new --title TEXT)");
        return;
    }
    println!(
        "{:>5} {:<9} {:<4} {:<7} {:<16} {:>4}  {:<24} TITLE",
        "#", "STATUS", "TIER", "PRIO", "AGENT", "EVID", "SLA"
    );
    for t in list {
        let sla = if t.status == "resolved" {
            sla_text(
                t.sla.resolution_due_secs,
                t.resolved_at_secs,
                t.sla.resolution_breached,
            )
        } else if t.first_response_at_secs.is_none() {
            format!(
                "response {}",
                sla_text(t.sla.response_due_secs, None, t.sla.response_breached)
            )
        } else {
            format!(
                "fix {}",
                sla_text(t.sla.resolution_due_secs, None, t.sla.resolution_breached)
            )
        };
        println!(
            "{:>5} {:<9} {:<4} {:<7} {:<16} {:>4}  {:<24} {}",
            t.number,
            t.status,
            t.tier,
            t.priority,
            t.agent.as_deref().unwrap_or("-"),
            t.evidence_count,
            sla,
            t.title
        );
    }
}

/// The external ticket and the sync state (which ends with the external ticket's link
/// once synced), or `None` for a ticket never pushed anywhere.
fn sync_line(t: &TicketSummary) -> Option<String> {
    if t.external_ref.is_none() && t.sync_state.is_none() {
        return None;
    }
    Some(format!(
        "external ticket {}; sync: {}",
        t.external_ref.as_deref().unwrap_or("not created yet"),
        t.sync_state.as_deref().unwrap_or("none yet")
    ))
}

pub fn ticket(view: &TicketView) {
    let t = &view.ticket;
    println!("ticket #{}: {}", t.number, t.title);
    println!(
        "  status {}, tier {}, opened by {} at {}",
        t.status,
        t.tier,
        t.created_by,
        format_secs(t.created_at_secs)
    );
    if let Some(agent) = &t.agent {
        println!("  agent {agent}");
    }
    if let Some(line) = sync_line(t) {
        println!("  {line}");
    }
    println!("timeline:");
    for e in &view.timeline {
        println!(
            "  {:>3}. {}  {:<9} {}: {}",
            e.seq,
            format_secs(e.at_secs),
            e.kind,
            e.actor,
            e.detail
        );
    }
    if !view.evidence.is_empty() {
        println!("evidence:");
        for e in &view.evidence {
            println!(
                "  {} {:>9} bytes  sha256:{}  {}",
                e.kind, e.size_bytes, e.sha256, e.location
            );
        }
    }
}

pub fn diag(report: &DiagReport) {
    print!("{}", summary::render(&report.snapshot));
    println!();
    println!(
        "stored on ticket #{} as evidence sha256:{} ({} bytes)\n  {}",
        report.ticket, report.evidence.sha256, report.evidence.size_bytes, report.evidence.location
    );
}

pub fn scripts(list: &[CatalogEntry]) {
    if list.is_empty() {
        println!(
            "the catalog is empty (an admin adds scripts with `deskside script add catalog/*.toml`)"
        );
        return;
    }
    println!("{:<22} {:<4} {:>3}  DESCRIPTION", "NAME", "TIER", "VER");
    for e in list {
        let l0 = if e.self_service {
            " [self-service]"
        } else {
            ""
        };
        println!(
            "{:<22} {:<4} {:>3}  {}{l0}",
            e.name, e.tier, e.version, e.description
        );
    }
}

pub fn script(view: &ScriptView) {
    let e = &view.entry;
    println!(
        "{} v{} ({}, {}, {}, timeout {}s)",
        e.name,
        e.version,
        e.tier,
        e.os,
        e.interpreter.path(),
        e.timeout_secs
    );
    println!("  {}", e.description);
    println!("  changes: {}", e.changes);
    if e.self_service {
        println!(
            "  self-service: the machine's user may run it alone (deskside-agent fix {})",
            e.name
        );
    }
    for p in &e.params {
        let kind = match &p.kind {
            ParamKind::String { pattern, max_len } => {
                format!("string matching {pattern:?}, at most {max_len} bytes")
            }
            ParamKind::Integer { min, max } => format!("integer {min}..={max}"),
            ParamKind::Enum { values } => format!("one of {}", values.join(", ")),
            ParamKind::Bool => "true or false".into(),
        };
        let default = p
            .default
            .as_deref()
            .map_or(" (required)".into(), |d| format!(" (default {d})"));
        println!("  --param {}=…  {kind}{default}: {}", p.name, p.description);
    }
    println!("  body sha256:{}\n", view.body_sha256);
    print!("{}", view.body);
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::identity::Tier;
    use deskside_proto::msg::tech::Sla;

    use super::*;

    #[test]
    fn ticket_show_tells_the_sync_state_and_link() {
        let mut t = TicketSummary {
            number: 7,
            title: "printer".into(),
            status: "escalated".into(),
            tier: Tier::L2,
            priority: "normal".into(),
            requester: String::new(),
            owner: None,
            agent: None,
            created_by: "alice".into(),
            created_at_secs: 0,
            first_response_at_secs: None,
            resolved_at_secs: None,
            evidence_count: 0,
            sla: Sla::default(),
            external_ref: None,
            sync_state: None,
        };
        assert_eq!(sync_line(&t), None);
        t.sync_state = Some("retrying (attempt 1): no answer".into());
        assert_eq!(
            sync_line(&t).as_deref(),
            Some("external ticket not created yet; sync: retrying (attempt 1): no answer")
        );
        t.external_ref = Some("rt:42".into());
        t.sync_state = Some(
            "synced to rt:42 at 2026-12-05 08:00 UTC (https://rt/Ticket/Display.html?id=42)".into(),
        );
        let line = sync_line(&t).unwrap_or_default();
        assert!(
            line.starts_with("external ticket rt:42; sync: synced"),
            "{line}"
        );
        assert!(line.contains("Display.html?id=42"), "{line}");
    }
}
