//! A peer that announces large frames and sends a few bytes of each: the controller holds
//! what arrived, not what was announced.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use deskside_controller::client::TechClient;
use deskside_proto::Message;
use deskside_proto::msg::agent::AgentReply;
use deskside_proto::msg::tech::TechRequest;
use deskside_tests::hostile::{EVENTUALLY, Scene, eventually, new_ticket};
use deskside_tests::raw::{RawAgent, own_memory};
use deskside_transport::tls::MAX_CONCURRENT_STREAMS;

const MIB: u64 = 1024 * 1024;

/// Counts the bytes this test process (the controller runs in it) holds from the heap:
/// a buffer allocated at the announced length counts whole, resident or not, where the
/// kernel's RSS and VmSize figures depend on zero pages and allocator arenas.
#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn heap_bytes() -> u64 {
    u64::try_from(HEAP.allocated()).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_announced_at_the_limit_on_every_stream_do_not_take_the_memory_announced()
-> Result<()> {
    let scene = Scene::start().await?;
    let liar = RawAgent::enroll(&scene, "liar").await?;
    let (_ep, conn) = liar.connect(&scene).await?;
    let ticket = new_ticket(&scene.tech, &liar.id).await?;

    // The liar answers every request the controller sends it with a header announcing
    // the largest reply there is, then three bytes, and holds the stream open.
    let announced = AgentReply::MAX_BYTES;
    let (opened_tx, mut opened) = tokio::sync::watch::channel(0usize);
    let liar_conn = conn.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut send, recv)) = liar_conn.accept_bi().await {
            let mut bytes = announced.to_le_bytes().to_vec();
            bytes.extend_from_slice(b"few");
            if send.write_all(&bytes).await.is_err() {
                break;
            }
            held.push((send, recv));
            let _ = opened_tx.send(held.len());
        }
        held.len()
    });

    let before_rss = own_memory("VmRSS")?;
    let before_size = own_memory("VmSize")?;
    let before_heap = heap_bytes();
    // As many requests as the liar lets the controller open streams to it, each brokered
    // on a stream of its own (from two technician connections: each also holds its
    // hello stream).
    let first = Arc::new(TechClient::connect(&scene.profile).await?);
    let second = Arc::new(TechClient::connect(&scene.profile).await?);
    let streams = usize::try_from(MAX_CONCURRENT_STREAMS)?;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..streams {
        let client = if n % 2 == 0 { &first } else { &second };
        let (client, agent) = (client.clone(), liar.id.clone());
        calls.spawn(async move {
            client
                .request(&TechRequest::Diagnostics { agent, ticket })
                .await
        });
    }
    if tokio::time::timeout(EVENTUALLY, opened.wait_for(|n| *n == streams))
        .await
        .is_err()
    {
        bail!(
            "the controller brought {} of {streams} requests to the liar",
            *opened.borrow()
        );
    }
    // The few bytes have been written; give the controller a moment to read them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_rss = own_memory("VmRSS")?;
    let after_size = own_memory("VmSize")?;
    let after_heap = heap_bytes();
    let grew = after_rss.saturating_sub(before_rss);
    eprintln!(
        "{streams} streams announcing {} MiB each: RSS {} -> {} MiB (+{} KiB), VmSize {} -> {} MiB, \
         heap {} -> {} MiB",
        u64::from(announced) / MIB,
        before_rss / MIB,
        after_rss / MIB,
        grew / 1024,
        before_size / MIB,
        after_size / MIB,
        before_heap / MIB,
        after_heap / MIB,
    );
    let promised = u64::try_from(streams)? * u64::from(announced);
    assert!(
        grew < 64 * MIB,
        "RSS grew by {} MiB while {} MiB were announced and a few bytes sent",
        grew / MIB,
        promised / MIB
    );
    // A buffer allocated zeroed and barely written is mostly not resident, so a promise
    // kept shows in the heap, not in RSS: the heap grew by the whole promise (1 GiB here)
    // when buffers were allocated at the announced length.
    let held = after_heap.saturating_sub(before_heap);
    assert!(
        held < 64 * MIB,
        "the heap grew by {} MiB while {} MiB were announced",
        held / MIB,
        promised / MIB
    );

    // The good agent is served meanwhile.
    scene.good_still_served().await?;

    // The liar is cut off: every waiting request ends with an error, none hangs.
    conn.close(0u32.into(), b"gone");
    let held = holder.await?;
    assert_eq!(held, streams);
    let mut answered = 0;
    while let Some(done) = tokio::time::timeout(EVENTUALLY, calls.join_next()).await? {
        match done? {
            Ok(reply) => bail!("a lying agent's reply was taken: {reply:?}"),
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains(&liar.id), "{msg}");
                answered += 1;
            }
        }
    }
    assert_eq!(answered, streams);
    eventually("the controller to see the liar gone", || async {
        let online = scene.tech.request(&TechRequest::ListAgents).await.ok()?;
        let deskside_proto::msg::tech::TechReply::Agents(agents) = online else {
            return None;
        };
        agents
            .iter()
            .any(|a| a.id == liar.id && !a.online)
            .then_some(())
    })
    .await?;
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}
