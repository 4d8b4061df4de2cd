//! Three controller nodes sharing one installation (keys, a PostgreSQL store, an
//! evidence directory) and routing through one real `nats-server`, with real agents: a technician on one
//! node works on an agent connected to another — diagnostics, a catalog script, a
//! collected file — and a relay that breaks mid-way ends the request with an error on
//! the ticket, never with a truncated item.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use deskside_agent::control::{ControlReply, ControlRequest};
use deskside_controller::client::{ClientError, TechClient};
use deskside_controller::store::{GENESIS_HASH, entry_hash};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{CollectReport, ErrorReply, TechReply, TechRequest, TicketView};
use deskside_tests::hostile::new_ticket;
use deskside_tests::routing::{NAMES, Nats, start_nodes};
use deskside_tests::{Cluster, control, wait_online};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

mod failover;

const POLICY: &str =
    "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\nfiles = \"allow\"\n";
/// No request may take longer than this to end, one way or the other.
const REQUEST_BOUND: Duration = Duration::from_secs(60);

/// Bytes that do not compress or repeat, so a swapped or shifted chunk cannot hide.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

async fn ticket(tech: &TechClient, number: u64) -> Result<TicketView> {
    match tech.request(&TechRequest::ShowTicket { number }).await? {
        TechReply::Ticket(v) => Ok(*v),
        other => bail!("unexpected {other:?}"),
    }
}

/// The ticket's timeline is an unbroken hash chain.
fn assert_chain(view: &TicketView) {
    let mut prev = GENESIS_HASH.to_owned();
    for e in &view.timeline {
        assert_eq!(
            e.prev_hash, prev,
            "entry {} does not follow its predecessor",
            e.seq
        );
        assert_eq!(
            entry_hash(view.ticket.number, e),
            e.hash,
            "entry {} altered",
            e.seq
        );
        prev = e.hash.clone();
    }
}

async fn collect(tech: &TechClient, agent: &str, ticket: u64, path: &str) -> Result<CollectReport> {
    let req = TechRequest::Collect {
        agent: agent.into(),
        ticket,
        path: path.into(),
    };
    let reply = tokio::time::timeout(REQUEST_BOUND, tech.stream(&req, |_| {}))
        .await
        .context("a routed collect did not end")??;
    match reply {
        TechReply::Collected(r) => Ok(*r),
        other => bail!("unexpected {other:?}"),
    }
}

fn refusal(e: anyhow::Error) -> Result<ErrorReply> {
    match e.downcast::<ClientError>() {
        Ok(ClientError::Refused(r)) => Ok(r.0),
        Ok(other) => bail!("not a refusal: {:#}", anyhow::Error::from(other)),
        Err(e) => bail!("not a refusal: {e:#}"),
    }
}

/// Watches the relays' inboxes and, at the first frame of file bytes, does `cut`.
async fn at_first_file_bytes(
    nats: &Nats,
    cut: impl AsyncFnOnce(&async_nats::Client, String),
) -> Result<()> {
    let client = async_nats::connect(nats.url.as_str()).await?;
    let mut inboxes = client.subscribe("_INBOX.>").await?;
    client.flush().await?;
    let subject = loop {
        let msg = tokio::time::timeout(REQUEST_BOUND, inboxes.next())
            .await
            .context("no file bytes crossed NATS")?
            .context("the subscription ended")?;
        // A data frame up (kind 1) from a file transfer, not a small reply.
        if msg.payload.len() > 64 * 1024 && msg.payload.first() == Some(&1) {
            break msg.subject.to_string();
        }
    };
    cut(&client, subject).await;
    Ok(())
}

