//! The report's rows: what a run measured, judged against its target and set beside the
//! baselines measured in the same run.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::deskside::{self, Idle};
use crate::fleet::Fleet;
use crate::meshcentral::MeshIdle;
use crate::report::Row;
use crate::sshd::Sshd;
use crate::stats::{Samples, mib, ms, ratio, size};
use crate::swarm::{self, SwarmPlan};
use crate::tools::{self, SCP_CIPHER, SSH_DIAG};

/// Targets from the performance issue.
const AGENT_IDLE_RSS_TARGET: u64 = 6 * 1024 * 1024;
pub(crate) const AGENT_SERVED_RSS_TARGET: u64 = 8 * 1024 * 1024;
const CONTROLLER_IDLE_RSS_TARGET: u64 = 30 * 1024 * 1024;
const DIAG_P50_TARGET: Duration = Duration::from_millis(300);
const SCRIPT_P50_TARGET: Duration = Duration::from_millis(1);
const SCRIPT_P99_TARGET: Duration = Duration::from_millis(3);
/// How an idle agent's wake-ups are judged: a keepalive round is the timer firing, the
/// PING going out, the peer's PING and the ACKs coming in — each may wake the runtime
/// thread and the thread that parks in the reactor. More than this many per keepalive
/// interval means something polls.
const WAKEUPS_PER_KEEPALIVE: u64 = 12;

pub(crate) fn idle_rows(
    agent: &Idle,
    controller_rss: u64,
    quiet: Duration,
    mesh: &Result<MeshIdle>,
) -> Vec<Row> {
    let keepalive = deskside_transport::tls::KEEP_ALIVE;
    let rounds = (agent.window.as_secs() / keepalive.as_secs()).max(1);
    // For display only.
    let per_round = agent.wakeups as f64 / rounds as f64;
    let (mesh_text, mesh_ratio, mesh_how) = match mesh {
        Ok(m) => (
            format!(
                "MeshCentral {} agent (meshagent x86-64 from its npm package) {}, same run, \
                 on this machine, connected to a MeshCentral server on 127.0.0.1",
                m.version,
                mib(m.rss_bytes)
            ),
            times(m.rss_bytes, agent.rss_bytes),
            format!(". MeshCentral: {}", m.how),
        ),
        Err(e) => (
            format!("MeshCentral: not measured: {e:#}"),
            "—".into(),
            String::new(),
        ),
    };
    vec![
        Row::new("agent idle RSS", mib(agent.rss_bytes), "≤ 6 MiB")
            .baseline(mesh_text)
            .ratio(mesh_ratio)
            .met(agent.rss_bytes <= AGENT_IDLE_RSS_TARGET)
            .how(format!(
                "VmRSS from /proc/PID/status of the `deskside-agent run` process as packaged \
                 (in `all`: profile `agent`, size-optimised with whole-program LTO, static musl), \
                 connected, after the settle period; threads: {}; smaps_rollup: {}{mesh_how}",
                agent.threads, agent.smaps
            )),
        Row::new(
            "agent idle CPU and wake-ups",
            format!(
                "{:.3} % of a core; {} wake-ups in {:.0} s ({per_round:.1} per {}-s keepalive)",
                agent.cpu_pct,
                agent.wakeups,
                agent.window.as_secs_f64(),
                keepalive.as_secs()
            ),
            "no wake-ups beyond keepalive",
        )
        .met(agent.wakeups <= rounds * WAKEUPS_PER_KEEPALIVE)
        .how(format!(
            "utime+stime from /proc/PID/stat and voluntary+involuntary context switches of \
             every thread (/proc/PID/task/*/status) over the idle window, compared with the \
             QUIC keepalive interval; met when ≤ {WAKEUPS_PER_KEEPALIVE} per keepalive. The \
             window starts once the agent's start-up count of pending updates \
             (`apt-get -s upgrade`, a child process) has finished ({} after the settle \
             period here): while it runs, reading its output wakes the agent a few \
             hundred times",
            ms(quiet)
        )),
        Row::new(
            "controller idle RSS, one agent",
            mib(controller_rss),
            "≤ 30 MiB",
        )
        .met(controller_rss <= CONTROLLER_IDLE_RSS_TARGET)
        .how("VmRSS of the release `deskside serve` process with the one agent connected, idle"),
    ]
}

