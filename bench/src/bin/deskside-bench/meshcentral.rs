//! MeshCentral's agent at idle, measured in the same run instead of cited: a pinned
//! MeshCentral server (installed from npm by bench/setup.sh, never downloaded here) on
//! 127.0.0.1 only, with one account and one device group, and the x86-64 Linux
//! `meshagent` from the same npm package connected to it with `meshagent connect` (the
//! agent in the foreground, not installed as a service). Everything runs in a scratch
//! directory; every process is killed and the directory removed when the run ends,
//! error or not. The server listens on 127.0.0.1 only; the agent, once its core runs,
//! also holds an unconnected UDP socket on an ephemeral port of 0.0.0.0 of its own
//! accord, which no setting here changes.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::group::Group;
use crate::procfs;
use crate::sshd::which;
use crate::stats::{mib, ms};

/// The MeshCentral release measured; bench/setup.sh installs exactly this one.
pub const VERSION: &str = "1.1.55";
/// Where bench/setup.sh installs it (`npm install meshcentral@VERSION --prefix DIR`).
pub const INSTALL_DIR: &str = "/var/cache/deskside-bench/meshcentral-1.1.55";
/// The Linux x86-64 agent inside the npm package (`agents/`).
const AGENT_BINARY: &str = "meshagent_x86-64";
/// The first start generates five RSA certificates ("may take a few minutes", says the
/// server); about 15 s here.
const SERVER_READY_WITHIN: Duration = Duration::from_secs(240);
/// One `node` helper (account, device group, settings file, device list): under a
/// second each here.
const HELPER_WITHIN: Duration = Duration::from_secs(60);
/// From the agent's start to the server listing it as connected: about 2 s here.
const ONLINE_WITHIN: Duration = Duration::from_secs(120);
/// While its core starts the agent runs ~200 short commands (`sh`, `awk`, `ldconfig`);
/// it is read once they have all exited, or after this long at most.
const CHILDREN_QUIET_WITHIN: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

/// The agent's resident memory once connected and idle.
#[derive(Debug, Clone)]
pub struct MeshIdle {
    pub version: String,
    pub rss_bytes: u64,
    /// How it was measured, for the report.
    pub how: String,
}

/// [`idle_rss`] off the async runtime's threads.
pub async fn idle_rss_async(settle: Duration) -> Result<MeshIdle> {
    tokio::task::spawn_blocking(move || idle_rss(settle))
        .await
        .context("the MeshCentral measurement thread failed")?
}

/// Starts the server, connects the agent, waits `settle` after the server lists it as
/// connected (and until it has no child process), reads its VmRSS, stops everything.
pub fn idle_rss(settle: Duration) -> Result<MeshIdle> {
    let node = which("node")
        .context("node is not installed (bench/setup.sh installs Node.js and MeshCentral)")?;
    let package = installed_in(Path::new(INSTALL_DIR))?;
    let arch = std::env::consts::ARCH;
    if arch != "x86_64" {
        bail!("the agent measured is MeshCentral's {AGENT_BINARY}; this machine is {arch}");
    }
    // Dropped in the reverse order: the agent, the server, then the scratch directory.
    let run = Run::new(node, package)?;
    let port = run.configure()?;
    let (user, pass) = ("bench", hex::encode(rand::random::<[u8; 12]>()));
    // Before the server starts: it keeps the database in memory once it runs.
    run.create_account(user, &pass)?;
    let server = run.start_server(port)?;
    let login = [
        "--url",
        &server.url(),
        "--loginuser",
        user,
        "--loginpass",
        &pass,
    ];
    let out = run.meshctrl(&["adddevicegroup", "--name", "deskside-bench"], &login)?;
    let mesh_id = out
        .trim()
        .strip_prefix("ok mesh//")
        .with_context(|| format!("meshctrl adddevicegroup answered {out:?}"))?
        .to_owned();
    let agent_dir = run.dir.path().join("agent");
    std::fs::create_dir(&agent_dir)?;
    let msh = run.node_eval(MSH_FETCH, &[&server.port.to_string(), &mesh_id])?;
    if !msh.contains("MeshServer=wss://127.0.0.1:") {
        bail!("the server's agent settings name no loopback server: {msh:.300}");
    }
    std::fs::write(agent_dir.join("meshagent.msh"), msh)?;
    let agent_bin = agent_dir.join("meshagent");
    std::fs::copy(run.package.join("agents").join(AGENT_BINARY), &agent_bin)?;
    set_executable(&agent_bin)?;

    let mut cmd = Command::new(&agent_bin);
    cmd.arg("connect").current_dir(&agent_dir);
    let mut agent = Group::spawn(cmd, "meshagent connect", &run.log("agent.log"))?;
    let started = Instant::now();
    while !run.agent_online(&login)? {
        if agent.exited()? || started.elapsed() > ONLINE_WITHIN {
            bail!(
                "the agent was not listed as connected within {ONLINE_WITHIN:?}: {}",
                run.tail("agent.log")
            );
        }
        std::thread::sleep(POLL);
    }
    let online = started.elapsed();
    std::thread::sleep(settle);
    let quiet = Instant::now();
    while procfs::children(agent.pid())? > 0 && quiet.elapsed() < CHILDREN_QUIET_WITHIN {
        std::thread::sleep(POLL);
    }
    if agent.exited()? || !run.agent_online(&login)? {
        bail!(
            "the agent was no longer connected after {settle:?}: {}",
            run.tail("agent.log")
        );
    }
    let pid = agent.pid();
    let rss_bytes = procfs::rss_bytes(pid)?;
    let children = match procfs::children(pid)? {
        0 => "all exited when it was read".to_owned(),
        n => format!("{n} still running when it was read, not counted"),
    };
    let how = format!(
        "VmRSS from /proc/PID/status of `meshagent connect` (the agent in the foreground, \
         not installed as a service; `{AGENT_BINARY}` from the npm package, dynamically \
         linked against glibc), connected over wss to a MeshCentral {VERSION} server \
         (node {}, NeDB, listening only on 127.0.0.1) with one device group. While its \
         core starts the agent runs short commands (`sh`, `awk`, `ldconfig`): {children}. \
         Read {} after the server first listed it as connected ({} after its start); \
         threads: {}; smaps_rollup: {}",
        run.node_version,
        ms(settle + quiet.elapsed()),
        ms(online),
        procfs::threads(pid)?,
        procfs::smaps_rollup(pid).unwrap_or_default()
    );
    drop(agent);
    drop(server);
    eprintln!("MeshCentral agent idle: {}", mib(rss_bytes));
    Ok(MeshIdle {
        version: VERSION.into(),
        rss_bytes,
        how,
    })
}

