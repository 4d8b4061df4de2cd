//! The Deskside side of the benchmark, as a user runs it: a release `deskside serve`
//! process in a temp data dir, a `deskside-agent run` process enrolled through a real
//! token, a technician added and logged in through the CLI, and a ticket to work on.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::profile::Profile;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::Bins;
use crate::sshd::check;

/// The catalog script the round trip runs: its body is `/bin/true`.
pub const TRUE_SCRIPT: &str = "bench-true";
/// An agent on loopback connects within a second; allow for a busy machine.
const ONLINE_WITHIN: Duration = Duration::from_secs(30);

/// The agent's policy: an unattended managed device for what the benchmark uses.
const POLICY: &str =
    "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\nfiles = \"allow\"\n";

/// A running controller + agent pair and the technician profile that reaches them.
#[derive(Debug)]
pub struct Fleet {
    dir: tempfile::TempDir,
    bins: Bins,
    controller: Child,
    agent: Child,
    /// More real agents, for the fan-out with real agents (`add_agents`).
    more_agents: Vec<Child>,
    addr: String,
    pub agent_id: String,
    pub ticket: u64,
}

impl Fleet {
    pub async fn start(bins: &Bins) -> Result<Fleet> {
        let dir = tempfile::Builder::new()
            .prefix("deskside-bench-")
            .tempdir()?;
        let data = dir.path().join("controller");
        let run = |cmd: &mut Command, what: &str| -> Result<String> {
            let out = cmd.output().with_context(|| format!("running {what}"))?;
            check(&out, what)?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let deskside = || {
            let mut c = Command::new(bins.dir.join("deskside"));
            c.arg("--data").arg(&data);
            c
        };
        run(deskside().arg("init"), "deskside init")?;
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let controller = deskside()
            .args(["serve", "--listen", &addr])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("controller.log"))?)
            .spawn()
            .context("starting deskside serve")?;
        // Until the agent exists, a placeholder child keeps Drop simple.
        let mut fleet = Fleet {
            bins: bins.clone(),
            controller,
            agent: Command::new("true").spawn()?,
            more_agents: Vec::new(),
            addr: addr.clone(),
            agent_id: String::new(),
            ticket: 0,
            dir,
        };
        let (agent_id, agent) = fleet.start_agent("agent")?;
        let _ = fleet.agent.wait();
        fleet.agent = agent;
        fleet.agent_id = agent_id;
        let tech_token = run(
            deskside().args([
                "tech",
                "add",
                "bench",
                "--tier",
                "l1",
                "--controller",
                &addr,
            ]),
            "deskside tech add",
        )?;
        run(
            fleet.deskside().args(["login", &tech_token]),
            "deskside login",
        )?;
        fleet.add_true_script(&data)?;
        fleet.wait_online().await?;
        let number = run(
            fleet.deskside().args([
                "ticket",
                "new",
                "--title",
                "benchmark",
                "--agent",
                &fleet.agent_id,
            ]),
            "deskside ticket new",
        )?;
        fleet.ticket = number
            .parse()
            .with_context(|| format!("unexpected ticket number {number}"))?;
        Ok(fleet)
    }

    /// Enrolls a new agent through a fresh token, in its own state directory `name`, and
    /// starts `deskside-agent run` for it: its id and process.
    fn start_agent(&self, name: &str) -> Result<(String, Child)> {
        self.start_agent_with(name, POLICY, &[])
    }

    /// [`Fleet::start_agent`] with the machine admin's `policy` and more global
    /// `deskside-agent` options (`--socket PATH --config PATH`) on every command.
    pub(crate) fn start_agent_with(
        &self,
        name: &str,
        policy: &str,
        options: &[&std::ffi::OsStr],
    ) -> Result<(String, Child)> {
        let data = self.data_dir();
        let out = Command::new(self.bins.dir.join("deskside"))
            .arg("--data")
            .arg(&data)
            .args(["token", "create", "--controller", &self.addr])
            .output()
            .context("running deskside token create")?;
        check(&out, "deskside token create")?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let state = self.dir.path().join(name);
        let out = Command::new(&self.bins.agent)
            .arg("--state")
            .arg(&state)
            .args(options)
            .args(["enroll", &token])
            .output()
            .context("running deskside-agent enroll")?;
        check(&out, "deskside-agent enroll")?;
        let enrolled = String::from_utf8_lossy(&out.stdout);
        let id = enrolled
            .trim()
            .strip_prefix("enrolled as ")
            .and_then(|r| r.split_whitespace().next())
            .with_context(|| format!("unexpected enroll output: {enrolled}"))?
            .to_owned();
        std::fs::write(state.join("policy.toml"), policy)?;
        let child = Command::new(&self.bins.agent)
            .arg("--state")
            .arg(&state)
            .args(options)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                self.dir.path().join(format!("{name}.log")),
            )?)
            .spawn()
            .context("starting deskside-agent run")?;
        Ok((id, child))
    }

    /// Enrolls and starts `n` more real agents on this machine; returns their ids and
    /// process ids once every one of them is online.
    pub async fn add_agents(&mut self, n: usize) -> Result<Vec<(String, u32)>> {
        let mut added = Vec::with_capacity(n);
        for i in 0..n {
            let (id, child) = self.start_agent(&format!("agent-{i}"))?;
            added.push((id, child.id()));
            self.more_agents.push(child);
        }
        for (id, _) in &added {
            self.wait_online_id(id).await?;
        }
        Ok(added)
    }

    /// The technician CLI with this fleet's profile.
    pub fn deskside(&self) -> Command {
        let mut c = Command::new(self.bins.dir.join("deskside"));
        c.env("DESKSIDE_PROFILE", self.profile());
        c
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile.toml")
    }

    /// A scratch directory that lives as long as the fleet.
    /// The controller's data directory (database, evidence blobs).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("controller")
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub async fn client(&self) -> Result<TechClient> {
        Ok(TechClient::connect(&Profile::load(&self.profile())?).await?)
    }

    pub fn controller_pid(&self) -> u32 {
        self.controller.id()
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.id()
    }

    /// Signs `bench-true` into the catalog the way an admin does: `deskside script add`.
    fn add_true_script(&self, data: &Path) -> Result<()> {
        let catalog = self.dir.path().join("catalog");
        std::fs::create_dir_all(&catalog)?;
        std::fs::write(catalog.join("bench-true.sh"), "/bin/true\n")?;
        let manifest = catalog.join("bench-true.toml");
        std::fs::write(
            &manifest,
            format!(
                "name = \"{TRUE_SCRIPT}\"\nversion = 1\ndescription = \"runs /bin/true (benchmark)\"\n\
                 changes = \"nothing\"\ntier = \"l1\"\ninterpreter = \"sh\"\nos = \"linux\"\n\
                 timeout_secs = 30\nbody = \"bench-true.sh\"\n"
            ),
        )?;
        let out = Command::new(self.bins.dir.join("deskside"))
            .arg("--data")
            .arg(data)
            .args(["script", "add"])
            .arg(&manifest)
            .output()?;
        check(&out, "deskside script add")
    }

    async fn wait_online(&self) -> Result<()> {
        self.wait_online_id(&self.agent_id).await
    }

    pub(crate) async fn wait_online_id(&self, id: &str) -> Result<()> {
        let client = self.client().await?;
        let start = Instant::now();
        loop {
            if let TechReply::Agents(list) = client.request(&TechRequest::ListAgents).await?
                && list.iter().any(|a| a.id == id && a.online)
            {
                client.close().await;
                return Ok(());
            }
            if start.elapsed() > ONLINE_WITHIN {
                let log = if id == self.agent_id {
                    std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
                } else {
                    String::new()
                };
                bail!("agent {id} did not come online within {ONLINE_WITHIN:?}: {log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let more = self.more_agents.iter_mut();
        for child in more.chain([&mut self.agent, &mut self.controller]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The agent counts pending updates (`apt-get -s upgrade`, seconds of work) once after it
/// starts; idle is measured after that child has exited, or this long at most.
const UPDATES_COUNT_WAIT: Duration = Duration::from_secs(120);

/// Waits until the agent has no child processes; returns how long that took. Every
/// measure of the agent's speed starts after this too: the count runs niced, but on two
/// cores it still takes CPU time from whatever is being timed.
pub(crate) async fn quiet_agent(pid: u32) -> Result<Duration> {
    let start = std::time::Instant::now();
    while crate::procfs::children(pid)? > 0 && start.elapsed() < UPDATES_COUNT_WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(start.elapsed())
}
