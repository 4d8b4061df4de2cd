//! A lying agent (short, long, wrong hash, over the limit) loses the transfer, nothing of
//! it is kept, and the controller serves the next request.

use super::*;

/// What a lying agent does with a collect request.
#[derive(Debug, Clone, Copy)]
enum Lie {
    /// Announces 1000 bytes, sends 500 and ends the stream.
    Short,
    /// Announces 1000 bytes and sends 9000.
    Long,
    /// Honest bytes, a manifest with another file's hash.
    WrongHash,
    /// Honest bytes, a manifest that claims more of them.
    WrongSize,
    /// A manifest signed with a key that is not the agent's.
    ForgedManifest,
    /// Announces more than the controller's limit.
    OverLimit,
}

struct RawAgent {
    id: String,
    cert_pem: String,
    key_pem: String,
}

fn sign(key_pem: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Ok(pki::sign_evidence(key_pem, &digest)?)
}

/// Answers one collect request the way `lie` says.
async fn lie_once(agent: &RawAgent, conn: &quinn::Connection, lie: Lie) -> Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let req: AgentRequest = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let AgentRequest::CollectFile {
        requester,
        path,
        max_bytes,
    } = req
    else {
        bail!("expected a collect request, got {req:?}");
    };
    let honest = noise(1000, 7);
    let declared = match lie {
        Lie::OverLimit => max_bytes + 1,
        _ => 1000,
    };
    framed::send(
        &mut send,
        &AgentReply::FileStart {
            size_bytes: declared,
        },
    )
    .await?;
    let body: Vec<u8> = match lie {
        Lie::Short => noise(500, 7),
        Lie::Long => noise(9000, 7),
        Lie::OverLimit => noise(64 * 1024, 7),
        _ => honest.clone(),
    };
    // The controller may stop reading at any point; that is the point.
    let _ = send.write_all(&body).await;
    if matches!(lie, Lie::Short | Lie::Long | Lie::OverLimit) {
        let _ = send.finish();
        return Ok(());
    }
    let mut manifest = FileManifest {
        path,
        size_bytes: 1000,
        sha256: hex::encode(Sha256::digest(&honest)),
        file_signature: hex::encode(sign(&agent.key_pem, &honest)?),
        modified_at_secs: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        hostname: "liar".into(),
        agent: agent.id.clone(),
        technician: requester.technician,
        ticket: requester.ticket,
        collected_at_ms: 0,
    };
    match lie {
        Lie::WrongHash => manifest.sha256 = hex::encode(Sha256::digest(b"something else")),
        Lie::WrongSize => manifest.size_bytes = 2000,
        _ => {}
    }
    let bytes = serde_json::to_vec(&manifest)?;
    let key = match lie {
        Lie::ForgedManifest => rcgen::KeyPair::generate()?.serialize_pem(),
        _ => agent.key_pem.clone(),
    };
    let item = SignedItem {
        key: "liar-manifest-0001".into(),
        kind: EvidenceKind::FileManifest,
        signature: sign(&key, &bytes)?,
        bytes,
        redaction: vec![],
    };
    let _ = framed::send(&mut send, &AgentReply::FileSent(Box::new(item))).await;
    let _ = send.finish();
    let ack: NoticeAck = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let NoticeAck::Rejected { reason } = ack else {
        bail!("{lie:?}: the controller accepted a lie: {ack:?}");
    };
    assert!(!reason.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_agent_loses_the_transfer_and_nothing_of_it_is_kept() -> Result<()> {
    let scene = Scene::start_with(Options {
        max_collect_bytes: 32 * 1024,
        ..Options::default()
    })
    .await?;
    let state = deskside_agent::state::StateDir::new(scene.cluster.dir.path().join("raw-liar"));
    let token = scene.cluster.token(Duration::from_secs(60))?;
    let enrolled = deskside_agent::enroll::enroll(&state, &token).await?;
    let liar = RawAgent {
        id: enrolled.agent_id,
        cert_pem: std::fs::read_to_string(state.cert())?,
        key_pem: std::fs::read_to_string(state.key())?,
    };
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let conn = endpoint::connect(
        &ep,
        addr,
        scene.client_config(&liar.cert_pem, &liar.key_pem)?,
    )
    .await?;
    let (mut hello_send, _hello_recv) = endpoint::hello(&conn, "raw agent").await?;
    let checkin = CheckIn {
        hostname: "liar".into(),
        os: "test".into(),
        kernel: "test".into(),
        agent_version: "test".into(),
    };
    framed::send(&mut hello_send, &checkin).await?;
    wait_online(&scene.tech, &liar.id).await?;
    let ticket = new_ticket(&scene.tech, &liar.id).await?;

    let cases = [
        (Lie::Short, "after 500 of the 1000 bytes"),
        (Lie::Long, "no manifest"),
        (Lie::WrongHash, "hash to"),
        (Lie::WrongSize, "says 2000 bytes but 1000 arrived"),
        (Lie::ForgedManifest, "rejected"),
        (Lie::OverLimit, "over the 32768-byte limit"),
    ];
    for (lie, expect) in cases {
        let (refusal, lied) = tokio::join!(
            collect_refused(&scene.tech, &liar.id, ticket, "/var/log/syslog"),
            lie_once(&liar, &conn, lie)
        );
        lied.with_context(|| format!("{lie:?}"))?;
        let e = refusal?;
        assert_eq!(e.code, ErrorCode::AgentFailed, "{lie:?}: {e:?}");
        assert!(e.message.contains(expect), "{lie:?}: {}", e.message);
        assert!(
            evidence_kinds(&scene.tech, ticket).await?.is_empty(),
            "{lie:?}"
        );
        assert!(
            leftovers(&scene.cluster.data.evidence())?.is_empty(),
            "{lie:?}: partial blob left"
        );
        // The liar's connection survives; everyone else is served.
        assert!(conn.close_reason().is_none(), "{lie:?}");
        scene.good_still_served().await?;
    }
    let TechReply::Ticket(v) = scene
        .tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    assert!(v.timeline.iter().filter(|e| e.kind == "rejected").count() >= cases.len());
    // No blob holds the honest bytes the liar sent.
    let honest = hex::encode(Sha256::digest(noise(1000, 7)));
    let mut blobs = Vec::new();
    for dir in std::fs::read_dir(scene.cluster.data.evidence())? {
        let dir = dir?.path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir)? {
                blobs.push(f?.file_name().to_string_lossy().into_owned());
            }
        }
    }
    assert!(!blobs.contains(&honest), "{blobs:?}");
    conn.close(0u32.into(), b"done");
    scene.stop().await;
    Ok(())
}