/// "N× smaller" or "N× larger": Deskside's `ours` against the baseline's `theirs`.
fn times(theirs: u64, ours: u64) -> String {
    // Byte counts far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let (theirs, ours) = (theirs as f64, ours.max(1) as f64);
    if theirs >= ours {
        format!("{:.1}× smaller", theirs / ours)
    } else {
        format!("{:.1}× larger", ours / theirs.max(1.0))
    }
}

pub(crate) fn diag_rows(
    diag: &deskside::Diag,
    cli: &Samples,
    inxi: Result<(Samples, u64)>,
    sos: Result<(Samples, u64)>,
    ssh: Result<&(Samples, u64), &String>,
) -> Vec<Row> {
    let show = |r: &(Samples, u64)| format!("{} ({})", r.0.show(), size(r.1));
    let inxi_text = match &inxi {
        Ok(r) => format!("`inxi -Fxz` {}", show(r)),
        Err(e) => format!("inxi: not measured: {e:#}"),
    };
    let sos_text = match &sos {
        Ok(r) => format!("`sos report` (5 plugins) {}", show(r)),
        Err(e) => format!("sos: not measured: {e:#}"),
    };
    let ssh_text = match ssh {
        Ok(r) => format!("`ssh host '{SSH_DIAG}'` {}", show(r)),
        Err(e) => format!("ssh: not measured: {e}"),
    };
    let baselines = format!("{inxi_text}<br>{sos_text}<br>{ssh_text}");
    let p50 = diag.samples.p50();
    let (ratio_text, beats_inxi) = match &inxi {
        Ok((s, bytes)) => (
            format!(
                "{} faster than inxi, {:.1}× its content",
                ratio(s.p50(), p50),
                diag.snapshot_bytes as f64 / *bytes as f64
            ),
            Some(p50 < s.p50() && diag.snapshot_bytes > *bytes),
        ),
        Err(_) => ("—".into(), None),
    };
    vec![
        Row::new(
            "diag → snapshot + findings stored on the ticket (open connection)",
            format!("{} ({}, {} findings)", diag.samples.show(), size(diag.snapshot_bytes), diag.findings),
            "p50 ≤ 300 ms; faster than inxi with more content",
        )
        .baseline(baselines)
        .ratio(ratio_text)
        .met_against(p50 <= DIAG_P50_TARGET, beats_inxi)
        .how(
            "`TechRequest::Diagnostics` over one open technician connection \
             (`deskside_controller::client::TechClient`): the controller asks the agent, \
             the agent takes the snapshot, the controller computes findings and stores the snapshot \
             as evidence on the ticket before replying. Size = compact JSON of the snapshot. \
             inxi and sos run locally; the ssh command opens a fresh connection each run.",
        ),
        Row::new("diag via the CLI, end to end", cli.show(), "p50 ≤ 300 ms")
            .met(cli.p50() <= DIAG_P50_TARGET)
            .how("`deskside diag AGENT --ticket N --json` as a process: process start, profile, TLS handshake, request, storage, JSON on stdout"),
    ]
}

pub(crate) fn script_row(script: &Samples, ssh: Result<(&Samples, &Samples), &String>) -> Row {
    let mut row = Row::new(
        "script round trip on an open session (`/bin/true`)",
        script.show(),
        "p50 ≤ 1 ms, p99 ≤ 3 ms; ≥ 100× fresh ssh, ≥ 5× multiplexed",
    )
    .how(
        "a signed catalog script whose body is `/bin/true`, run with `TechRequest::RunScript` \
         over one open technician connection: the controller checks authority, the agent \
         verifies signature, hash, tier and policy, spawns `sh` in its own process group, \
         streams the result; the run is stored on the ticket. ssh: `ssh host true`, fresh \
         connection, and through a ControlMaster (`ControlPersist=60`, one warm-up).",
    );
    let own = script.p50() <= SCRIPT_P50_TARGET && script.p99() <= SCRIPT_P99_TARGET;
    match ssh {
        Ok((fresh, mux)) => {
            let vs_fresh = fresh.p50().as_secs_f64() / script.p50().as_secs_f64();
            let vs_mux = mux.p50().as_secs_f64() / script.p50().as_secs_f64();
            row = row
                .baseline(format!(
                    "fresh `ssh host true` {}<br>ControlMaster {}",
                    fresh.show(),
                    mux.show()
                ))
                .ratio(format!(
                    "{} vs fresh, {} vs multiplexed",
                    ratio(fresh.p50(), script.p50()),
                    ratio(mux.p50(), script.p50())
                ))
                .met_against(own, Some(vs_fresh >= 100.0 && vs_mux >= 5.0));
        }
        Err(e) => {
            row = row
                .baseline(format!("ssh: not measured: {e}"))
                .met_against(own, None);
        }
    }
    row
}

