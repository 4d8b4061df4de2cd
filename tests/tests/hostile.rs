//! Hostile peers, one case per test: each asserts the refusal and its reason, and that a
//! good agent connected before the attack still answers a technician afterwards.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_controller::client::Refused;
use deskside_controller::server::Options;
use deskside_proto::msg::agent::{AgentNotice, CheckIn, Delivery, NoticeAck};
use deskside_proto::msg::identity::{Identity, Tier};
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{ErrorCode, ErrorReply, TechReply, TechRequest};
use deskside_tests::hostile::{
    EVENTUALLY, Scene, alpn_config, diag, frame, new_ticket, raw_connect, refusal, refused_reason,
};
use deskside_tests::raw::RawAgent;
use deskside_transport::tls::MAX_CONCURRENT_STREAMS;
use deskside_transport::{TransportError, endpoint, framed, pki};
use time::OffsetDateTime;

/// A request timeout short enough that a test waits about a second for it. Honest
/// requests send their whole frame in the packet that opens the stream.
const SHORT: Duration = Duration::from_secs(1);
/// A hello timeout a test waits for once; the good agent and technicians in the same
/// scene must still say hello within it on a busy machine.
const SHORT_HELLO: Duration = Duration::from_secs(2);

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// The reason a connection was closed with, waiting for the close.
async fn close_reason(conn: &quinn::Connection) -> Result<String> {
    let closed = tokio::time::timeout(EVENTUALLY, conn.closed())
        .await
        .context("the controller never closed the connection")?;
    Ok(TransportError::explain(&closed))
}

