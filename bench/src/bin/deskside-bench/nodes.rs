//! Controller nodes as an admin deploys them (docs/DEPLOYMENT.md), on loopback: one data
//! directory made by `deskside init` and its keys copied to every node's own, a
//! `controller.toml` per node (`[store] url`, `[evidence] dir`, `[cluster]
//! node/controllers/nats`), a release `deskside serve` process each, and real agents
//! enrolled through real tokens.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::metrics::Health;
use deskside_controller::profile::Profile;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::Bins;
use crate::fleet::TRUE_SCRIPT;
use crate::sshd::check;

/// A node is up (store open and migrated, sockets bound) well within this.
const START_LIMIT: Duration = Duration::from_secs(60);
/// An agent on loopback connects within a second; allow for a busy machine.
const ONLINE_WITHIN: Duration = Duration::from_secs(60);
/// The agents' policy: an unattended managed device for what the measures use.
const POLICY: &str =
    "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\nfiles = \"allow\"\n";
/// Node names, in order.
const NAMES: [&str; 3] = ["ctl-a", "ctl-b", "ctl-c"];

/// What the nodes share.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// `[store] url`; `None` for SQLite in the data directory.
    pub store: Option<String>,
    /// `[cluster] nats`; `None` for no routing between nodes.
    pub nats: Option<String>,
    /// Write `[cluster] node/controllers` (several nodes).
    pub cluster: bool,
}

/// One controller node.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub addr: String,
    pub metrics: SocketAddr,
    pub config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

/// The nodes, their agents and a technician profile per node.
#[derive(Debug)]
pub struct Nodes {
    dir: tempfile::TempDir,
    bins: Bins,
    pub nodes: Vec<Node>,
    agents: Vec<Child>,
}

