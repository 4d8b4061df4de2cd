//! A real Request Tracker 5 for the adapter tests: Debian's packages, initialised on
//! SQLite in a temp dir and served by `rt-server` on 127.0.0.1 (see
//! shared/notes/request-tracker.md). Not installed → an error saying how to install it
//! (`.ci/install-rt.sh`); CI installs it, so a missing RT fails loudly, never skips.
//! `rest.rs` reads back what the adapter stored.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use deskside_controller::adapters::config::{DEFAULT_TIMEOUT, RtConfig, Secret, TierQueues};
use deskside_controller::adapters::http::MAX_RESPONSE_BYTES;
use deskside_controller::adapters::rt::RtClient;
use deskside_proto::msg::identity::Tier;

mod rest;

pub use rest::{RtAttachment, base64_decode};

pub const RT_SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
pub const RT_SETUP_DATABASE: &str = "/usr/sbin/rt-setup-database-5";

/// RT's superuser in the test instance.
pub const RT_USER: &str = "root";

/// The queue per tier (names with spaces exercise URL encoding).
pub const QUEUES: [(Tier, &str); 3] = [
    (Tier::L1, "Deskside L1"),
    (Tier::L2, "Deskside L2"),
    (Tier::L3, "Deskside L3"),
];

/// rt-server is ready in ~2 s on a quiet machine; parallel test builds slow it down.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running RT instance; stopped (SIGTERM by PID) and deleted on drop.
#[derive(Debug)]
pub struct RtServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    password: String,
    child: Option<Child>,
}

/// The error when RT is not installed: how to install it.
pub fn require_rt() -> Result<()> {
    if Path::new(RT_SERVER).exists() && Path::new(RT_SETUP_DATABASE).exists() {
        return Ok(());
    }
    bail!(
        "Request Tracker 5 is not installed ({RT_SERVER} is missing), and the RT adapter tests \
         run against a real one. Install it as root with `.ci/install-rt.sh` (Debian packages \
         request-tracker5, rt5-db-sqlite, rt5-standalone; CI runs it), then rerun the tests."
    )
}

/// A controller origin of its own for each test: the tests share one RT, and the
/// adapter finds an unlinked ticket's RT ticket by a marker that holds the origin.
pub fn test_origin() -> String {
    format!("test{:016x}", rand::random::<u64>())
}

/// A sync id no other job in this process has (the outbox uses its job id).
pub fn next_sync_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl RtServer {
    /// One instance shared by the tests running at the same time in this process; the
    /// last one to drop its handle stops it.
    pub fn shared() -> Result<Arc<RtServer>> {
        static SHARED: Mutex<Weak<RtServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .map_err(|_| anyhow!("a test panicked while starting RT"))?;
        if let Some(running) = slot.upgrade() {
            return Ok(running);
        }
        let server = Arc::new(RtServer::start()?);
        *slot = Arc::downgrade(&server);
        Ok(server)
    }

    /// Initialises a fresh RT in a temp dir, serves it on a free loopback port and
    /// creates the tier queues.
    pub fn start() -> Result<RtServer> {
        require_rt()?;
        let dir = tempfile::Builder::new().prefix("deskside-rt-").tempdir()?;
        let root = dir.path();
        for sub in ["var", "mason", "session", "site-config.d"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let password = "deskside-rt-test".to_owned();
        let perl = |p: PathBuf| {
            p.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        };
        let site = format!(
            "Set($rtname, 'deskside-test');\n\
             Set($Organization, 'deskside.test');\n\
             Set($DatabaseType, 'SQLite');\n\
             Set($DatabaseName, '{db}');\n\
             Set($WebDomain, '127.0.0.1');\n\
             Set($WebPort, {port});\n\
             Set($WebPath, '');\n\
             Set($WebBaseURL, '{url}');\n\
             Set($BcryptCost, 4);\n\
             Set($MailCommand, 'mbox');\n\
             Set($VarPath, '{var}');\n\
             Set($MasonDataDir, '{mason}');\n\
             Set($MasonSessionDir, '{session}');\n\
             Set($LogToSTDERR, 'warning');\n\
             1;\n",
            db = perl(root.join("rt.db")),
            var = perl(root.join("var")),
            mason = perl(root.join("mason")),
            session = perl(root.join("session")),
        );
        fs::write(root.join("RT_SiteConfig.pm"), site)?;
        fs::write(root.join("root-password"), format!("{password}\n"))?;

        let setup_started = Instant::now();
        let out = rt_command(root, RT_SETUP_DATABASE)
            .args(["--action", "init", "--skip-create", "--root-password-file"])
            .arg(root.join("root-password"))
            .stdin(Stdio::null())
            .output()
            .context("running rt-setup-database-5")?;
        if !out.status.success() {
            bail!(
                "rt-setup-database-5 --action init failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "rt: database initialised in {:.1}s",
            setup_started.elapsed().as_secs_f64()
        );

        let log = fs::File::create(root.join("rt-server.log"))?;
        let child = rt_command(root, RT_SERVER)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--max-workers", "4"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rt-server")?;
        let mut server = RtServer {
            dir,
            port,
            url,
            password,
            child: Some(child),
        };
        let serve_started = Instant::now();
        server.wait_ready()?;
        eprintln!(
            "rt: serving {} after {:.1}s",
            server.url,
            serve_started.elapsed().as_secs_f64()
        );
        for (_, queue) in QUEUES {
            server.ensure_queue(queue)?;
        }
        Ok(server)
    }

    /// The adapter config for this instance.
    pub fn config(&self) -> RtConfig {
        self.config_at(&self.url)
    }

    /// The same credentials and queues, pointed at `url` (e.g. a closed port).
    pub fn config_at(&self, url: &str) -> RtConfig {
        RtConfig {
            url: url.to_owned(),
            user: RT_USER.to_owned(),
            password: Secret::new(self.password.clone()),
            queues: TierQueues {
                l1: queue_name(Tier::L1).to_owned(),
                l2: queue_name(Tier::L2).to_owned(),
                l3: queue_name(Tier::L3).to_owned(),
            },
            timeout: DEFAULT_TIMEOUT,
            insecure_http: false,
        }
    }

    pub fn client(&self) -> RtClient {
        RtClient::new(&self.config())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("rt-server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(30);
        lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let client = self.client();
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "rt-server exited ({status}) before answering:\n{}",
                    self.log_tail()
                );
            }
            match client.get("/rt", MAX_RESPONSE_BYTES) {
                Ok(reply) if reply.status == 200 => return Ok(()),
                Ok(reply) if reply.status == 401 => {
                    bail!("RT refused the test credentials:\n{}", self.log_tail())
                }
                _ => {}
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "rt-server did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                    self.url,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops rt-server: SIGTERM by PID (SIGINT as root would chown RT's system dir),
    /// then SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::terminate(child, Duration::from_secs(15));
        }
    }
}

impl Drop for RtServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An RT command isolated to the instance in `root`: without both variables RT reads
/// the system's /etc/request-tracker5/RT_SiteConfig.d.
fn rt_command(root: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("RT_SITE_CONFIG", root.join("RT_SiteConfig.pm"))
        .env("RT_SITE_CONFIG_DIR", root.join("site-config.d"))
        .env("TMPDIR", root);
    cmd
}

/// The tier's queue in [`QUEUES`].
pub fn queue_name(tier: Tier) -> &'static str {
    QUEUES
        .iter()
        .find(|(t, _)| *t == tier)
        .map_or("", |(_, name)| name)
}
