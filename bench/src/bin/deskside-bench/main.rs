//! `deskside-bench`: Deskside measured against what an engineer would otherwise use (ssh,
//! scp, sos, inxi) on the same machine in the same run, plus the agent swarm; writes
//! docs/PERFORMANCE.md. `smoke` runs every measure with tiny sizes so CI keeps it working.

mod browser;
mod cluster;
mod console;
mod console_http;
mod console_rows;
mod deskside;
mod desktop;
mod evidence;
mod fleet;
mod group;
mod machine;
mod meshcentral;
mod nats;
mod nodes;
mod pgcluster;
mod procfs;
mod realfan;
mod report;
mod rows;
mod run;
mod sshd;
mod stats;
mod swarm;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::console::ConsolePlan;
use crate::run::Plan;
use crate::swarm::SwarmPlan;

/// The agent ships statically linked against musl (see `[profile.agent]` in Cargo.toml).
const AGENT_TARGET: &str = "x86_64-unknown-linux-musl";
/// The full bulk-transfer file.
const BULK_BYTES: u64 = 256 * 1024 * 1024;
/// The smoke's bulk-transfer file.
const SMOKE_BULK_BYTES: u64 = 8 * 1024 * 1024;
/// Real agents added to the fleet's one for the fan-out with real agents: on two
/// cores, 20 collections at once already keep both busy for seconds.
const REAL_FANOUT_MORE_AGENTS: usize = 19;
/// The slow baselines (inxi ~0.6 s, a CLI process each run) run at most this often.
const MAX_SLOW_RUNS: usize = 20;
/// `sos report` takes seconds per run.
const SOS_RUNS: usize = 3;
/// The console's fleet: tickets opened, and agents with a snapshot (the fan-out's size).
const CONSOLE_TICKETS: u64 = 10_000;
const CONSOLE_SNAPSHOTS: u64 = 1_000;
/// Navigations per page in Chromium: each is a full page load, a few suffice for a p50.
const BROWSER_RUNS: usize = 5;
/// The `meshcentral` mode's default wait from connected to read: `all`'s settle period
/// (10 s) plus its idle window (60 s), when the Deskside agent's RSS is read.
const MESHCENTRAL_SETTLE: Duration = Duration::from_secs(70);

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Everything at full size with release binaries; writes the markdown report.
    All {
        /// Where the report goes.
        #[arg(long, default_value_os_t = default_out())]
        out: PathBuf,
        /// Runs per timed measure.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        runs: u64,
        /// Agents the swarm simulates (fan-out min(N, 1000), reconnect min(N, 10000)).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        swarm_agents: u64,
        /// Take `deskside`, `deskside-agent` (and `deskside-swarm`) from here instead of
        /// building them.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Every measure with tiny sizes (3 runs, 20 swarm agents, 8 MiB); prints the report.
    Smoke {
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Only the diagnostics round trip (snapshots over an open connection, and as
    /// `deskside diag` processes, vs inxi, sos and ssh); prints the rows.
    Diag {
        #[arg(long, default_value = "50", value_parser = clap::value_parser!(u64).range(1..=100_000))]
        runs: u64,
        /// Leave out inxi, sos and ssh (a quick before/after of Deskside alone).
        #[arg(long)]
        no_baselines: bool,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Only the script round trip (`/bin/true` over an open connection, and as
    /// `deskside run` processes, vs fresh and multiplexed ssh); prints the rows.
    Script {
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        runs: u64,
        /// Leave out the ssh baselines (a quick before/after of Deskside alone).
        #[arg(long)]
        no_ssh: bool,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Only the bulk evidence transfer (`deskside collect` vs scp) at the full size, or
    /// `--mib`; prints the row. A quick check without the ten-minute `all`.
    Bulk {
        #[arg(long, default_value_t = BULK_BYTES / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=16_384))]
        mib: u64,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Only the web console with a real fleet: a release controller serving the console,
    /// `--agents` simulated agents connected, `--tickets` tickets; server time of its
    /// pages, first render in headless Chromium, controller RSS; prints the rows.
    Console {
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        agents: u64,
        #[arg(long, default_value_t = CONSOLE_TICKETS, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        tickets: u64,
        /// Agents given a snapshot first (at most --agents).
        #[arg(long, default_value_t = CONSOLE_SNAPSHOTS, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        snapshots: u64,
        /// Timed requests per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        runs: u64,
        /// Timed navigations per page in Chromium.
        #[arg(long, default_value_t = BROWSER_RUNS as u64, value_parser = clap::value_parser!(u64).range(1..=1000))]
        browser_runs: u64,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Also write the rows as a section of their own at the end of this report
        /// (docs/PERFORMANCE.md), replacing an earlier console section there.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Only the end user's desktop helper: a technician's session request → the release
    /// `deskside-desktop`'s notification on a private session bus (python-dbusmock), and
    /// the helper's idle RSS; prints the rows. Not part of `smoke` or `all`.
    Desktop {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        runs: u64,
        /// Seconds the helper idles before its RSS is read.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
        idle_secs: u64,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Also write the rows as a section of their own at the end of this report
        /// (docs/PERFORMANCE.md), replacing an earlier desktop section there.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Only the shared evidence blob stores, directory against PostgreSQL (a throwaway
    /// cluster, fsync on): a large collect and a snapshot written and read back, and
    /// what each store grows by; prints the rows. Not part of `all`.
    Evidence {
        /// The large collect's size.
        #[arg(long, default_value_t = BULK_BYTES / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=4096))]
        mib: u64,
        /// Large collects written and read back per store.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        runs: u64,
        /// Snapshots written and read back per store.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        snapshots: u64,
        /// Also write the rows as a section of their own at the end of this report
        /// (docs/PERFORMANCE.md), replacing an earlier evidence section there.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Only the cluster: three release controllers on loopback sharing a throwaway
    /// PostgreSQL and a nats-server, real agents on each; each node's RSS and idle CPU,
    /// a snapshot fan-out across nodes, a routed request against a local one, PostgreSQL
    /// against SQLite on one node, a killed node's agents coming back; prints the rows.
    /// Not part of `all`.
    Cluster {
        /// Real agents that know only their own node, per node.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
        agents_per_node: u64,
        /// Real agents that know all three nodes (the ones a killed node loses).
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(0..=1000))]
        roaming_agents: u64,
        /// Timed requests per measure.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        runs: u64,
        /// Seconds each node's CPU is sampled idle.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        idle_secs: u64,
        /// Leave out killing a node (it waits out the agents' 60 s idle timeout).
        #[arg(long)]
        no_failover: bool,
        /// Simulated agents spread over three fresh nodes (`deskside-swarm --nodes`).
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        swarm_agents: u64,
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Also write the rows as a section of their own at the end of this report
        /// (docs/PERFORMANCE.md), replacing an earlier cluster section there.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Only the MeshCentral agent's idle RSS (the baseline of the agent idle row): a
    /// MeshCentral server on 127.0.0.1 and its agent, `--runs` times; prints each figure.
    Meshcentral {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
        runs: u64,
        /// Seconds from the server listing the agent as connected to the reading; `all`
        /// waits its settle period plus its idle window, as the Deskside agent gets.
        #[arg(long, default_value_t = MESHCENTRAL_SETTLE.as_secs(), value_parser = clap::value_parser!(u64).range(0..=3600))]
        settle_secs: u64,
    },
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn default_out() -> PathBuf {
    workspace().join("docs").join("PERFORMANCE.md")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(cli: Cli) -> Result<()> {
    let command = format!(
        "cargo run --release -p deskside-bench --bin deskside-bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    match cli.command {
        Mode::All {
            out,
            runs,
            swarm_agents,
            bin_dir,
        } => {
            setup()?;
            let bins = match bin_dir {
                Some(d) => Bins::in_dir(d),
                None => build(true)?,
            };
            let runs = usize::try_from(runs).context("--runs too large")?;
            let plan = Plan {
                runs,
                slow_runs: runs.min(MAX_SLOW_RUNS),
                sos_runs: runs.min(SOS_RUNS),
                settle: Duration::from_secs(10),
                idle_window: Duration::from_secs(60),
                bulk_bytes: BULK_BYTES,
                more_real_agents: REAL_FANOUT_MORE_AGENTS,
                swarm: SwarmPlan {
                    agents: swarm_agents,
                    fanout: swarm_agents.min(1000),
                    reconnect: swarm_agents.min(10_000),
                    idle_secs: 30,
                },
                console: ConsolePlan {
                    agents: swarm_agents,
                    snapshots: swarm_agents.min(CONSOLE_SNAPSHOTS),
                    tickets: CONSOLE_TICKETS,
                    runs,
                    browser_runs: BROWSER_RUNS,
                },
            };
            let text = report(&plan, &bins, command).await?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
        Mode::Smoke { bin_dir } => {
            let bins = match bin_dir {
                Some(d) => Bins::in_dir(d),
                None => build(false)?,
            };
            let plan = Plan {
                runs: 3,
                slow_runs: 3,
                sos_runs: 1,
                settle: Duration::from_secs(1),
                idle_window: Duration::from_secs(3),
                bulk_bytes: SMOKE_BULK_BYTES,
                more_real_agents: 2,
                swarm: SwarmPlan {
                    agents: 20,
                    fanout: 20,
                    reconnect: 20,
                    idle_secs: 3,
                },
                console: ConsolePlan {
                    agents: 20,
                    snapshots: 5,
                    tickets: 30,
                    runs: 3,
                    browser_runs: 1,
                },
            };
            let mut text = report(&plan, &bins, command.clone()).await?;
            let blobs = evidence::EvidencePlan {
                bulk_bytes: SMOKE_BULK_BYTES,
                bulk_runs: 1,
                snapshots: 5,
            };
            let (rows, setup) = evidence::measure(blobs).await?;
            text = own_section(command.clone(), "one each".into(), setup, rows).section_of(
                &text,
                EVIDENCE_SECTION,
                false,
            );
            let nodes = cluster::ClusterPlan {
                agents_per_node: 1,
                roaming_agents: 1,
                runs: 3,
                idle_secs: 2,
                failover: false,
                swarm_agents: 30,
            };
            let (rows, setup) = cluster::measure(&bins, nodes).await?;
            text = own_section(command, "3 per timed measure".into(), setup, rows).section_of(
                &text,
                CLUSTER_SECTION,
                false,
            );
            let out = tempfile::Builder::new()
                .prefix("deskside-bench-smoke-")
                .suffix(".md")
                .tempfile()?
                .keep()?
                .1;
            std::fs::write(&out, &text)?;
            println!("{text}\n(smoke report also in {})", out.display());
        }
        Mode::Diag {
            runs,
            no_baselines,
            bin_dir,
        } => {
            let bins = release_bins(bin_dir)?;
            let runs = usize::try_from(runs).context("--runs too large")?;
            let rows = run::diag(&bins, runs, !no_baselines).await?;
            print_rows(command, format!("{runs} each"), rows);
        }
        Mode::Script {
            runs,
            no_ssh,
            bin_dir,
        } => {
            let bins = release_bins(bin_dir)?;
            let runs = usize::try_from(runs).context("--runs too large")?;
            let rows = run::script(&bins, runs, !no_ssh).await?;
            print_rows(command, format!("{runs} each"), rows);
        }
        Mode::Bulk { mib, bin_dir } => {
            let bins = release_bins(bin_dir)?;
            let rows = run::bulk(&bins, mib * 1024 * 1024).await?;
            print_rows(command, "one transfer each".into(), rows);
        }
        Mode::Console {
            agents,
            tickets,
            snapshots,
            runs,
            browser_runs,
            bin_dir,
            out,
        } => {
            let bins = release_bins(bin_dir)?;
            let load_before = load_average();
            let plan = ConsolePlan {
                agents,
                snapshots: snapshots.min(agents),
                tickets,
                runs: usize::try_from(runs).context("--runs too large")?,
                browser_runs: usize::try_from(browser_runs).context("--browser-runs too large")?,
            };
            let rows = run::console(&bins, plan, None).await;
            let report = report::Report {
                machine: machine::Machine::describe(&workspace()),
                command,
                runs: format!("{runs} per page; {browser_runs} navigations per page in Chromium"),
                setup: vec![format!(
                    "**Load:** a shared machine: load average (1 min) {load_before} when the run \
                     started, {} when it ended",
                    load_average()
                )],
                rows,
            };
            println!("{}", report.markdown());
            if let Some(out) = out {
                let existing = std::fs::read_to_string(&out).unwrap_or_default();
                let text = report.section_of(&existing, CONSOLE_SECTION, true);
                std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
                println!("wrote the console section of {}", out.display());
            }
        }
        Mode::Desktop {
            runs,
            idle_secs,
            bin_dir,
            out,
        } => {
            let bins = release_bins(bin_dir)?;
            desktop::check_bins(&bins)?;
            let load_before = load_average();
            let n = usize::try_from(runs).context("--runs too large")?;
            let run = desktop::run(&bins, n, Duration::from_secs(idle_secs)).await?;
            let report = report::Report {
                machine: machine::Machine::describe(&workspace()),
                command,
                runs: format!("{runs} session requests, one warm-up before them"),
                setup: vec![format!(
                    "**Load:** a shared machine: load average (1 min) {load_before} when the run \
                     started, {} when it ended",
                    load_average()
                )],
                rows: desktop::rows(&run),
            };
            println!("{}", report.markdown());
            if let Some(out) = out {
                let existing = std::fs::read_to_string(&out).unwrap_or_default();
                let text = report.section_of(&existing, DESKTOP_SECTION, false);
                std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
                println!("wrote the desktop section of {}", out.display());
            }
        }
        Mode::Evidence {
            mib,
            runs,
            snapshots,
            out,
        } => {
            let load_before = load_average();
            let plan = evidence::EvidencePlan {
                bulk_bytes: mib * 1024 * 1024,
                bulk_runs: usize::try_from(runs).context("--runs too large")?,
                snapshots: usize::try_from(snapshots).context("--snapshots too large")?,
            };
            let (rows, mut setup) = evidence::measure(plan).await?;
            setup.push(format!(
                "**Load:** a shared machine: load average (1 min) {load_before} when the run \
                 started, {} when it ended",
                load_average()
            ));
            let report = own_section(
                command,
                format!("{runs} large collects and {snapshots} snapshots per store"),
                setup,
                rows,
            );
            println!("{}", report.markdown());
            if let Some(out) = out {
                let existing = std::fs::read_to_string(&out).unwrap_or_default();
                let text = report.section_of(&existing, EVIDENCE_SECTION, false);
                std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
                println!("wrote the evidence section of {}", out.display());
            }
        }
        Mode::Cluster {
            agents_per_node,
            roaming_agents,
            runs,
            idle_secs,
            no_failover,
            swarm_agents,
            bin_dir,
            out,
        } => {
            let bins = release_bins(bin_dir)?;
            let load_before = load_average();
            let plan = cluster::ClusterPlan {
                agents_per_node: usize::try_from(agents_per_node)?,
                roaming_agents: usize::try_from(roaming_agents)?,
                runs: usize::try_from(runs).context("--runs too large")?,
                idle_secs,
                failover: !no_failover,
                swarm_agents: usize::try_from(swarm_agents)?,
            };
            let (rows, mut setup) = cluster::measure(&bins, plan).await?;
            setup.push(format!(
                "**Load:** a shared machine: load average (1 min) {load_before} when the run \
                 started, {} when it ended",
                load_average()
            ));
            let report = own_section(command, format!("{runs} per timed measure"), setup, rows);
            println!("{}", report.markdown());
            if let Some(out) = out {
                let existing = std::fs::read_to_string(&out).unwrap_or_default();
                let text = report.section_of(&existing, CLUSTER_SECTION, false);
                std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
                println!("wrote the cluster section of {}", out.display());
            }
        }
        Mode::Meshcentral { runs, settle_secs } => {
            for run in 1..=runs {
                let idle = meshcentral::idle_rss_async(Duration::from_secs(settle_secs)).await?;
                println!(
                    "run {run}/{runs}: MeshCentral {} agent idle RSS {} ({} bytes)\n  {}",
                    idle.version,
                    stats::mib(idle.rss_bytes),
                    idle.rss_bytes,
                    idle.how
                );
            }
        }
    }
    Ok(())
}

/// The heading of the console's own section in docs/PERFORMANCE.md (`console --out`).
const CONSOLE_SECTION: &str = "Web console with a real fleet (its own run)";

/// The heading of the desktop helper's own section in docs/PERFORMANCE.md (`desktop --out`).
const DESKTOP_SECTION: &str = "The end user's desktop helper (its own run)";

/// The heading of the evidence blob stores' own section in docs/PERFORMANCE.md
/// (`evidence --out`).
const EVIDENCE_SECTION: &str = "Shared evidence blobs: directory or PostgreSQL (its own run)";

/// The heading of the cluster's own section in docs/PERFORMANCE.md (`cluster --out`).
const CLUSTER_SECTION: &str = "Several controller nodes (its own run)";

/// A report of a mode measured on its own.
fn own_section(
    command: String,
    runs: String,
    setup: Vec<String>,
    rows: Vec<report::Row>,
) -> report::Report {
    report::Report {
        machine: machine::Machine::describe(&workspace()),
        command,
        runs,
        setup,
        rows,
    }
}

/// The 1-minute load average from /proc/loadavg, as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The binaries in `--bin-dir`, or release builds of them.
fn release_bins(bin_dir: Option<PathBuf>) -> Result<Bins> {
    match bin_dir {
        Some(d) => Ok(Bins::in_dir(d)),
        None => build(true),
    }
}

/// Prints the rows of a one-measure mode as a report of their own.
fn print_rows(command: String, runs: String, rows: Vec<report::Row>) {
    let report = report::Report {
        machine: machine::Machine::describe(&workspace()),
        command,
        runs,
        setup: Vec::new(),
        rows,
    };
    println!("{}", report.markdown());
}

async fn report(plan: &Plan, bins: &Bins, command: String) -> Result<String> {
    let machine = machine::Machine::describe(&workspace());
    let (rows, setup) = run::all(plan, bins).await?;
    let report = report::Report {
        machine,
        command,
        runs: format!(
            "{} per timed measure over an open connection and for ssh; {} for the CLI \
             processes, inxi and the ssh diag command; {} for sos",
            plan.runs, plan.slow_runs, plan.sos_runs
        ),
        setup,
        rows,
    };
    Ok(report.markdown())
}

/// `all` needs ssh, scp, inxi and sos: runs bench/setup.sh when root, else says to.
fn setup() -> Result<()> {
    let script = workspace().join("bench").join("setup.sh");
    if sshd::is_root() {
        let status = Command::new("bash").arg(&script).status()?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
    } else if sshd::which("inxi").is_none()
        || sshd::which("sos").is_none()
        || sshd::which("sshd").is_none()
    {
        bail!(
            "the baselines are not installed: run `sudo {}` first",
            script.display()
        );
    }
    Ok(())
}

/// The binaries measured.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `deskside`, `deskside-swarm`.
    pub dir: PathBuf,
    /// `deskside-agent`: in release runs the static, size-optimised build (`agent`
    /// profile, [`AGENT_TARGET`]), as the package ships it.
    pub agent: PathBuf,
}

impl Bins {
    fn in_dir(dir: PathBuf) -> Bins {
        Bins {
            agent: dir.join("deskside-agent"),
            dir,
        }
    }
}

/// Scrubs the variables `cargo run` gave this process from a nested cargo command.
/// Under `cargo run` this process carries the package's own CARGO_PKG_*/CARGO_MANIFEST_*
/// variables; build scripts that track those (ring's) would see them change and rebuild
/// everything below them, twice.
fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(workspace());
    cmd
}

/// Builds `deskside`, `deskside-agent` and this crate's binaries.
/// `release` forces release builds (and the agent's `agent` profile); otherwise the
/// profile this binary was built with.
fn build(release: bool) -> Result<Bins> {
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("cannot locate the target directory")?;
    let release = release || here.ends_with("release");
    let dir = if release {
        here.parent()
            .context("cannot locate the target directory")?
            .join("release")
    } else {
        here.to_path_buf()
    };
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        "deskside-controller",
        "-p",
        "deskside-agent",
        "-p",
        "deskside-bench",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "building the binaries ({})…",
        if release { "release" } else { "debug" }
    );
    let status = cmd.status()?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    if !release {
        return Ok(Bins::in_dir(dir));
    }
    eprintln!("building the agent as it ships (profile `agent`, static {AGENT_TARGET})…");
    let status = cargo()
        .args(["build", "--profile", "agent", "--target", AGENT_TARGET])
        .args(["-p", "deskside-agent", "--bins"])
        .status()?;
    if !status.success() {
        bail!(
            "cargo build --profile agent --target {AGENT_TARGET} failed ({status}); the \
             agent ships as a static binary: `rustup target add {AGENT_TARGET}` and install \
             musl-gcc (Debian: apt-get install musl-tools), as .ci/package does"
        );
    }
    let agent = dir
        .parent()
        .context("cannot locate the target directory")?
        .join(AGENT_TARGET)
        .join("agent")
        .join("deskside-agent");
    Ok(Bins { dir, agent })
}
