//! The end user's desktop helper with release binaries: a private session bus
//! (`dbus-daemon`), python-dbusmock's notification daemon on it, the fleet's controller
//! and a second agent with a control socket and a prompting policy, and the release
//! `deskside-desktop` on that socket and bus. A technician asks for a session over an
//! open connection; `dbus-monitor` on the bus stamps the helper's `Notify` call; the
//! request is denied through the agent's command line so the next one can start.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::Bins;
use crate::fleet::Fleet;
use crate::procfs::rss_bytes;
use crate::report::Row;
use crate::sshd::check;
use crate::stats::{Samples, mib, ms};

/// The helper's agent asks its user for everything (the packaged default).
const PROMPT_POLICY: &str = "[scopes]\ndiagnostics = \"prompt\"\n\"scripts:l1\" = \"prompt\"\n";
const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
/// The consent prompt's summary ends so (desktop/src/texts.rs); other notifications of
/// the helper (outcomes, the session) are not the prompt.
const PROMPT_SUMMARY: &str = "asks to help on this computer";
/// After a denial, the helper's follow-up calls land before the next request is sent.
const BETWEEN_RUNS: Duration = Duration::from_millis(300);
/// The mock and the helper start within seconds; allow for a busy machine.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// A prompt that has not appeared by then is a failure, not a slow sample.
const NOTIFY_WITHIN: Duration = Duration::from_secs(30);

/// A child process stopped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the desktop measure found.
pub struct DesktopRun {
    pub notify: Samples,
    pub idle: Duration,
    pub rss: u64,
}

fn bus_wait_name(address: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={address}"))
            .args(["--print-reply", "--dest=org.freedesktop.DBus", "/"])
            .arg("org.freedesktop.DBus.NameHasOwner")
            .arg(format!("string:{NOTIFICATIONS}"))
            .output()
            .context("running dbus-send (Debian package dbus-bin)")?;
        if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
            return Ok(());
        }
        if start.elapsed() > READY_WITHIN {
            bail!("python3-dbusmock did not take {NOTIFICATIONS} within {READY_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dbus-monitor` on the bus: the time (seconds since the epoch) it saw each `Notify`
/// call whose arguments hold the consent prompt's summary.
fn monitor(address: &str) -> Result<(Guard, mpsc::Receiver<f64>)> {
    let mut child = Command::new("dbus-monitor")
        .args(["--address", address])
        .arg(format!(
            "type='method_call',interface='{NOTIFICATIONS}',member='Notify'"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dbus-monitor (Debian package dbus-bin)")?;
    let stdout = child.stdout.take().context("dbus-monitor's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The call's header line carries the time; its arguments follow, indented.
        let mut call: Option<f64> = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !line.starts_with(' ') {
                call = line
                    .starts_with("method call")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("time="))
                            .and_then(|t| t.parse::<f64>().ok())
                    })
                    .flatten();
            } else if line.contains(PROMPT_SUMMARY)
                && let Some(t) = call.take()
                && tx.send(t).is_err()
            {
                return;
            }
        }
    });
    Ok((Guard(child), rx))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `deskside-agent OPTIONS ARGS`: its stdout.
