//! Chain of custody against a lying agent and a tampered bundle: late evidence is stored
//! only under a request key the controller issued to that agent for that ticket, and
//! every item in a bundle — session records included — carries a signature `verify`
//! checks.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use deskside_controller::bundle::{self, Bundle, Signer};
use deskside_proto::msg::agent::{
    AgentNotice, AgentReply, AgentRequest, Delivery, NoticeAck, Requester, SignedItem,
};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Grant, GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::hostile::{EVENTUALLY, PuppetAgent, Scene, new_ticket};
use deskside_tests::{Cluster, bin, run, wait_online};
use deskside_transport::{framed, pki};
use sha2::{Digest, Sha256};

/// The technician asks `puppet` for diagnostics on `ticket`; the puppet reads the request
/// (and its request key) and answers that it failed, as an agent whose link dropped
/// before it could reply would leave the technician.
async fn ask_puppet(scene: &Scene, puppet: &PuppetAgent, ticket: u64) -> Result<Requester> {
    let diagnostics = TechRequest::Diagnostics {
        agent: puppet.id.clone(),
        ticket,
    };
    let asked = scene.tech.request(&diagnostics);
    let answered = async {
        let (mut send, mut recv) = puppet.conn.accept_bi().await?;
        let req: AgentRequest = framed::recv_within(&mut recv, EVENTUALLY).await?;
        framed::send(
            &mut send,
            &AgentReply::Failed {
                reason: "the link dropped".into(),
            },
        )
        .await?;
        send.finish()?;
        Ok::<_, anyhow::Error>(req.requester())
    };
    let (asked, requester) = tokio::join!(asked, answered);
    // The technician hears the failure; the request key is what the puppet keeps.
    assert!(asked.is_err(), "{asked:?}");
    requester
}

/// A snapshot signed with the puppet's own enrolled key: genuine, except for where the
/// puppet says it belongs.
fn signed_snapshot(puppet: &PuppetAgent, key: &str, hostname: &str) -> Result<SignedItem> {
    let mut snapshot = Snapshot::default();
    snapshot.host.hostname = hostname.into();
    let bytes = serde_json::to_vec(&snapshot)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(SignedItem {
        key: key.into(),
        kind: deskside_proto::evidence::EvidenceKind::Snapshot,
        signature: pki::sign_evidence(&puppet.key_pem, &digest)?,
        bytes,
        redaction: Vec::new(),
    })
}

async fn deliver(puppet: &PuppetAgent, key: &str, notice: AgentNotice) -> Result<NoticeAck> {
    let delivery = Delivery {
        key: key.into(),
        notice,
    };
    Ok(framed::request(&puppet.conn, &delivery, EVENTUALLY).await?)
}

async fn evidence_on(scene: &Scene, ticket: u64) -> Result<(usize, Vec<String>)> {
    let TechReply::Ticket(v) = scene
        .tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show ticket {ticket}");
    };
    Ok((
        v.evidence.len(),
        v.timeline.into_iter().map(|e| e.detail).collect(),
    ))
}