pub(crate) fn script_cli_row(script_cli: &Samples) -> Row {
    Row::new(
        "script round trip via the CLI (reference)",
        script_cli.show(),
        "—",
    )
    .how(
        "`deskside run AGENT bench-true --ticket N` as a process: process start, TLS \
         handshake, run, result stored",
    )
}

pub(crate) fn bulk_row(fleet: &Fleet, sshd: Option<&Sshd>, bytes: u64) -> Result<Row> {
    let target = "≥ 2× scp";
    let how = format!(
        "a {} file of random bytes; scp pulls it with `scp -c {SCP_CIPHER}` from the \
         private sshd and both ends are SHA-256 hashed and compared (hashing not timed).",
        size(bytes)
    );
    let Some(sshd) = sshd else {
        return Ok(
            Row::new("bulk evidence transfer", "not measured".into(), target)
                .baseline("scp: not measured: the private sshd did not start".into())
                .not_measured()
                .how(how),
        );
    };
    let src = sshd.shared_dir().join("bulk.bin");
    let sha = tools::random_file(&src, bytes)?;
    let dst = fleet.scratch().join("bulk.scp");
    let scp = tools::scp(sshd, &src, &sha, &dst)?;
    let _ = std::fs::remove_file(&dst);
    let rate = |d: Duration| bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    let scp_text = format!("`scp -c {SCP_CIPHER}` {:.0} MiB/s ({})", rate(scp), ms(scp));
    if !deskside::has_collect(fleet) {
        return Ok(Row::new(
            "bulk evidence transfer",
            "not measurable: file collection is planned (`deskside collect` is not in this build)"
                .into(),
            target,
        )
        .baseline(scp_text)
        .not_measured()
        .how(how));
    }
    let took = deskside::collect(fleet, &src, &sha)?;
    let _ = std::fs::remove_file(&src);
    let stored = deskside::stored_blob(fleet, &sha)?;
    Ok(Row::new(
        "bulk evidence transfer",
        format!("{:.0} MiB/s ({})", rate(took), ms(took)),
        target,
    )
    .baseline(scp_text)
    .ratio(ratio(scp, took))
    .met(scp.as_secs_f64() / took.as_secs_f64() >= 2.0)
    .how(format!(
        "{how} Deskside: the agent reads the same file where sshd serves it, pulled with \
         `deskside collect AGENT PATH --ticket N` run as a technician CLI process (process \
         start, mutual-TLS handshake, transfer, hashing on both sides, fsync and commit on \
         the controller), timed end to end; its answer must name the source's SHA-256, and \
         the blob the controller stored ({}) is hashed again and compared (not timed).",
        size(stored)
    )))
}

/// The controller's memory budget with 20,000 agents connected.
const CONTROLLER_SWARM_RSS_TARGET: u64 = 2 * 1024 * 1024 * 1024;
/// "No thundering herd", as a bound: after a restart, no one second sees connection
/// attempts from more than this share of the agents. Agents learn of the restart at their
/// next keep-alive (25 s apart) and back off with jitter, so arrivals spread over tens of
/// seconds (about 4 % of the agents a second); a herd (every agent retrying on the same
/// schedule) puts most of them into one or two seconds. A fifth still leaves the spread of
/// at least five seconds that the controller's handshake rate needs.
const HERD_PEAK_SHARE: f64 = 0.2;

