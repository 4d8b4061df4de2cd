//! Several controller nodes on one store, with real agents: tokens listing several
//! nodes, failover when a node stops, support codes and revocations made on one node
//! seen by the others, and `deskside status` showing every node.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::control::{ControlReply, ControlRequest};
use deskside_controller::cli::tech::login_to;
use deskside_controller::client::TechClient;
use deskside_controller::server::Registry;
use deskside_controller::service::AgentLink;
use deskside_controller::store::TokenFor;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::nodes::{holds, node_options, technician_at, wait_held};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, bin, control, run, wait_online};

/// Heartbeats in these tests: fast, so "down" shows within seconds.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Dialling a silent address takes the connect timeout (10 s), then the backoff; one
/// keep-alive for a link cut without a close; and room for a busy machine.
fn reconnect_bound() -> Duration {
    deskside_transport::tls::KEEP_ALIVE + Duration::from_secs(45)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_token_lists_a_dead_node_reaches_the_live_one() -> Result<()> {
    let cluster = Cluster::start().await?;
    // A node that is down: its UDP port answers nothing.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let dead_addr = dead.local_addr()?.to_string();
    let list = [dead_addr.clone(), cluster.addr.clone()];
    let (one, two) = (
        cluster.cluster_token(&list, Duration::from_secs(600))?,
        cluster.cluster_token(&list, Duration::from_secs(600))?,
    );
    assert!(one.starts_with("dsk2-"), "{one}");
    let (_profile, tech) = cluster.technician("hotline", Tier::L1).await?;
    // A technician whose login token lists both: the profile keeps both, and a command
    // connects whichever it tries first.
    cluster
        .store()?
        .blocking(|db| db.insert_technician("desktop", Tier::L2))?;
    let login = deskside_controller::cli::admin::make_cluster_token(
        &cluster.data,
        TokenFor::Technician("desktop".into()),
        &list,
        Duration::from_secs(600),
    )?;
    let technician = async {
        let profile = login_to(&login, &cluster.profile_path("desktop")).await?;
        assert_eq!(profile.controllers, list.to_vec());
        let client = TechClient::connect(&profile).await?;
        anyhow::Ok(client)
    };
    // Two agents: each dials the list in its own random order (so, likely, at least one
    // tries the dead node first), both enroll and end up on the live node.
    let (a, b, desktop) = tokio::try_join!(
        cluster.agent_with_token("one", ALLOW_DIAGNOSTICS, &one),
        cluster.agent_with_token("two", ALLOW_DIAGNOSTICS, &two),
        technician,
    )?;
    assert!(matches!(
        desktop.request(&TechRequest::ListAgents).await?,
        TechReply::Agents(_)
    ));
    for agent in [&a, &b] {
        wait_held(&[&tech], &agent.id, reconnect_bound()).await?;
        let record = std::fs::read_to_string(agent.state.enrollment_file())?;
        assert!(
            record.contains(&dead_addr) && record.contains(&cluster.addr),
            "the agent keeps the whole list: {record}"
        );
    }
    drop(dead);
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// `deskside status --json` against a node's metrics address.
fn status_json(metrics: std::net::SocketAddr) -> Result<serde_json::Value> {
    let (code, out, err) = run(std::process::Command::new(bin("deskside")?).args([
        "status",
        "--metrics",
        &metrics.to_string(),
        "--json",
    ]))?;
    if code != 0 {
        bail!("deskside status failed ({code}): {err}");
    }
    Ok(serde_json::from_str(&out)?)
}

/// Each node's name and state in a status document.
fn node_states(status: &serde_json::Value) -> Vec<(String, String)> {
    status
        .pointer("/health/cluster")
        .and_then(|c| c.as_array())
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    let field = |k: &str| {
                        n.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (field("name"), field("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_codes_and_revocations_and_an_agent_fails_over() -> Result<()> {
    let mut a = Cluster::start_with(node_options("ctl-a", HEARTBEAT)).await?;
    let mut b = a
        .start_node("ctl-b", node_options("ctl-b", HEARTBEAT))
        .await?;
    let (profile, tech_a) = a.technician("hotline", Tier::L1).await?;
    let tech_b = technician_at(&profile, &b.addr).await?;
    let token = a.cluster_token(&[a.addr.clone(), b.addr.clone()], Duration::from_secs(600))?;
    let agent = a
        .agent_with_token("desk", ALLOW_DIAGNOSTICS, &token)
        .await?;
    let first = wait_held(&[&tech_a, &tech_b], &agent.id, reconnect_bound()).await?;

    // Both nodes show in either node's `deskside status`, up.
    let metrics_a = a
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .context("node ctl-a serves no metrics")?;
    let metrics_b = b.metrics_addr().context("node ctl-b serves no metrics")?;
    let status = status_json(metrics_a)?;
    assert_eq!(
        status.pointer("/health/node").and_then(|n| n.as_str()),
        Some("ctl-a"),
        "{status}"
    );
    assert_eq!(
        node_states(&status),
        vec![
            ("ctl-a".to_owned(), "up".to_owned()),
            ("ctl-b".to_owned(), "up".to_owned())
        ],
        "{status}"
    );

    let (code, out, err) = run(std::process::Command::new(bin("deskside")?).args([
        "status",
        "--metrics",
        &metrics_b.to_string(),
    ]))?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on node ctl-b"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("ctl-a") && l.contains(&a.addr) && l.contains(" up ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("ctl-b") && l.contains("(this node)")),
        "{out}"
    );

    // The user offers a support code while the agent is on one node; the other node's
    // registry finds it (it is in the shared store).
    let mut user = control(&agent).await?;
    let code = match user
        .call(&ControlRequest::Support {
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
        })
        .await?
    {
        ControlReply::Code(code) => code,
        other => bail!("no code: {other:?}"),
    };
    let other_data = if first == 0 { &b.data } else { &a.data };
    let other = Registry::new(other_data.open_store()?);
    let start = Instant::now();
    loop {
        if let Some(owner) = other.code_owner(&code.code).await? {
            assert_eq!(owner, agent.id);
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the code offered on one node never reached the other's registry");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The node holding the agent stops; the agent moves to the other within its backoff.
    let (survivor, survivor_metrics) = if first == 0 {
        a.stop().await;
        (&tech_b, metrics_b)
    } else {
        b.stop().await;
        (&tech_a, metrics_a)
    };
    let moved = Instant::now();
    wait_online(survivor, &agent.id).await?;
    eprintln!(
        "the agent was back on the other node after {:?}",
        moved.elapsed()
    );
    let start = Instant::now();
    loop {
        let states = node_states(&status_json(survivor_metrics)?);
        let stopped = if first == 0 { "ctl-a" } else { "ctl-b" };
        if states.contains(&(stopped.to_owned(), "down".to_owned())) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the stopped node never showed down: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Revoked through the stopped node's data directory (the shared store): the
    // surviving node cuts the agent off at its next revocation sweep.
    let stopped_data = if first == 0 { &a.data } else { &b.data };
    deskside_controller::cli::admin::revoke(stopped_data, Some(&agent.id), None)?;
    let start = Instant::now();
    while holds(survivor, &agent.id).await? {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the revoked agent is still connected");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[test]
fn token_create_takes_its_addresses_from_flags_or_the_cluster_config() -> Result<()> {
    use deskside_proto::msg::enroll::EnrollToken;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let config = tmp.path().join("controller.toml");
    std::fs::write(
        &config,
        "[cluster]\nnode = \"ctl-a\"\ncontrollers = [\"ctl-a.example:4433\", \"ctl-b.example:4433\"]\n",
    )?;
    let deskside = |with_config: bool| -> Result<std::process::Command> {
        let mut c = std::process::Command::new(bin("deskside")?);
        c.env_remove("DESKSIDE_CONFIG").arg("--data").arg(&data);
        if with_config {
            c.arg("--config").arg(&config);
        } else {
            c.arg("--config").arg(tmp.path().join("none.toml"));
            std::fs::write(tmp.path().join("none.toml"), "")?;
        }
        Ok(c)
    };
    let (code, _, err) = run(deskside(false)?.arg("init"))?;
    assert_eq!(code, 0, "{err}");
    let controllers =
        |out: &str| -> Result<Vec<String>> { Ok(EnrollToken::parse(out)?.controllers) };

    // Repeated and comma-separated flags.
    let (code, out, err) = run(deskside(false)?.args([
        "token",
        "create",
        "--controller",
        "a.example:4433,b.example:4433",
        "--controller",
        "c.example:4433",
    ]))?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        controllers(&out)?,
        ["a.example:4433", "b.example:4433", "c.example:4433"]
    );
    // From `[cluster] controllers`.
    let (code, out, err) = run(deskside(true)?.args(["token", "create"]))?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        controllers(&out)?,
        ["ctl-a.example:4433", "ctl-b.example:4433"]
    );
    // Neither: said what to give.
    let (code, _, err) = run(deskside(false)?.args(["token", "create"]))?;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--controller") && err.contains("[cluster] controllers"),
        "{err}"
    );
    // A bad address names it.
    let (code, _, err) =
        run(deskside(false)?.args(["token", "create", "--controller", "a.example"]))?;
    assert_ne!(code, 0);
    assert!(err.contains("\"a.example\""), "{err}");
    // `config check` shows the node and the list.
    let (code, out, err) = run(deskside(true)?.args(["config", "check"]))?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ctl-a") && out.contains("ctl-b.example:4433"),
        "{out}"
    );
    Ok(())
}
