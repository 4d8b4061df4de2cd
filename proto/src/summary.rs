//! A plain-text rendering of a snapshot and its findings, for terminals. Pure: the same
//! text on the agent (`deskside-agent diag`) and the controller (`deskside diag`).

use std::fmt::Write as _;

use crate::msg::diag::{Severity, Snapshot};

fn gib(bytes: u64) -> String {
    // Display only; precision loss past 2^53 bytes does not matter here.
    #[allow(clippy::cast_precision_loss)]
    let g = bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    format!("{g:.1} GiB")
}

/// Renders the sections an engineer looks at first, then every finding.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_sections(&mut out, s);
    out
}

fn write_sections(out: &mut String, s: &Snapshot) -> std::fmt::Result {
    writeln!(
        out,
        "{} — {} (kernel {}, {})",
        s.host.hostname, s.os.pretty_name, s.os.kernel, s.os.arch
    )?;
    writeln!(
        out,
        "  up {} days {} h, {} user(s) logged in",
        s.host.uptime_secs / 86_400,
        s.host.uptime_secs % 86_400 / 3600,
        s.host.users.len()
    )?;
    writeln!(
        out,
        "  cpu: {} × {} — {:.0}% busy, load {:.2} {:.2} {:.2}",
        s.cpu.logical_cores,
        s.cpu.model,
        s.cpu.usage_percent,
        s.cpu.load_average.one,
        s.cpu.load_average.five,
        s.cpu.load_average.fifteen
    )?;
    writeln!(
        out,
        "  memory: {} available of {}; swap {} free of {}",
        gib(s.memory.available_bytes),
        gib(s.memory.total_bytes),
        gib(s.memory.swap_free_bytes),
        gib(s.memory.swap_total_bytes)
    )?;
    for d in &s.disks {
        writeln!(
            out,
            "  disk {} ({}{}): {} free of {}",
            d.mount,
            d.fs_type,
            if d.read_only { ", read-only" } else { "" },
            gib(d.available_bytes),
            gib(d.total_bytes)
        )?;
    }
    for i in s.network.interfaces.iter().filter(|i| i.name != "lo") {
        writeln!(
            out,
            "  net {} {} {} {}",
            i.name,
            if i.up { "up" } else { "down" },
            i.mac,
            i.addresses.join(" ")
        )?;
    }
    let routes: Vec<String> = s
        .network
        .default_routes
        .iter()
        .map(|r| format!("{} via {}", r.interface, r.gateway))
        .collect();
    writeln!(
        out,
        "  default route: {}",
        if routes.is_empty() {
            "none".into()
        } else {
            routes.join(", ")
        }
    )?;
    writeln!(
        out,
        "  dns: {}",
        if s.network.dns_resolvers.is_empty() {
            "none".into()
        } else {
            s.network.dns_resolvers.join(", ")
        }
    )?;
    if let Some(top) = s.processes.top_cpu.first() {
        writeln!(
            out,
            "  busiest process: {} (pid {}) {:.0}% cpu",
            top.name, top.pid, top.cpu_percent
        )?;
    }
    let failed: Vec<&str> = s
        .probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| p.name.as_str())
        .collect();
    writeln!(
        out,
        "  probes: {} ran, {} failed{}",
        s.probes.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    )?;
    writeln!(out, "findings:")?;
    if s.findings.is_empty() {
        writeln!(out, "  none")?;
    }
    for f in &s.findings {
        let mark = match f.severity {
            Severity::Critical => "CRIT",
            Severity::Warning => "WARN",
            Severity::Info => "info",
        };
        writeln!(out, "  [{mark}] {} ({})", f.message, f.code)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::diag::Finding;

    #[test]
    fn renders_findings_and_sections() {
        let mut s = Snapshot::default();
        s.host.hostname = "pc-42".into();
        s.findings.push(Finding {
            severity: Severity::Critical,
            code: "disk.nearly_full".into(),
            message: "/ is 97% full".into(),
        });
        let text = render(&s);
        assert!(text.starts_with("pc-42"));
        assert!(text.contains("[CRIT] / is 97% full (disk.nearly_full)"));
        assert!(text.contains("default route: none"));
    }
}
