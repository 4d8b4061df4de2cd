//! Peers a test drives by hand — an agent enrolled through the real token path whose
//! connection the test holds — and what a test reads off the controller: its `/metrics`
//! text and this process's memory (the controller runs in-process).

use std::time::Duration;

use anyhow::{Context, Result};
use deskside_agent::state::StateDir;
use deskside_proto::msg::agent::CheckIn;
use deskside_transport::{endpoint, framed};
use quinn::{Connection, Endpoint};

use crate::Cluster;
use crate::hostile::Scene;

/// An agent enrolled through the real token path but driven by the test, not the service.
#[derive(Debug)]
pub struct RawAgent {
    pub id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl RawAgent {
    pub async fn enroll(scene: &Scene, name: &str) -> Result<RawAgent> {
        let state = StateDir::new(scene.cluster.dir.path().join(format!("raw-{name}")));
        let token = scene.cluster.token(Duration::from_secs(60))?;
        let enrolled = deskside_agent::enroll::enroll(&state, &token).await?;
        Ok(RawAgent {
            id: enrolled.agent_id,
            cert_pem: std::fs::read_to_string(state.cert())?,
            key_pem: std::fs::read_to_string(state.key())?,
        })
    }

    /// Connects, says hello and checks in; returns once the scene's technician sees the
    /// agent online. Streams the controller opens on the connection are the test's.
    pub async fn connect(&self, scene: &Scene) -> Result<(Endpoint, Connection)> {
        let addr = scene.addr().await?;
        let ep = endpoint::client_endpoint(addr)?;
        let config = scene.client_config(&self.cert_pem, &self.key_pem)?;
        let conn = endpoint::connect(&ep, addr, config).await?;
        let (mut send, _recv) = endpoint::hello(&conn, "raw agent").await?;
        let checkin = CheckIn {
            hostname: format!("raw-{}", self.id),
            os: "test".into(),
            kernel: "test".into(),
            agent_version: "test".into(),
        };
        framed::send(&mut send, &checkin).await?;
        crate::wait_online(&scene.tech, &self.id).await?;
        Ok((ep, conn))
    }
}

/// The controller's `/metrics` text (the cluster must have been started with
/// `metrics_listen`).
pub async fn metrics(cluster: &Cluster) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let at = cluster
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .context("no metrics endpoint")?;
    let mut tcp = tokio::net::TcpStream::connect(at).await?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    Ok(text)
}

/// The value of the metric line starting with `name` (labels included), 0 if absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One field of this process's `/proc/self/status`, in bytes (`VmRSS`, `VmSize`, …).
pub fn own_memory(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kib * 1024)
}
