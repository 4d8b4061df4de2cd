//! Harness for end-to-end tests: a real controller on 127.0.0.1:0 in a temp data dir,
//! real agents enrolled through the real token/CSR path, real technician profiles, all
//! over real QUIC with mutual TLS. Also finds the built binaries for CLI tests.

pub mod browser;
pub mod console;
pub mod daemons;
pub mod delay_proxy;
pub mod hostile;
pub mod local;
pub mod nodes;
pub mod raw;
pub mod routing;
pub mod rt;
pub mod sample_bundle;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::local_user::LocalSessions;
use deskside_agent::state::{StateDir, write_atomic};
use deskside_controller::cli::admin::make_token;
use deskside_controller::cli::tech::login_to;
use deskside_controller::client::TechClient;
use deskside_controller::datadir::DataDir;
use deskside_controller::profile::Profile;
use deskside_controller::server::{self, Running};
use deskside_controller::store::{PgUrl, Store, StoreAt, TokenFor};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use tokio_util::sync::CancellationToken;

/// `DESKSIDE_TEST_STORE=postgres` runs every [`Cluster::start_with`] controller on a
/// fresh database of the test process's throwaway PostgreSQL cluster (`sqlite` or
/// unset: the data directory's SQLite file).
pub const TEST_STORE_ENV: &str = "DESKSIDE_TEST_STORE";

/// A fresh database on the test process's throwaway PostgreSQL cluster.
pub fn postgres_database() -> Result<PgUrl> {
    let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
    PgUrl::parse(&url).map_err(anyhow::Error::msg)
}

/// A policy that serves diagnostics unattended.
pub const ALLOW_DIAGNOSTICS: &str = "[scopes]\ndiagnostics = \"allow\"\n";

/// A controller running in this process on an ephemeral loopback port.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data: DataDir,
    pub running: Option<Running>,
    pub addr: String,
}

/// An enrolled agent running its service loop in this process.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    pub state: StateDir,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), deskside_agent::link::LinkError>>,
}

impl Agent {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

impl Cluster {
    pub async fn start() -> Result<Cluster> {
        Cluster::start_with(server::Options::default()).await
    }

    /// A controller with these options (SLA, ticketing, metrics); listen stays 127.0.0.1:0.
    /// Its store is SQLite unless [`TEST_STORE_ENV`] says `postgres`.
    pub async fn start_with(options: server::Options) -> Result<Cluster> {
        let store = match std::env::var(TEST_STORE_ENV).as_deref() {
            Ok("postgres") => Some(postgres_database()?),
            Ok("sqlite" | "") | Err(_) => None,
            Ok(other) => bail!("{TEST_STORE_ENV}={other:?}: expected postgres or sqlite"),
        };
        Cluster::start_on(options, store).await
    }

    /// A controller whose store is a fresh PostgreSQL database.
    pub async fn start_postgres(options: server::Options) -> Result<Cluster> {
        Cluster::start_on(options, Some(postgres_database()?)).await
    }

    /// A controller with its store on PostgreSQL at `store`, or SQLite when `None`.
    pub async fn start_on(options: server::Options, store: Option<PgUrl>) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let data = DataDir::new(dir.path().join("controller")).with_store(store);
        data.init()?;
        let options = server::Options {
            listen: "127.0.0.1:0".parse()?,
            ..options
        };
        let running = server::start_with(&data, &options).await?;
        let addr = running.addr.to_string();
        Ok(Cluster {
            dir,
            data,
            running: Some(running),
            addr,
        })
    }

    /// Where the web console listens (started with `Options { console: Some(..) }`).
    pub fn console_addr(&self) -> Result<std::net::SocketAddr> {
        self.running
            .as_ref()
            .and_then(|r| r.console_addr)
            .context("this controller serves no web console (start it with Options::console)")
    }

    pub fn token(&self, ttl: Duration) -> Result<String> {
        make_token(&self.data, TokenFor::Agent, &self.addr, ttl)
    }

    pub fn store(&self) -> Result<Store> {
        Ok(self.data.open_store()?)
    }