/// The NATS subject on which `node` of `first`'s installation takes stream-open requests:
/// under the installation's name, the first 12 hex digits of its CA's SHA-256, as the
/// server names it.
fn open_subject(first: &Cluster, node: &str) -> Result<String> {
    let ca = std::fs::read_to_string(first.data.root().join("ca.crt"))?;
    let der = deskside_transport::pki::cert_from_pem(&ca)?;
    let installation: String = hex::encode(deskside_transport::pki::fingerprint(&der))
        .chars()
        .take(12)
        .collect();
    Ok(format!(
        "deskside.{installation}.node.{}.open",
        hex::encode(node)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_on_one_node_works_on_an_agent_connected_to_another() -> Result<()> {
    let nats = Nats::shared()?;
    let nodes = start_nodes(&NAMES, &nats).await?;
    let Ok([mut a, mut b, mut c]) = <[Cluster; 3]>::try_from(nodes) else {
        bail!("three nodes");
    };
    let agent = c.agent("pc-c", POLICY).await?;
    let (_profile, tech) = a.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let located = a
        .store()?
        .blocking(|db| db.agent_location(&agent.id))?
        .map(|l| l.node);
    assert_eq!(located.as_deref(), Some("ctl-c"));
    let number = new_ticket(&tech, &agent.id).await?;

    // Diagnostics, through node A to the agent on node C and back.
    let TechReply::Diagnostics(diag) = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: number,
        })
        .await?
    else {
        bail!("diagnostics");
    };
    assert!(!diag.snapshot.host.hostname.is_empty());

    // A catalog script, its output streamed back across the nodes.
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
    a.add_scripts(&[catalog.join("disk-usage.toml")])?;
    let mut stdout = Vec::new();
    let run = TechRequest::RunScript {
        agent: agent.id.clone(),
        ticket: number,
        script: "disk-usage".into(),
        params: [("path".to_owned(), "/".to_owned())].into(),
    };
    let reply = tech
        .stream(&run, |r| {
            if let TechReply::RunOutput { data, .. } = r {
                stdout.extend_from_slice(data);
            }
        })
        .await?;
    let TechReply::RunFinished(report) = reply else {
        bail!("run: {reply:?}");
    };
    assert_eq!(report.result.exit_code, Some(0), "{report:?}");
    assert!(!stdout.is_empty());

    // Both on the ticket, the timeline's chain whole.
    let view = ticket(&tech, number).await?;
    let kinds: Vec<&str> = view.evidence.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"snapshot") && kinds.contains(&"script_run"),
        "{kinds:?}"
    );
    assert_chain(&view);

    // A file of several MiB, byte-exact across the relay.
    let data = noise(6 * 1024 * 1024 + 4321, 7);
    let source = c.dir.path().join("big.log");
    std::fs::write(&source, &data)?;
    let path = source.to_string_lossy().into_owned();
    let report = collect(&tech, &agent.id, number, &path).await?;
    assert_eq!(report.evidence.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(std::fs::read(&report.evidence.location)?, data);

    // A frame NATS did not deliver in order (here: one out of sequence, as a dropped
    // one looks): the collect ends with an error on the ticket, no item.
    let big = noise(48 * 1024 * 1024, 8);
    let source = c.dir.path().join("bigger.log");
    std::fs::write(&source, &big)?;
    let big_path = source.to_string_lossy().into_owned();
    let big_sha = hex::encode(Sha256::digest(&big));
    let cut = at_first_file_bytes(&nats, async |client, subject| {
        let mut forged = vec![1u8];
        forged.extend_from_slice(&(1u64 << 40).to_le_bytes());
        forged.extend_from_slice(b"not the next bytes");
        let _ = client.publish(subject, Bytes::from(forged)).await;
        let _ = client.flush().await;
    });
    let (cut, got) = tokio::join!(cut, collect(&tech, &agent.id, number, &big_path));
    cut?;
    let refused = refusal(got.err().context("a collect with a gap was stored")?)?;
    assert!(
        refused.message.contains("relay through node ctl-c"),
        "{refused:?}"
    );
    let view = ticket(&tech, number).await?;
    assert!(!view.evidence.iter().any(|e| e.sha256 == big_sha));
    assert!(
        view.timeline
            .iter()
            .any(|e| e.kind == "rejected" && e.detail.contains("relay through node ctl-c")),
        "{:?}",
        view.timeline
    );
    assert_chain(&view);

    // The agent serves the next request as before.
    let again = collect(&tech, &agent.id, number, &path).await?;
    assert_eq!(again.evidence.sha256, report.evidence.sha256);

    // A support code shown by an agent on node B, read out to the technician on node A,
    // who joins with it: the session and what it grants reach node B's agent.
    let desk = b
        .agent("pc-b", "[scopes]\ndiagnostics = \"prompt\"\n")
        .await?;
    wait_online(&tech, &desk.id).await?;
    let desk_ticket = new_ticket(&tech, &desk.id).await?;
    let mut user = control(&desk).await?;
    let offered = user
        .call(&ControlRequest::Support {
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
        })
        .await?;
    let ControlReply::Code(code) = offered else {
        bail!("no support code: {offered:?}");
    };
    // The code reaches the store as a notice from node B; join once it is there.
    let started = std::time::Instant::now();
    let joined = loop {
        let join = TechRequest::JoinSession {
            code: code.code.clone(),
            ticket: desk_ticket,
        };
        match tech.request(&join).await {
            Ok(reply) => break reply,
            Err(e) if started.elapsed() > REQUEST_BOUND => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(matches!(joined, TechReply::Session(_)), "{joined:?}");
    let TechReply::Diagnostics(_) = tech
        .request(&TechRequest::Diagnostics {
            agent: desk.id.clone(),
            ticket: desk_ticket,
        })
        .await?
    else {
        bail!("diagnostics in the joined session");
    };
    desk.stop().await;

    // Whatever else can publish on NATS gets a reason for bytes that are not an open
    // request, and node C goes on relaying.
    let rogue = async_nats::connect(nats.url.as_str()).await?;
    for garbage in [&b""[..], b"\xff\xff\xff", &[0u8; 5000]] {
        let answer = rogue
            .request(open_subject(&a, "ctl-c")?, Bytes::copy_from_slice(garbage))
            .await?;
        let text = String::from_utf8_lossy(&answer.payload);
        assert!(text.contains("unreadable request"), "{text}");
    }
    let TechReply::Diagnostics(_) = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: number,
        })
        .await?
    else {
        bail!("diagnostics after garbage");
    };

    // Node C going away in the middle of a transfer: an error outcome, not a hang and
    // not a truncated item; and the agent, now connected nowhere, is offline.
    let c_running = c.running.take().context("node c runs")?;
    let cut = at_first_file_bytes(&nats, async |_, _| {
        c_running.shutdown();
    });
    let (cut, got) = tokio::join!(cut, collect(&tech, &agent.id, number, &big_path));
    cut?;
    c_running.stopped().await;
    let failed = refusal(
        got.err()
            .context("a collect cut by its node's end was stored")?,
    )?;
    assert!(failed.message.contains("ctl-c"), "{failed:?}");
    let view = ticket(&tech, number).await?;
    assert!(!view.evidence.iter().any(|e| e.sha256 == big_sha));
    assert_chain(&view);

    // A node that died without forgetting its agents (kill -9) is named, not waited for.
    let id = agent.id.clone();
    a.store()?
        .blocking(move |db| db.set_agent_location(&id, "ctl-c", 1))?;
    let offline = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: number,
        })
        .await;
    let offline = refusal(
        offline
            .err()
            .context("diagnostics from a dead node")?
            .into(),
    )?;
    assert!(
        offline.message.contains("node ctl-c, which is not running"),
        "{offline:?}"
    );
    agent.stop().await;
    for node in [&mut a, &mut b, &mut c] {
        node.stop().await;
    }
    Ok(())
}
