//! Keeping a collected file: the agent's signed manifest is checked against the bytes
//! that arrived (signature, hash, size, path), the blob is committed, and the file and
//! its manifest are recorded on the ticket under the manifest's idempotency key.

use std::time::Duration;

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::agent::{SignedItem, valid_key};
use deskside_proto::msg::files::FileManifest;
use deskside_proto::msg::tech::{ErrorCode, EvidenceRef};
use sha2::{Digest, Sha256};

use super::NotStored;
use crate::evidence::BlobWriter;
use crate::service::common::{Principal, Shared};
use crate::store::{NewEvent, NewEvidence};

/// Checks the manifest against what arrived, commits the blob and records both items.
/// The error says whether the agent should try again (`false`) or never (`true`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn store(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
    path: &str,
    received: u64,
    writer: Box<dyn BlobWriter>,
    item: SignedItem,
) -> Result<(FileManifest, EvidenceRef, EvidenceRef), (NotStored, bool)> {
    let reject = |reason: String| {
        (
            NotStored::new(ErrorCode::AgentFailed, "rejected", reason),
            true,
        )
    };
    let transient = |reason: String| (NotStored::new(ErrorCode::Internal, "failed", reason), false);
    if item.kind != EvidenceKind::FileManifest || !valid_key(&item.key) {
        return Err(reject(format!(
            "agent {agent} sent a {:?} item with key {:?} where a file manifest was due",
            item.kind.as_str(),
            item.key
        )));
    }
    let id = agent.to_owned();
    let cert_pem = shared
        .store
        .run(move |db| db.agent_cert(&id))
        .await
        .map_err(|e| transient(e.to_string()))?;
    let cert = deskside_transport::pki::cert_from_pem(&cert_pem).map_err(|e| {
        transient(format!(
            "agent {agent}'s certificate on record is unusable: {e}"
        ))
    })?;
    let manifest_digest: [u8; 32] = Sha256::digest(&item.bytes).into();
    deskside_transport::pki::verify_evidence(&cert, &manifest_digest, &item.signature).map_err(
        |e| {
            reject(format!(
                "the manifest agent {agent} sent for {path} is rejected: {e}"
            ))
        },
    )?;
    let manifest: FileManifest = serde_json::from_slice(&item.bytes).map_err(|e| {
        reject(format!(
            "agent {agent} sent an unreadable file manifest: {e}"
        ))
    })?;
    let got_sha = writer.sha256();
    let mismatch = if manifest.path != path {
        Some(format!("names {:?}, not {path}", manifest.path))
    } else if manifest.ticket != ticket || manifest.technician != tech.name {
        Some("was made for another request".to_owned())
    } else if manifest.size_bytes != received {
        Some(format!(
            "says {} bytes but {received} arrived",
            manifest.size_bytes
        ))
    } else if manifest.sha256 != got_sha {
        Some(format!(
            "says sha256:{} but the bytes received hash to sha256:{got_sha}",
            manifest.sha256
        ))
    } else {
        None
    };
    if let Some(what) = mismatch {
        return Err(reject(format!(
            "file {path} from {agent} rejected: its signed manifest {what}"
        )));
    }
    let file_digest: [u8; 32] = hex::decode(&got_sha)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| transient("the received file's hash is not 32 bytes".into()))?;
    let file_signature = hex::decode(&manifest.file_signature)
        .map_err(|_| reject(format!("agent {agent}'s signature over {path} is not hex")))?;
    deskside_transport::pki::verify_evidence(&cert, &file_digest, &file_signature)
        .map_err(|e| reject(format!("file {path} from {agent} rejected: {e}")))?;

    // Everything checks: make the file and its manifest durable, then record them.
    let blobs = shared.blobs.clone();
    let manifest_bytes = item.bytes.clone();
    let (file_sha, manifest_sha) = tokio::task::spawn_blocking(move || {
        let file_sha = writer.commit()?;
        let manifest_sha = blobs.put(&manifest_bytes)?;
        Ok::<_, crate::evidence::BlobError>((file_sha, manifest_sha))
    })
    .await
    .map_err(|e| transient(e.to_string()))?
    .map_err(|e| transient(e.to_string()))?;
    let file_new = NewEvidence {
        sha256: file_sha.clone(),
        kind: EvidenceKind::File,
        size_bytes: received,
        agent_id: Some(agent.to_owned()),
        signature: Some(manifest.file_signature.clone()),
        redaction: Vec::new(),
    };
    let manifest_new = NewEvidence {
        sha256: manifest_sha.clone(),
        kind: EvidenceKind::FileManifest,
        size_bytes: item.bytes.len() as u64,
        agent_id: Some(agent.to_owned()),
        signature: Some(hex::encode(&item.signature)),
        redaction: Vec::new(),
    };
    let file_detail = format!(
        "file {path} from {agent} ({}), collected by {}: {received} bytes, mode {:o}, modified {}",
        manifest.hostname,
        tech.name,
        manifest.mode & 0o7777,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(manifest.modified_at_secs).unwrap_or(0))
        )
    );
    let manifest_detail =
        format!("signed manifest of {path} from {agent}: sha256:{file_sha}, {received} bytes");
    let (actor, key, agent_id, fs, ms) = (
        tech.name.clone(),
        item.key.clone(),
        agent.to_owned(),
        file_sha.clone(),
        manifest_sha.clone(),
    );
    let (fnew, mnew) = (file_new.clone(), manifest_new.clone());
    let recorded = shared
        .store
        .run(move |db| {
            db.add_delivered_evidence_set(
                &agent_id,
                &key,
                ticket,
                &[
                    (
                        fnew,
                        NewEvent {
                            actor: &actor,
                            kind: "file",
                            detail: &file_detail,
                            evidence_sha256: Some(&fs),
                        },
                    ),
                    (
                        mnew,
                        NewEvent {
                            actor: &actor,
                            kind: "file_manifest",
                            detail: &manifest_detail,
                            evidence_sha256: Some(&ms),
                        },
                    ),
                ],
            )
        })
        .await
        .map_err(|e| transient(e.to_string()))?;
    let at_secs =
        crate::service::intake::recorded(shared, agent, &item.key, recorded, received).await;
    let as_ref = |n: NewEvidence| EvidenceRef {
        location: shared.blobs.location(&n.sha256),
        sha256: n.sha256,
        kind: n.kind.to_string(),
        size_bytes: n.size_bytes,
        agent: n.agent_id,
        created_at_secs: at_secs,
        signature: n.signature,
        redaction: n.redaction,
    };
    Ok((manifest, as_ref(file_new), as_ref(manifest_new)))
}
