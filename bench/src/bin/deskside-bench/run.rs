//! One benchmark run: the Deskside measures and the baselines in the same run, in order;
//! `rows.rs` turns what they measured into the report's rows.

use std::time::Duration;

use anyhow::Result;

use crate::Bins;
use crate::console::ConsolePlan;
use crate::deskside;
use crate::fleet::{Fleet, quiet_agent};
use crate::meshcentral;
use crate::report::Row;
use crate::rows::{
    AGENT_SERVED_RSS_TARGET, bulk_row, diag_rows, idle_rows, script_cli_row, script_row, swarm_rows,
};
use crate::sshd::Sshd;
use crate::stats::{mib, size};
use crate::swarm::SwarmPlan;
use crate::tools;

/// How big and how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runs: usize,
    /// Runs of the slow baselines and the per-process CLI measures.
    pub slow_runs: usize,
    pub sos_runs: usize,
    pub settle: Duration,
    pub idle_window: Duration,
    pub bulk_bytes: u64,
    /// Real agents added to the fleet's one for the fan-out with real agents.
    pub more_real_agents: usize,
    pub swarm: SwarmPlan,
    pub console: ConsolePlan,
}

/// Measures everything; returns the table rows and the setup lines (ssh negotiation).
pub async fn all(plan: &Plan, bins: &Bins) -> Result<(Vec<Row>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut setup = Vec::new();
    let scratch = tempfile::Builder::new()
        .prefix("deskside-bench-run-")
        .tempdir()?;

    // Before anything of Deskside's runs, read as long after connecting as Deskside's.
    eprintln!("baseline: MeshCentral's agent, idle…");
    let mesh = meshcentral::idle_rss_async(plan.settle + plan.idle_window).await;

    eprintln!("starting a release controller and agent…");
    let mut fleet = Fleet::start(bins).await?;
    tokio::time::sleep(plan.settle).await;
    let quiet = quiet_agent(fleet.agent_pid()).await?;
    eprintln!("agent idle for {:?}…", plan.idle_window);
    let agent_idle = deskside::idle(fleet.agent_pid(), plan.idle_window).await?;
    let controller_rss = crate::procfs::rss_bytes(fleet.controller_pid())?;
    rows.extend(idle_rows(&agent_idle, controller_rss, quiet, &mesh));

    let client = fleet.client().await?;
    eprintln!("diag × {}…", plan.runs);
    let first = deskside::diag_client(&client, &fleet, 1).await?;
    let served_rss = crate::procfs::rss_bytes(fleet.agent_pid())?;
    let diag = deskside::diag_client(&client, &fleet, plan.runs).await?;
    let served_many_rss = crate::procfs::rss_bytes(fleet.agent_pid())?;
    rows.push(
        Row::new(
            "agent RSS after serving snapshots",
            format!(
                "{} after 1; {} after {}",
                mib(served_rss),
                mib(served_many_rss),
                plan.runs + 1
            ),
            "≤ 8 MiB",
        )
        .met(served_rss <= AGENT_SERVED_RSS_TARGET && served_many_rss <= AGENT_SERVED_RSS_TARGET)
        .how(format!(
            "VmRSS of the agent after it served one snapshot ({} probes), and again after {} more",
            first.probes, plan.runs
        )),
    );
    let diag_cli = deskside::diag_cli(&fleet, plan.slow_runs)?;

    eprintln!("script round trips…");
    let script = deskside::script_client(&client, &fleet, plan.runs).await?;
    let script_cli = deskside::script_cli(&fleet, plan.slow_runs)?;

    eprintln!("baselines: inxi, sos…");
    let inxi = tools::inxi(plan.slow_runs);
    let sos = tools::sos(plan.sos_runs, scratch.path());

    eprintln!("baselines: ssh, scp…");
    let sshd = Sshd::start();
    let ssh = match &sshd {
        Ok(s) => {
            setup.push(format!(
                "**ssh baseline:** a private sshd on 127.0.0.1 (own host key, key-only auth, \
                 no PAM) logging into a dedicated user whose login shell is /bin/sh with an \
                 empty home, so no shell start-up file is timed; negotiated {}",
                s.negotiated()?
            ));
            Ok((
                tools::ssh_true(s, plan.runs)?,
                tools::ssh_true_mux(s, plan.runs)?,
                tools::ssh_diag(s, plan.slow_runs)?,
            ))
        }
        Err(e) => Err(format!("{e:#}")),
    };
    rows.extend(diag_rows(
        &diag,
        &diag_cli,
        inxi,
        sos,
        ssh.as_ref().map(|s| &s.2),
    ));
    rows.push(script_row(&script, ssh.as_ref().map(|s| (&s.0, &s.1))));
    rows.push(script_cli_row(&script_cli));

    eprintln!("bulk transfer ({})…", size(plan.bulk_bytes));
    rows.push(bulk_row(&fleet, sshd.as_ref().ok(), plan.bulk_bytes)?);
    drop(sshd);
    rows.push(crate::realfan::row(&mut fleet, &client, plan.more_real_agents).await);
    client.close().await;
    drop(fleet);

    eprintln!("swarm…");
    let (swarm, without_console_rss) = swarm_rows(&bins.dir, plan.swarm);
    rows.extend(swarm);

    eprintln!("web console with the swarm…");
    rows.extend(console(bins, plan.console, without_console_rss).await);
    Ok((rows, setup))
}

