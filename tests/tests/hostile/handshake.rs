//! Refused at the TLS handshake: a wrong or missing ALPN, and client certificates that
//! have expired or are not valid yet.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_alpn_h3_is_refused_for_no_application_protocol() -> Result<()> {
    let scene = Scene::start().await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let config = alpn_config(&scene.ca_pem()?, &[b"h3"])?;
    let Err(reason) = raw_connect(&ep, addr, config).await else {
        bail!("an h3 client completed the handshake");
    };
    assert_no_application_protocol(&reason);
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alpn_is_refused_for_no_application_protocol() -> Result<()> {
    let scene = Scene::start().await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let config = alpn_config(&scene.ca_pem()?, &[])?;
    let Err(reason) = raw_connect(&ep, addr, config).await else {
        bail!("a client without ALPN completed the handshake");
    };
    assert_no_application_protocol(&reason);
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificate_is_refused_as_expired() -> Result<()> {
    let scene = Scene::start().await?;
    let agent = RawAgent::enroll(&scene, "expired").await?;
    let cn = Identity::Agent {
        id: agent.id.clone(),
    }
    .common_name();
    let now = OffsetDateTime::now_utc();
    let cert = scene.sign(&agent.key_pem, &cn, now - days(90), now - days(1))?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let reason = refused_reason(&ep, addr, scene.client_config(&cert, &agent.key_pem)?).await;
    assert!(reason.to_lowercase().contains("expired"), "{reason}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_client_certificate_is_refused_as_not_valid_yet() -> Result<()> {
    let scene = Scene::start().await?;
    let agent = RawAgent::enroll(&scene, "future").await?;
    let cn = Identity::Agent {
        id: agent.id.clone(),
    }
    .common_name();
    let now = OffsetDateTime::now_utc();
    let cert = scene.sign(&agent.key_pem, &cn, now + days(1), now + days(90))?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let reason = refused_reason(&ep, addr, scene.client_config(&cert, &agent.key_pem)?).await;
    assert!(reason.to_lowercase().contains("not valid yet"), "{reason}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
