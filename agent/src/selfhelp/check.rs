//! "Check my computer": a local snapshot, its findings, and for each what the user can
//! do about it — nothing leaves the machine.

use deskside_proto::msg::diag::Snapshot;

use crate::serve::AgentCtx;

use super::{CheckReport, CheckedFinding, advice, cache};

pub(crate) async fn check(ctx: &AgentCtx) -> CheckReport {
    // One check at a time, and a recent one answered again (`crate::self_check`).
    let snapshot = ctx.self_check.snapshot().await;
    let fixes: Vec<String> = cache::load(&ctx.state, &ctx.script_key)
        .into_iter()
        .map(|s| s.entry.name)
        .collect();
    report(&snapshot, &fixes)
}

/// The report for `snapshot` (its findings already evaluated); `fixes` are the
/// self-service scripts this machine has, so advice names only those.
pub fn report(snapshot: &Snapshot, fixes: &[String]) -> CheckReport {
    CheckReport {
        hostname: snapshot.host.hostname.clone(),
        collected_at_ms: snapshot.collected_at_ms,
        findings: snapshot
            .findings
            .iter()
            .map(|f| {
                let a = advice::advice(&f.code);
                CheckedFinding {
                    severity: f.severity,
                    code: f.code.clone(),
                    message: f.message.clone(),
                    advice: a.text.to_owned(),
                    fix: a
                        .fix
                        .filter(|s| fixes.iter().any(|n| n == s))
                        .map(str::to_owned),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::diag::{Finding, Severity};

    use super::*;

    #[test]
    fn each_finding_gets_advice_and_a_fix_only_when_the_machine_has_it() {
        let snapshot = Snapshot {
            findings: vec![Finding {
                severity: Severity::Warning,
                code: "network.no_dns_resolver".into(),
                message: "no DNS resolver is configured".into(),
            }],
            ..Snapshot::default()
        };
        let without = report(&snapshot, &[]);
        let [f] = without.findings.as_slice() else {
            panic!("one finding: {without:?}");
        };
        assert!(f.advice.contains("Reconnect"), "{}", f.advice);
        assert_eq!(f.fix, None);
        let with = report(&snapshot, &["flush-dns".to_owned()]);
        assert_eq!(
            with.findings.first().and_then(|f| f.fix.as_deref()),
            Some("flush-dns")
        );
    }
}
