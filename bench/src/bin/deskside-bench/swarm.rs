//! Runs `deskside-swarm --json` (its own controller, thousands of simulated agents) as a
//! subprocess and reads its one JSON object.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// What `deskside-swarm --json` prints (the shared interface).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SwarmReport {
    pub agents: u64,
    pub connected: u64,
    pub enroll_secs: f64,
    pub connect_secs: f64,
    pub controller_rss_bytes: u64,
    pub controller_cpu_pct_idle: f64,
    pub idle_secs: u64,
    pub swarm_rss_bytes: u64,
    pub fanout: Fanout,
    pub reconnect: Reconnect,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Fanout {
    pub agents: u64,
    pub concurrency: u64,
    pub parallel_secs: f64,
    pub sequential_secs: f64,
    pub stored: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reconnect {
    pub agents: u64,
    pub all_back_secs: f64,
    pub peak_attempts_per_sec: u64,
    pub back: u64,
    /// Agents that learned of the restart from a stateless reset (at their next
    /// keep-alive) rather than from their idle timeout.
    pub lost_by_reset: u64,
    pub lost_by_idle_timeout: u64,
}

/// How the swarm is asked to run.
#[derive(Debug, Clone, Copy)]
pub struct SwarmPlan {
    pub agents: u64,
    pub fanout: u64,
    pub reconnect: u64,
    pub idle_secs: u64,
}

impl SwarmPlan {
    pub fn args(&self) -> Vec<String> {
        vec![
            "--agents".into(),
            self.agents.to_string(),
            "--fanout".into(),
            self.fanout.to_string(),
            "--reconnect".into(),
            self.reconnect.to_string(),
            "--idle-secs".into(),
            self.idle_secs.to_string(),
            "--json".into(),
        ]
    }
}

pub fn parse(json: &str) -> Result<SwarmReport> {
    serde_json::from_str(json.trim()).context("deskside-swarm printed unexpected JSON")
}

/// Runs the swarm next to the other binaries; `Err` says why it did not run.
pub fn run(bins: &Path, plan: SwarmPlan) -> Result<SwarmReport> {
    let exe = bins.join("deskside-swarm");
    if !exe.exists() {
        bail!(
            "not run: {} is not built (the swarm simulator is not in this build)",
            exe.display()
        );
    }
    let out = Command::new(&exe)
        .args(plan.args())
        .arg("--controller-bin")
        .arg(bins.join("deskside"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running deskside-swarm")?;
    if !out.status.success() {
        bail!("not run: deskside-swarm failed ({})", out.status);
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample from the interface both binaries keep to.
    const SAMPLE: &str = r#"{"agents": 1000, "connected": 1000, "enroll_secs": 12.3, "connect_secs": 4.5,
 "controller_rss_bytes": 123456789, "controller_cpu_pct_idle": 1.2, "idle_secs": 30,
 "swarm_rss_bytes": 456789012,
 "fanout": {"agents": 1000, "concurrency": 64, "parallel_secs": 3.2, "sequential_secs": 9.8, "stored": 1000},
 "reconnect": {"agents": 1000, "all_back_secs": 21.0, "peak_attempts_per_sec": 120, "back": 1000,
   "lost_by_reset": 998, "lost_by_idle_timeout": 2, "lost_otherwise": 0}}"#;

    #[test]
    fn parses_the_interface_sample() {
        let r = parse(SAMPLE).expect("sample parses");
        assert_eq!(r.agents, 1000);
        assert_eq!(r.connected, 1000);
        assert_eq!(r.controller_rss_bytes, 123_456_789);
        assert_eq!(r.idle_secs, 30);
        assert_eq!(r.swarm_rss_bytes, 456_789_012);
        assert_eq!(r.fanout.stored, 1000);
        assert_eq!(r.fanout.concurrency, 64);
        assert!((r.fanout.parallel_secs - 3.2).abs() < 1e-9);
        assert_eq!(r.reconnect.back, 1000);
        assert_eq!(r.reconnect.peak_attempts_per_sec, 120);
        assert_eq!(r.reconnect.lost_by_reset, 998);
        assert_eq!(r.reconnect.lost_by_idle_timeout, 2);
    }

    #[test]
    fn missing_fields_are_an_error() {
        assert!(parse(r#"{"agents": 3}"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn command_line_matches_the_interface() {
        let plan = SwarmPlan {
            agents: 20,
            fanout: 20,
            reconnect: 20,
            idle_secs: 3,
        };
        assert_eq!(
            plan.args().join(" "),
            "--agents 20 --fanout 20 --reconnect 20 --idle-secs 3 --json"
        );
    }
}