fn rejected(ack: NoticeAck) -> Result<String> {
    match ack {
        NoticeAck::Rejected { reason } => Ok(reason),
        other => bail!("expected a final refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_delivering_evidence_to_another_ticket_is_refused() -> Result<()> {
    let scene = Scene::start().await?;
    let puppet = scene.puppet_agent("mallory").await?;
    let asked = new_ticket(&scene.tech, &puppet.id).await?;
    // The good agent's ticket: nobody ever asked mallory anything about it.
    let other = scene.ticket;
    let before = evidence_on(&scene, other).await?;
    let requester = ask_puppet(&scene, &puppet, asked).await?;
    assert_eq!(requester.ticket, asked);

    // The real key, moved to another ticket.
    let item = signed_snapshot(&puppet, "a0000000000000000000000000000001", "mallory")?;
    let moved = Requester {
        ticket: other,
        ..requester.clone()
    };
    let reason = rejected(
        deliver(
            &puppet,
            &item.key,
            AgentNotice::Evidence {
                requester: moved.clone(),
                item: Box::new(item.clone()),
            },
        )
        .await?,
    )?;
    assert!(
        reason.contains(&format!(
            "was not issued to agent {} for ticket {other}",
            puppet.id
        )),
        "{reason}"
    );
    // A key the controller never issued, and the real key under another technician.
    for forged in [
        Requester {
            request_key: "0".repeat(48),
            ..moved.clone()
        },
        Requester {
            technician: "bob".into(),
            ..requester.clone()
        },
        Requester {
            request_key: String::new(),
            ..requester.clone()
        },
    ] {
        let item = signed_snapshot(&puppet, "a0000000000000000000000000000002", "mallory")?;
        let reason = rejected(
            deliver(
                &puppet,
                "a0000000000000000000000000000002",
                AgentNotice::Evidence {
                    requester: forged.clone(),
                    item: Box::new(item),
                },
            )
            .await?,
        )?;
        assert!(reason.contains("request key"), "{forged:?}: {reason}");
    }
    // Nor may it end, on that ticket, a session it was never granted there.
    let grant = Grant {
        id: "s-forged".into(),
        technician: requester.technician.clone(),
        tier: Tier::L1,
        ticket: other,
        scopes: vec![Scope::Diagnostics],
        expires_at_secs: deskside_controller::clock::now_secs() + 60,
        origin: GrantOrigin::Policy,
        request_key: requester.request_key.clone(),
    };
    let reason = rejected(
        deliver(
            &puppet,
            "a0000000000000000000000000000003",
            AgentNotice::SessionEnded {
                grant,
                by: "user".into(),
            },
        )
        .await?,
    )?;
    assert!(reason.contains("session s-forged"), "{reason}");
    // Under a good key, an item of a kind only the controller makes.
    let mut record = signed_snapshot(&puppet, "a0000000000000000000000000000004", "mallory")?;
    record.kind = deskside_proto::evidence::EvidenceKind::Session;
    let reason = rejected(
        deliver(
            &puppet,
            "a0000000000000000000000000000004",
            AgentNotice::Evidence {
                requester: requester.clone(),
                item: Box::new(record),
            },
        )
        .await?,
    )?;
    assert!(reason.contains("made by the controller"), "{reason}");
    // Nothing landed on the other ticket, not even a word about the attempts.
    assert_eq!(evidence_on(&scene, other).await?, before);

    // The same item, delivered for the ticket it was asked for, is stored there.
    let ack = deliver(
        &puppet,
        &item.key.clone(),
        AgentNotice::Evidence {
            requester,
            item: Box::new(item),
        },
    )
    .await?;
    assert_eq!(ack, NoticeAck::Recorded);
    let (count, timeline) = evidence_on(&scene, asked).await?;
    assert_eq!(count, 1);
    assert!(
        timeline
            .iter()
            .any(|d| d.contains("delivered from the agent's spool")),
        "{timeline:?}"
    );
    scene.good_still_served().await?;
    scene.stop().await;
    Ok(())
}

fn read_bundle(dir: &Path) -> Result<Bundle> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join(bundle::EVIDENCE_JSON),
    )?)?)
}

fn write_bundle(dir: &Path, b: &Bundle) -> Result<()> {
    std::fs::write(
        dir.join(bundle::EVIDENCE_JSON),
        serde_json::to_vec_pretty(b)?,
    )?;
    Ok(())
}

fn copy_bundle(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.join(bundle::ITEMS_DIR))?;
    for sub in [Path::new(""), Path::new(bundle::ITEMS_DIR)] {
        for entry in std::fs::read_dir(from.join(sub))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(sub).join(entry.file_name()))?;
            }
        }
    }
    Ok(())
}

fn verify_err(dir: &Path) -> String {
    match bundle::verify(dir) {
        Ok(v) => format!("unexpectedly verified: {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn export(cluster: &Cluster, ticket: u64, out: &Path) -> Result<()> {
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["ticket", "export", &ticket.to_string(), "--out"])
        .arg(out))?;
    if code != 0 {
        bail!("export exited {code}: {stdout}\n{stderr}");
    }
    Ok(())
}

