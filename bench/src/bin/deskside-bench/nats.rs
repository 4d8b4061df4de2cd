//! A private `nats-server` on 127.0.0.1 for a measure (Debian's package), stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pgcluster::free_tcp_port;

/// nats-server answers /healthz within tens of milliseconds; a loaded machine gets more.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A running nats-server.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    pub fn start() -> Result<Nats> {
        let bin = crate::sshd::which("nats-server").context(
            "nats-server is not installed: apt-get install nats-server, as .ci/test does",
        )?;
        let port = free_tcp_port()?;
        let monitor = free_tcp_port()?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        let nats = Nats { child, port };
        let health = format!("http://127.0.0.1:{monitor}/healthz");
        let started = Instant::now();
        loop {
            if ureq::get(&health).call().is_ok() {
                return Ok(nats);
            }
            if started.elapsed() > READY_LIMIT {
                bail!("nats-server did not answer {health} within {READY_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
