//! Floods of unidentified connections from one address (an office NAT, a hotel): the
//! address never holds more than its allowance of them, yet agents and technicians
//! behind it still get in, and a connection cut short is told why.

use std::time::Duration;

use anyhow::{Context, Result};
use deskside_controller::client::TechClient;
use deskside_controller::server::{MAX_PENDING_PER_ADDRESS, Options, PENDING_GRACE};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::hostile::{EVENTUALLY, Scene, diag, endpoint_at, eventually, new_ticket};
use deskside_tests::raw::{metric, metrics};
use deskside_tests::{ALLOW_DIAGNOSTICS, wait_online};
use deskside_transport::{TransportError, endpoint, framed};
use quinn::Connection;

/// Long enough that nothing in a test times out by itself: only displacement cuts a
/// connection short.
const PATIENT: Duration = Duration::from_secs(120);

fn patient() -> Result<Options> {
    Ok(Options {
        hello_timeout: PATIENT,
        unidentified_deadline: PATIENT,
        metrics_listen: Some("127.0.0.1:0".parse()?),
        ..Options::default()
    })
}

/// Why the controller closed `conn`, once it has.
async fn close_reason(conn: &Connection) -> Result<String> {
    let closed = tokio::time::timeout(EVENTUALLY, conn.closed())
        .await
        .context("the controller never closed the connection")?;
    Ok(TransportError::explain(&closed))
}

fn still_open(flood: &[Connection]) -> usize {
    flood.iter().filter(|c| c.close_reason().is_none()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_technicians_get_in_past_idle_anonymous_connections_from_their_address()
-> Result<()> {
    let scene = Scene::start_with(patient()?).await?;
    let addr = scene.addr().await?;
    // A foreign client behind the same address as everyone in the scene (127.0.0.1)
    // holds the whole allowance of unidentified connections, idle.
    let neighbour = endpoint_at([127, 0, 0, 1])?;
    let mut flood = Vec::new();
    for _ in 0..MAX_PENDING_PER_ADDRESS {
        flood.push(endpoint::connect(&neighbour, addr, scene.anonymous_config()?).await?);
    }
    // Held: past the grace an unidentified connection has to identify itself.
    tokio::time::sleep(PENDING_GRACE).await;

    // A new machine enrolls and connects; a new technician logs in; a known one runs
    // `deskside agents`: all from the flooded address.
    let late = scene.cluster.agent("late", ALLOW_DIAGNOSTICS).await?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L1).await?;
    wait_online(&carol, &late.id).await?;
    let ticket = new_ticket(&carol, &late.id).await?;
    diag(&carol, &late.id, ticket).await?;
    let alice = TechClient::connect(&scene.profile).await?;
    let TechReply::Agents(agents) = alice.request(&TechRequest::ListAgents).await? else {
        anyhow::bail!("`deskside agents` got no agent list");
    };
    assert!(agents.iter().any(|a| a.id == late.id && a.online));

    // The oldest of the flood gave way, and were told why.
    let oldest = flood.first().context("no flood")?;
    let reason = close_reason(oldest).await?;
    assert!(
        reason.contains("busy") && reason.contains("gave way to a newer one"),
        "{reason}"
    );

    // The flood goes on: the old connections give way to the new, and once all of the
    // address's unidentified connections are new, further ones are refused before the
    // handshake, told why. The address never holds more than its allowance.
    let (mut more, mut refused) = (0, Vec::new());
    for _ in 0..2 * MAX_PENDING_PER_ADDRESS {
        match endpoint::connect(&neighbour, addr, scene.anonymous_config()?).await {
            Ok(conn) => {
                flood.push(conn);
                more += 1;
            }
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert!(
        more >= MAX_PENDING_PER_ADDRESS / 2,
        "only {more} flood connections got in"
    );
    let told = refused.first().context("none of the flood was refused")?;
    assert!(
        told.contains("refused by the controller before the handshake")
            && told.contains("identifying themselves"),
        "{told}"
    );
    let open = eventually("the flood to be held to its allowance", || async {
        let open = still_open(&flood);
        (open <= MAX_PENDING_PER_ADDRESS).then_some(open)
    })
    .await?;
    eprintln!(
        "{} flood connections opened, {} refused, {open} still open",
        flood.len(),
        refused.len()
    );
    let text = metrics(&scene.cluster).await?;
    let displaced = metric(
        &text,
        "deskside_unidentified_connections_cut_short_total{reason=\"displaced\"}",
    );
    assert!(
        displaced >= (flood.len() - MAX_PENDING_PER_ADDRESS) as f64,
        "{displaced} displaced counted for {} connections:\n{text}",
        flood.len()
    );
    assert_eq!(
        metric(
            &text,
            "deskside_connections_refused_total{reason=\"pending_per_address\"}"
        ),
        refused.len() as f64,
        "{text}"
    );

    // Those already in are not disturbed by the flood.
    diag(&carol, &late.id, ticket).await?;
    scene.good_still_served().await?;
    late.stop().await;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identified_connections_behind_one_address_never_give_way() -> Result<()> {
    let scene = Scene::start_with(patient()?).await?;
    let addr = scene.addr().await?;
    // A NAT: more identified technicians' connections from one address than its
    // allowance of unidentified ones…
    let nat = endpoint_at([127, 0, 0, 3])?;
    let mut identified = Vec::new();
    for _ in 0..MAX_PENDING_PER_ADDRESS + 8 {
        let config = scene.client_config(&scene.profile.cert_pem, &scene.profile.key_pem)?;
        let conn = endpoint::connect(&nat, addr, config).await?;
        endpoint::hello(&conn, "behind a NAT").await?;
        identified.push(conn);
    }
    // …then a flood of unidentified ones past the allowance: only those give way.
    let mut flood = Vec::new();
    for _ in 0..MAX_PENDING_PER_ADDRESS {
        flood.push(endpoint::connect(&nat, addr, scene.anonymous_config()?).await?);
    }
    tokio::time::sleep(PENDING_GRACE).await;
    for _ in 0..4 {
        flood.push(endpoint::connect(&nat, addr, scene.anonymous_config()?).await?);
    }
    eventually(
        "the oldest unidentified connections to give way",
        || async { (still_open(&flood) <= MAX_PENDING_PER_ADDRESS).then_some(()) },
    )
    .await?;
    for conn in &identified {
        assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
        let reply: TechReply = framed::request(conn, &TechRequest::ListAgents, EVENTUALLY).await?;
        assert!(matches!(reply, TechReply::Agents(_)), "{reply:?}");
    }
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_connection_that_never_finishes_enrolling_is_closed_with_the_reason()
-> Result<()> {
    let deadline = Duration::from_secs(2);
    let scene = Scene::start_with(Options {
        unidentified_deadline: deadline,
        ..patient()?
    })
    .await?;
    let addr = scene.addr().await?;
    let ep = endpoint_at([127, 0, 0, 4])?;
    // One says nothing at all; one says hello, then never sends its enrollment request.
    let silent = endpoint::connect(&ep, addr, scene.anonymous_config()?).await?;
    let idle = endpoint::connect(&ep, addr, scene.anonymous_config()?).await?;
    endpoint::hello(&idle, "never enrolls").await?;
    for conn in [&silent, &idle] {
        let reason = close_reason(conn).await?;
        assert!(
            reason.contains("timed out")
                && reason.contains("did not identify itself or finish enrolling within 2 s"),
            "{reason}"
        );
    }
    let text = metrics(&scene.cluster).await?;
    assert!(
        metric(
            &text,
            "deskside_unidentified_connections_cut_short_total{reason=\"deadline\"}"
        ) >= 2.0,
        "{text}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
