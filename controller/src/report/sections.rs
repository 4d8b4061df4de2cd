//! The six sections of the report, built as [`Block`]s in reading order.

use deskside_proto::msg::diag::{Finding, Severity};
use deskside_proto::msg::script::RunResult;

use super::ItemSource;
use super::{
    Block, Loaded, clip, code, diff, duration, excerpt, field, load_all, ms_time, para, short,
    size, text,
};
use crate::bundle::Bundle;
use crate::clock::format_secs;

pub(super) fn document(bundle: &Bundle, items: ItemSource<'_>) -> Vec<Block> {
    let loaded = load_all(bundle, items);
    let t = &bundle.ticket;
    let mut doc = vec![Block::Title(format!("Ticket #{}: {}", t.number, t.title))];
    summary(bundle, &loaded, &mut doc);
    findings(&loaded, &mut doc);
    tried(&loaded, &mut doc);
    consent(bundle, &loaded, &mut doc);
    doc.push(Block::Heading("5. What changed".into()));
    doc.extend(loaded.snapshot_problems.iter().map(|p| para(p.clone())));
    match (loaded.snapshots.first(), loaded.snapshots.last()) {
        (Some((_, first)), Some((_, last))) if loaded.snapshots.len() >= 2 => {
            doc.push(para(format!(
                "Comparing the first snapshot ({}) with the last ({}), {} readable snapshots in all.",
                ms_time(first.collected_at_ms),
                ms_time(last.collected_at_ms),
                loaded.snapshots.len()
            )));
            doc.push(Block::List(
                diff::changes(first, last)
                    .into_iter()
                    .map(|l| vec![text(l)])
                    .collect(),
            ));
        }
        (Some(_), _) => doc.push(para(
            "There is one snapshot, so there is nothing to compare.",
        )),
        _ => doc.push(para(
            "There is no readable snapshot, so there is nothing to compare.",
        )),
    }
    evidence(bundle, &mut doc);
    doc
}

fn summary(bundle: &Bundle, loaded: &Loaded<'_>, doc: &mut Vec<Block>) {
    let t = &bundle.ticket;
    let mut lines = vec![
        field("Ticket", format!("#{}: {}", t.number, t.title)),
        field("Requester", &t.requester),
        field("Priority", &t.priority),
        field("Status", &t.status),
        field("Tier", t.tier.as_str().to_uppercase()),
        field("Owner", t.owner.as_deref().unwrap_or("nobody")),
    ];
    if let Some(r) = &t.external_ref {
        lines.push(field("External ticket", r));
    }
    if let Some(e) = &bundle.escalation {
        lines.push(field(
            "Escalation",
            format!(
                "{} → {} by {} at {}: {}",
                e.from.as_str().to_uppercase(),
                e.to.as_str().to_uppercase(),
                e.by,
                format_secs(e.at_secs),
                if e.note.is_empty() {
                    "(no note)"
                } else {
                    &e.note
                }
            ),
        ));
    }
    let due = |secs: u64, breached: bool| match (secs, breached) {
        (0, _) => "not set".to_owned(),
        (s, true) => format!("{}, BREACHED", format_secs(s)),
        (s, false) => format!("{}, not breached", format_secs(s)),
    };
    lines.push(field(
        "SLA",
        format!(
            "response due {}; resolution due {}",
            due(t.sla.response_due_secs, t.sla.response_breached),
            due(t.sla.resolution_due_secs, t.sla.resolution_breached)
        ),
    ));
    let agents: Vec<String> = bundle
        .agents
        .iter()
        .map(|a| format!("{} ({})", a.id, a.hostname))
        .collect();
    lines.push(field(
        "Agents",
        if agents.is_empty() {
            "none".to_owned()
        } else {
            agents.join(", ")
        },
    ));
    lines.push(field(
        "Evidence items",
        format!(
            "{} (readable: {} snapshot(s), {} script run(s))",
            bundle.items.len(),
            loaded.snapshots.len(),
            loaded.runs.len()
        ),
    ));
    lines.push(field(
        "Generated",
        format!(
            "{} by {}",
            format_secs(bundle.generated_at_secs),
            bundle.generator
        ),
    ));
    doc.push(Block::Heading("1. Summary".into()));
    doc.push(Block::List(lines));
}

fn findings(loaded: &Loaded<'_>, doc: &mut Vec<Block>) {
    doc.push(Block::Heading("2. Findings (latest snapshot)".into()));
    doc.extend(loaded.snapshot_problems.iter().map(|p| para(p.clone())));
    let Some((item, snap)) = loaded.snapshots.last() else {
        doc.push(para("There is no readable snapshot in this bundle."));
        return;
    };
    doc.push(para(format!(
        "From the snapshot of {} taken {} (item {}).",
        snap.host.hostname,
        ms_time(snap.collected_at_ms),
        short(&item.sha256)
    )));
    for (severity, title) in [
        (Severity::Critical, "Critical"),
        (Severity::Warning, "Warning"),
        (Severity::Info, "Info"),
    ] {
        doc.push(Block::Subheading(title.into()));
        let of: Vec<&Finding> = snap
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if of.is_empty() {
            doc.push(para("None."));
        } else {
            doc.push(Block::List(
                of.iter()
                    .map(|f| vec![code(&f.code), text(format!(": {}", f.message))])
                    .collect(),
            ));
        }
    }
}

