//! Several controller nodes for the routing tests: one `nats-server` per test binary on
//! free loopback ports, and nodes that share one CA and keys (each its own data
//! directory holding copies of them), one PostgreSQL store (a fresh database on the test
//! process's throwaway cluster) and one evidence directory — as a deployment shares them
//! through `[store] url` and `[evidence] dir`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::cluster::ClusterConfig;
use deskside_controller::datadir::DataDir;
use deskside_controller::server::{self, Options};
use deskside_controller::store::StoreAt;

use crate::Cluster;

/// nats-server is ready within ~40 ms here; a busy 2-core machine gets far more.
const NATS_READY: Duration = Duration::from_secs(20);

/// A `nats-server` on loopback, stopped when the last test holding it lets go.
#[derive(Debug)]
pub struct Nats {
    child: Mutex<Child>,
    pub url: String,
    pub monitor: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn healthy(monitor: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", monitor)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
}

impl Nats {
    /// The test binary's NATS server: started by the first caller, shared with every
    /// test running at the same time, stopped when the last drops it.
    pub fn shared() -> Result<Arc<Nats>> {
        static SHARED: Mutex<Weak<Nats>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = slot.upgrade() {
            return Ok(n);
        }
        let n = Arc::new(Nats::start()?);
        *slot = Arc::downgrade(&n);
        Ok(n)
    }

    fn start() -> Result<Nats> {
        let dir = tempfile::tempdir()?;
        let (port, monitor) = (free_tcp_port()?, free_tcp_port()?);
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ])
            .arg("-l")
            .arg(dir.path().join("nats.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server (Debian's nats-server package; .ci/test installs it)")?;
        let nats = Nats {
            child: Mutex::new(child),
            url: format!("nats://127.0.0.1:{port}"),
            monitor,
            _dir: dir,
        };
        let started = Instant::now();
        while !healthy(monitor) {
            let exited = nats
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_wait()?;
            if let Some(status) = exited {
                bail!("nats-server exited ({status}) before it was ready");
            }
            if started.elapsed() > NATS_READY {
                bail!("nats-server not ready on port {monitor} within {NATS_READY:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }
}

/// `[cluster]` for node `name` routing through `nats`.
pub fn cluster_config(name: &str, nats: &Nats) -> ClusterConfig {
    ClusterConfig {
        node: Some(name.to_owned()),
        nats: Some(nats.url.clone()),
        ..ClusterConfig::default()
    }
}

/// Makes a data directory at `to` for another node of `from`'s installation: copies of
/// its keys and certificates, its evidence directory shared, and its store (`from`'s
/// PostgreSQL database, or its SQLite file through a link).
pub fn join_data(from: &DataDir, to: &Path) -> Result<DataDir> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from.root())? {
        let entry = entry?;
        let path = entry.path();
        let sqlite = path.to_string_lossy().contains("deskside.db");
        if entry.file_type()?.is_file() && !sqlite {
            std::fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    let node = match from.store_at() {
        StoreAt::Postgres(url) => DataDir::new(to).with_store(Some(url)),
        StoreAt::Sqlite(file) => {
            let node = DataDir::new(to);
            std::os::unix::fs::symlink(file, node.database())?;
            node
        }
    };
    std::os::unix::fs::symlink(from.evidence(), node.evidence())?;
    Ok(node)
}

/// Node names in the tests, in order.
pub const NAMES: [&str; 3] = ["ctl-a", "ctl-b", "ctl-c"];

/// Starts `names.len()` in-process nodes routing through `nats` on one fresh PostgreSQL
/// database: the first initialises the installation, the others join it. Each node is a [`Cluster`] of its own (its own
/// scratch directory, agents and technician profiles), so the harness's helpers work
/// on any of them.
pub async fn start_nodes(names: &[&str], nats: &Nats) -> Result<Vec<Cluster>> {
    let mut nodes: Vec<Cluster> = Vec::new();
    for name in names {
        let options = Options {
            cluster: cluster_config(name, nats),
            ..Options::default()
        };
        let node = match nodes.first() {
            None => Cluster::start_postgres(options).await?,
            Some(first) => {
                let dir = tempfile::tempdir()?;
                let data = join_data(&first.data, &dir.path().join("controller"))?;
                let options = Options {
                    listen: "127.0.0.1:0".parse()?,
                    ..options
                };
                let running = server::start_with(&data, &options).await?;
                let addr = running.addr.to_string();
                Cluster {
                    dir,
                    data,
                    running: Some(running),
                    addr,
                }
            }
        };
        nodes.push(node);
    }
    Ok(nodes)
}
