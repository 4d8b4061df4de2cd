//! `deskside-swarm`: thousands of simulated agents in one process against a real
//! `deskside serve` child — enrollment, connection, idle cost, diagnostics fan-out and
//! reconnection after a controller crash. Figures on stderr, or one JSON object on stdout.

mod answer;
mod controller;
mod enroll;
mod fanout;
mod hold;
mod nodes;
mod swarm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use deskside_controller::client::TechClient;
use serde::Serialize;

use crate::controller::Controller;
use crate::swarm::{Platform, Swarm};

/// Longest wait for the whole swarm to connect (or reconnect) before reporting how many
/// made it: 20,000 handshakes on a busy 2-core machine take minutes, not hours.
const CONNECT_LIMIT: Duration = Duration::from_secs(600);
/// How often the controller's connected-agents gauge is read while waiting.
const POLL: Duration = Duration::from_millis(250);
/// How often progress is shown while waiting for agents.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "deskside-swarm",
    about = "Simulated agents against a real controller"
)]
struct Args {
    /// Simulated agents to enroll and connect.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Agents the diagnostics fan-out pulls from (default min(agents, 1000)).
    #[arg(long)]
    fanout: Option<usize>,
    /// Agents kept connected through the controller restart (default all).
    #[arg(long)]
    reconnect: Option<usize>,
    /// Seconds of keep-alive-only traffic over which the controller's cost is sampled.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// `deskside diag --all --concurrency`.
    #[arg(long, default_value_t = 64)]
    concurrency: u32,
    /// The `deskside` binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    controller_bin: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Keep the controller's data dir and log (its path is printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// Serve the web console too (HTTPS on a free loopback port).
    #[arg(long)]
    console: bool,
    /// After the fan-out, print one JSON line saying where the controller, its data and
    /// the technician's profile are, and keep everything running until stdin closes
    /// (no sequential baseline, no restart); for `deskside-bench console`.
    #[arg(long)]
    hold: bool,
    /// Spread the agents over the controller nodes this JSON file names (already
    /// running; see `nodes.rs`) instead of starting a controller; print each node's RSS
    /// and idle CPU (one JSON object with --json). No fan-out, no restart.
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    agents: usize,
    connected: u64,
    enroll_secs: f64,
    connect_secs: f64,
    controller_rss_bytes: u64,
    controller_cpu_pct_idle: f64,
    idle_secs: u64,
    swarm_rss_bytes: u64,
    fanout: FanoutReport,
    reconnect: ReconnectReport,
}

#[derive(Debug, Serialize)]
struct FanoutReport {
    agents: usize,
    concurrency: u32,
    parallel_secs: f64,
    sequential_secs: f64,
    stored: usize,
}

#[derive(Debug, Serialize)]
struct ReconnectReport {
    agents: usize,
    all_back_secs: f64,
    peak_attempts_per_sec: u64,
    back: u64,
    /// How the agents learned the controller was gone: a stateless reset answering
    /// their next keep-alive, or only the idle timeout (the reset never reached them).
    lost_by_reset: u64,
    lost_by_idle_timeout: u64,
    lost_otherwise: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn controller_bin(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this executable has no directory")?;
    Ok(dir.join("deskside"))
}

fn raise_nofile() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open files limit: {n}"),
        Err(e) => eprintln!("warning: cannot raise the open files limit: {e}"),
    }
}