/// The swarm's rows, and its controller's RSS (without the console) when it ran.
pub(crate) fn swarm_rows(bins: &Path, plan: SwarmPlan) -> (Vec<Row>, Option<u64>) {
    match swarm::run(bins, plan) {
        Ok(r) => (vec![
            Row::new(
                "swarm: agents connected to one controller",
                format!(
                    "{}/{} connected in {:.1} s (enrolled in {:.1} s); controller {} RSS, {:.1} % CPU idle",
                    r.connected, r.agents, r.connect_secs, r.enroll_secs,
                    mib(r.controller_rss_bytes), r.controller_cpu_pct_idle
                ),
                "20,000 agents on 2 cores; controller RSS ≤ 2 GiB; keepalive CPU ≤ 10 % of a core",
            )
            .met(
                r.connected == r.agents
                    && r.agents >= 20_000
                    && r.controller_rss_bytes <= CONTROLLER_SWARM_RSS_TARGET
                    && r.controller_cpu_pct_idle <= 10.0,
            )
            .how(format!(
                "`deskside-swarm --json`: its own release controller process and {} simulated \
                 agents (swarm process {} RSS); controller CPU over a {} s idle window with \
                 only keepalives flowing",
                r.agents, mib(r.swarm_rss_bytes), r.idle_secs
            )),
            Row::new(
                "swarm: snapshot fan-out (simulated agents, prepared snapshot)",
                format!(
                    "{} agents in {:.1} s at concurrency {} ({} stored)",
                    r.fanout.agents, r.fanout.parallel_secs, r.fanout.concurrency, r.fanout.stored
                ),
                "1,000 agents ≤ 10 s",
            )
            .baseline(format!("the same one after another: {:.1} s", r.fanout.sequential_secs))
            .ratio(format!("{:.1}×", r.fanout.sequential_secs / r.fanout.parallel_secs.max(1e-9)))
            .met(r.fanout.agents >= 1000 && r.fanout.stored == r.fanout.agents && r.fanout.parallel_secs <= 10.0)
            .how("snapshots pulled from many agents at once; `stored` counted from the controller's answers. \
                  The simulated agents take no snapshot: each answers with one snapshot prepared when the swarm \
                  started, stamped with its hostname and the time, its findings computed and signed with its own \
                  key. This row measures the controller's side (fan-out, signature checks, storage); the row \
                  \"snapshot fan-out with real agents\" measures real agents taking theirs"),
            Row::new(
                "swarm: reconnect after a controller restart",
                format!(
                    "{}/{} back in {:.1} s (peak {} attempts/s); {} told by a stateless reset, {} only by their idle timeout",
                    r.reconnect.back, r.reconnect.agents, r.reconnect.all_back_secs, r.reconnect.peak_attempts_per_sec,
                    r.reconnect.lost_by_reset, r.reconnect.lost_by_idle_timeout
                ),
                "all back ≤ 60 s (10,000 agents); no thundering herd: peak attempts in any one second ≤ 20 % of the agents",
            )
            .ratio(format!(
                "peak = {:.1} % of the agents",
                100.0 * r.reconnect.peak_attempts_per_sec as f64 / r.reconnect.agents.max(1) as f64
            ))
            .met(
                r.reconnect.back == r.reconnect.agents
                    && r.reconnect.agents >= 10_000
                    && r.reconnect.all_back_secs <= 60.0
                    && (r.reconnect.peak_attempts_per_sec as f64)
                        <= HERD_PEAK_SHARE * r.reconnect.agents as f64,
            )
            .how("SIGKILL, then the same port and data: agents notice at their next keep-alive (25 s), answered by a stateless reset, and reconnect with jittered exponential backoff. \
                  The swarm counts every connection attempt its agents make; the peak is the largest count in any one-second window from the kill until all are back"),
        ], Some(r.controller_rss_bytes)),
        Err(e) => (vec![Row::new("swarm (20,000 agents, 1,000 fan-out, 10,000 reconnect)", format!("{e:#}"), "see the swarm rows")], None),
    }
}
