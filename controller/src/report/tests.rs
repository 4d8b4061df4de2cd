//! Reports rendered from a bundle built here: sections in order, both formats saying the
//! same, escaping, missing items and long output.

use std::collections::HashMap;

use deskside_proto::msg::diag::{Disk, Finding, Host, Memory, Severity, Snapshot};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{RunRecord, RunResult};
use deskside_proto::msg::tech::{Sla, TicketSummary, TimelineEntry};
use sha2::{Digest, Sha256};

use super::*;
use crate::bundle::{BundleAgent, BundleItem, Escalation};

const GIB: u64 = 1 << 30;
/// 2026-11-26 10:00:00 UTC.
const T0: u64 = 1_795_687_200;

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn finding(severity: Severity, code: &str, message: &str) -> Finding {
    Finding {
        severity,
        code: code.into(),
        message: message.into(),
    }
}

fn snapshot(at: u64, used_gib: u64, findings: Vec<Finding>) -> Snapshot {
    Snapshot {
        collected_at_ms: at * 1000,
        host: Host {
            hostname: "ws-0042".into(),
            uptime_secs: at - (T0 - 86_400),
            boot_time_secs: T0 - 86_400,
            users: Vec::new(),
        },
        memory: Memory {
            total_bytes: 16 * GIB,
            available_bytes: 4 * GIB,
            ..Memory::default()
        },
        disks: vec![Disk {
            device: "/dev/sda1".into(),
            mount: "/".into(),
            fs_type: "ext4".into(),
            total_bytes: 100 * GIB,
            used_bytes: used_gib * GIB,
            available_bytes: (100 - used_gib) * GIB,
            ..Disk::default()
        }],
        findings,
        ..Snapshot::default()
    }
}

fn run_record(stdout: String) -> RunRecord {
    RunRecord {
        script: "clean-tmp".into(),
        version: 3,
        body_sha256: "ab".repeat(32),
        tier: Tier::L1,
        agent: "agent-1".into(),
        technician: "alice".into(),
        ticket: 42,
        grant: Some("g-7".into()),
        params: vec![("DESKSIDE_PARAM_DAYS".into(), "7".into())],
        started_at_ms: (T0 + 120) * 1000,
        result: RunResult {
            exit_code: Some(3),
            duration_ms: 2500,
            stdout_bytes: stdout.len() as u64,
            ..RunResult::default()
        },
        stdout,
        stderr: "rm: cannot remove '/tmp/x': Permission denied\n".into(),
    }
}

fn entry(seq: u64, kind: &str, actor: &str, detail: &str, ev: Option<&str>) -> TimelineEntry {
    TimelineEntry {
        seq,
        at_secs: T0 + seq * 60,
        actor: actor.into(),
        kind: kind.into(),
        detail: detail.into(),
        evidence_sha256: ev.map(str::to_owned),
        prev_hash: "0".repeat(64),
        hash: format!("{seq:02}").repeat(32),
    }
}

fn item(kind: &str, sha256: &str, size_bytes: usize) -> BundleItem {
    BundleItem {
        sha256: sha256.into(),
        kind: kind.into(),
        size_bytes: size_bytes as u64,
        agent: Some("agent-1".into()),
        created_at_secs: T0,
        signer: crate::bundle::Signer::of_kind(kind),
        signature: Some("3045".into()),
        redaction: vec!["home-paths".into()],
    }
}

