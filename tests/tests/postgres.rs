//! The controller on PostgreSQL (`[store] url`), end to end: a real controller whose store
//! is a database on the test process's throwaway cluster, a real agent enrolled through
//! a token redeemed there, a technician, diagnostics, a note, escalation with a bundle
//! whose hash-chained timeline verifies, revocation by the admin command, the backup
//! command refusing a store it cannot copy, and two nodes writing the one database.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use deskside_controller::bundle;
use deskside_controller::client::TechClient;
use deskside_controller::store::{GENESIS_HASH, StoreAt, entry_hash};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::nodes::{node_options, technician_at};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, wait_online};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_diagnose_note_escalate_and_verify_on_postgres() -> Result<()> {
    let mut cluster = Cluster::start_postgres(Default::default()).await?;
    assert!(matches!(cluster.data.store_at(), StoreAt::Postgres(_)));
    let agent = cluster.agent("laptop", ALLOW_DIAGNOSTICS).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;

    let TechReply::Ticket(v) = tech
        .request(&TechRequest::NewTicket {
            title: "printer prints nothing".into(),
            agent: Some(agent.id.clone()),
            requester: "pat@example.org".into(),
            priority: "high".into(),
        })
        .await?
    else {
        bail!("no ticket");
    };
    let t = v.ticket.number;
    let TechReply::Diagnostics(d) = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: t,
        })
        .await?
    else {
        bail!("no diagnostics");
    };
    assert!(d.evidence.signature.is_some(), "signed on the machine");
    tech.request(&TechRequest::Note {
        number: t,
        text: "spooler restarted, still nothing".into(),
    })
    .await?;

    let out = cluster.dir.path().join("bundle");
    let escalate = TechRequest::Escalate {
        number: t,
        to: Tier::L2,
        note: "needs the print server team".into(),
    };
    deskside_controller::cli::export::receive_bundle(&tech, &escalate, Some(&out)).await?;
    let verified = bundle::verify(&out)?;
    assert_eq!((verified.items, verified.signed), (1, 1));

    // The controller's own copy: escalated, unowned, its timeline an unbroken chain.
    let TechReply::Ticket(v) = tech.request(&TechRequest::ShowTicket { number: t }).await? else {
        bail!("show");
    };
    assert_eq!(
        (
            v.ticket.status.as_str(),
            v.ticket.tier,
            v.ticket.owner.clone()
        ),
        ("escalated", Tier::L2, None)
    );
    let kinds: Vec<&str> = v.timeline.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["created", "snapshot", "note", "escalated"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let mut prev = GENESIS_HASH.to_owned();
    for e in &v.timeline {
        assert_eq!(e.prev_hash, prev, "entry {}", e.seq);
        assert_eq!(entry_hash(t, e), e.hash, "entry {}", e.seq);
        prev = e.hash.clone();
    }

    // All of it is in PostgreSQL: a second handle on the database reads it, and the data
    // directory holds no SQLite file.
    let store = cluster.store()?;
    let stored = store.blocking(move |db| db.timeline(t))?;
    assert_eq!(stored, v.timeline);
    assert!(!cluster.data.database().exists(), "a SQLite file was made");

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_backup_refusal_on_postgres() -> Result<()> {
    let mut cluster = Cluster::start_postgres(Default::default()).await?;
    let agent = cluster.agent("desk", ALLOW_DIAGNOSTICS).await?;
    let (_p, tech) = cluster.technician("bob", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;

    // `deskside agent revoke` writes PostgreSQL; the serving controller cuts the agent off.
    deskside_controller::cli::admin::revoke(&cluster.data, Some(&agent.id), None)?;
    let start = Instant::now();
    loop {
        let TechReply::Agents(list) = tech.request(&TechRequest::ListAgents).await? else {
            bail!("agents");
        };
        if list
            .iter()
            .any(|a| a.id == agent.id && a.revoked && !a.online)
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the revoked agent is still online: {list:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `deskside backup` copies SQLite only, and says what to use instead.
    let out = cluster.dir.path().join("backup.tar");
    let err = match deskside_controller::backup::backup(&cluster.data, &out) {
        Ok(s) => bail!("backed up a PostgreSQL store: {s}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!out.exists());

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

/// Opens `n` tickets through `tech`; their numbers.
async fn open_tickets(tech: &TechClient, n: u64, title: &str) -> Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for i in 0..n {
        let TechReply::Ticket(v) = tech
            .request(&TechRequest::NewTicket {
                title: format!("{title} {i}"),
                agent: None,
                requester: String::new(),
                priority: "normal".into(),
            })
            .await?
        else {
            bail!("no ticket");
        };
        numbers.push(v.ticket.number);
    }
    Ok(numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_write_one_postgres_database_at_once() -> Result<()> {
    const EACH: u64 = 20;
    let heartbeat = Duration::from_secs(1);
    let mut a = Cluster::start_postgres(node_options("ctl-a", heartbeat)).await?;
    let mut b = a
        .start_node("ctl-b", node_options("ctl-b", heartbeat))
        .await?;
    assert_eq!(a.data.store_at(), b.data.store_at(), "one database");
    let (profile, tech_a) = a.technician("hotline", Tier::L1).await?;
    let tech_b = technician_at(&profile, &b.addr).await?;

    // Both nodes open tickets at the same time: every number is taken once, none skipped.
    let (on_a, on_b) = tokio::join!(
        open_tickets(&tech_a, EACH, "from a"),
        open_tickets(&tech_b, EACH, "from b")
    );
    let mut all = on_a?;
    all.extend(on_b?);
    all.sort_unstable();
    assert_eq!(all, (1..=2 * EACH).collect::<Vec<_>>());

    // Each node lists the other's tickets, each with its one timeline entry.
    for tech in [&tech_a, &tech_b] {
        let TechReply::Tickets(list) = tech.request(&TechRequest::ListTickets).await? else {
            bail!("tickets");
        };
        assert_eq!(list.len(), usize::try_from(2 * EACH)?);
    }
    let TechReply::Ticket(v) = tech_b
        .request(&TechRequest::ShowTicket { number: 1 })
        .await?
    else {
        bail!("show");
    };
    assert_eq!(v.timeline.len(), 1);

    b.stop().await;
    a.stop().await;
    Ok(())
}
