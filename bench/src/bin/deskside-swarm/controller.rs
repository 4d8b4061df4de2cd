//! The controller under test: a real `deskside serve` child process in a temp data dir,
//! killed and restarted on the same port, watched through its metrics endpoint and /proc.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::datadir::DataDir;

/// `deskside serve` is up (database open, CA loaded, sockets bound) well within this.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How often readiness is polled while starting.
const START_POLL: Duration = Duration::from_millis(100);
/// A scrape of the metrics endpoint is one small HTTP request on loopback.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running controller child.
#[derive(Debug)]
pub struct Controller {
    bin: PathBuf,
    pub root: PathBuf,
    pub data: DataDir,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    /// The web console's HTTPS address, when it is served.
    pub console: Option<SocketAddr>,
    child: Option<Child>,
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody holds right now (UDP for QUIC, TCP for metrics).
fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Controller {
    /// Initialises a data dir under `root` and starts `bin serve` on free ports; with
    /// `console`, the web console too (HTTPS, certificate issued by the controller's CA).
    pub async fn start(bin: &Path, root: &Path, console: bool) -> Result<Controller> {
        let data = DataDir::new(root.join("controller"));
        data.init()
            .context("initialising the controller's data dir")?;
        let console = if console { Some(free_tcp()?) } else { None };
        // Defaults only, whatever /etc/deskside holds; the console when asked for.
        let config = match console {
            Some(addr) => format!("[console]\nlisten = \"{addr}\"\n"),
            None => String::new(),
        };
        std::fs::write(Controller::config_path(root), config)?;
        let mut c = Controller {
            bin: bin.to_owned(),
            root: root.to_owned(),
            data,
            addr: free_udp()?,
            metrics: free_tcp()?,
            console,
            child: None,
        };
        c.spawn().await?;
        Ok(c)
    }

    /// The controller's config file under `root`.
    pub fn config_path(root: &Path) -> PathBuf {
        root.join("controller.toml")
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.root.join("controller.log"))?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(Controller::config_path(&self.root))
            .arg("--data")
            .arg(self.data.root())
            .args(["serve", "--listen", &self.addr.to_string()])
            .args(["--metrics-listen", &self.metrics.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.scrape("/health").await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the controller exited with {status} while starting; see {}",
                    self.root.join("controller.log").display()
                );
            }
            if started.elapsed() > START_LIMIT {
                bail!("the controller was not ready within {START_LIMIT:?}");
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the controller gets no chance to close its connections (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the controller again on the same addresses with the same data dir.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn().await
    }

    async fn scrape(&self, path: &str) -> Result<String> {
        let url = format!("http://{}{path}", self.metrics);
        tokio::task::spawn_blocking(move || -> Result<String> {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(SCRAPE_TIMEOUT))
                .build()
                .new_agent();
            Ok(agent.get(&url).call()?.body_mut().read_to_string()?)
        })
        .await?
    }

    /// `deskside_agents_connected` from the metrics endpoint.
    pub async fn agents_connected(&self) -> Result<u64> {
        let text = self.scrape("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix("deskside_agents_connected "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .context("no deskside_agents_connected in the metrics")
    }
}

/// Resident memory and CPU time (user + system) of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu: Duration,
}

/// Linux reports /proc times in USER_HZ ticks, 100 per second on every architecture
/// the kernel's ABI fixes it for.
const TICKS_PER_SEC: u64 = 100;

pub fn usage(pid: &str) -> Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .context("unreadable /proc stat times")
    };
    // `after` starts at field 3 (state), so utime (14) is index 11 and stime (15) is 12.
    let ticks = tick(11)? + tick(12)?;
    Ok(Usage {
        rss_bytes: rss_kib * 1024,
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SEC),
    })
}
