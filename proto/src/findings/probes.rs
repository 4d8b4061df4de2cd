//! The probes rule: which checks could not run, so which parts of the report are missing.

use super::finding;
use super::fmt::{count_u64, list, plural, quote};
use crate::msg::diag::{Finding, Severity, Snapshot};

pub(super) fn failed(s: &Snapshot, out: &mut Vec<Finding>) {
    let failed: Vec<String> = s
        .probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| match p.error.as_deref() {
            Some(error) if !error.is_empty() => format!("{} ({})", p.name, quote(error)),
            _ => p.name.clone(),
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    let count = failed.len();
    out.push(finding(
        Severity::Info,
        "probes.failed",
        format!(
            "{count} {} could not run, so {} of this report {} missing: {}",
            plural(count_u64(count), "check", "checks"),
            plural(count_u64(count), "that part", "those parts"),
            plural(count_u64(count), "is", "are"),
            list(&failed)
        ),
    ));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{healthy, message, severities};
    use crate::msg::diag::{ProbeReport, Severity};

    use Severity::Info;

    #[test]
    fn probes_failed_lists_probe_names() {
        let mut s = healthy();
        s.probes.push(ProbeReport {
            name: "temperatures".to_owned(),
            ok: false,
            error: Some("timed out after 2 s".to_owned()),
            elapsed_ms: 2_000,
        });
        assert_eq!(severities(&s, "probes.failed"), [Info]);
        assert_eq!(
            message(&s, "probes.failed"),
            "1 check could not run, so that part of this report is missing: \
             temperatures (timed out after 2 s)"
        );
    }
}
