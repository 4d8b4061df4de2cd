//! Snapshot fan-out with real agents: real `deskside-agent run` processes on this
//! machine, each taking its own snapshot when asked, pulled with `deskside diag --all`
//! as a technician runs it. The swarm's fan-out row measures the controller with agents
//! that answer from a prepared snapshot; this one includes taking the snapshot.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::fleet::Fleet;
use crate::report::Row;
use crate::sshd::check;
use crate::stats::ms;

/// What the fan-out with real agents measured.
#[derive(Debug)]
struct RealFanout {
    agents: usize,
    parallel: Duration,
    stored: usize,
    sequential: Duration,
}

/// Adds `more` real agents to the fleet (which already has one), waits for their start-up
/// work to finish, then pulls a snapshot from every agent at once with `deskside diag
/// --all` and, for the baseline, from each one after another over one connection.
pub async fn row(fleet: &mut Fleet, client: &TechClient, more: usize) -> Row {
    let measure = "snapshot fan-out with real agents";
    let target = "—";
    match measure_fanout(fleet, client, more).await {
        Ok(r) => Row::new(
            measure,
            format!(
                "{} real agents in {} ({} stored)",
                r.agents,
                ms(r.parallel),
                r.stored
            ),
            target,
        )
        .baseline(format!(
            "the same agents one after another over one connection: {}",
            ms(r.sequential)
        ))
        .ratio(crate::stats::ratio(r.sequential, r.parallel))
        .how(format!(
            "{} real `deskside-agent run` processes (release build, the fleet's agent and \
             {more} more, each enrolled through its own token) on this machine, so every \
             agent's collection competes for the same cores: a pessimistic figure next to a \
             fleet where each agent has its own machine. Timed: `deskside diag --all --ticket \
             N --json` as a process, which stores every snapshot with its findings on the \
             ticket before it exits; `stored` counted from its JSON. A reference figure: the \
             target for fan-out (1,000 agents ≤ 10 s) is judged on the swarm row",
            r.agents
        )),
        Err(e) => Row::new(measure, format!("not measured: {e:#}"), target).not_measured(),
    }
}

async fn measure_fanout(fleet: &mut Fleet, client: &TechClient, more: usize) -> Result<RealFanout> {
    eprintln!("fan-out with real agents: starting {more} more agents…");
    let added = fleet.add_agents(more).await?;
    for (_, pid) in &added {
        crate::fleet::quiet_agent(*pid).await?;
    }
    let mut agents: Vec<String> = added.into_iter().map(|(id, _)| id).collect();
    agents.push(fleet.agent_id.clone());

    let start = Instant::now();
    let out = fleet
        .deskside()
        .args([
            "diag",
            "--all",
            "--ticket",
            &fleet.ticket.to_string(),
            "--json",
        ])
        .output()
        .context("running deskside diag --all")?;
    let parallel = start.elapsed();
    check(&out, "deskside diag --all")?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading deskside diag --all --json")?;
    let stored = report
        .pointer("/summary/stored")
        .and_then(serde_json::Value::as_u64)
        .context("deskside diag --all --json has no summary.stored")?;
    let stored = usize::try_from(stored)?;

    let start = Instant::now();
    for agent in &agents {
        let req = TechRequest::Diagnostics {
            agent: agent.clone(),
            ticket: fleet.ticket,
        };
        match client.request(&req).await? {
            TechReply::Diagnostics(_) => {}
            other => bail!("diagnostics from {agent} answered with {other:?}"),
        }
    }
    let sequential = start.elapsed();
    Ok(RealFanout {
        agents: agents.len(),
        parallel,
        stored,
        sequential,
    })
}