/// TLS alert 120 is `no_application_protocol`; rustls adds its own words.
fn assert_no_application_protocol(reason: &str) {
    assert!(
        reason.contains("error 120") && reason.contains("doesn't support any known protocol"),
        "{reason}"
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_an_unknown_agent_is_not_found() -> Result<()> {
    let scene = Scene::start().await?;
    let e = refusal(
        &scene.tech,
        &TechRequest::Diagnostics {
            agent: "no-such-machine".into(),
            ticket: scene.ticket,
        },
    )
    .await?;
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(
        e.message.contains("no agent with id or hostname"),
        "{}",
        e.message
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_a_revoked_agent_is_forbidden_with_the_reason() -> Result<()> {
    let scene = Scene::start().await?;
    let lost = scene
        .cluster
        .agent("stolen", deskside_tests::ALLOW_DIAGNOSTICS)
        .await?;
    deskside_tests::wait_online(&scene.tech, &lost.id).await?;
    scene
        .cluster
        .add_test_script("hello", "l1", 10, "", "echo hi\n")?;
    deskside_controller::cli::admin::revoke(&scene.cluster.data, Some(&lost.id), None)?;
    let requests = [
        TechRequest::Diagnostics {
            agent: lost.id.clone(),
            ticket: scene.ticket,
        },
        TechRequest::RequestSession {
            agent: lost.id.clone(),
            ticket: scene.ticket,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 5,
        },
        TechRequest::EndSession {
            agent: lost.id.clone(),
            ticket: scene.ticket,
        },
    ];
    for req in &requests {
        let e = refusal(&scene.tech, req).await?;
        assert_eq!(e.code, ErrorCode::Forbidden, "{req:?}");
        assert!(
            e.message.contains(&format!("agent {} is revoked", lost.id)),
            "{req:?}: {}",
            e.message
        );
    }
    let run = TechRequest::RunScript {
        agent: lost.id.clone(),
        ticket: scene.ticket,
        script: "hello".into(),
        params: Default::default(),
    };
    let e = streamed_refusal(&scene, &run).await?;
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("is revoked"), "{}", e.message);
    scene.good_still_served().await?;
    lost.stop().await;
    scene.stop().await;
    Ok(())
}

/// The error ending a streamed request (script run, escalation, export).
async fn streamed_refusal(scene: &Scene, req: &TechRequest) -> Result<ErrorReply> {
    streamed_refusal_by(&scene.tech, req).await
}

async fn streamed_refusal_by(
    client: &deskside_controller::client::TechClient,
    req: &TechRequest,
) -> Result<ErrorReply> {
    match client.stream(req, |_| {}).await {
        Ok(reply) => bail!("expected a refusal of {req:?}, got {reply:?}"),
        Err(e) => Ok(e
            .downcast::<Refused>()
            .map_err(|e| e.context("no error reply"))?
            .0),
    }
}

fn is_not_visible(e: &ErrorReply, number: u64, technician: &str) -> bool {
    e.code == ErrorCode::NotFound
        && e.message.starts_with(&format!(
            "no ticket #{number} visible to technician {technician};"
        ))
}

async fn ticket_numbers(client: &deskside_controller::client::TechClient) -> Result<Vec<u64>> {
    match client.request(&TechRequest::ListTickets).await? {
        TechReply::Tickets(list) => Ok(list.iter().map(|t| t.number).collect()),
        other => bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_above_the_technicians_tier_is_refused_like_a_missing_one() -> Result<()> {
    let scene = Scene::start().await?;
    scene
        .cluster
        .add_test_script("hello", "l1", 10, "", "echo hi\n")?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let high = new_ticket(&carol, &scene.good.id).await?;

    let requests = [
        TechRequest::ShowTicket { number: high },
        TechRequest::Diagnostics {
            agent: scene.good.id.clone(),
            ticket: high,
        },
    ];
    for req in &requests {
        let e = refusal(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    let run = TechRequest::RunScript {
        agent: scene.good.id.clone(),
        ticket: high,
        script: "hello".into(),
        params: Default::default(),
    };
    let e = streamed_refusal_by(&bob, &run).await?;
    assert!(is_not_visible(&e, high, "bob"), "{e:?}");
    // A missing ticket gets the very same answer: nothing tells bob the ticket exists.
    let missing = refusal(&bob, &TechRequest::ShowTicket { number: 999 }).await?;
    assert!(is_not_visible(&missing, 999, "bob"), "{missing:?}");

    // Listing: bob sees only the l1 ticket, carol (l3) sees both.
    assert_eq!(ticket_numbers(&bob).await?, vec![scene.ticket]);
    assert_eq!(ticket_numbers(&carol).await?, vec![scene.ticket, high]);
    // bob's refused attempts left no trace on carol's ticket.
    let TechReply::Ticket(view) = carol
        .request(&TechRequest::ShowTicket { number: high })
        .await?
    else {
        bail!("carol cannot see her own ticket");
    };
    assert!(view.timeline.iter().all(|e| e.actor != "bob"));
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_ticket_stays_visible_to_those_who_worked_it_only() -> Result<()> {
    let scene = Scene::start().await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let (_p, dave) = scene.cluster.technician("dave", Tier::L2).await?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let number = scene.ticket;
    assert!(ticket_numbers(&bob).await?.contains(&number));

    // alice (l1, the creator) escalates to l2; dave (l2) escalates to l3.
    let escalate = |to, note: &str| TechRequest::Escalate {
        number,
        to,
        note: note.into(),
    };
    let reply = scene
        .tech
        .stream(&escalate(Tier::L2, "disk keeps filling"), |_| {})
        .await?;
    assert!(matches!(reply, TechReply::Bundle(_)), "{reply:?}");
    let reply = dave
        .stream(&escalate(Tier::L3, "needs a storage specialist"), |_| {})
        .await?;
    assert!(matches!(reply, TechReply::Bundle(_)), "{reply:?}");

    // An unrelated l1 no longer sees it, for show, diagnostics or the list.
    for req in [
        TechRequest::ShowTicket { number },
        TechRequest::Diagnostics {
            agent: scene.good.id.clone(),
            ticket: number,
        },
    ] {
        let e = refusal(&bob, &req).await?;
        assert!(is_not_visible(&e, number, "bob"), "{req:?}: {e:?}");
    }
    assert!(!ticket_numbers(&bob).await?.contains(&number));
    // l3 lists it; the l1 who opened it and the l2 who escalated it keep working it.
    assert!(ticket_numbers(&carol).await?.contains(&number));
    assert!(ticket_numbers(&dave).await?.contains(&number));
    assert!(ticket_numbers(&scene.tech).await?.contains(&number));
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_ticket_request_on_an_invisible_ticket_is_refused() -> Result<()> {
    let scene = Scene::start().await?;
    let (_p, carol) = scene.cluster.technician("carol", Tier::L3).await?;
    let (_p, bob) = scene.cluster.technician("bob", Tier::L1).await?;
    let high = new_ticket(&carol, &scene.good.id).await?;
    let agent = scene.good.id.clone();
    let answered = [
        TechRequest::Note {
            number: high,
            text: "peeking".into(),
        },
        TechRequest::Resolve {
            number: high,
            note: "closing someone else's ticket".into(),
        },
        TechRequest::Sync { number: high },
        TechRequest::RequestSession {
            agent: agent.clone(),
            ticket: high,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 5,
        },
        TechRequest::JoinSession {
            code: "123456".into(),
            ticket: high,
        },
        TechRequest::EndSession {
            agent: agent.clone(),
            ticket: high,
        },
    ];
    for req in &answered {
        let e = refusal(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    let streamed = [
        TechRequest::Escalate {
            number: high,
            to: Tier::L3,
            note: "up".into(),
        },
        TechRequest::Export { number: high },
    ];
    for req in &streamed {
        let e = streamed_refusal_by(&bob, req).await?;
        assert!(is_not_visible(&e, high, "bob"), "{req:?}: {e:?}");
    }
    // Nothing happened to the ticket.
    let TechReply::Ticket(view) = carol
        .request(&TechRequest::ShowTicket { number: high })
        .await?
    else {
        bail!("carol cannot see her own ticket");
    };
    assert_eq!(view.ticket.status, "new");
    assert_eq!(view.timeline.len(), 1);
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