/// Rewrites the session record in a copy of `from` as a forger with the whole bundle
/// would: new bytes, the item renamed to their hash, the timeline re-pointed and its
/// chain recomputed. Only a signature can tell.
fn forge_session_record(from: &Path, to: &Path) -> Result<String> {
    copy_bundle(from, to)?;
    let mut b = read_bundle(to)?;
    let item = b
        .items
        .iter_mut()
        .find(|i| i.kind == "session")
        .context("a session record in the bundle")?;
    let old = item.sha256.clone();
    let path = to.join(bundle::ITEMS_DIR).join(&old);
    let text = std::fs::read_to_string(&path)?;
    let forged = text.replace("\"alice\"", "\"mallory\"");
    assert_ne!(forged, text, "the record names its technician");
    let new = hex::encode(Sha256::digest(forged.as_bytes()));
    std::fs::remove_file(&path)?;
    std::fs::write(to.join(bundle::ITEMS_DIR).join(&new), &forged)?;
    item.sha256 = new.clone();
    item.size_bytes = forged.len() as u64;
    let number = b.ticket.number;
    let mut prev = deskside_controller::store::GENESIS_HASH.to_owned();
    for e in &mut b.timeline {
        if e.evidence_sha256.as_deref() == Some(old.as_str()) {
            e.evidence_sha256 = Some(new.clone());
        }
        e.prev_hash = prev;
        e.hash = deskside_controller::store::entry_hash(number, e);
        prev = e.hash.clone();
    }
    write_bundle(to, &b)?;
    Ok(new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_session_record_fails_verify_naming_it() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster
        .agent("laptop", deskside_tests::ALLOW_DIAGNOSTICS)
        .await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = new_ticket(&tech, &agent.id).await?;
    let TechReply::Session(report) = tech
        .request(&TechRequest::RequestSession {
            agent: agent.id.clone(),
            ticket: t,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 30,
        })
        .await?
    else {
        bail!("session request");
    };
    assert!(
        matches!(report.outcome, SessionOutcome::Approved(_)),
        "{report:?}"
    );
    let TechReply::Diagnostics(_) = tech
        .request(&TechRequest::Diagnostics {
            agent: agent.id.clone(),
            ticket: t,
        })
        .await?
    else {
        bail!("diagnostics");
    };

    let out = cluster.dir.path().join("bundle");
    export(&cluster, t, &out)?;
    let verified = bundle::verify(&out)?;
    assert_eq!(
        (verified.items, verified.signed, verified.by_controller),
        (2, 2, 1),
        "{verified:?}"
    );
    let b = read_bundle(&out)?;
    let record = b
        .items
        .iter()
        .find(|i| i.kind == "session")
        .context("session record")?;
    assert_eq!(record.signer, Signer::Controller);
    assert!(record.signature.is_some());

    let scratch = tempfile::tempdir()?;
    // Rewritten with every hash made consistent: the controller's signature fails.
    let forged = forge_session_record(&out, &scratch.path().join("forged"))?;
    let msg = verify_err(&scratch.path().join("forged"));
    assert!(
        msg.contains(&format!("item {forged} (session)"))
            && msg.contains("does not verify with the controller's certificate"),
        "{msg}"
    );

    // Its signature removed, or claimed for the agent, or the controller's certificate
    // swapped for the agent's: each named.
    type Edit = fn(&mut Bundle);
    let cases: [(&str, Edit, &str); 3] = [
        (
            "unsigned",
            |b| {
                b.items
                    .iter_mut()
                    .filter(|i| i.kind == "session")
                    .for_each(|i| i.signature = None);
            },
            "(session): unsigned",
        ),
        (
            "agent-signer",
            |b| {
                b.items
                    .iter_mut()
                    .filter(|i| i.kind == "session")
                    .for_each(|i| i.signer = Signer::Agent);
            },
            "(session): claims to be signed by the Agent signer",
        ),
        (
            "agent-cert",
            |b| {
                if let Some(a) = b.agents.first() {
                    b.controller_cert_pem = a.cert_pem.clone();
                }
            },
            "is not a record-signing certificate",
        ),
    ];
    for (name, edit, expected) in cases {
        let d = scratch.path().join(name);
        copy_bundle(&out, &d)?;
        let mut b = read_bundle(&d)?;
        edit(&mut b);
        write_bundle(&d, &b)?;
        let msg = verify_err(&d);
        assert!(msg.contains(expected), "{name}: {msg}");
    }

    // A session record stored before records were signed is signed when exported.
    cluster.sql("UPDATE evidence SET signature = NULL WHERE kind = 'session'")?;
    let again = cluster.dir.path().join("bundle-again");
    export(&cluster, t, &again)?;
    let verified = bundle::verify(&again)?;
    assert_eq!((verified.items, verified.signed), (2, 2), "{verified:?}");

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