impl Nodes {
    /// Makes the data directories, keys and configs of `count` nodes (at most 3).
    pub fn configure(bins: &Bins, count: usize, shared: &Shared) -> Result<Nodes> {
        let dir = tempfile::Builder::new()
            .prefix("deskside-nodes-")
            .tempdir()?;
        let evidence = dir.path().join("evidence");
        let first = dir.path().join(NAMES[0]);
        let out = Command::new(bins.dir.join("deskside"))
            .arg("--data")
            .arg(&first)
            .arg("init")
            .output()?;
        check(&out, "deskside init")?;
        let mut addrs = Vec::new();
        for _ in 0..count {
            addrs.push(format!(
                "127.0.0.1:{}",
                UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()
            ));
        }
        let mut nodes = Vec::new();
        for (i, name) in NAMES.iter().take(count).enumerate() {
            let data = dir.path().join(name);
            if i > 0 {
                copy_keys(&first, &data)?;
            }
            let metrics = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let addr = addrs.get(i).cloned().context("one address per node")?;
            let mut toml = format!(
                "listen = \"{addr}\"\ndata = \"{}\"\n[metrics]\nlisten = \"{metrics}\"\n\
                 [evidence]\ndir = \"{}\"\n",
                data.display(),
                evidence.display()
            );
            if let Some(url) = &shared.store {
                toml.push_str(&format!("[store]\nurl = \"{url}\"\n"));
            }
            if shared.cluster {
                let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
                toml.push_str(&format!(
                    "[cluster]\nnode = \"{name}\"\ncontrollers = [{}]\n",
                    list.join(", ")
                ));
                if let Some(nats) = &shared.nats {
                    toml.push_str(&format!("nats = \"{nats}\"\n"));
                }
            }
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config, toml)?;
            nodes.push(Node {
                name: (*name).to_owned(),
                addr,
                metrics,
                config,
                child: None,
                log: dir.path().join(format!("{name}.log")),
            });
        }
        Ok(Nodes {
            dir,
            bins: bins.clone(),
            nodes,
            agents: Vec::new(),
        })
    }

    /// `deskside config check` on the first node's config: `Err` with the controller's
    /// own words when this build does not take these keys.
    pub fn check(&self) -> std::result::Result<(), String> {
        let out = self
            .admin(0)
            .args(["config", "check"])
            .output()
            .map_err(|e| format!("running deskside config check: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }

    /// `deskside --config NODE.toml`: admin commands as node `i`'s host runs them.
    pub fn admin(&self, i: usize) -> Command {
        let mut c = Command::new(self.bins.dir.join("deskside"));
        if let Some(node) = self.nodes.get(i) {
            c.arg("--config").arg(&node.config);
        }
        c
    }

    /// Starts node `i` and waits until its health endpoint answers.
    pub async fn start(&mut self, i: usize) -> Result<()> {
        let mut cmd = self.admin(i);
        let node = self.nodes.get_mut(i).context("no such node")?;
        let child = cmd
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&node.log)?)
            .spawn()
            .context("starting deskside serve")?;
        node.child = Some(child);
        let started = Instant::now();
        loop {
            if health(self.nodes.get(i).context("no such node")?.metrics)
                .await
                .is_ok()
            {
                return Ok(());
            }
            let node = self.nodes.get_mut(i).context("no such node")?;
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited ({status}): {}",
                    node.name,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
            if started.elapsed() > START_LIMIT {
                bail!(
                    "{} did not answer /health within {START_LIMIT:?}",
                    node.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i).await?;
        }
        Ok(())
    }

    /// SIGKILL to node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes.get_mut(i).and_then(|n| n.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Node `i`'s data directory (its copy of the keys).
    pub fn data_dir(&self, i: usize) -> Option<PathBuf> {
        Some(self.dir.path().join(self.nodes.get(i)?.name.as_str()))
    }

    /// Where the nodes are, for `deskside-swarm --nodes FILE`; written under the nodes'
    /// scratch directory, whose path is returned.
    pub fn swarm_file(&self, store: Option<&str>) -> Result<PathBuf> {
        let mut nodes = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            nodes.push(serde_json::json!({
                "name": node.name,
                "addr": node.addr,
                "metrics": node.metrics.to_string(),
                "pid": self.pid(i).context("a node is not running")?,
            }));
        }
        let file = self.dir.path().join("swarm-nodes.json");
        let json = serde_json::json!({
            "data": self.data_dir(0).context("no node")?,
            "store": store,
            "nodes": nodes,
        });
        std::fs::write(&file, serde_json::to_vec_pretty(&json)?)?;
        Ok(file)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.child.as_ref().map(Child::id)
    }

    /// Enrolls an agent through a token naming `controllers` (node indexes) and starts
    /// `deskside-agent run` for it: its id and pid.
    pub fn add_agent(&mut self, name: &str, controllers: &[usize]) -> Result<(String, u32)> {
        let list: Vec<&str> = controllers
            .iter()
            .filter_map(|&i| self.nodes.get(i).map(|n| n.addr.as_str()))
            .collect();
        let out = self
            .admin(0)
            .args(["token", "create", "--controller", &list.join(",")])
            .output()
            .context("running deskside token create")?;
        check(&out, "deskside token create")?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let state = self.dir.path().join("agents").join(name);
        let out = Command::new(&self.bins.agent)
            .arg("--state")
            .arg(&state)
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
        std::fs::write(state.join("policy.toml"), POLICY)?;
        let child = Command::new(&self.bins.agent)
            .arg("--state")
            .arg(&state)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(state.join("agent.log"))?)
            .spawn()
            .context("starting deskside-agent run")?;
        let pid = child.id();
        self.agents.push(child);
        Ok((id, pid))
    }

    /// A technician whose profile dials node `i`, logged in: the profile's path.
    pub fn technician(&self, name: &str, i: usize) -> Result<PathBuf> {
        let addr = &self.nodes.get(i).context("no such node")?.addr;
        let out = self
            .admin(0)
            .args(["tech", "add", name, "--tier", "l1", "--controller", addr])
            .output()?;
        check(&out, "deskside tech add")?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let profile = self.dir.path().join(format!("{name}.profile.toml"));
        let out = Command::new(self.bins.dir.join("deskside"))
            .env("DESKSIDE_PROFILE", &profile)
            .args(["login", &token])
            .output()?;
        check(&out, "deskside login")?;
        Ok(profile)
    }

    /// Signs `bench-true` (`/bin/true`) into the shared catalog.
    pub fn add_true_script(&self) -> Result<()> {
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
        let out = self
            .admin(0)
            .args(["script", "add"])
            .arg(&manifest)
            .output()?;
        check(&out, "deskside script add")
    }

    /// The CLI with a technician's profile.
    pub fn cli(&self, profile: &Path) -> Command {
        let mut c = Command::new(self.bins.dir.join("deskside"));
        c.env("DESKSIDE_PROFILE", profile);
        c
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.agents {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Every file of a data directory but its SQLite database and evidence: the keys.
fn copy_keys(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().mode(0o700).create(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || name.starts_with("deskside.db") {
            continue;
        }
        let dest = to.join(&name);
        std::fs::copy(entry.path(), &dest)?;
        let mode = entry.metadata()?.permissions().mode();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A node's `/health`.
pub async fn health(metrics: SocketAddr) -> Result<Health> {
    tokio::task::spawn_blocking(move || -> Result<Health> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let text = agent
            .get(&format!("http://{metrics}/health"))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    })
    .await?
}

/// A technician client on `profile`.
pub async fn client(profile: &Path) -> Result<TechClient> {
    Ok(TechClient::connect(&Profile::load(profile)?).await?)
}

/// Waits until `client`'s controller lists every agent in `ids` online.
pub async fn wait_online(client: &TechClient, ids: &[String]) -> Result<()> {
    let start = Instant::now();
    loop {
        if let TechReply::Agents(list) = client.request(&TechRequest::ListAgents).await?
            && ids
                .iter()
                .all(|id| list.iter().any(|a| &a.id == id && a.online))
        {
            return Ok(());
        }
        if start.elapsed() > ONLINE_WITHIN {
            bail!("agents {ids:?} did not all come online within {ONLINE_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
