//! Deskside measured from outside, like a user would: process costs from /proc, the
//! technician CLI end to end, and requests over one open technician connection.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::fleet::{Fleet, TRUE_SCRIPT};
use crate::procfs;
use crate::sshd::check;
use crate::stats::Samples;

/// What an idle process cost over a window.
#[derive(Debug, Clone)]
pub struct Idle {
    pub window: Duration,
    pub rss_bytes: u64,
    /// CPU time over the window as % of one core.
    pub cpu_pct: f64,
    /// Context switches of all threads over the window.
    pub wakeups: u64,
    pub threads: usize,
    pub smaps: String,
}

/// Watches `pid` for `window` and reports what it cost.
pub async fn idle(pid: u32, window: Duration) -> Result<Idle> {
    let hz = procfs::ticks_per_sec();
    let (cpu0, ctx0) = (procfs::cpu_ticks(pid)?, procfs::context_switches(pid)?);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = start.elapsed();
    let (cpu1, ctx1) = (procfs::cpu_ticks(pid)?, procfs::context_switches(pid)?);
    // Tick counts over a benchmark window are far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let cpu_secs = cpu1.saturating_sub(cpu0) as f64 / hz as f64;
    Ok(Idle {
        window: elapsed,
        rss_bytes: procfs::rss_bytes(pid)?,
        cpu_pct: 100.0 * cpu_secs / elapsed.as_secs_f64(),
        wakeups: ctx1.saturating_sub(ctx0),
        threads: procfs::threads(pid)?,
        smaps: procfs::smaps_rollup(pid).unwrap_or_default(),
    })
}

/// `diag` over one open technician connection: every run pulls a snapshot, computes
/// findings and stores both on the ticket before the reply comes back.
#[derive(Debug)]
pub struct Diag {
    pub samples: Samples,
    /// Compact JSON of one snapshot (findings included).
    pub snapshot_bytes: u64,
    pub findings: usize,
    pub probes: usize,
}

pub async fn diag_client(client: &TechClient, fleet: &Fleet, runs: usize) -> Result<Diag> {
    let req = TechRequest::Diagnostics {
        agent: fleet.agent_id.clone(),
        ticket: fleet.ticket,
    };
    let mut all = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let reply = client.request(&req).await?;
        all.push(start.elapsed());
        let TechReply::Diagnostics(report) = reply else {
            bail!("diagnostics answered with {reply:?}");
        };
        last = Some(report);
    }
    let report = last.context("no diagnostics run")?;
    Ok(Diag {
        samples: Samples::new(all)?,
        snapshot_bytes: serde_json::to_vec(&report.snapshot)?.len() as u64,
        findings: report.snapshot.findings.len(),
        probes: report.snapshot.probes.len(),
    })
}

/// `deskside diag AGENT --ticket N --json` as a process, end to end (process start,
/// TLS handshake, request, storage, JSON on stdout).
pub fn diag_cli(fleet: &Fleet, runs: usize) -> Result<Samples> {
    let ticket = fleet.ticket.to_string();
    Samples::collect(runs, || {
        let out = fleet
            .deskside()
            .args(["diag", &fleet.agent_id, "--ticket", &ticket, "--json"])
            .output()?;
        check(&out, "deskside diag")
    })
}

/// The `/bin/true` catalog script over one open technician connection.
pub async fn script_client(client: &TechClient, fleet: &Fleet, runs: usize) -> Result<Samples> {
    let req = TechRequest::RunScript {
        agent: fleet.agent_id.clone(),
        ticket: fleet.ticket,
        script: TRUE_SCRIPT.into(),
        params: Vec::new(),
    };
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let reply = client.stream(&req, |_| {}).await?;
        all.push(start.elapsed());
        match reply {
            TechReply::RunFinished(r) if r.result.exit_code == Some(0) => {}
            other => bail!("{TRUE_SCRIPT} did not succeed: {other:?}"),
        }
    }
    Samples::new(all)
}

/// `deskside run AGENT bench-true --ticket N` as a process.
pub fn script_cli(fleet: &Fleet, runs: usize) -> Result<Samples> {
    let ticket = fleet.ticket.to_string();
    Samples::collect(runs, || {
        let out = fleet
            .deskside()
            .args(["run", &fleet.agent_id, TRUE_SCRIPT, "--ticket", &ticket])
            .output()?;
        check(&out, "deskside run")
    })
}

/// Does this `deskside` have file collection (`deskside collect --help`)?
pub fn has_collect(fleet: &Fleet) -> bool {
    fleet
        .deskside()
        .args(["collect", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The size of the blob the controller stored under `sha256`, after hashing it again.
pub fn stored_blob(fleet: &Fleet, sha256: &str) -> Result<u64> {
    let prefix = sha256.get(..2).unwrap_or_default();
    let path = fleet.data_dir().join("evidence").join(prefix).join(sha256);
    let got = crate::tools::sha256_file(&path)?;
    if got != sha256 {
        bail!("the stored blob {} hashes to {got}", path.display());
    }
    Ok(std::fs::metadata(&path)?.len())
}

/// `deskside collect AGENT PATH --ticket N`: the time it took, after checking that the
/// controller's answer names the file's SHA-256 (hashed and stored on the ticket).
pub fn collect(fleet: &Fleet, path: &Path, sha256: &str) -> Result<Duration> {
    let start = Instant::now();
    let out = fleet
        .deskside()
        .arg("collect")
        .arg(&fleet.agent_id)
        .arg(path)
        .args(["--ticket", &fleet.ticket.to_string()])
        .output()?;
    let took = start.elapsed();
    check(&out, "deskside collect")?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !said.contains(sha256) {
        bail!("deskside collect did not report the file's SHA-256 {sha256}: {said}");
    }
    Ok(took)
}
