//! Several controllers sharing one PostgreSQL store and NATS, on loopback: each node's
//! RSS and idle CPU, a snapshot fan-out from one node to agents on all nodes, a routed
//! request against a local one, PostgreSQL against SQLite on one node, and how long a
//! killed node's agents take to be back on the others. Real release processes
//! throughout: `deskside serve` per node, `deskside-agent run` per agent.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::Bins;
use crate::fleet::TRUE_SCRIPT;
use crate::nats::Nats;
use crate::nodes::{self, Nodes, Shared};
use crate::pgcluster::PgCluster;
use crate::procfs;
use crate::report::Row;
use crate::sshd::check;
use crate::stats::{Samples, mib, ms, ratio};

/// Nodes in the cluster measures.
const NODES: usize = 3;
/// The longest wait for a killed node's agents: their idle timeout (60 s), the
/// reconnect backoff, and room for a busy machine.
const FAILOVER_LIMIT: Duration = Duration::from_secs(240);

/// Real agents on loopback connect within seconds; allow for a busy machine.
const CONNECT_WITHIN: Duration = Duration::from_secs(120);

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct ClusterPlan {
    /// Real agents that know only their own node, per node.
    pub agents_per_node: usize,
    /// Real agents that know all three nodes (placed at random, moved by the kill).
    pub roaming_agents: usize,
    /// Timed requests per measure.
    pub runs: usize,
    /// Seconds each node's CPU is sampled with only keep-alives flowing.
    pub idle_secs: u64,
    /// Kill a node and time its agents' return (a minute or more: their idle timeout).
    pub failover: bool,
    /// Simulated agents spread over three fresh nodes by `deskside-swarm --nodes`.
    pub swarm_agents: usize,
}

/// The rows and setup lines of the cluster measures. A measure that cannot run says
/// why in its row ("not measured"); nothing is estimated.
pub async fn measure(bins: &Bins, plan: ClusterPlan) -> Result<(Vec<Row>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut setup = Vec::new();
    let pg = match PgCluster::start() {
        Ok(pg) => pg,
        Err(e) => return Ok((not_measured(&format!("{e:#}")), setup)),
    };
    let nats = match Nats::start() {
        Ok(n) => n,
        Err(e) => return Ok((not_measured(&format!("{e:#}")), setup)),
    };
    setup.push(
        "**Cluster:** PostgreSQL 15 (a throwaway cluster, default settings: fsync on) and one \
         `nats-server` on 127.0.0.1; every node a release `deskside serve` with its own data \
         directory (keys copied from one `deskside init`), one shared `[evidence] dir`, all \
         on this one machine's two cores"
            .to_owned(),
    );
    rows.extend(engines(bins, &pg, plan).await);
    match three_nodes(bins, &pg, &nats, plan).await {
        Ok(more) => rows.extend(more),
        Err(e) => rows.extend(not_measured_cluster(&format!("{e:#}"))),
    }
    rows.push(match scale(bins, &pg, &nats, plan).await {
        Ok(row) => row,
        Err(e) => Row::new(SCALE, format!("not measured: {e:#}"), SCALE_TARGET).not_measured(),
    });
    Ok((rows, setup))
}

const SCALE: &str = "cluster: simulated agents across three nodes, each node's RSS and idle CPU";
const SCALE_TARGET: &str = "3 × 10,000 connected";

/// What `deskside-swarm --nodes FILE --json` prints (its `NodesReport`).
#[derive(Debug, serde::Deserialize)]
struct SwarmNodes {
    agents: u64,
    connected: u64,
    connect_secs: f64,
    idle_secs: u64,
    swarm_rss_bytes: u64,
    nodes: Vec<SwarmNode>,
}

#[derive(Debug, serde::Deserialize)]
struct SwarmNode {
    name: String,
    agents_connected: u64,
    rss_bytes: u64,
    cpu_pct_idle: f64,
}