/// A bundle with two snapshots around one script run, and the bytes of its items.
fn fixture(stdout: String) -> (Bundle, HashMap<String, Vec<u8>>) {
    let first = snapshot(
        T0 + 60,
        80,
        vec![finding(Severity::Warning, "disk.filling", "/ is 80% full")],
    );
    let last = snapshot(
        T0 + 180,
        97,
        vec![
            finding(Severity::Info, "updates.pending", "3 updates pending"),
            finding(
                Severity::Critical,
                "disk.nearly_full",
                "/ is 97% full (3.0 GiB free)",
            ),
            finding(Severity::Warning, "disk.filling", "/ is filling"),
        ],
    );
    let blobs: Vec<(&str, Vec<u8>)> = vec![
        ("snapshot", serde_json::to_vec(&first).unwrap_or_default()),
        (
            "script_run",
            serde_json::to_vec(&run_record(stdout)).unwrap_or_default(),
        ),
        ("snapshot", serde_json::to_vec(&last).unwrap_or_default()),
    ];
    let items: Vec<BundleItem> = blobs
        .iter()
        .map(|(k, b)| item(k, &sha(b), b.len()))
        .collect();
    let shas: Vec<String> = items.iter().map(|i| i.sha256.clone()).collect();
    let ev = |n: usize| shas.get(n).map(String::as_str);
    let timeline = vec![
        entry(
            0,
            "session",
            "alice",
            "session g-7 approved (UserApproved): diagnostics, scripts-l1",
            None,
        ),
        entry(1, "snapshot", "alice", "snapshot of ws-0042", ev(0)),
        entry(2, "script", "alice", "clean-tmp v3 exit 3", ev(1)),
        entry(3, "snapshot", "alice", "snapshot of ws-0042", ev(2)),
        entry(
            4,
            "session_ended",
            "agent agent-1",
            "session g-7 ended by the user",
            None,
        ),
    ];
    let bundle = Bundle {
        format: crate::bundle::BUNDLE_FORMAT,
        generated_at_secs: T0 + 3600,
        generator: "deskside 0.1.0".into(),
        ticket: TicketSummary {
            number: 42,
            title: "Disk full <script>alert(1)</script>".into(),
            status: "escalated".into(),
            tier: Tier::L2,
            priority: "high".into(),
            requester: "bob@example.org".into(),
            owner: Some("carol".into()),
            agent: Some("agent-1".into()),
            created_by: "alice".into(),
            created_at_secs: T0,
            first_response_at_secs: Some(T0 + 60),
            resolved_at_secs: None,
            evidence_count: 3,
            sla: Sla {
                response_due_secs: T0 + 3600,
                resolution_due_secs: T0 + 8 * 3600,
                response_breached: false,
                resolution_breached: true,
            },
            external_ref: None,
            sync_state: None,
        },
        escalation: Some(Escalation {
            from: Tier::L1,
            to: Tier::L2,
            note: "cleanup failed, needs root".into(),
            by: "alice".into(),
            at_secs: T0 + 600,
        }),
        timeline,
        items: items.clone(),
        agents: vec![BundleAgent {
            id: "agent-1".into(),
            hostname: "ws-0042".into(),
            cert_pem: String::new(),
        }],
        ca_pem: String::new(),
        controller_cert_pem: String::new(),
    };
    let map = items
        .iter()
        .map(|i| i.sha256.clone())
        .zip(blobs.into_iter().map(|(_, b)| b))
        .collect();
    (bundle, map)
}

fn render(
    stdout: &str,
    drop: Option<usize>,
    f: fn(&Bundle, ItemSource<'_>) -> String,
) -> (Bundle, String) {
    let (bundle, mut map) = fixture(stdout.to_owned());
    if let Some(sha) = drop
        .and_then(|n| bundle.items.get(n))
        .map(|i| i.sha256.clone())
    {
        map.remove(&sha);
    }
    let source = move |sha: &str| map.get(sha).cloned();
    let out = f(&bundle, &source);
    (bundle, out)
}

/// Positions of each needle in `hay`, asserting all are present and in this order.
fn assert_in_order(hay: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        let at = hay.get(from..).and_then(|rest| rest.find(n));
        assert!(at.is_some(), "{n:?} missing or out of order in:\n{hay}");
        from += at.unwrap_or_default() + n.len();
    }
}

#[test]
fn markdown_has_every_section_in_order() {
    let (_, md) = render("ok\n", None, markdown);
    assert_in_order(
        &md,
        &[
            "## 1. Summary",
            "#42",
            "bob@example.org",
            "high",
            "escalated",
            "L1 → L2 by alice at 2026-11-26 10:10:00 UTC: cleanup failed, needs root",
            "resolution due 2026-11-26 18:00:00 UTC, BREACHED",
            "agent-1 (ws-0042)",
            "3 (readable: 2 snapshot(s), 1 script run(s))",
            "2026-11-26 11:00:00 UTC",
            "## 2. Findings",
            "## 3. What was tried",
            "clean-tmp v3",
            "alice",
            "exit code 3",
            "no / no / no",
            "2.5 s",
            "DESKSIDE\\_PARAM\\_DAYS=7",
            "Permission denied",
            "## 4. Consent record",
            "approved (UserApproved)",
            "ended by the user",
            "## 5. What changed",
            "## 6. Evidence",
            "home-paths",
            "| 4 | 2026-11-26 10:04:00 UTC | session\\_ended |",
        ],
    );
    assert!(!md.contains("No session was involved"));
}

#[test]
fn findings_come_critical_then_warning_then_info() {
    let (_, md) = render("ok\n", None, markdown);
    let start = md.find("## 2. Findings").unwrap_or(usize::MAX);
    let section = md.get(start..).unwrap_or_default();
    assert_in_order(
        section,
        &[
            "### Critical",
            "`disk.nearly_full`: / is 97% full (3.0 GiB free)",
            "### Warning",
            "`disk.filling`: / is filling",
            "### Info",
            "`updates.pending`: 3 updates pending",
            "## 3.",
        ],
    );
}