/// The package directory of the install in `root` (an `npm --prefix`), checked to be the
/// pinned version with its agent.
fn installed_in(root: &Path) -> Result<PathBuf> {
    let package = root.join("node_modules").join("meshcentral");
    let manifest = std::fs::read_to_string(package.join("package.json")).map_err(|_| {
        anyhow::anyhow!(
            "MeshCentral {VERSION} is not installed in {}: run bench/setup.sh",
            root.display()
        )
    })?;
    let version = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_owned));
    if version.as_deref() != Some(VERSION) {
        bail!(
            "{} holds MeshCentral {}, not {VERSION}: run bench/setup.sh",
            root.display(),
            version.as_deref().unwrap_or("of no readable version")
        );
    }
    if !package.join("agents").join(AGENT_BINARY).is_file() {
        bail!(
            "the MeshCentral package in {} has no agents/{AGENT_BINARY}: run bench/setup.sh",
            root.display()
        );
    }
    Ok(package)
}

/// Fetches the agent settings file (`.msh`) of device group `argv[2]` from the server on
/// 127.0.0.1 port `argv[1]`, as the server's own install script does
/// (`GET /meshsettings?id=…`); the certificate is the server's own, self-signed.
const MSH_FETCH: &str = r#"
const [port, id] = process.argv.slice(1);
require('https').get({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false,
    path: '/meshsettings?id=' + encodeURIComponent(id) }, (res) => {
  if (res.statusCode !== 200) { console.error('HTTP ' + res.statusCode); process.exit(1); }
  res.pipe(process.stdout);
}).on('error', (e) => { console.error(e.message); process.exit(1); });
"#;

/// One measurement's scratch directory and tools. Held longer than the processes that
/// use it, so that they are killed before it is removed.
#[derive(Debug)]
struct Run {
    node: PathBuf,
    node_version: String,
    package: PathBuf,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Server {
    port: u16,
    _process: Group,
}

impl Server {
    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}", self.port)
    }
}