fn tried(loaded: &Loaded<'_>, doc: &mut Vec<Block>) {
    doc.push(Block::Heading("3. What was tried".into()));
    doc.extend(loaded.run_problems.iter().map(|p| para(p.clone())));
    if loaded.runs.is_empty() {
        doc.push(para("No script was run on this ticket."));
    }
    for (n, (item, run)) in loaded.runs.iter().enumerate() {
        let r = &run.result;
        doc.push(Block::Subheading(format!(
            "{}. {} v{}",
            n + 1,
            run.script,
            run.version
        )));
        let params = if run.params.is_empty() {
            "none".to_owned()
        } else {
            run.params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        doc.push(Block::List(vec![
            field("Technician", &run.technician),
            field("Agent", &run.agent),
            field("Started", ms_time(run.started_at_ms)),
            field("Result", ended(r)),
            field(
                "Timed out / cancelled / output truncated",
                format!(
                    "{} / {} / {}",
                    yes_no(r.timed_out),
                    yes_no(r.cancelled),
                    yes_no(r.truncated)
                ),
            ),
            field("Duration", duration(r.duration_ms)),
            field("Parameters", params),
            field(
                "Session",
                run.grant.clone().unwrap_or_else(|| {
                    "none: the machine's policy allowed it unattended".to_owned()
                }),
            ),
            vec![text("Evidence item "), code(&item.sha256)],
        ]));
        for (name, out, bytes) in [
            ("stdout", &run.stdout, r.stdout_bytes),
            ("stderr", &run.stderr, r.stderr_bytes),
        ] {
            if out.is_empty() {
                doc.push(para(format!("{name}: empty.")));
            } else {
                doc.push(Block::Pre {
                    label: format!("{name} ({}):", size(bytes.max(out.len() as u64))),
                    text: excerpt(out),
                });
            }
        }
    }
}

fn ended(r: &RunResult) -> String {
    match (r.exit_code, r.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "no exit code".to_owned(),
    }
}

fn consent(bundle: &Bundle, loaded: &Loaded<'_>, doc: &mut Vec<Block>) {
    doc.push(Block::Heading("4. Consent record".into()));
    let entries: Vec<_> = bundle
        .timeline
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "session" | "session_ended" | "refused"))
        .collect();
    if entries.is_empty() {
        doc.push(para(
            "No session was involved: nobody requested, approved, ended or refused one on this \
             ticket. Anything collected here ran under the machine's own policy, without a \
             person approving it at the time.",
        ));
    } else {
        doc.push(Block::Table {
            head: vec!["Time (UTC)", "Who", "Kind", "What"],
            rows: entries
                .iter()
                .map(|e| {
                    vec![
                        text(format_secs(e.at_secs)),
                        text(&e.actor),
                        text(&e.kind),
                        text(clip(&e.detail)),
                    ]
                })
                .collect(),
        });
    }
    if entries.iter().any(|e| e.detail.contains("(Policy)")) {
        doc.push(para(
            "Grants marked (Policy) came from the machine's policy, which allows those scopes \
             unattended; no person approved them.",
        ));
    }
    let unattended = loaded
        .runs
        .iter()
        .filter(|(_, r)| r.grant.is_none())
        .count();
    if unattended > 0 {
        doc.push(para(format!(
            "{unattended} script run(s) ran without a session: the machine's policy allowed them \
             unattended."
        )));
    }
}

fn evidence(bundle: &Bundle, doc: &mut Vec<Block>) {
    doc.push(Block::Heading("6. Evidence".into()));
    doc.push(Block::Subheading("Items".into()));
    if bundle.items.is_empty() {
        doc.push(para("No evidence items."));
    } else {
        doc.push(Block::Table {
            head: vec![
                "Kind",
                "SHA-256",
                "Size",
                "Agent",
                "Created (UTC)",
                "Signed",
                "Redaction",
            ],
            rows: bundle
                .items
                .iter()
                .map(|i| {
                    vec![
                        text(&i.kind),
                        code(&i.sha256),
                        text(size(i.size_bytes)),
                        text(i.agent.as_deref().unwrap_or("-")),
                        text(format_secs(i.created_at_secs)),
                        text(if i.signature.is_some() { "yes" } else { "no" }),
                        text(if i.redaction.is_empty() {
                            "none".to_owned()
                        } else {
                            i.redaction.join(", ")
                        }),
                    ]
                })
                .collect(),
        });
    }
    doc.push(Block::Subheading("Timeline".into()));
    doc.push(Block::Table {
        head: vec!["Seq", "Time (UTC)", "Kind", "Actor", "Detail", "Hash"],
        rows: bundle
            .timeline
            .iter()
            .map(|e| {
                vec![
                    text(e.seq.to_string()),
                    text(format_secs(e.at_secs)),
                    text(&e.kind),
                    text(&e.actor),
                    text(clip(&e.detail)),
                    code(short(&e.hash)),
                ]
            })
            .collect(),
    });
}