    /// Runs `sql` on the controller's database from outside, while it serves: how tests
    /// break the store under it (and mend it again).
    pub fn sql(&self, sql: &str) -> Result<()> {
        match self.data.store_at() {
            StoreAt::Sqlite(path) => {
                let db = rusqlite::Connection::open(path)?;
                db.busy_timeout(Duration::from_secs(10))?;
                db.execute_batch(sql)?;
            }
            // On a thread of its own: the synchronous client may not run inside a runtime.
            StoreAt::Postgres(url) => std::thread::scope(|s| {
                s.spawn(|| -> Result<()> {
                    let mut client = postgres::Client::connect(url.secret_url(), postgres::NoTls)?;
                    client.batch_execute(sql)?;
                    Ok(())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the SQL thread panicked"))?
            })?,
        }
        Ok(())
    }

    /// Enrolls an agent with `policy` and starts its service.
    pub async fn agent(&self, name: &str, policy: &str) -> Result<Agent> {
        let state = StateDir::new(self.dir.path().join(format!("agent-{name}")));
        self.start_agent(state, policy, LocalSessions::system())
            .await
    }

    /// Enrolls an agent with `token` (e.g. one listing several nodes) and `policy`, its
    /// control socket inside its state, and starts its service.
    pub async fn agent_with_token(&self, name: &str, policy: &str, token: &str) -> Result<Agent> {
        let state = StateDir::new(self.dir.path().join(format!("agent-{name}")));
        self.start_agent_with(state, policy, LocalSessions::system(), token)
            .await
    }

    /// Enrolls an agent whose control socket is `socket` and whose local users are those
    /// with a local session in the utmp file `utmp` (not the machine's own), and starts it.
    pub async fn agent_for_local_users(
        &self,
        name: &str,
        policy: &str,
        socket: &Path,
        utmp: &Path,
    ) -> Result<Agent> {
        let state = StateDir::new(self.dir.path().join(format!("agent-{name}")))
            .with_control_socket(socket);
        self.start_agent(state, policy, LocalSessions::utmp_only(utmp))
            .await
    }

    async fn start_agent(
        &self,
        state: StateDir,
        policy: &str,
        access: LocalSessions,
    ) -> Result<Agent> {
        let token = self.token(Duration::from_secs(600))?;
        self.start_agent_with(state, policy, access, &token).await
    }

    async fn start_agent_with(
        &self,
        state: StateDir,
        policy: &str,
        access: LocalSessions,
        token: &str,
    ) -> Result<Agent> {
        let enrolled = deskside_agent::enroll::enroll(&state, token).await?;
        write_atomic(&state.policy(), policy.as_bytes(), 0o644)?;
        let cancel = CancellationToken::new();
        let backoff = deskside_agent::backoff::Backoff::new(
            deskside_agent::link::RECONNECT_BASE,
            deskside_agent::link::RECONNECT_CAP,
        )?;
        let task = tokio::spawn(deskside_agent::link::run_with(
            state.clone(),
            backoff,
            access,
            cancel.clone(),
        ));
        Ok(Agent {
            id: enrolled.agent_id,
            state,
            cancel,
            task,
        })
    }

    /// Where `technician(name, …)` saved the profile (for CLI tests: DESKSIDE_PROFILE).
    pub fn profile_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("tech-{name}.toml"))
    }

    /// Adds a technician and logs them in; returns a connected client.
    pub async fn technician(&self, name: &str, tier: Tier) -> Result<(Profile, TechClient)> {
        self.store()?
            .blocking(|db| db.insert_technician(name, tier))?;
        let token = make_token(
            &self.data,
            TokenFor::Technician(name.into()),
            &self.addr,
            Duration::from_secs(600),
        )?;
        let profile = login_to(&token, &self.profile_path(name)).await?;
        let client = TechClient::connect(&profile).await?;
        Ok((profile, client))
    }

    /// Adds catalog manifests the way an admin does (`deskside script add`).
    pub fn add_scripts(&self, manifests: &[PathBuf]) -> Result<()> {
        deskside_controller::cli::admin::script_add(&self.data, manifests)
    }

    /// Writes a test script (manifest + sh body) into the scratch dir and adds it.
    pub fn add_test_script(
        &self,
        name: &str,
        tier: &str,
        timeout_secs: u32,
        params: &str,
        body: &str,
    ) -> Result<()> {
        let dir = self.dir.path().join("test-catalog");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.sh")), body)?;
        let manifest = dir.join(format!("{name}.toml"));
        std::fs::write(
            &manifest,
            format!(
                "name = \"{name}\"\nversion = 1\ndescription = \"test script {name}\"\nchanges = \"nothing outside its temp dir\"\n\
                 tier = \"{tier}\"\ninterpreter = \"sh\"\nos = \"linux\"\ntimeout_secs = {timeout_secs}\nbody = \"{name}.sh\"\n{params}"
            ),
        )?;
        self.add_scripts(&[manifest])
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.stopped().await;
        }
    }
}

