//! Log rules: the machine running out of memory and closing programs, and errors from
//! the kernel.

use super::finding;
use super::fmt::{count_u64, list, plural, quote};
use crate::msg::diag::{Finding, Severity, Snapshot};

/// This many kernel error lines turn the info into a warning.
const KERNEL_ERRORS_WARNING: usize = 10;

fn is_oom_line(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("out of memory")
        || lower.contains("oom-kill")
        || lower.contains("killed process")
}

/// `java (pid 4242)` from "Out of memory: Killed process 4242 (java) total-vm:...".
fn killed_process(text: &str) -> Option<String> {
    const MARKER: &str = "killed process ";
    let start = text.to_ascii_lowercase().find(MARKER)? + MARKER.len();
    let rest = text.get(start..)?;
    let (pid, rest) = rest.split_once(" (")?;
    let (name, _) = rest.split_once(')')?;
    Some(format!("{name} (pid {pid})"))
}

pub(super) fn oom_kills(s: &Snapshot, out: &mut Vec<Finding>) {
    let oom_lines: Vec<&str> = s
        .log_errors
        .iter()
        .map(|line| line.text.as_str())
        .filter(|text| is_oom_line(text))
        .collect();
    if oom_lines.is_empty() {
        return;
    }
    let mut killed: Vec<String> = Vec::new();
    for victim in oom_lines.iter().filter_map(|text| killed_process(text)) {
        if !killed.contains(&victim) {
            killed.push(victim);
        }
    }
    let message = if killed.is_empty() {
        format!(
            "the machine ran out of memory recently ({} log {} mention it); programs \
             may have been closed without warning",
            oom_lines.len(),
            plural(count_u64(oom_lines.len()), "line", "lines")
        )
    } else {
        format!(
            "the machine ran out of memory and the system closed {} to recover: {}; \
             unsaved work in {} is lost",
            plural(count_u64(killed.len()), "a program", "programs"),
            list(&killed),
            plural(count_u64(killed.len()), "it", "them")
        )
    };
    out.push(finding(Severity::Critical, "log.oom_kills", message));
}

pub(super) fn kernel_errors(s: &Snapshot, out: &mut Vec<Finding>) {
    let kernel_lines: Vec<&str> = s
        .log_errors
        .iter()
        .filter(|line| line.source == "kernel" && !is_oom_line(&line.text))
        .map(|line| line.text.as_str())
        .collect();
    let Some(first) = kernel_lines.first() else {
        return;
    };
    let count = kernel_lines.len();
    let severity = if count >= KERNEL_ERRORS_WARNING {
        Severity::Warning
    } else {
        Severity::Info
    };
    let message = if count == 1 {
        format!(
            "the system core (kernel) logged an error recently: \"{}\"",
            quote(first)
        )
    } else {
        format!(
            "the system core (kernel) logged {count} errors recently, the first: \"{}\"",
            quote(first)
        )
    };
    out.push(finding(severity, "log.kernel_errors", message));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::fixture::{NONE, healthy, log, message, severities};
    use crate::msg::diag::Severity;

    use Severity::{Critical, Info, Warning};

    #[test]
    fn log_oom_kills_names_the_killed_program() {
        let mut s = healthy();
        s.log_errors.push(log(
            "kernel",
            "Out of memory: Killed process 4242 (java) total-vm:9000000kB, anon-rss:8000000kB",
        ));
        assert_eq!(severities(&s, "log.oom_kills"), [Critical]);
        assert!(message(&s, "log.oom_kills").contains("java (pid 4242)"));
        // The OOM line is not also counted as a kernel error.
        assert_eq!(severities(&s, "log.kernel_errors"), NONE);
    }

    #[test]
    fn log_oom_kills_matches_oom_killer_lines() {
        let mut s = healthy();
        s.log_errors
            .push(log("journal", "systemd-oomd: oom-kill of user session"));
        assert_eq!(severities(&s, "log.oom_kills"), [Critical]);
    }

    #[test]
    fn log_kernel_errors_thresholds() {
        let with_lines = |n: usize| {
            let mut s = healthy();
            for i in 0..n {
                s.log_errors.push(log(
                    "kernel",
                    &format!("ata1.00: failed command: READ FPDMA QUEUED ({i})"),
                ));
            }
            s
        };
        assert_eq!(severities(&with_lines(0), "log.kernel_errors"), NONE);
        assert_eq!(severities(&with_lines(1), "log.kernel_errors"), [Info]);
        assert_eq!(severities(&with_lines(9), "log.kernel_errors"), [Info]);
        assert_eq!(severities(&with_lines(10), "log.kernel_errors"), [Warning]);
        assert!(message(&with_lines(10), "log.kernel_errors").starts_with(
            "the system core (kernel) logged 10 errors recently, the first: \"ata1.00"
        ));
    }
}
