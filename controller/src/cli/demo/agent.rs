//! The demo's agent: the real `deskside-agent` binary, run as a child process with a
//! private state directory, enrolled, served and answered through its own command line
//! exactly as a machine's admin and user would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// The agent binary, next to the running `deskside`.
pub const AGENT_BIN: &str = "deskside-agent";

/// The agent's environment overrides: the demo names its own state, socket and config,
/// and a value meant for the machine's real agent must not reach the demo's.
const AGENT_ENV: [&str; 7] = [
    "DESKSIDE_AGENT_CONFIG",
    "DESKSIDE_AGENT_STATE",
    "DESKSIDE_AGENT_SOCKET",
    "DESKSIDE_LOG_FORMAT",
    "DESKSIDE_LOG_LEVEL",
    "DESKSIDE_RECONNECT_BASE",
    "DESKSIDE_RECONNECT_CAP",
];

/// How often the demo looks for a session request waiting for its user.
const PENDING_POLL: Duration = Duration::from_millis(100);

/// How long the agent service gets to stop on SIGTERM (it drains its link and stops the
/// commands it started) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Finds `deskside-agent` in the directory of the running `deskside`, or says how to
/// build it.
pub fn locate() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running deskside executable")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    let bin = dir.join(AGENT_BIN);
    if bin.is_file() {
        return Ok(bin);
    }
    let release = if dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    bail!(
        "the demo runs the real agent, and {} does not exist; build both binaries first: \
         cargo build{release} --bin deskside --bin {AGENT_BIN}",
        bin.display()
    )
}

/// One demo agent: its binary, private state directory and, once started, the service.
#[derive(Debug)]
pub struct DemoAgent {
    bin: PathBuf,
    state: PathBuf,
    log: PathBuf,
    service: Option<Child>,
}

impl DemoAgent {
    /// An agent whose state, config, socket and log live under `root`.
    pub fn new(bin: PathBuf, root: &Path) -> Result<DemoAgent> {
        // An empty agent.toml: the machine's own /etc/deskside/agent.toml is not the demo's.
        std::fs::write(root.join("agent.toml"), "")
            .with_context(|| format!("writing {}", root.join("agent.toml").display()))?;
        Ok(DemoAgent {
            bin,
            state: root.join("agent"),
            log: root.join("agent.log"),
            service: None,
        })
    }

    /// The state directory (key, certificate, policy, audit log, control socket).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// Where the service's log goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        let root = self.state.parent().unwrap_or(&self.state);
        c.arg("--state")
            .arg(&self.state)
            .arg("--socket")
            .arg(self.state.join("control.sock"))
            .arg("--config")
            .arg(root.join("agent.toml"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for var in AGENT_ENV {
            c.env_remove(var);
        }
        c
    }

    /// Runs `deskside-agent ARGS` to completion; its stdout, or an error with its stderr.
    async fn say(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {} {}", self.bin.display(), args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "{AGENT_BIN} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `deskside-agent enroll TOKEN`; returns the agent id it was given
    /// (`deskside-agent status --json`).
    pub async fn enroll(&self, token: &str) -> Result<String> {
        self.say(&["enroll", token]).await?;
        let status: serde_json::Value =
            serde_json::from_str(&self.say(&["status", "--json"]).await?)
                .context("reading deskside-agent status --json")?;
        status
            .pointer("/enrollment/agent_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .context("deskside-agent status --json names no enrollment.agent_id after enrolling")
    }

    /// Writes the machine admin's `policy.toml`.
    pub fn set_policy(&self, policy: &str) -> Result<()> {
        let path = self.state.join("policy.toml");
        std::fs::write(&path, policy).with_context(|| format!("writing {}", path.display()))
    }

    /// `deskside-agent run`, in the background, logging to [`DemoAgent::log`].
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let child = self
            .command()
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            // In the demo's process group: Ctrl-C at the terminal stops the agent too.
            .spawn()
            .with_context(|| format!("starting {} run", self.bin.display()))?;
        self.service = Some(child);
        Ok(())
    }

    /// Fails if the service has exited, naming its status and log.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.service
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "the demo agent stopped ({status}); its log is {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Plays the machine's user: waits for the first session request
    /// (`deskside-agent pending --json`), shows what the user sees (`deskside-agent
    /// pending`) and approves it (`deskside-agent approve ID`).
    pub async fn approve_first_request(&self, wait: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            // Until the service has made its control socket, `pending` fails: try again.
            let pending = self.say(&["pending", "--json"]).await;
            let first = pending.as_ref().ok().and_then(|text| {
                serde_json::from_str::<serde_json::Value>(text)
                    .ok()?
                    .pointer("/pending/0/id")?
                    .as_u64()
            });
            if let Some(id) = first {
                let screen = self.say(&["pending"]).await?;
                println!(
                    "    the user sees: {}",
                    screen.lines().next().unwrap_or_default()
                );
                println!("    DEMO: approving on the user's behalf ({AGENT_BIN} approve {id})");
                self.say(&["approve", &id.to_string()]).await?;
                return Ok(());
            }
            if started.elapsed() > wait {
                let why = pending
                    .err()
                    .map(|e| format!(": {e:#}"))
                    .unwrap_or_default();
                bail!("no session request reached the demo agent{why}");
            }
            tokio::time::sleep(PENDING_POLL).await;
        }
    }

    /// Stops the service as its service manager would: SIGTERM, then SIGKILL after
    /// [`STOP_GRACE`]; waits for it.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.service.take() else {
            return;
        };
        let term = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
            .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
        if matches!(term, Some(Ok(())))
            && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok()
        {
            return;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}