/// Three nodes on the database at `url`, routing through `nats` when this build's
/// controller takes `[cluster] nats`; else without routing, and the second value says
/// why: the measures that need no routing still run.
fn cluster_nodes(bins: &Bins, url: String, nats: &Nats) -> Result<(Nodes, Result<(), String>)> {
    let with_nats = Shared {
        store: Some(url),
        nats: Some(nats.url()),
        cluster: true,
    };
    let n = Nodes::configure(bins, NODES, &with_nats)?;
    let refused = match n.check() {
        Ok(()) => return Ok((n, Ok(()))),
        Err(e) => e,
    };
    drop(n);
    let without = Shared {
        nats: None,
        ..with_nats
    };
    let n = Nodes::configure(bins, NODES, &without)?;
    if let Err(e) = n.check() {
        bail!("this build's controller refuses a cluster config ([store] url, [cluster]): {e}");
    }
    Ok((
        n,
        Err(format!(
            "this build's controller does not route between nodes ({})",
            refused.lines().next().unwrap_or_default()
        )),
    ))
}

/// Fresh nodes, `plan.swarm_agents` simulated agents spread over them by the swarm.
async fn scale(bins: &Bins, pg: &PgCluster, nats: &Nats, plan: ClusterPlan) -> Result<Row> {
    let url = pg.database("scale")?;
    let (mut n, _) = cluster_nodes(bins, url.clone(), nats)?;
    n.start_all().await?;
    let file = n.swarm_file(Some(&url))?;
    let exe = bins.dir.join("deskside-swarm");
    let out = std::process::Command::new(&exe)
        .arg("--nodes")
        .arg(&file)
        .args(["--agents", &plan.swarm_agents.to_string()])
        .args(["--idle-secs", &plan.idle_secs.to_string(), "--json"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!("deskside-swarm --nodes failed ({})", out.status);
    }
    let r: SwarmNodes =
        serde_json::from_slice(&out.stdout).context("deskside-swarm printed unexpected JSON")?;
    let per_node: Vec<String> = r
        .nodes
        .iter()
        .map(|node| {
            format!(
                "{}: {} agents, {} RSS, {:.1}% CPU idle",
                node.name,
                node.agents_connected,
                mib(node.rss_bytes),
                node.cpu_pct_idle
            )
        })
        .collect();
    Ok(Row::new(
        SCALE,
        format!(
            "{}/{} connected in {:.0} s; {}",
            r.connected,
            r.agents,
            r.connect_secs,
            per_node.join("; ")
        ),
        SCALE_TARGET,
    )
    .met(r.connected >= 30_000)
    .how(format!(
        "`deskside-swarm --nodes` (swarm process {} RSS): its simulated agents enrolled \
         through and connected to each node in equal shares, on this same machine; VmRSS of \
         each release `deskside serve` and its CPU time over {} s with only keep-alives and \
         heartbeats flowing",
        mib(r.swarm_rss_bytes),
        r.idle_secs
    )))
}

/// Every row "not measured", saying why.
fn not_measured(why: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = ["diag", "script run (`/bin/true`)"]
        .iter()
        .map(|what| engine_row(what, Err(why.to_owned()), None))
        .collect();
    rows.extend(not_measured_cluster(why));
    rows.push(Row::new(SCALE, format!("not measured: {why}"), SCALE_TARGET).not_measured());
    rows
}

fn not_measured_cluster(why: &str) -> Vec<Row> {
    [
        "cluster: each node's RSS and idle CPU",
        "cluster: routed request (script) against a local one",
        "cluster: snapshot fan-out from one node to agents on all nodes",
        "cluster: a killed node's agents back on the others",
    ]
    .iter()
    .map(|m| Row::new(m, format!("not measured: {why}"), "—").not_measured())
    .collect()
}

/// One node on SQLite, then one on PostgreSQL: diag and a script over an open connection.
async fn engines(bins: &Bins, pg: &PgCluster, plan: ClusterPlan) -> Vec<Row> {
    let url = match pg.database("one_node") {
        Ok(url) => url,
        Err(e) => {
            return ["diag", "script run (`/bin/true`)"]
                .iter()
                .map(|what| engine_row(what, Err(format!("{e:#}")), None))
                .collect();
        }
    };
    let sqlite = one_node(bins, Shared::default(), plan.runs).await;
    let postgres = one_node(
        bins,
        Shared {
            store: Some(url),
            nats: None,
            cluster: false,
        },
        plan.runs,
    )
    .await;
    let split = |r: &Result<(Samples, Samples), String>| match r {
        Ok((d, s)) => (Ok(d.clone()), Ok(s.clone())),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    let (pg_diag, pg_script) = split(&postgres);
    let (lite_diag, lite_script) = split(&sqlite);
    vec![
        engine_row("diag", pg_diag, lite_diag.ok()),
        engine_row("script run (`/bin/true`)", pg_script, lite_script.ok()),
    ]
}

fn engine_row(what: &str, pg: Result<Samples, String>, sqlite: Option<Samples>) -> Row {
    let measure = format!("one node: {what}, PostgreSQL against SQLite");
    let how = "one release `deskside serve` and one real agent, the technician's requests over \
               one open connection; the same node on SQLite (its data directory) and on \
               PostgreSQL (`[store] url`), one after the other in this run; each timed once \
               the agent's start-up count of pending updates (`apt-get -s upgrade`) had finished";
    match (pg, sqlite) {
        (Ok(p), Some(s)) => Row::new(&measure, format!("PostgreSQL: {}", p.show()), "—")
            .baseline(format!("SQLite: {}", s.show()))
            .ratio(ratio(p.p50(), s.p50()))
            .how(how),
        (Err(e), sqlite) => {
            let row = Row::new(&measure, format!("not measured: {e}"), "—").not_measured();
            match sqlite {
                Some(s) => row.baseline(format!("SQLite: {}", s.show())).how(how),
                None => row,
            }
        }
        (Ok(_), None) => {
            Row::new(&measure, "not measured: the SQLite run failed".into(), "—").not_measured()
        }
    }
}

/// diag and script samples against one node with `shared`.
async fn one_node(bins: &Bins, shared: Shared, runs: usize) -> Result<(Samples, Samples), String> {
    let go = async {
        let mut n = Nodes::configure(bins, 1, &shared)?;
        if let Err(e) = n.check() {
            bail!("this build's controller refuses the config: {e}");
        }
        n.start_all().await?;
        n.add_true_script()?;
        let (agent, pid) = n.add_agent("one", &[0])?;
        let profile = n.technician("bench", 0)?;
        let client = nodes::client(&profile).await?;
        nodes::wait_online(&client, std::slice::from_ref(&agent)).await?;
        crate::fleet::quiet_agent(pid).await?;
        let ticket = new_ticket(&n, &profile, &agent)?;
        let diag = timed(&client, &diag_req(&agent, ticket), runs).await?;
        let script = timed(&client, &script_req(&agent, ticket), runs).await?;
        client.close().await;
        Ok::<_, anyhow::Error>((diag, script))
    };
    go.await.map_err(|e| format!("{e:#}"))
}

/// The three-node measures.
async fn three_nodes(
    bins: &Bins,
    pg: &PgCluster,
    nats: &Nats,
    plan: ClusterPlan,
) -> Result<Vec<Row>> {
    let (mut n, routing) = cluster_nodes(bins, pg.database("three_nodes")?, nats)?;
    n.start_all().await?;
    n.add_true_script()?;
    let mut pinned: Vec<Vec<String>> = vec![Vec::new(); NODES];
    let mut pids = Vec::new();
    for (i, ids) in pinned.iter_mut().enumerate() {
        for k in 0..plan.agents_per_node {
            let (id, pid) = n.add_agent(&format!("n{i}-{k}"), &[i])?;
            ids.push(id);
            pids.push(pid);
        }
    }
    let mut roaming = Vec::new();
    for k in 0..plan.roaming_agents {
        let (id, pid) = n.add_agent(&format!("roam-{k}"), &[0, 1, 2])?;
        roaming.push(id);
        pids.push(pid);
    }
    let all: Vec<String> = pinned.iter().flatten().chain(&roaming).cloned().collect();
    let profile = n.technician("bench", 0)?;
    let client = nodes::client(&profile).await?;
    wait_connected(&n, all.len()).await?;
    // Every agent counts pending updates (`apt-get -s upgrade`, seconds of CPU) once it
    // starts: dozens of those on this machine's two cores would be timed along with the
    // requests, so the measures start once every count has finished.
    let started = Instant::now();
    for pid in pids {
        crate::fleet::quiet_agent(pid).await?;
    }
    let quiet = started.elapsed();
    let mut rows = vec![idle_row(&n, all.len(), plan.idle_secs).await?];
    if let Err(why) = routing {
        for m in [
            "cluster: routed request (script) against a local one",
            "cluster: snapshot fan-out from one node to agents on all nodes",
        ] {
            rows.push(Row::new(m, format!("not measured: {why}"), "—").not_measured());
        }
        client.close().await;
        rows.push(failover_or_not(&mut n, plan).await?);
        return Ok(rows);
    }

    let (local, routed) = match (
        pinned.first().and_then(|v| v.first()),
        pinned.get(2).and_then(|v| v.first()),
    ) {
        (Some(l), Some(r)) => (l.clone(), r.clone()),
        _ => bail!("no agent pinned to the first and last node"),
    };
    let ticket = new_ticket(&n, &profile, &local)?;
    let (mut on_local, mut on_routed) = (Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        on_local.push(once(&client, &script_req(&local, ticket)).await?);
        on_routed.push(once(&client, &script_req(&routed, ticket)).await?);
    }
    let (l, r) = (Samples::new(on_local)?, Samples::new(on_routed)?);
    rows.push(
        Row::new(
            "cluster: routed request (script) against a local one",
            format!("routed (agent on ctl-c): {}", r.show()),
            "—",
        )
        .baseline(format!("local (agent on ctl-a): {}", l.show()))
        .ratio(format!(
            "{}; +{} at p50",
            ratio(r.p50(), l.p50()),
            ms(r.p50().saturating_sub(l.p50()))
        ))
        .how(format!(
            "the technician connected to ctl-a runs `bench-true` (`/bin/true`) on an agent \
             connected to ctl-a and on one connected to ctl-c (each knows only its node), \
             alternately over one open connection; routed requests go ctl-a → NATS → ctl-c → \
             agent and back. Timed once every agent's start-up count of pending updates \
             (`apt-get -s upgrade`, a child process) had finished ({} after all were connected)",
            ms(quiet)
        )),
    );

    let start = Instant::now();
    let out = n
        .cli(&profile)
        .args(["diag", "--all", "--ticket", &ticket.to_string(), "--json"])
        .output()
        .context("running deskside diag --all")?;
    let took = start.elapsed();
    check(&out, "deskside diag --all")?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let stored = json
        .pointer("/summary/stored")
        .and_then(serde_json::Value::as_u64)
        .context("deskside diag --all --json has no summary.stored")?;
    rows.push(
        Row::new(
            "cluster: snapshot fan-out from one node to agents on all nodes",
            format!("{} for {stored}/{} stored", ms(took), all.len()),
            "—",
        )
        .how(format!(
            "`deskside diag --all --ticket N --json` as a process against ctl-a, with {} real \
             agents on each node and {} that may be on any: each agent on this machine takes \
             its own snapshot",
            plan.agents_per_node, plan.roaming_agents
        )),
    );
    client.close().await;
    rows.push(failover_or_not(&mut n, plan).await?);
    Ok(rows)
}

async fn failover_or_not(n: &mut Nodes, plan: ClusterPlan) -> Result<Row> {
    if plan.failover {
        return failover(n, plan).await;
    }
    Ok(Row::new(
        "cluster: a killed node's agents back on the others",
        "not measured in this mode (it waits out the 35 s after which agents give up a silent node)".into(),
        "≤ 60 s",
    )
    .not_measured())
}

/// Waits until the nodes' connected-agents gauges add up to `want`.
async fn wait_connected(n: &Nodes, want: usize) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut sum = 0;
        for node in &n.nodes {
            sum += nodes::health(node.metrics)
                .await
                .map_or(0, |h| h.agents_connected);
        }
        if sum >= want as i64 {
            return Ok(());
        }
        if start.elapsed() > CONNECT_WITHIN {
            bail!("only {sum} of {want} agents connected within {CONNECT_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each node's RSS and CPU over an idle window, with every agent connected.
async fn idle_row(n: &Nodes, agents: usize, idle_secs: u64) -> Result<Row> {
    let pids: Vec<u32> = (0..NODES).filter_map(|i| n.pid(i)).collect();
    let before: Vec<u64> = pids
        .iter()
        .map(|&p| procfs::cpu_ticks(p))
        .collect::<Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let mut parts = Vec::new();
    for ((i, &pid), ticks) in pids.iter().enumerate().zip(before) {
        let used = procfs::cpu_ticks(pid)?.saturating_sub(ticks);
        #[allow(clippy::cast_precision_loss)]
        let pct = 100.0 * used as f64 / procfs::ticks_per_sec() as f64 / idle_secs.max(1) as f64;
        let name = n.nodes.get(i).map_or("?", |node| node.name.as_str());
        let online = nodes::health(n.nodes.get(i).context("node")?.metrics)
            .await
            .map_or(-1, |h| h.agents_connected);
        parts.push(format!(
            "{name}: {} RSS, {pct:.1}% CPU idle ({online} agents)",
            mib(procfs::rss_bytes(pid)?)
        ));
    }
    Ok(Row::new(
        "cluster: each node's RSS and idle CPU",
        parts.join("; "),
        "—",
    )
    .how(format!(
        "VmRSS of each release `deskside serve` and its CPU time over {idle_secs} s with only \
         keep-alives and the nodes' own heartbeats flowing, {agents} real agents connected in all"
    )))
}

/// Kills (SIGKILL) the node other than ctl-a holding the most agents and times its
/// roaming agents' return to the others, from the others' connected-agents gauges.
async fn failover(n: &mut Nodes, plan: ClusterPlan) -> Result<Row> {
    let mut held = Vec::new();
    for node in &n.nodes {
        held.push(nodes::health(node.metrics).await?.agents_connected);
    }
    let victim = (1..NODES)
        .max_by_key(|&i| held.get(i).copied().unwrap_or(0))
        .context("no node to kill")?;
    let lost = held.get(victim).copied().unwrap_or(0) - plan.agents_per_node as i64;
    let others: Vec<usize> = (0..NODES).filter(|&i| i != victim).collect();
    let base: i64 = others.iter().filter_map(|&i| held.get(i)).sum();
    let name = n
        .nodes
        .get(victim)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let killed = Instant::now();
    n.kill(victim);
    let mut back_at = Vec::new();
    while (back_at.len() as i64) < lost && killed.elapsed() < FAILOVER_LIMIT {
        let mut now = 0;
        for &i in &others {
            now += nodes::health(n.nodes.get(i).context("node")?.metrics)
                .await
                .map_or(0, |h| h.agents_connected);
        }
        while (back_at.len() as i64) < (now - base).min(lost) {
            back_at.push(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let how = format!(
        "SIGKILL to {name} (the node other than the technician's holding the most agents: \
         {lost} of the {} roaming agents, which know all three nodes); each agent gives up a \
         node silent for 35 s (no stateless reset comes from a dead process) and dials \
         another node from its list with the usual jittered backoff. Timed from the kill to each rise \
         of the surviving nodes' `agents_connected` (/health, polled every 200 ms)",
        plan.roaming_agents
    );
    let measure = "cluster: a killed node's agents back on the others";
    if lost <= 0 {
        return Ok(Row::new(
            measure,
            "not measured: no roaming agent was on the killed node".into(),
            "≤ 60 s",
        )
        .not_measured()
        .how(how));
    }
    let all = back_at.len() as i64 == lost;
    let samples = Samples::new(back_at)?;
    Ok(Row::new(
        measure,
        format!(
            "p50 {} / max {} ({}/{lost} back{})",
            ms(samples.p50()),
            ms(samples.pct(100)),
            samples.len(),
            if all { "" } else { " within the limit" }
        ),
        "all back ≤ 60 s",
    )
    .met(all && samples.pct(100) <= Duration::from_secs(60))
    .how(how))
}

fn diag_req(agent: &str, ticket: u64) -> TechRequest {
    TechRequest::Diagnostics {
        agent: agent.to_owned(),
        ticket,
    }
}

fn script_req(agent: &str, ticket: u64) -> TechRequest {
    TechRequest::RunScript {
        agent: agent.to_owned(),
        ticket,
        script: TRUE_SCRIPT.into(),
        params: Vec::new(),
    }
}

/// One request, timed; fails unless it succeeded.
async fn once(client: &TechClient, req: &TechRequest) -> Result<Duration> {
    let start = Instant::now();
    let reply = match req {
        TechRequest::Diagnostics { .. } => client.request(req).await?,
        _ => client.stream(req, |_| {}).await?,
    };
    let took = start.elapsed();
    match reply {
        TechReply::Diagnostics(_) => Ok(took),
        TechReply::RunFinished(r) if r.result.exit_code == Some(0) => Ok(took),
        other => bail!("{req:?} answered with {other:?}"),
    }
}

async fn timed(client: &TechClient, req: &TechRequest, runs: usize) -> Result<Samples> {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        all.push(once(client, req).await?);
    }
    Samples::new(all)
}

fn new_ticket(n: &Nodes, profile: &std::path::Path, agent: &str) -> Result<u64> {
    let out = n
        .cli(profile)
        .args(["ticket", "new", "--title", "benchmark", "--agent", agent])
        .output()?;
    check(&out, "deskside ticket new")?;
    let number = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    number
        .parse()
        .with_context(|| format!("unexpected ticket number {number}"))
}
