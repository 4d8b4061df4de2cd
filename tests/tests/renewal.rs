//! Certificates over time: agent and technician certificates expire and are renewed
//! over the live link before expiry, with no user action, the same key and the same
//! pinned CA — and a renewed agent reconnects after its first certificate has expired.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::profile::Profile;
use deskside_controller::server::Options;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, wait_online};
use deskside_transport::pki;
use tokio_util::sync::CancellationToken;

/// Short enough for a test to see renewal (due at two thirds) and expiry.
const VALIDITY: Duration = Duration::from_secs(20);

fn fingerprint_and_window(pem: &str) -> Result<(String, (u64, u64))> {
    let der = pki::cert_from_pem(pem)?;
    Ok((hex::encode(pki::fingerprint(&der)), pki::validity(&der)?))
}

fn public_key(pem: &str) -> Result<Vec<u8>> {
    let der = pki::cert_from_pem(pem)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

async fn diag_ok(client: &TechClient, agent: &str, ticket: u64) -> Result<()> {
    match client
        .request(&TechRequest::Diagnostics {
            agent: agent.to_owned(),
            ticket,
        })
        .await?
    {
        TechReply::Diagnostics(_) => Ok(()),
        other => bail!("diagnostics failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_over_the_live_link_before_expiry() -> Result<()> {
    let mut cluster = Cluster::start_with(Options {
        client_validity: VALIDITY,
        ..Options::default()
    })
    .await?;
    let (_, tech) = cluster.technician("rita", Tier::L1).await?;
    let agent = cluster.agent("renewer", ALLOW_DIAGNOSTICS).await?;
    let first_pem = std::fs::read_to_string(agent.state.cert())?;
    let (first_sha, first_window) = fingerprint_and_window(&first_pem)?;
    wait_online(&tech, &agent.id).await?;
    let ticket = match tech
        .request(&TechRequest::NewTicket {
            title: "renewal".into(),
            agent: Some(agent.id.clone()),
            requester: String::new(),
            priority: "normal".into(),
        })
        .await?
    {
        TechReply::Ticket(v) => v.ticket.number,
        other => bail!("{other:?}"),
    };

    // The agent renews by itself once two thirds of the life are over. It replaces the
    // certificate, then records its expiry in the enrollment: the second write is the
    // one that says the renewal is complete, so wait for that before reading either.
    let start = Instant::now();
    let enrollment = loop {
        let enrollment = agent.state.enrollment()?;
        if enrollment.cert_not_after_secs != first_window.1 {
            break enrollment;
        }
        if start.elapsed() > VALIDITY * 3 {
            bail!("the agent did not renew its certificate");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let renewed_pem = std::fs::read_to_string(agent.state.cert())?;
    assert_ne!(renewed_pem, first_pem, "the certificate was replaced");
    let (renewed_sha, renewed_window) = fingerprint_and_window(&renewed_pem)?;
    assert!(
        renewed_window.1 > first_window.1,
        "{renewed_window:?} vs {first_window:?}"
    );
    assert_eq!(
        public_key(&renewed_pem)?,
        public_key(&first_pem)?,
        "renewal keeps the key"
    );
    let id = agent.id.clone();
    let creds = cluster
        .store()?
        .blocking(move |db| db.agent_credentials_of(&id))?;
    let Some(creds) = creds else {
        bail!("agent gone from the store")
    };
    assert_eq!(creds.current, renewed_sha);
    assert!(
        creds.accepts(&first_sha),
        "the renewed-with certificate stays accepted"
    );
    assert_eq!(enrollment.cert_not_after_secs, renewed_window.1);
    // Still served on the connection it renewed over.
    diag_ok(&tech, &agent.id, ticket).await?;

    // The technician's CLI renews its profile on use once renewal is due.
    let path = cluster.profile_path("rita");
    let before = Profile::load(&path)?;
    let (_, tech_window) = fingerprint_and_window(&before.cert_pem)?;
    while deskside_controller::clock::now_secs() < pki::renew_at(tech_window) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewing = TechClient::connect_renewing(&path).await?;
    let after = Profile::load(&path)?;
    assert_ne!(after.cert_pem, before.cert_pem, "the profile was renewed");
    assert!(after.cert_not_after_secs > before.cert_not_after_secs);
    assert_eq!(public_key(&after.cert_pem)?, public_key(&before.cert_pem)?);
    assert_eq!(after.ca_pem, before.ca_pem, "the pinned CA stays");
    renewing.close().await;
    // After the first certificate has expired, a restarted agent connects with the
    // renewed one (and evidence it signs still verifies: same key).
    while deskside_controller::clock::now_secs() <= first_window.1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = agent.state.clone();
    let id = agent.id.clone();
    agent.stop().await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(deskside_agent::link::run(state, cancel.clone()));
    wait_online(&tech, &id).await?;
    diag_ok(&tech, &id, ticket).await?;

    // Past the old certificate's expiry, a new connection works with the renewed one.
    while deskside_controller::clock::now_secs() <= tech_window.1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = TechClient::connect(&after).await?;
    diag_ok(&fresh, &id, ticket).await?;

    cancel.cancel();
    let _ = task.await;
    cluster.stop().await;
    Ok(())
}
