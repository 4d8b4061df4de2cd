//! Peers that are not who they say: certificates not issued to them or naming no Deskside
//! identity, a revoked technician, and a garbled check-in from an agent.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_certificate_not_issued_to_them_is_refused() -> Result<()> {
    let scene = Scene::start().await?;
    let keys = pki::new_key_and_csr("impostor")?;
    let now = OffsetDateTime::now_utc();
    let cn = Identity::Technician {
        name: "alice".into(),
    }
    .common_name();
    let cert = scene.sign(&keys.key_pem, &cn, now - days(1), now + days(1))?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let reason = refused_reason(&ep, addr, scene.client_config(&cert, &keys.key_pem)?).await;
    assert!(
        reason.contains("not the one issued to them") && reason.contains("alice"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_naming_no_deskside_identity_is_refused() -> Result<()> {
    let scene = Scene::start().await?;
    let keys = pki::new_key_and_csr("mallory")?;
    let now = OffsetDateTime::now_utc();
    let cert = scene.sign(&keys.key_pem, "mallory", now - days(1), now + days(1))?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let reason = refused_reason(&ep, addr, scene.client_config(&cert, &keys.key_pem)?).await;
    assert!(
        reason.contains("does not name a Deskside agent or technician"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_technician_is_refused_at_connect() -> Result<()> {
    let scene = Scene::start().await?;
    let (profile, rogue) = scene.cluster.technician("mallory", Tier::L2).await?;
    rogue.close().await;
    deskside_controller::cli::admin::revoke(&scene.cluster.data, None, Some("mallory"))?;
    let msg = match deskside_controller::client::TechClient::connect(&profile).await {
        Ok(_) => bail!("a revoked technician connected"),
        Err(e) => format!("{e:#}"),
    };
    assert!(msg.contains("technician mallory has been revoked"), "{msg}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_check_in_closes_the_agent_connection_as_a_bad_frame() -> Result<()> {
    let scene = Scene::start().await?;
    let agent = RawAgent::enroll(&scene, "garbled").await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let config = scene.client_config(&agent.cert_pem, &agent.key_pem)?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    let (mut send, _recv) = endpoint::hello(&conn, "raw agent").await?;
    send.write_all(&frame(&[0xff, 0xff, 0xff])).await?;
    let reason = close_reason(&conn).await?;
    assert!(
        reason.contains("bad frame") && reason.contains("bad check-in"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
