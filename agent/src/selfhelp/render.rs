//! Self-service results as text for a terminal (the desktop helper draws its own).

use std::fmt::Write as _;

use deskside_proto::msg::script::ParamKind;

use super::{CheckReport, FixOutcome, SelfFix};

/// Output shown per stream when a fix ends; the control socket's reply stays small, and
/// the signed record keeps everything the runner kept.
pub const MAX_SHOWN_OUTPUT: usize = 64 * 1024;

/// `text` cut to [`MAX_SHOWN_OUTPUT`] bytes at a character boundary, marked when cut.
pub fn shown(text: &str) -> String {
    if text.len() <= MAX_SHOWN_OUTPUT {
        return text.to_owned();
    }
    let mut end = MAX_SHOWN_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… output cut here; the record of the run has more]\n",
        text.get(..end).unwrap_or_default()
    )
}

pub fn check(report: &CheckReport) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        let _ = writeln!(out, "{}: no problems found.", report.hostname);
        return out;
    }
    let _ = writeln!(
        out,
        "{}: {} things to look at",
        report.hostname,
        report.findings.len()
    );
    for f in &report.findings {
        let _ = writeln!(out, "\n[{}] {}", f.severity, f.message);
        let _ = writeln!(out, "  What you can do: {}", f.advice);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "  Fix it yourself: deskside-agent fix {fix}");
        }
    }
    let _ = writeln!(
        out,
        "\nStill stuck? deskside-agent ask \"what is wrong\" sends this to your help desk."
    );
    out
}

fn kind(k: &ParamKind) -> String {
    match k {
        ParamKind::Enum { values } => values.join("|"),
        ParamKind::Bool => "true|false".into(),
        ParamKind::Integer { min, max } => format!("{min}..{max}"),
        ParamKind::String { .. } => "text".into(),
    }
}

pub fn fixes(list: &[SelfFix]) -> String {
    if list.is_empty() {
        return "No self-service fixes on this machine yet (they arrive from your help desk when the agent connects).\n".into();
    }
    let mut out = String::new();
    for f in list {
        let _ = writeln!(out, "{}  — {}", f.name, f.description);
        let _ = writeln!(out, "    changes: {}", f.changes);
        for p in &f.params {
            let default = p
                .default
                .as_deref()
                .map(|d| format!(" (default {d})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    --param {}={}{default}  {}",
                p.name,
                kind(&p.kind),
                p.description
            );
        }
    }
    out
}

pub fn fixed(o: &FixOutcome) -> String {
    let mut out = String::new();
    out.push_str(&o.stdout);
    if !o.stderr.is_empty() {
        out.push_str(&o.stderr);
    }
    let ended = match (o.result.exit_code, o.result.timed_out) {
        (_, true) => "stopped: it ran too long".to_owned(),
        (Some(0), _) => "done".to_owned(),
        (Some(c), _) => format!("finished with exit code {c}"),
        (None, _) => "stopped by a signal".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} v{}: {ended}. The record is kept and goes with your next request for help.",
        o.script, o.version
    );
    out
}
