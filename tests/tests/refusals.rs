//! Every refusal in the foundation, each with its reason, while a good agent connected
//! at the same time keeps answering.

use std::time::Duration;

use anyhow::Result;
use deskside_controller::ca::Ca;
use deskside_proto::msg::enroll::EnrollToken;
use deskside_proto::msg::hello::{Hello, HelloReply};
use deskside_proto::msg::identity::{Identity, Tier};
use deskside_proto::msg::tech::{ErrorCode, TechReply, TechRequest};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, wait_online};
use deskside_transport::{endpoint, framed, pki, tls};

/// The good agent still serves a snapshot onto a ticket.
async fn good_agent_still_served(
    client: &deskside_controller::client::TechClient,
    agent: &str,
    ticket: u64,
) -> Result<()> {
    match client
        .request(&TechRequest::Diagnostics {
            agent: agent.into(),
            ticket,
        })
        .await?
    {
        TechReply::Diagnostics(r) => {
            assert!(!r.snapshot.host.hostname.is_empty());
            Ok(())
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

async fn new_ticket(client: &deskside_controller::client::TechClient, agent: &str) -> Result<u64> {
    match client
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "refusals".into(),
            agent: Some(agent.into()),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

fn err_text(r: Result<impl std::fmt::Debug, impl Into<anyhow::Error>>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => format!("{:#}", e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_enrollments_and_clients_are_refused_with_reasons() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let good = cluster.agent("good", ALLOW_DIAGNOSTICS).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &good.id).await?;
    let ticket = new_ticket(&tech, &good.id).await?;
    good_agent_still_served(&tech, &good.id, ticket).await?;
    let scratch = tempfile::tempdir()?;

    // Wrong CA fingerprint in the token: the agent refuses the controller.
    let mut token = EnrollToken::parse(&cluster.token(Duration::from_secs(60))?)?;
    token.ca_sha256[0] ^= 0xff;
    let state = deskside_agent::state::StateDir::new(scratch.path().join("wrong-ca"));
    let msg = err_text(deskside_agent::enroll::enroll(&state, &token.to_text()).await);
    assert!(
        msg.contains("does not match the fingerprint pinned in the token"),
        "{msg}"
    );
    assert!(!state.is_enrolled());
    good_agent_still_served(&tech, &good.id, ticket).await?;

    // Expired token.
    let expired = cluster.token(Duration::from_secs(1))?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let state = deskside_agent::state::StateDir::new(scratch.path().join("expired"));
    let msg = err_text(deskside_agent::enroll::enroll(&state, &expired).await);
    assert!(msg.contains("token expired"), "{msg}");

    // Reused token.
    let once = cluster.token(Duration::from_secs(60))?;
    deskside_agent::enroll::enroll(
        &deskside_agent::state::StateDir::new(scratch.path().join("first")),
        &once,
    )
    .await?;
    let msg = err_text(
        deskside_agent::enroll::enroll(
            &deskside_agent::state::StateDir::new(scratch.path().join("second")),
            &once,
        )
        .await,
    );
    assert!(msg.contains("already used"), "{msg}");

    // Forged token: right controller and CA, invented secret.
    let mut forged = EnrollToken::parse(&cluster.token(Duration::from_secs(60))?)?;
    forged.secret = [0x42; 32];
    let msg = err_text(
        deskside_agent::enroll::enroll(
            &deskside_agent::state::StateDir::new(scratch.path().join("forged")),
            &forged.to_text(),
        )
        .await,
    );
    assert!(msg.contains("does not know this token"), "{msg}");

    // Garbage token text: a typed error, no network at all.
    let msg = err_text(
        deskside_agent::enroll::enroll(
            &deskside_agent::state::StateDir::new(scratch.path().join("garbage")),
            "dsk1-!!!",
        )
        .await,
    );
    assert!(msg.contains("damaged"), "{msg}");
    good_agent_still_served(&tech, &good.id, ticket).await?;

    // A client with no certificate asking for something other than enrollment.
    let addr = endpoint::resolve(&cluster.addr).await?;
    let ep = endpoint::client_endpoint(addr)?;
    let ca_sha = EnrollToken::parse(&cluster.token(Duration::from_secs(60))?)?.ca_sha256;
    let conn = endpoint::connect(&ep, addr, tls::pinned_client_config(ca_sha)?).await?;
    endpoint::hello(&conn, "test").await?;
    let msg = err_text(
        framed::request::<_, TechReply>(&conn, &TechRequest::ListAgents, Duration::from_secs(5))
            .await,
    );
    let closed = conn.closed().await;
    let reason = deskside_transport::TransportError::explain(&closed);
    assert!(
        reason.contains("client certificate required"),
        "{reason} / {msg}"
    );

    // A client certificate from another CA: the handshake fails.
    let other = deskside_controller::ca::new_ca()?;
    let other_ca = Ca::load(&other.cert_pem, &other.key_pem)?;
    let keys = pki::new_key_and_csr("mallory")?;
    let foreign = other_ca.issue_client(
        &keys.csr_pem,
        &Identity::Technician {
            name: "alice".into(),
        },
        deskside_controller::ca::CLIENT_VALIDITY,
    )?;
    let ours = std::fs::read_to_string(cluster.data.root().join("ca.crt"))?;
    let config = tls::client_config(
        pki::cert_from_pem(&ours)?,
        pki::cert_from_pem(&foreign.cert_pem)?,
        pki::key_from_pem(&keys.key_pem)?,
    )?;
    let outcome = match endpoint::connect(&ep, addr, config).await {
        Err(e) => format!("{e}"),
        Ok(conn) => err_text(endpoint::hello(&conn, "test").await.map(|_| ())),
    };
    assert!(
        outcome.to_lowercase().contains("unknown") || outcome.contains("certificate"),
        "{outcome}"
    );

    // A certificate from our CA for a technician the database does not know.
    let ca = Ca::load(
        &ours,
        &std::fs::read_to_string(cluster.data.root().join("ca.key"))?,
    )?;
    let keys = pki::new_key_and_csr("mallory")?;
    let stray = ca.issue_client(
        &keys.csr_pem,
        &Identity::Technician {
            name: "mallory".into(),
        },
        deskside_controller::ca::CLIENT_VALIDITY,
    )?;
    let config = tls::client_config(
        pki::cert_from_pem(&ours)?,
        pki::cert_from_pem(&stray.cert_pem)?,
        pki::key_from_pem(&keys.key_pem)?,
    )?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    let msg = err_text(endpoint::hello(&conn, "test").await.map(|_| ()));
    assert!(msg.contains("technician mallory is unknown"), "{msg}");

    // A certificate for a real agent id that is not the one issued to it.
    let keys = pki::new_key_and_csr("impostor")?;
    let stray = ca.issue_client(
        &keys.csr_pem,
        &Identity::Agent {
            id: good.id.clone(),
        },
        deskside_controller::ca::CLIENT_VALIDITY,
    )?;
    let config = tls::client_config(
        pki::cert_from_pem(&ours)?,
        pki::cert_from_pem(&stray.cert_pem)?,
        pki::key_from_pem(&keys.key_pem)?,
    )?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    let msg = err_text(endpoint::hello(&conn, "test").await.map(|_| ()));
    assert!(msg.contains("not the one issued"), "{msg}");

    // A protocol version from the future: both versions named.
    let conn = endpoint::connect(&ep, addr, tls::pinned_client_config(ca_sha)?).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    framed::send(
        &mut send,
        &Hello {
            version: 99,
            software: "future".into(),
        },
    )
    .await?;
    let reply: HelloReply = framed::recv(&mut recv).await?;
    assert_eq!(
        reply,
        HelloReply::VersionMismatch {
            controller: deskside_proto::PROTOCOL_VERSION,
            peer: 99
        }
    );
    let reason = deskside_transport::TransportError::explain(&conn.closed().await);
    assert!(
        reason.contains(&format!("version {}", deskside_proto::PROTOCOL_VERSION))
            && reason.contains("version 99"),
        "{reason}"
    );

    good_agent_still_served(&tech, &good.id, ticket).await?;
    good.stop().await;
    cluster.stop().await;
    Ok(())
}

/// An authenticated technician connection that sends bad frames loses that stream, with
/// the reason in the reply; the connection and everyone else keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_from_a_technician_lose_their_stream_with_a_reason() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let good = cluster.agent("good", ALLOW_DIAGNOSTICS).await?;
    let (profile, tech) = cluster.technician("dave", Tier::L1).await?;
    wait_online(&tech, &good.id).await?;
    let ticket = new_ticket(&tech, &good.id).await?;

    let config = tls::client_config(
        pki::cert_from_pem(&profile.ca_pem)?,
        pki::cert_from_pem(&profile.cert_pem)?,
        pki::key_from_pem(&profile.key_pem)?,
    )?;
    let addr = endpoint::resolve(&cluster.addr).await?;
    let ep = endpoint::client_endpoint(addr)?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    endpoint::hello(&conn, "raw").await?;

    let cases: [(&str, Vec<u8>); 4] = [
        ("over the", u32::MAX.to_le_bytes().to_vec()),
        ("before a complete", {
            let mut v = 100u32.to_le_bytes().to_vec();
            v.extend_from_slice(&[1, 2, 3]);
            v
        }),
        ("malformed", {
            let mut v = 3u32.to_le_bytes().to_vec();
            v.extend_from_slice(&[0xff, 0xff, 0xff]);
            v
        }),
        ("trailing", {
            let mut v = 2u32.to_le_bytes().to_vec();
            v.extend_from_slice(&[0, 0]);
            v
        }),
    ];
    for (expect, bytes) in cases {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&bytes).await?;
        send.finish()?;
        let reply: TechReply = framed::recv_within(&mut recv, Duration::from_secs(15)).await?;
        let TechReply::Error(e) = reply else {
            anyhow::bail!("{expect}: expected an error reply, got {reply:?}");
        };
        assert_eq!(e.code, ErrorCode::BadRequest, "{expect}");
        assert!(e.message.contains(expect), "{expect}: {}", e.message);
    }
    // The same connection still works, and so does everyone else.
    let reply: TechReply =
        framed::request(&conn, &TechRequest::ListAgents, Duration::from_secs(10)).await?;
    assert!(
        matches!(reply, TechReply::Agents(ref a) if a.len() == 1),
        "{reply:?}"
    );
    good_agent_still_served(&tech, &good.id, ticket).await?;
    good.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_prompt_and_deny_refuse_diagnostics_with_the_policy_named() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let prompt = cluster
        .agent("prompt", deskside_agent::policy::DEFAULT_POLICY)
        .await?;
    let deny = cluster
        .agent("deny", "[scopes]\ndiagnostics = \"deny\"\n")
        .await?;
    let (_p, tech) = cluster.technician("bob", Tier::L2).await?;
    wait_online(&tech, &prompt.id).await?;
    wait_online(&tech, &deny.id).await?;
    let ticket = new_ticket(&tech, &prompt.id).await?;

    let err = tech
        .request(&TechRequest::Diagnostics {
            agent: prompt.id.clone(),
            ticket,
        })
        .await;
    let msg = err_text(err.map(|_| ()));
    assert!(msg.contains("policy") && msg.contains("prompt"), "{msg}");
    let err = tech
        .request(&TechRequest::Diagnostics {
            agent: deny.id.clone(),
            ticket,
        })
        .await;
    let refused = err.err().and_then(|e| {
        e.refused()
            .cloned()
            .map(deskside_controller::client::Refused)
    });
    let refused = refused.map(|r| r.0);
    assert_eq!(
        refused.as_ref().map(|r| r.code),
        Some(ErrorCode::AgentRefused)
    );
    assert!(
        refused
            .map(|r| r.message)
            .unwrap_or_default()
            .contains("denies diagnostics")
    );

    // Both refusals are on the ticket timeline and in the agents' own audit logs.
    let TechReply::Ticket(view) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        anyhow::bail!("no ticket");
    };
    assert_eq!(
        view.timeline.iter().filter(|e| e.kind == "refused").count(),
        2
    );
    assert!(view.evidence.is_empty());
    for agent in [&prompt, &deny] {
        let (entries, damaged) = deskside_agent::audit::read(&agent.state.audit_log())?;
        assert_eq!(damaged, 0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries.first().map(|e| e.outcome.as_str()), Some("refused"));
        assert_eq!(entries.first().map(|e| e.technician.as_str()), Some("bob"));
    }
    prompt.stop().await;
    deny.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_agent_and_technician_are_cut_off_and_refused() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let good = cluster.agent("good", ALLOW_DIAGNOSTICS).await?;
    let lost = cluster.agent("stolen-laptop", ALLOW_DIAGNOSTICS).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L2).await?;
    let (_p, rogue) = cluster.technician("mallory", Tier::L1).await?;
    wait_online(&tech, &good.id).await?;
    wait_online(&tech, &lost.id).await?;
    let ticket = new_ticket(&tech, &good.id).await?;

    deskside_controller::cli::admin::revoke(&cluster.data, Some(&lost.id), None)?;
    deskside_controller::cli::admin::revoke(&cluster.data, None, Some("mallory"))?;

    // The stolen laptop is disconnected within a sweep, and stays out.
    let start = std::time::Instant::now();
    loop {
        let TechReply::Agents(list) = tech.request(&TechRequest::ListAgents).await? else {
            anyhow::bail!("agents")
        };
        let a = list
            .iter()
            .find(|a| a.id == lost.id)
            .ok_or_else(|| anyhow::anyhow!("listed"))?;
        if !a.online && a.revoked {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "revoked agent still online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = std::time::Instant::now();
    loop {
        let status = std::fs::read_to_string(lost.state.status_file()).unwrap_or_default();
        if status.contains("revoked") {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(15),
            "the agent never learnt why: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = tech
        .request(&TechRequest::Diagnostics {
            agent: lost.id.clone(),
            ticket,
        })
        .await;
    assert_eq!(
        err.err()
            .and_then(|e| e
                .refused()
                .cloned()
                .map(deskside_controller::client::Refused))
            .map(|r| r.0.code),
        Some(ErrorCode::Forbidden)
    );

    // The revoked technician is refused on the next request, even on an open connection.
    let msg = err_text(rogue.request(&TechRequest::ListAgents).await.map(|_| ()));
    assert!(msg.contains("revoked"), "{msg}");
    good_agent_still_served(&tech, &good.id, ticket).await?;
    good.stop().await;
    lost.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_reported_as_one_not_as_a_revocation() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let (_p, tech) = cluster.technician("alice", Tier::L2).await?;

    // The column every request's revocation check reads is gone: the store cannot say
    // whether alice is revoked. She is refused, and told why.
    cluster.sql("ALTER TABLE technicians RENAME COLUMN revoked_at TO revoked_at_gone")?;
    let refused = tech
        .request(&TechRequest::ListAgents)
        .await
        .err()
        .and_then(|e| {
            e.refused()
                .cloned()
                .map(deskside_controller::client::Refused)
        })
        .map(|r| r.0);
    let Some(refused) = refused else {
        anyhow::bail!("a request was served while the store could not check revocation");
    };
    assert_eq!(refused.code, ErrorCode::Internal, "{refused:?}");
    assert!(!refused.message.contains("has been revoked"), "{refused:?}");
    assert!(refused.message.contains("no such column"), "{refused:?}");

    // Once the store is whole again, the same connection is served.
    cluster.sql("ALTER TABLE technicians RENAME COLUMN revoked_at_gone TO revoked_at")?;
    let TechReply::Agents(_) = tech.request(&TechRequest::ListAgents).await? else {
        anyhow::bail!("agents");
    };
    cluster.stop().await;
    Ok(())
}
