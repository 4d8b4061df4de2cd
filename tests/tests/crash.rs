//! A controller that crashes (SIGKILL, no goodbye to anyone) and comes back on the same
//! port tells its agents at once that their old connections are gone, so they reconnect
//! instead of waiting out their idle timeout all together.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::link::LinkStatus;
use deskside_agent::state::{StateDir, write_atomic};
use deskside_controller::cli::admin::make_token;
use deskside_controller::datadir::DataDir;
use deskside_controller::store::TokenFor;
use deskside_tests::{ALLOW_DIAGNOSTICS, free_udp_addr, serve_command};
use deskside_transport::tls::IDLE_TIMEOUT;
use tokio_util::sync::CancellationToken;

/// Kills the controller child on drop so a failing test leaves no server behind.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &DataDir, addr: &str) -> Result<Serve> {
    Ok(Serve(
        serve_command(data.root(), addr)?
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

fn link_status(state: &StateDir) -> Option<LinkStatus> {
    let text = std::fs::read_to_string(state.status_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits (up to `limit`) until the agent's link reports connected since `since_secs`.
async fn connected_since(state: &StateDir, since_secs: u64, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if link_status(state).is_some_and(|s| s.state == "connected" && s.since_secs >= since_secs)
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "the agent's link did not reconnect within {limit:?}: {:?}",
                link_status(state)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_a_controller_crash_before_its_idle_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = DataDir::new(dir.path().join("controller"));
    data.init()?;
    let addr = free_udp_addr()?;
    let mut controller = serve(&data, &addr)?;

    let token = make_token(&data, TokenFor::Agent, &addr, Duration::from_secs(600))?;
    let state = StateDir::new(dir.path().join("agent"));
    let start = Instant::now();
    // The controller is ready when enrollment works; a refused dial uses no token.
    while let Err(e) = deskside_agent::enroll::enroll(&state, &token).await {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(
                anyhow::Error::from(e).context("the controller never accepted the enrollment")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    write_atomic(&state.policy(), ALLOW_DIAGNOSTICS.as_bytes(), 0o644)?;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(deskside_agent::link::run(state.clone(), cancel.clone()));
    connected_since(&state, 0, Duration::from_secs(30)).await?;

    // A crash: no CONNECTION_CLOSE reaches the agent. The controller comes straight back
    // on the same port with the same data directory.
    let crashed_at = deskside_controller::clock::now_secs() + 1;
    drop(controller);
    tokio::time::sleep(Duration::from_secs(1)).await;
    controller = serve(&data, &addr)?;
    // The agent's next keep-alive reaches the new process, which answers with a
    // stateless reset its predecessor's key vouches for; the agent reconnects at once.
    // Without it, only the idle timeout would end the dead connection.
    connected_since(&state, crashed_at, IDLE_TIMEOUT - Duration::from_secs(10))
        .await
        .context("the crash went unnoticed until the idle timeout")?;

    cancel.cancel();
    let _ = agent.await;
    drop(controller);
    Ok(())
}