/// Waits until the controller lists `want` agents connected; returns how many it saw.
/// Every [`PROGRESS_EVERY`] it shows the controller's count next to the swarm's own
/// (agents that finished their check-in), so a lag between the two is visible.
async fn wait_connected(c: &Controller, swarm: &Swarm, want: u64, limit: Duration) -> u64 {
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut seen = 0;
    while started.elapsed() < limit {
        if let Ok(n) = c.agents_connected().await {
            seen = n;
            if n >= want {
                break;
            }
        }
        if shown.elapsed() >= PROGRESS_EVERY {
            shown = Instant::now();
            eprintln!(
                "  {:>5.1} s: controller lists {seen}/{want}, swarm has {} checked in, {} attempts",
                started.elapsed().as_secs_f64(),
                swarm.counters.connected.load(Ordering::Relaxed),
                swarm.counters.attempts.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    seen
}

async fn run(args: Args) -> Result<()> {
    let n = args.agents;
    let m = args.fanout.unwrap_or(n.min(1000));
    let k = args.reconnect.unwrap_or(n);
    if n == 0 || m > n || k > n || (args.hold && m == 0) {
        bail!(
            "need --agents > 0, --fanout ≤ agents (and > 0 with --hold) and --reconnect ≤ agents"
        );
    }
    raise_nofile();
    if let Some(file) = &args.nodes {
        let report = nodes::run(file, n, args.idle_secs).await?;
        for node in &report.nodes {
            eprintln!(
                "{}: {} agents, RSS {:.1} MiB, idle CPU {:.2} %",
                node.name,
                node.agents_connected,
                node.rss_bytes as f64 / (1024.0 * 1024.0),
                node.cpu_pct_idle
            );
        }
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        return Ok(());
    }
    let bin = controller_bin(args.controller_bin)?;
    let tmp = tempfile::tempdir()?;
    let mut ctl = Controller::start(&bin, tmp.path(), args.console).await?;
    let addr = ctl.addr.to_string();
    eprintln!(
        "controller {} on {addr}, data in {}",
        bin.display(),
        tmp.path().display()
    );

    // One real snapshot of this machine, taken once, served by every agent.
    let fixed = Arc::new(deskside_agent::diag::snapshot().await);
    let platform = Platform {
        os: fixed.os.pretty_name.clone(),
        kernel: fixed.os.kernel.clone(),
    };
    let hostnames: Vec<String> = (0..n)
        .map(|i| {
            if i < m {
                format!("fan-{i:05}")
            } else {
                format!("swarm-{i:05}")
            }
        })
        .collect();

    let started = Instant::now();
    let enrolled = enroll::enroll_all(&ctl.data, &addr, hostnames, &platform.os).await?;
    let enroll_secs = started.elapsed().as_secs_f64();
    let fan_ids: Vec<String> = enrolled.iter().take(m).map(|e| e.id.clone()).collect();
    eprintln!("enrolled {n} agents in {enroll_secs:.1} s");

    let started = Instant::now();
    let mut swarm = Swarm::start(enrolled, ctl.addr, fixed, &platform)?;
    let connected = wait_connected(&ctl, &swarm, n as u64, CONNECT_LIMIT).await;
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!("{connected}/{n} connected in {connect_secs:.1} s");

    let pid = ctl
        .pid()
        .context("the controller is not running")?
        .to_string();
    let before = controller::usage(&pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after = controller::usage(&pid)?;
    let idle_cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
    let controller_cpu_pct_idle = 100.0 * idle_cpu / args.idle_secs.max(1) as f64;

    let profile_path = tmp.path().join("tech.toml");
    let profile = fanout::technician(&ctl.data, &addr, &profile_path).await?;
    let tech = TechClient::connect(&profile).await?;
    let ticket = fanout::new_ticket(&tech, "swarm fan-out").await?;
    let parallel_secs = fanout::parallel(
        bin.clone(),
        profile_path.clone(),
        ticket,
        args.concurrency,
        "fan-*".into(),
    )
    .await?;
    let stored = fanout::stored_on(&tech, ticket).await?;
    if args.hold {
        tech.close().await;
        let held = hold::Held {
            agents: n,
            connected,
            connect_secs,
            controller_pid: ctl.pid().context("the controller is not running")?,
            addr: addr.clone(),
            console: ctl.console.map(|a| a.to_string()),
            config: Controller::config_path(tmp.path()),
            data: ctl.data.root().to_owned(),
            technician: fanout::TECHNICIAN.into(),
            profile: profile_path,
            fanout_ticket: ticket,
            snapshot_agents: fan_ids,
        };
        eprintln!("fan-out stored {stored}/{m} snapshots on ticket #{ticket}");
        hold::announce_and_wait(&held).await?;
        swarm.stop().await;
        ctl.kill();
        return Ok(());
    }
    let baseline = fanout::new_ticket(&tech, "swarm sequential baseline").await?;
    let (sequential_secs, seq_stored) = fanout::sequential(&tech, &fan_ids, baseline).await;
    eprintln!("sequential baseline stored {seq_stored}/{m}");
    tech.close().await;

    swarm.stop_from(k).await;
    let settle = Instant::now();
    while ctl.agents_connected().await.is_ok_and(|c| c > k as u64) && settle.elapsed() < POLL * 120
    {
        tokio::time::sleep(POLL).await;
    }
    let c = &swarm.counters;
    let losses = || [&c.lost_reset, &c.lost_idle, &c.lost_other].map(|n| n.load(Ordering::Relaxed));
    let before_crash = losses();
    let (all_back_secs, peak_attempts_per_sec, back) =
        crash_and_reconnect(&mut ctl, &swarm, k as u64).await?;
    let [lost_by_reset, lost_by_idle_timeout, lost_otherwise] = {
        let ([r1, i1, o1], [r0, i0, o0]) = (losses(), before_crash);
        [r1 - r0, i1 - i0, o1 - o0]
    };

    let report = Report {
        agents: n,
        connected,
        enroll_secs,
        connect_secs,
        controller_rss_bytes: after.rss_bytes,
        controller_cpu_pct_idle,
        idle_secs: args.idle_secs,
        swarm_rss_bytes: controller::usage("self")?.rss_bytes,
        fanout: FanoutReport {
            agents: m,
            concurrency: args.concurrency,
            parallel_secs,
            sequential_secs,
            stored,
        },
        reconnect: ReconnectReport {
            agents: k,
            all_back_secs,
            peak_attempts_per_sec,
            back,
            lost_by_reset,
            lost_by_idle_timeout,
            lost_otherwise,
        },
    };
    print_table(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    swarm.stop().await;
    ctl.kill();
    if args.keep {
        eprintln!("kept {}", tmp.keep().display());
    }
    Ok(())
}

/// SIGKILLs the controller, starts it again on the same port and data dir, and waits
/// for `want` agents to be back. Returns (seconds from the kill, peak connection
/// attempts in any one second, agents back).
async fn crash_and_reconnect(
    ctl: &mut Controller,
    swarm: &Swarm,
    want: u64,
) -> Result<(f64, u64, u64)> {
    let counters = swarm.counters.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            let mut last = counters.attempts.load(Ordering::Relaxed);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return peak,
                }
                let now = counters.attempts.load(Ordering::Relaxed);
                peak = peak.max(now - last);
                last = now;
            }
        })
    };
    let killed = Instant::now();
    ctl.restart().await?;
    eprintln!(
        "controller killed and restarted in {:.1} s; waiting for {want} agents",
        killed.elapsed().as_secs_f64()
    );
    let back = wait_connected(ctl, swarm, want, CONNECT_LIMIT).await;
    let secs = killed.elapsed().as_secs_f64();
    stop.cancel();
    let peak = sampler.await.unwrap_or(0);
    Ok((secs, peak, back))
}

