//! Agents come back on their own after the controller restarts.

use std::time::{Duration, Instant};

use anyhow::Result;
use deskside_controller::client::TechClient;
use deskside_controller::server;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, wait_online};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_controller_restart() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("roamer", ALLOW_DIAGNOSTICS).await?;
    let (profile, tech) = cluster.technician("carol", Tier::L2).await?;
    wait_online(&tech, &agent.id).await?;
    tech.close().await;

    let addr = cluster
        .running
        .as_ref()
        .map(|r| r.addr)
        .ok_or_else(|| anyhow::anyhow!("not running"))?;
    cluster.stop().await;
    // Down for a moment: the agent's link notices and starts backing off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = std::fs::read_to_string(agent.state.status_file())?;
    assert!(status.contains("\"disconnected\""), "{status}");

    let restarted = Instant::now();
    cluster.running = Some(server::start(&cluster.data, addr).await?);
    let tech = TechClient::connect(&profile).await?;
    wait_online(&tech, &agent.id).await?;
    let back_after = restarted.elapsed();
    // The first retries come within a few seconds (base 1 s, doubling, jittered).
    assert!(
        back_after < Duration::from_secs(15),
        "agent took {back_after:?} to return"
    );

    let TechReply::Ticket(view) = tech
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "after restart".into(),
            agent: Some(agent.id.clone()),
        })
        .await?
    else {
        anyhow::bail!("no ticket");
    };
    let reply = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: view.ticket.number,
        })
        .await?;
    assert!(matches!(reply, TechReply::Diagnostics(_)));
    tech.close().await;
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