fn agent_cli(bins: &Bins, options: &[&OsStr], args: &[&str]) -> Result<String> {
    let out = Command::new(&bins.agent)
        .args(options)
        .args(args)
        .output()
        .with_context(|| format!("running deskside-agent {}", args.join(" ")))?;
    check(&out, "deskside-agent")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Denies the one pending request as the user would at the terminal.
fn deny_pending(bins: &Bins, options: &[&OsStr]) -> Result<()> {
    let start = Instant::now();
    loop {
        let text = agent_cli(bins, options, &["pending", "--json"])?;
        let id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/pending/0/id")?.as_u64());
        if let Some(id) = id {
            agent_cli(bins, options, &["deny", &id.to_string()])?;
            return Ok(());
        }
        if start.elapsed() > READY_WITHIN {
            bail!("no pending request at the agent: {text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn ask(client: &TechClient, agent: &str, ticket: u64) -> Result<SessionOutcome> {
    let req = TechRequest::RequestSession {
        agent: agent.to_owned(),
        ticket,
        scopes: vec![Scope::Diagnostics, Scope::ScriptsL1],
        duration_secs: 1800,
        wait_secs: 120,
    };
    match client.request(&req).await? {
        TechReply::Session(r) => Ok(r.outcome),
        other => bail!("the session request was answered with {other:?}"),
    }
}

/// One request: the seconds from sending it to the helper's `Notify` on the bus.
async fn one(
    bins: &Bins,
    options: &[&OsStr],
    client: &std::sync::Arc<TechClient>,
    agent: &str,
    ticket: u64,
    notified: &mpsc::Receiver<f64>,
) -> Result<Duration> {
    while notified.try_recv().is_ok() {}
    let sent = now_secs();
    let asking = {
        let (client, agent) = (client.clone(), agent.to_owned());
        tokio::spawn(async move { ask(&client, &agent, ticket).await })
    };
    let shown = tokio::task::block_in_place(|| -> Result<f64> {
        let bound = Instant::now() + NOTIFY_WITHIN;
        loop {
            let left = bound.saturating_duration_since(Instant::now());
            let t = notified
                .recv_timeout(left)
                .context("the helper showed no notification within 30 s")?;
            if t >= sent {
                return Ok(t);
            }
        }
    })?;
    let options: Vec<_> = options.iter().map(|o| o.to_os_string()).collect();
    let bins2 = bins.clone();
    tokio::task::spawn_blocking(move || {
        let o: Vec<&OsStr> = options.iter().map(|o| o.as_os_str()).collect();
        deny_pending(&bins2, &o)
    })
    .await??;
    match asking.await?? {
        SessionOutcome::Refused { .. } => {}
        other => bail!("the denied request ended {other:?}"),
    }
    tokio::time::sleep(BETWEEN_RUNS).await;
    Ok(Duration::from_secs_f64((shown - sent).max(0.0)))
}

pub async fn run(bins: &Bins, runs: usize, idle: Duration) -> Result<DesktopRun> {
    let fleet = Fleet::start(bins).await?;
    let dir = fleet.scratch().to_path_buf();
    let bus_socket = dir.join("bus");
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!("--address=unix:path={}", bus_socket.display()))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dbus-daemon (Debian package dbus-daemon)")?;
    let out = daemon.stdout.take().context("dbus-daemon's stdout")?;
    let _daemon = Guard(daemon);
    let mut address = String::new();
    BufReader::new(out).read_line(&mut address)?;
    let address = address.trim().to_owned();
    if address.is_empty() {
        bail!("dbus-daemon printed no address");
    }
    let _mock = Guard(
        Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--template", "notification_daemon"])
            .args(["-p", r#"{"capabilities": "body actions"}"#])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .spawn()
            .context("starting python3-dbusmock (Debian package python3-dbusmock)")?,
    );
    bus_wait_name(&address)?;
    let (_monitor, notified) = monitor(&address)?;

    let socket = dir.join("desk").join("control.sock");
    let config = dir.join("desk-agent.toml");
    std::fs::write(&config, "")?;
    let options: Vec<&OsStr> = vec![
        OsStr::new("--socket"),
        socket.as_os_str(),
        OsStr::new("--config"),
        config.as_os_str(),
    ];
    let (agent_id, agent) = fleet.start_agent_with("desk", PROMPT_POLICY, &options)?;
    let _agent = Guard(agent);
    fleet.wait_online_id(&agent_id).await?;
    let helper = Guard(
        Command::new(bins.dir.join("deskside-desktop"))
            .arg("--socket")
            .arg(&socket)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("desktop.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", bins.dir.join("deskside-desktop").display()))?,
    );
    let client = std::sync::Arc::new(fleet.client().await?);
    let ticket = match client
        .request(&TechRequest::NewTicket {
            title: "benchmark: the user's desktop prompt".into(),
            agent: Some(agent_id.clone()),
            requester: String::new(),
            priority: "normal".into(),
        })
        .await?
    {
        TechReply::Ticket(v) => v.ticket.number,
        other => bail!("the controller did not open a ticket: {other:?}"),
    };
    // The helper connects to the socket and the bus; one untimed request proves it did.
    one(bins, &options, &client, &agent_id, ticket, &notified)
        .await
        .with_context(|| log_of(&dir.join("desktop.log")))?;
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        all.push(one(bins, &options, &client, &agent_id, ticket, &notified).await?);
    }
    let quiet = Instant::now();
    tokio::time::sleep(idle).await;
    let rss = rss_bytes(helper.0.id())?;
    let idle = quiet.elapsed();
    drop(helper);
    if let Ok(c) = std::sync::Arc::try_unwrap(client) {
        c.close().await;
    }
    Ok(DesktopRun {
        notify: Samples::new(all)?,
        idle,
        rss,
    })
}

fn log_of(path: &Path) -> String {
    format!(
        "the helper's log ({}): {}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    )
}

/// Where `--bin-dir` lacks the helper, what to build.
pub fn check_bins(bins: &Bins) -> Result<()> {
    let exe = bins.dir.join("deskside-desktop");
    if !exe.is_file() {
        bail!(
            "{} does not exist: cargo build --release --bin deskside --bin deskside-agent --bin deskside-desktop",
            exe.display()
        );
    }
    Ok(())
}

/// The prompt's target: the notification within this of the request, at p95.
const NOTIFY_P95_TARGET: Duration = Duration::from_millis(500);

pub fn rows(run: &DesktopRun) -> Vec<Row> {
    let p95 = run.notify.pct(95);
    vec![
        Row::new(
            "desktop: session request → notification shown",
            format!(
                "{} / p95 {} (n={})",
                ms(run.notify.p50()),
                ms(p95),
                run.notify.len()
            ),
            "≤ 500 ms",
        )
        .met(p95 <= NOTIFY_P95_TARGET)
        .how(
            "From the technician client sending `TechRequest::RequestSession` (diagnostics + \
             scripts:l1, over an open QUIC connection to the release `deskside serve`) to the \
             release `deskside-desktop`'s `Notify` call reaching the session bus: covers the \
             controller forwarding the request to the release `deskside-agent run` (its \
             policy prompts), the agent offering it on its control socket, the helper reading \
             it and calling `org.freedesktop.Notifications.Notify` on a private \
             `dbus-daemon --session` served by python-dbusmock's `notification_daemon`. The \
             end is the time `dbus-monitor` (a monitor on that bus) stamps on the prompt's \
             call when it receives it, against the wall clock read just before sending; nothing is drawn on a screen. Each request \
             is then denied with `deskside-agent deny` (the technician gets Refused) before \
             the next; one warm-up request not counted. The figure is p50 / p95",
        ),
        Row::new("desktop: helper idle RSS", mib(run.rss), "—").how(format!(
            "VmRSS of the release `deskside-desktop` process (connected to the agent's \
             control socket and the session bus) after the prompts above and {:.0} s idle \
             with no request pending. The window binary (GTK 4) was not measured",
            run.idle.as_secs_f64()
        )),
    ]
}