fn print_table(r: &Report) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "agents               {:>10}   connected {}",
        r.agents, r.connected
    );
    eprintln!("enroll               {:>10.1} s", r.enroll_secs);
    eprintln!("connect              {:>10.1} s", r.connect_secs);
    eprintln!(
        "controller RSS       {:>10.1} MiB",
        mib(r.controller_rss_bytes)
    );
    eprintln!(
        "controller CPU idle  {:>10.2} % of a core over {} s",
        r.controller_cpu_pct_idle, r.idle_secs
    );
    eprintln!("swarm RSS            {:>10.1} MiB", mib(r.swarm_rss_bytes));
    eprintln!(
        "fan-out {} agents    {:>10.2} s parallel (C={}), {:.2} s sequential, {} stored",
        r.fanout.agents,
        r.fanout.parallel_secs,
        r.fanout.concurrency,
        r.fanout.sequential_secs,
        r.fanout.stored
    );
    eprintln!(
        "reconnect {} agents  {:>10.1} s all back ({} back), peak {} attempts/s",
        r.reconnect.agents,
        r.reconnect.all_back_secs,
        r.reconnect.back,
        r.reconnect.peak_attempts_per_sec
    );
    eprintln!(
        "  noticed the restart by: stateless reset {}, idle timeout {}, other {}",
        r.reconnect.lost_by_reset, r.reconnect.lost_by_idle_timeout, r.reconnect.lost_otherwise
    );
}