/// Waits until the controller lists `agent` as online. An agent whose controller was
/// killed learns it at its next keep-alive (the new process answers with a stateless
/// reset), so allow one keep-alive interval plus the reconnect.
pub async fn wait_online(client: &TechClient, agent: &str) -> Result<()> {
    let bound = deskside_transport::tls::KEEP_ALIVE + Duration::from_secs(20);
    let start = Instant::now();
    loop {
        if let TechReply::Agents(list) = client.request(&TechRequest::ListAgents).await?
            && list.iter().any(|a| a.id == agent && a.online)
        {
            return Ok(());
        }
        if start.elapsed() > bound {
            bail!("agent {agent} did not come online within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Path of a workspace binary (`deskside`, `deskside-agent`), building it once if the
/// test run did not (e.g. `cargo test -p deskside-tests`).
/// A child process that is killed and reaped when this is dropped, so a failing test
/// leaves no server or agent behind.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bin(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<test> → target/<profile>
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .ok_or("cannot locate the target directory")?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            // A test binary carries its package's CARGO_PKG_*/CARGO_MANIFEST_* variables;
            // build scripts that track those (ring's) would see them change and rebuild
            // everything above them.
            for (key, _) in std::env::vars_os() {
                let name = key.to_string_lossy();
                if name.starts_with("CARGO_PKG_")
                    || name.starts_with("CARGO_MANIFEST_")
                    || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"]
                        .contains(&name.as_ref())
                {
                    cmd.env_remove(&key);
                }
            }
            cmd.args([
                "build",
                "-p",
                "deskside-controller",
                "-p",
                "deskside-agent",
                "--bins",
            ]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cargo build failed: {status}"));
            }
            Ok(dir)
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// A loopback address with a UDP port free right now, for a controller that must come
/// back on the same address after a restart.
pub fn free_udp_addr() -> Result<String> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string())
}

/// `deskside --data DIR serve --listen ADDR` (metrics on an ephemeral port), for tests
/// that run the controller as its own process to kill and restart it.
pub fn serve_command(data: &Path, listen: &str) -> Result<Command> {
    let mut c = Command::new(bin("deskside")?);
    c.arg("--data").arg(data).args([
        "serve",
        "--listen",
        listen,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    Ok(c)
}

/// Runs a binary to completion; returns (status code, stdout, stderr).
/// Keys of the evidence items an agent's audit log says it produced (served, finished, or
/// recovered from its spool): what the fault tests expect the controller to hold once each.
pub fn audited_keys(
    state: &deskside_agent::state::StateDir,
) -> Result<std::collections::BTreeSet<String>> {
    let (entries, damaged) = deskside_agent::audit::read(&state.audit_log())?;
    if damaged > 0 {
        anyhow::bail!("an agent's audit log has {damaged} damaged lines after kill -9");
    }
    Ok(entries
        .iter()
        .filter(|e| matches!(e.outcome.as_str(), "served" | "finished" | "recovered"))
        .filter_map(|e| {
            let (_, rest) = e.detail.split_once("key ")?;
            let key: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            (!key.is_empty()).then_some(key)
        })
        .collect())
}

/// Deliveries still waiting in an agent's spool.
pub fn spooled(state: &deskside_agent::state::StateDir) -> usize {
    std::fs::read_dir(state.spool_dir()).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".delivery"))
            .count()
    })
}

/// Stops `child` as a service manager would: SIGTERM, then SIGKILL if it has not exited
/// within `grace`. Reaps it either way.
pub fn terminate(mut child: std::process::Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn run(cmd: &mut Command) -> Result<(i32, String, String)> {
    let out = cmd.output().context("running a binary")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The agent service's control socket, as the machine's user reaches it.
pub async fn control(agent: &Agent) -> Result<deskside_agent::control::ControlClient> {
    let start = Instant::now();
    loop {
        match deskside_agent::control::ControlClient::connect(&agent.state).await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits for a pending session request on the agent and returns its id.
pub async fn pending_request(control: &mut deskside_agent::control::ControlClient) -> Result<u32> {
    use deskside_agent::control::{ControlReply, ControlRequest};
    let start = Instant::now();
    loop {
        if let ControlReply::Status(s) = control.call(&ControlRequest::Status).await?
            && let Some(p) = s.pending.first()
        {
            return Ok(p.id);
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("no session request reached the agent within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes whose environment carries `marker` (for "is the process group gone?").
pub fn processes_with_marker(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}