/// The console's rows; a failure is one row that says why.
pub async fn console(bins: &Bins, plan: ConsolePlan, without_console_rss: Option<u64>) -> Vec<Row> {
    match crate::console::run(bins, plan).await {
        Ok(run) => crate::console_rows::rows(&run, without_console_rss),
        Err(e) => vec![
            Row::new(
                "console (server time, first render, RSS)",
                format!("not measured: {e:#}"),
                "p95 ≤ 100 ms server time with 20,000 agents",
            )
            .not_measured(),
        ],
    }
}

/// Only the diagnostics round trip: a release controller and agent, `runs` snapshots over
/// one open connection and up to 20 `deskside diag` processes; with `baselines`, `inxi`,
/// `sos report` and the `ssh` command against the private sshd as in `all`.
pub async fn diag(bins: &Bins, runs: usize, baselines: bool) -> Result<Vec<Row>> {
    eprintln!("starting a release controller and agent…");
    let fleet = Fleet::start(bins).await?;
    quiet_agent(fleet.agent_pid()).await?;
    let client = fleet.client().await?;
    eprintln!("diag × {runs}…");
    let diag = deskside::diag_client(&client, &fleet, runs).await?;
    eprintln!(
        "deskside: p50 {:.1} ms, p99 {:.1} ms",
        diag.samples.p50().as_secs_f64() * 1e3,
        diag.samples.p99().as_secs_f64() * 1e3
    );
    client.close().await;
    let slow_runs = runs.min(20);
    let diag_cli = deskside::diag_cli(&fleet, slow_runs)?;
    const LEFT_OUT: &str = "left out (--no-baselines)";
    let scratch = tempfile::Builder::new()
        .prefix("deskside-bench-diag-")
        .tempdir()?;
    let (inxi, sos) = if baselines {
        eprintln!("baselines: inxi, sos…");
        (tools::inxi(slow_runs), tools::sos(3, scratch.path()))
    } else {
        (
            Err(anyhow::anyhow!(LEFT_OUT)),
            Err(anyhow::anyhow!(LEFT_OUT)),
        )
    };
    let sshd = if baselines {
        Sshd::start()
    } else {
        Err(anyhow::anyhow!(LEFT_OUT))
    };
    let ssh = match &sshd {
        Ok(s) => tools::ssh_diag(s, slow_runs).map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    let rows = diag_rows(&diag, &diag_cli, inxi, sos, ssh.as_ref());
    drop(sshd);
    drop(fleet);
    Ok(rows)
}

/// Only the script round trip: a release controller and agent, `runs` runs over one open
/// connection and up to 50 `deskside run` processes, then fresh and multiplexed
/// `ssh host true` against the private sshd.
pub async fn script(bins: &Bins, runs: usize, with_ssh: bool) -> Result<Vec<Row>> {
    eprintln!("starting a release controller and agent…");
    let fleet = Fleet::start(bins).await?;
    quiet_agent(fleet.agent_pid()).await?;
    let client = fleet.client().await?;
    eprintln!("script round trips × {runs}…");
    let script = deskside::script_client(&client, &fleet, runs).await?;
    eprintln!(
        "deskside: p50 {:.3} ms, p99 {:.3} ms",
        script.p50().as_secs_f64() * 1e3,
        script.p99().as_secs_f64() * 1e3
    );
    drop(client);
    let script_cli = deskside::script_cli(&fleet, runs.min(50))?;
    eprintln!(
        "deskside run as a process: p50 {:.3} ms, p99 {:.3} ms",
        script_cli.p50().as_secs_f64() * 1e3,
        script_cli.p99().as_secs_f64() * 1e3
    );
    let sshd = if with_ssh {
        Sshd::start()
    } else {
        Err(anyhow::anyhow!("left out (--no-ssh)"))
    };
    let ssh = match &sshd {
        Ok(s) => Ok((tools::ssh_true(s, runs)?, tools::ssh_true_mux(s, runs)?)),
        Err(e) => Err(format!("{e:#}")),
    };
    let row = script_row(&script, ssh.as_ref().map(|(f, m)| (f, m)));
    drop(sshd);
    drop(fleet);
    Ok(vec![row, script_cli_row(&script_cli)])
}

/// Only the bulk transfer: a release controller and agent, the private sshd, one file.
pub async fn bulk(bins: &Bins, bytes: u64) -> Result<Vec<Row>> {
    eprintln!("starting a release controller and agent…");
    let fleet = Fleet::start(bins).await?;
    quiet_agent(fleet.agent_pid()).await?;
    let sshd = Sshd::start();
    if let Err(e) = &sshd {
        eprintln!("ssh baseline unavailable: {e:#}");
    }
    eprintln!("bulk transfer ({})…", size(bytes));
    let row = bulk_row(&fleet, sshd.as_ref().ok(), bytes)?;
    drop(sshd);
    drop(fleet);
    Ok(vec![row])
}