#[test]
fn diff_reports_disk_growth_and_new_finding() {
    let (_, md) = render("ok\n", None, markdown);
    let start = md.find("## 5. What changed").unwrap_or(usize::MAX);
    let section = md.get(start..).unwrap_or_default();
    assert_in_order(
        section,
        &[
            "Finding appeared: disk.nearly\\_full (critical)",
            "Disk /: 80% used, 20.0 GiB free → 97% used, 3.0 GiB free.",
            "Memory available: unchanged, 4.0 GiB (of 16.0 GiB).",
            "No reboot between the snapshots",
            "## 6.",
        ],
    );
    assert!(
        !section
            .get(..section.find("## 6.").unwrap_or(0))
            .unwrap_or_default()
            .contains("Finding gone")
    );
}

#[test]
fn html_escapes_ticket_and_script_text_and_is_self_contained() {
    let (_, html) = render(
        "<script>steal()</script>\nvisit https://evil.example/x\n",
        None,
        html,
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(
        html.contains("Disk full &lt;script&gt;alert(1)&lt;&#47;script&gt;")
            || html.contains("Disk full &lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(html.contains("&lt;script&gt;steal()&lt;/script&gt;"));
    assert!(html.contains("<style>") && !html.contains("<link") && !html.contains("<img"));
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
}

#[test]
fn html_carries_same_key_facts() {
    let (bundle, html) = render("ok\n", None, html);
    assert_in_order(
        &html,
        &[
            "<h2>1. Summary</h2>",
            "bob@example.org",
            "L1 → L2 by alice",
            "BREACHED",
            "<h2>2. Findings (latest snapshot)</h2>",
            "disk.nearly_full",
            "disk.filling",
            "updates.pending",
            "<h2>3. What was tried</h2>",
            "clean-tmp v3",
            "exit code 3",
            "Permission denied",
            "<h2>4. Consent record</h2>",
            "<h2>5. What changed</h2>",
            "80% used, 20.0 GiB free → 97% used, 3.0 GiB free",
            "<h2>6. Evidence</h2>",
        ],
    );
    for i in &bundle.items {
        assert!(html.contains(&i.sha256));
    }
}

#[test]
fn missing_item_is_reported_not_panicked() {
    let (bundle, md) = render("ok\n", Some(2), markdown);
    let sha = bundle
        .items
        .get(2)
        .map(|i| i.sha256.clone())
        .unwrap_or_default();
    assert!(md.contains(&format!(
        "item {sha} (snapshot) could not be read: its bytes are missing"
    )));
    // The latest readable snapshot is used, and there is nothing left to compare.
    assert!(md.contains("`disk.filling`: / is 80% full"));
    assert!(md.contains("There is one snapshot, so there is nothing to compare."));
    let (_, html) = render("ok\n", Some(1), html);
    assert!(html.contains("(script_run) could not be read"));
    assert!(html.contains("No script was run on this ticket."));
    let (bundle, mut map) = fixture("ok\n".into());
    if let Some(first) = bundle.items.first() {
        map.insert(first.sha256.clone(), b"{not json".to_vec());
    }
    let source = move |sha: &str| map.get(sha).cloned();
    assert!(markdown(&bundle, &source).contains("do not match its SHA-256"));
}

#[test]
fn long_stdout_is_elided() {
    let stdout: String = (1..=5000)
        .map(|n| format!("out-{n:04}\n"))
        .collect::<String>()
        + &"x".repeat(100_000);
    let (_, md) = render(&stdout, None, markdown);
    assert_in_order(
        &md,
        &[
            "out-0001",
            "out-0015",
            "[… 4971 lines omitted …]",
            "out-4987",
            "out-5000",
            "[… 99700 more characters]",
        ],
    );
    assert!(!md.contains("out-0016") && !md.contains("out-4986"));
    assert!(md.len() < 20_000, "{}", md.len());
}

#[test]
fn no_session_and_single_snapshot_are_said_plainly() {
    let (mut bundle, map) = fixture("ok\n".into());
    bundle.timeline.retain(|e| !e.kind.starts_with("session"));
    bundle.items.truncate(1);
    let source = move |sha: &str| map.get(sha).cloned();
    let md = markdown(&bundle, &source);
    assert!(md.contains("No session was involved"));
    assert!(md.contains("There is one snapshot, so there is nothing to compare."));
    assert!(md.contains("No script was run on this ticket."));
}