impl Run {
    fn new(node: PathBuf, package: PathBuf) -> Result<Run> {
        let dir = tempfile::Builder::new()
            .prefix("deskside-bench-meshcentral-")
            .tempdir()?;
        let mut run = Run {
            node,
            node_version: String::new(),
            package,
            dir,
        };
        run.node_version = run.node_eval("process.stdout.write(process.version)", &[])?;
        Ok(run)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The last lines of a log in the scratch directory, for an error.
    fn tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!("{name}: {}", tail.join(" | "))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the server's configuration for a free loopback port; returns the port.
    fn configure(&self) -> Result<u16> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = self.data();
        std::fs::create_dir(&data)?;
        let config = serde_json::json!({
            "settings": {
                "cert": "127.0.0.1",
                "port": port,
                "portBind": "127.0.0.1",
                "exactPorts": true,
                // No HTTP redirector, no Intel AMT server, no LAN scanners: one port.
                "redirPort": 0,
                "mpsPort": 0,
                "WANonly": true,
                "selfUpdate": false,
                "autoBackup": false,
                "plugins": false,
                // Windows agents are signed at start-up; no internet timestamp for them.
                "agentTimeStampServer": false,
                "filesPath": self.dir.path().join("files"),
            },
            "domains": { "": { "title": "deskside-bench", "newAccounts": false } }
        });
        std::fs::write(
            data.join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(port)
    }

    /// The server on its configured port, once it accepts connections.
    fn start_server(&self, port: u16) -> Result<Server> {
        let mut cmd = self.node_cmd();
        cmd.arg(self.package.join("meshcentral.js"))
            .arg("--datapath")
            .arg(self.data());
        let mut process = Group::spawn(cmd, "the MeshCentral server", &self.log("server.log"))?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if process.exited()? || start.elapsed() > SERVER_READY_WITHIN {
                bail!(
                    "the MeshCentral server did not listen on 127.0.0.1:{port} within \
                     {SERVER_READY_WITHIN:?}: {}",
                    self.tail("server.log")
                );
            }
            std::thread::sleep(POLL);
        }
        Ok(Server {
            port,
            _process: process,
        })
    }

    /// `node` with npm kept offline: MeshCentral installs modules it misses with npm at
    /// start; the benchmark never downloads, so that fails instead.
    fn node_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.current_dir(self.dir.path())
            .env("npm_config_offline", "true")
            .stdin(Stdio::null());
        cmd
    }

    /// `meshcentral.js --createaccount`: writes the account into the database and exits.
    fn create_account(&self, user: &str, pass: &str) -> Result<()> {
        let mut cmd = self.node_cmd();
        cmd.arg(self.package.join("meshcentral.js"))
            .args(["--createaccount", user, "--pass", pass, "--datapath"])
            .arg(self.data());
        self.output(cmd, "meshcentral.js --createaccount")?;
        Ok(())
    }

    fn meshctrl(&self, args: &[&str], login: &[&str]) -> Result<String> {
        let mut cmd = self.node_cmd();
        cmd.arg(self.package.join("meshctrl.js"))
            .args(args)
            .args(login);
        self.output(cmd, &format!("meshctrl {}", args.first().unwrap_or(&"")))
    }

    fn node_eval(&self, script: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.node_cmd();
        cmd.arg("-e").arg(script).args(args);
        self.output(cmd, "node -e")
    }

    /// Does the server list a device of ours with its agent connected (`conn` bit 1)?
    fn agent_online(&self, login: &[&str]) -> Result<bool> {
        let out = self.meshctrl(&["listdevices", "--json"], login)?;
        let devices: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("meshctrl listdevices printed no JSON: {out:.300}"))?;
        Ok(devices.as_array().is_some_and(|list| {
            list.iter().any(|d| {
                d.get("conn")
                    .and_then(serde_json::Value::as_u64)
                    .is_some_and(|c| c & 1 != 0)
            })
        }))
    }

    /// Runs `cmd` to its end within [`HELPER_WITHIN`]; its stdout, or an error with its
    /// output.
    fn output(&self, cmd: Command, what: &str) -> Result<String> {
        let out_path = self.log("helper.out");
        let mut child = Group::spawn(cmd, what, &out_path)?;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > HELPER_WITHIN {
                bail!("{what} did not finish within {HELPER_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            bail!("{what} failed ({status}): {}", out.trim());
        }
        Ok(out)
    }
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(root: &Path, version: &str, agent: bool) -> PathBuf {
        let package = root.join("node_modules").join("meshcentral");
        std::fs::create_dir_all(package.join("agents")).expect("mkdir");
        std::fs::write(
            package.join("package.json"),
            format!("{{\"name\": \"meshcentral\", \"version\": \"{version}\"}}"),
        )
        .expect("manifest");
        if agent {
            std::fs::write(package.join("agents").join(AGENT_BINARY), b"\x7fELF").expect("agent");
        }
        package
    }

    #[test]
    fn only_the_pinned_version_with_its_agent_counts_as_installed() {
        let root = || tempfile::tempdir().expect("tempdir");
        let empty = root();
        let err = installed_in(empty.path()).expect_err("empty").to_string();
        assert!(
            err.contains("is not installed") && err.contains("bench/setup.sh"),
            "{err}"
        );

        let other = root();
        package(other.path(), "1.1.54", true);
        let err = installed_in(other.path()).expect_err("other").to_string();
        assert!(err.contains("1.1.54") && err.contains(VERSION), "{err}");

        let no_agent = root();
        package(no_agent.path(), VERSION, false);
        let err = installed_in(no_agent.path())
            .expect_err("no agent")
            .to_string();
        assert!(err.contains(AGENT_BINARY), "{err}");

        let ok = root();
        let pkg = package(ok.path(), VERSION, true);
        assert_eq!(installed_in(ok.path()).expect("installed"), pkg);
    }
}
