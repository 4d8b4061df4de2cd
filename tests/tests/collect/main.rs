//! `deskside collect` end to end: a file read on the agent's machine, streamed raw over
//! mutual-TLS QUIC, checked and stored byte-exact as signed evidence, exported in a
//! bundle that verifies; and every way an honest agent refuses, and a lying one is
//! refused, with the agent (or the controller) serving the next request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_agent::control::ControlRequest;
use deskside_controller::bundle;
use deskside_controller::client::{ClientError, TechClient};
use deskside_controller::server::Options;
use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, CheckIn, NoticeAck, SignedItem};
use deskside_proto::msg::files::FileManifest;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{CollectReport, ErrorCode, ErrorReply, TechReply, TechRequest};
use deskside_tests::hostile::{EVENTUALLY, Scene, new_ticket};
use deskside_tests::{Cluster, bin, control, pending_request, run, wait_online};
use deskside_transport::{endpoint, framed, pki};
use sha2::{Digest, Sha256};

mod lying;
mod refusals;
mod secrets;

const ALLOW_FILES: &str = "[scopes]\ndiagnostics = \"allow\"\nfiles = \"allow\"\n";
const PROMPT_FILES: &str = "[scopes]\ndiagnostics = \"prompt\"\nfiles = \"prompt\"\n";
const DENY_FILES: &str = "[scopes]\ndiagnostics = \"allow\"\nfiles = \"deny\"\n";

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

async fn collect(tech: &TechClient, agent: &str, ticket: u64, path: &str) -> Result<CollectReport> {
    let req = TechRequest::Collect {
        agent: agent.into(),
        ticket,
        path: path.into(),
    };
    match tech.stream(&req, |_| {}).await? {
        TechReply::Collected(r) => Ok(*r),
        other => bail!("unexpected {other:?}"),
    }
}

async fn collect_refused(
    tech: &TechClient,
    agent: &str,
    ticket: u64,
    path: &str,
) -> Result<ErrorReply> {
    match collect(tech, agent, ticket, path).await {
        Ok(r) => bail!("{path} was collected: {r:?}"),
        Err(e) => match e.downcast::<ClientError>() {
            Ok(ClientError::Refused(r)) => Ok(r.0),
            Ok(other) => bail!("not a refusal: {:#}", anyhow::Error::from(other)),
            Err(e) => bail!("not a refusal: {e:#}"),
        },
    }
}

async fn evidence_kinds(tech: &TechClient, ticket: u64) -> Result<Vec<String>> {
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    Ok(v.evidence.iter().map(|e| e.kind.clone()).collect())
}

/// Files under the evidence directory that are not blobs: partial writes left behind.
fn leftovers(evidence: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !evidence.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(evidence)? {
        let path = entry?.path();
        if path.is_dir() {
            continue;
        }
        out.push(path);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collected_file_is_stored_byte_exact_and_its_bundle_verifies() -> Result<()> {
    let cluster = Cluster::start().await?;
    let agent = cluster.agent("pc-files", ALLOW_FILES).await?;
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;

    // Not a multiple of the transfer's chunk size, so the last piece is short.
    let data = noise(3 * 1024 * 1024 + 12_345, 1);
    let source = cluster.dir.path().join("crash.log");
    std::fs::write(&source, &data)?;
    let path = source.to_string_lossy().into_owned();
    let report = collect(&tech, &agent.id, ticket, &path).await?;
    let sha = hex::encode(Sha256::digest(&data));
    assert_eq!(report.evidence.sha256, sha);
    assert_eq!(report.manifest.sha256, sha);
    assert_eq!(report.manifest.size_bytes, data.len() as u64);
    assert_eq!(report.manifest.path, path);
    assert_eq!(report.evidence.kind, "file");
    assert_eq!(report.manifest_evidence.kind, "file_manifest");
    assert!(report.evidence.signature.is_some());
    assert_eq!(std::fs::read(&report.evidence.location)?, data);
    let manifest: FileManifest =
        serde_json::from_slice(&std::fs::read(&report.manifest_evidence.location)?)?;
    assert_eq!(manifest, report.manifest);
    assert!(leftovers(&cluster.data.evidence())?.is_empty());

    // On the ticket, with both timeline entries.
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    assert!(
        v.evidence
            .iter()
            .any(|e| e.sha256 == sha && e.kind == "file")
    );
    assert!(
        v.timeline
            .iter()
            .any(|e| e.kind == "file" && e.evidence_sha256.as_deref() == Some(sha.as_str())),
        "{:?}",
        v.timeline
    );

    // Through the real CLI too, as JSON.
    let small = cluster.dir.path().join("hosts");
    std::fs::write(&small, b"127.0.0.1 localhost\n")?;
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["collect", &agent.id])
        .arg(&small)
        .args(["--ticket", &ticket.to_string(), "--json"]))?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(
        json.pointer("/evidence/sha256").and_then(|v| v.as_str()),
        Some(hex::encode(Sha256::digest(b"127.0.0.1 localhost\n")).as_str())
    );
    assert_eq!(
        json.pointer("/manifest/size_bytes")
            .and_then(|v| v.as_u64()),
        Some(20)
    );

    // Exported: the bundle holds the file byte-exact and verifies offline.
    let out = cluster.dir.path().join("bundle");
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["ticket", "export", &ticket.to_string(), "--out"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(std::fs::read(out.join(bundle::ITEMS_DIR).join(&sha))?, data);
    let verified = bundle::verify(&out)?;
    assert_eq!((verified.items, verified.signed), (4, 4));
    let (code, stdout, _) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}");

    // A changed byte in the bundled file is caught.
    let item = out.join(bundle::ITEMS_DIR).join(&sha);
    let mut altered = data.clone();
    if let Some(b) = altered.get_mut(1_000_000) {
        *b ^= 1;
    }
    std::fs::write(&item, &altered)?;
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 8, "{stdout}\n{stderr}");
    assert!(stderr.contains("altered"), "{stderr}");

    // The agent's own audit log says what left the machine.
    let log = std::fs::read_to_string(agent.state.audit_log())?;
    assert!(log.contains(&path) && log.contains(&sha), "{log}");
    agent.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_goes_to_the_configured_shared_directory_not_the_data_dir() -> Result<()> {
    let shared = tempfile::tempdir()?;
    let blobs = shared.path().join("evidence");
    let cluster = Cluster::start_with(Options {
        evidence_dir: Some(blobs.clone()),
        ..Options::default()
    })
    .await?;
    let agent = cluster.agent("pc-shared", ALLOW_FILES).await?;
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;

    let data = noise(2 * 1024 * 1024 + 7, 2);
    let source = cluster.dir.path().join("app.log");
    std::fs::write(&source, &data)?;
    let report = collect(&tech, &agent.id, ticket, &source.to_string_lossy()).await?;
    let sha = report.evidence.sha256.clone();
    assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    let stored = blobs.join(sha.get(..2).unwrap_or_default()).join(&sha);
    assert_eq!(Path::new(&report.evidence.location), stored);
    assert_eq!(std::fs::read(&stored)?, data);
    assert!(
        !cluster
            .data
            .evidence()
            .join(sha.get(..2).unwrap_or_default())
            .exists(),
        "nothing of it in the data directory's own evidence/"
    );
    assert!(leftovers(&blobs)?.is_empty());
    agent.stop().await;
    Ok(())
}
