//! Misbehaving streams and hellos: unknown message kinds, requests that never finish,
//! connections that never say hello or talk before it, hellos over the limit, and more
//! streams than the limit.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_request_kind_loses_its_stream_with_the_decode_failure() -> Result<()> {
    let scene = Scene::start().await?;
    let (_ep, conn) = scene.raw_technician(&scene.profile).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // A whole, well-framed request whose enum variant index (250) names no request kind.
    send.write_all(&frame(&[250])).await?;
    send.finish()?;
    let reply: TechReply = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let TechReply::Error(e) = reply else {
        bail!("expected an error reply, got {reply:?}");
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("unreadable request") && e.message.contains("variant"),
        "{}",
        e.message
    );
    // The same connection keeps working, and so does everyone else.
    let reply: TechReply = framed::request(&conn, &TechRequest::ListAgents, EVENTUALLY).await?;
    assert!(matches!(reply, TechReply::Agents(_)), "{reply:?}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_notice_kind_from_an_agent_is_rejected_with_the_decode_failure() -> Result<()> {
    let scene = Scene::start().await?;
    let agent = RawAgent::enroll(&scene, "odd").await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let config = scene.client_config(&agent.cert_pem, &agent.key_pem)?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    let (mut hello_send, _hello_recv) = endpoint::hello(&conn, "raw agent").await?;
    let checkin = CheckIn {
        hostname: "odd".into(),
        os: "test".into(),
        kernel: "test".into(),
        agent_version: "test".into(),
    };
    framed::send(&mut hello_send, &checkin).await?;
    deskside_tests::wait_online(&scene.tech, &agent.id).await?;

    let (mut send, mut recv) = conn.open_bi().await?;
    // A well-formed idempotency key, then a notice variant the controller does not know.
    send.write_all(&frame(&[4, b'a', b'b', b'c', b'd', 250]))
        .await?;
    send.finish()?;
    let ack: NoticeAck = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let NoticeAck::Rejected { reason } = ack else {
        bail!("an unknown notice was recorded: {ack:?}");
    };
    assert!(
        reason.contains("unreadable notice") && reason.contains("variant"),
        "{reason}"
    );
    // The agent's connection survives: a well-formed notice on it is recorded.
    let notice = Delivery {
        key: "0123456789abcdef".into(),
        notice: AgentNotice::SupportCode {
            code: "123456".into(),
            expires_at_secs: deskside_controller::clock::now_secs() + 300,
        },
    };
    let ack: NoticeAck = framed::request(&conn, &notice, EVENTUALLY).await?;
    assert_eq!(ack, NoticeAck::Recorded);
    deskside_tests::wait_online(&scene.tech, &agent.id).await?;
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_is_answered_timed_out_and_stopped() -> Result<()> {
    let scene = Scene::start_with(Options {
        request_timeout: SHORT,
        ..Options::default()
    })
    .await?;
    let (_ep, conn) = scene.raw_technician(&scene.profile).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // Two bytes of a four-byte length prefix, then silence.
    send.write_all(&[5, 0]).await?;
    let reply: TechReply = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let TechReply::Error(e) = reply else {
        bail!("expected an error reply, got {reply:?}");
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("timed out"), "{}", e.message);
    // The controller stopped reading the stream: further bytes are refused.
    let start = std::time::Instant::now();
    let stopped = loop {
        match send.write_all(&[0]).await {
            Err(quinn::WriteError::Stopped(code)) => break code,
            Err(other) => bail!("unexpected write error {other}"),
            Ok(()) if start.elapsed() > EVENTUALLY => bail!("the stream was never stopped"),
            Ok(()) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(stopped.into_inner(), 0);
    let reply: TechReply = framed::request(&conn, &TechRequest::ListAgents, EVENTUALLY).await?;
    assert!(matches!(reply, TechReply::Agents(_)), "{reply:?}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_says_hello_is_closed_with_no_hello() -> Result<()> {
    let scene = Scene::start_with(Options {
        hello_timeout: SHORT_HELLO,
        ..Options::default()
    })
    .await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let conn = endpoint::connect(&ep, addr, scene.anonymous_config()?).await?;
    let reason = close_reason(&conn).await?;
    assert!(
        reason.contains("timed out") && reason.contains("no hello"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_get_no_credit_until_hanging_ones_time_out() -> Result<()> {
    let scene = Scene::start_with(Options {
        request_timeout: SHORT,
        ..Options::default()
    })
    .await?;
    let (_ep, conn) = scene.raw_technician(&scene.profile).await?;
    // The hello used one stream id; QUIC returns stream credit in batches (quinn: once an
    // eighth of the window is free), so this connection has the limit less one to spend.
    let mut hanging = Vec::new();
    for n in 1..MAX_CONCURRENT_STREAMS {
        let pair = tokio::time::timeout(EVENTUALLY, conn.open_bi())
            .await
            .with_context(|| format!("stream {n} of {MAX_CONCURRENT_STREAMS} got no credit"))??;
        hanging.push(pair);
    }
    let extra = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.open_bi().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!extra.is_finished(), "a stream past the limit was granted");

    // Meanwhile the good agent and another technician are served.
    scene.good_still_served().await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    diag(&bob, &scene.good.id, scene.ticket).await?;
    assert!(!extra.is_finished(), "a stream past the limit was granted");

    // Each hanging stream sends half a length prefix; the controller times each out.
    for (send, _) in &mut hanging {
        send.write_all(&[5, 0]).await?;
    }
    for (_, recv) in &mut hanging {
        let reply: TechReply = framed::recv_within(recv, EVENTUALLY).await?;
        assert!(
            matches!(&reply, TechReply::Error(e) if e.code == ErrorCode::BadRequest && e.message.contains("timed out")),
            "{reply:?}"
        );
    }
    // The controller has finished its side and stopped reading; once the client's QUIC
    // stack answers with a reset (when the streams are let go), the credit comes back
    // and the waiting stream opens and is served.
    drop(hanging);
    let (mut send, mut recv) = tokio::time::timeout(EVENTUALLY, extra)
        .await
        .context("no credit came back after the hanging streams timed out")???;
    framed::send(&mut send, &TechRequest::ListAgents).await?;
    send.finish()?;
    let reply: TechReply = framed::recv_within(&mut recv, EVENTUALLY).await?;
    assert!(matches!(reply, TechReply::Agents(_)), "{reply:?}");
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_the_hello_closes_the_connection_as_a_bad_hello() -> Result<()> {
    let scene = Scene::start().await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let config = scene.client_config(&scene.profile.cert_pem, &scene.profile.key_pem)?;
    let conn = endpoint::connect(&ep, addr, config).await?;
    let (mut send, _recv) = conn.open_bi().await?;
    framed::send(&mut send, &TechRequest::ListAgents).await?;
    send.finish()?;
    let reason = close_reason(&conn).await?;
    assert!(
        reason.contains("bad frame") && reason.contains("bad hello"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hello_is_refused_before_allocating() -> Result<()> {
    let scene = Scene::start().await?;
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let conn = endpoint::connect(&ep, addr, scene.anonymous_config()?).await?;
    let (mut send, _recv) = conn.open_bi().await?;
    send.write_all(&u32::MAX.to_le_bytes()).await?;
    let reason = close_reason(&conn).await?;
    assert!(
        reason.contains("bad hello") && reason.contains("over the"),
        "{reason}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
