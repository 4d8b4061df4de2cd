//! `deskside collect`: a file from the agent's machine, stored as evidence. The agent
//! names a size, sends that many raw bytes on the request's stream, then its signed
//! manifest. The controller never trusts the size: it reads at most what was declared
//! (and never more than its own limit), hashes and writes to a temporary blob as bytes
//! arrive, and keeps the file only when the manifest's signature verifies, its hash is
//! that of the bytes received and the file's own signature verifies too. Only then is
//! anything recorded, and only after that does the agent get its receipt.

use std::time::{Duration, Instant};

use bytes::Bytes;
use deskside_proto::close;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck};
use deskside_proto::msg::files::{FileRefusal, plain_absolute};
use deskside_proto::msg::tech::{CollectReport, ErrorCode, TechReply};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::common::{Failure, Principal, ReplySink, Shared, admit, record, target};
use super::link::AgentStream;
use crate::evidence::BlobWriter;

mod keep;

/// How long the agent may take to check the request and open the file, and to send its
/// manifest once the bytes are in.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence in the middle of the bytes before the transfer is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes gathered from the stream before they go to the blob writer as one piece.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;
/// Pieces queued for the blob writer: bounds memory per transfer to a few MiB.
const WRITE_QUEUE: usize = 4;
/// How often the technician hears how far the transfer is.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Why a collect did not end in stored evidence: what the technician sees and what the
/// ticket's timeline says.
#[derive(Debug)]
pub(super) struct NotStored {
    failure: Failure,
    /// Timeline entry kind (`refused`, `failed`, `rejected`).
    kind: &'static str,
    detail: String,
}

impl NotStored {
    pub(super) fn new(code: ErrorCode, kind: &'static str, message: String) -> NotStored {
        NotStored {
            failure: Failure::new(code, message.clone()),
            kind,
            detail: message,
        }
    }
}

/// Collects the regular file at the absolute `path` on the agent's machine and stores it
/// as evidence on the ticket, telling `out` how far the transfer is. Every outcome after
/// the agent was asked lands on the ticket's timeline.
pub(crate) async fn collect<S: ReplySink>(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
    path: &str,
    out: &mut S,
) -> Result<CollectReport, Failure> {
    admit(shared, tech, Some(ticket)).await?;
    match collect_inner(shared, tech, agent, ticket, path, out).await {
        Ok(report) => Ok(report),
        // Refused before the agent was asked (no such agent or ticket): nothing to record.
        Err(f) if f.detail.is_empty() => Err(f.failure),
        Err(f) => {
            info!(outcome = f.kind, detail = %f.detail, "file not stored");
            record(shared, ticket, &tech.name, f.kind, f.detail).await;
            Err(f.failure)
        }
    }
}

async fn collect_inner<S: ReplySink>(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
    path: &str,
    out: &mut S,
) -> Result<CollectReport, NotStored> {
    let started = Instant::now();
    let (agent, _) = target(shared, agent, ticket)
        .await
        .map_err(|failure| NotStored {
            failure,
            kind: "failed",
            detail: String::new(),
        })?;
    if !plain_absolute(path) {
        let refusal = FileRefusal::RelativePath {
            path: path.to_owned(),
        };
        return Err(NotStored::new(
            ErrorCode::FileUnavailable,
            "refused",
            format!("file from {}: {refusal}", agent.id),
        ));
    }
    let id = agent.id.clone();
    let mut stream = shared.agents.open(&id).await.map_err(|e| {
        let detail = e.to_string();
        NotStored {
            failure: Failure::from(e),
            kind: "failed",
            detail,
        }
    })?;
    let stream = stream.as_mut();
    let limit = shared.max_collect_bytes;
    let req = AgentRequest::CollectFile {
        requester: tech.requester(shared, &agent.id, ticket),
        path: path.to_owned(),
        max_bytes: limit,
    };
    let failed = |code, message: String| NotStored::new(code, "failed", message);
    stream
        .send(&req)
        .await
        .map_err(|e| failed(ErrorCode::AgentFailed, format!("agent {id}: {e}")))?;
    info!(agent = %id, ticket, path, "file requested");
    let first = stream
        .reply_within(ANSWER_TIMEOUT)
        .await
        .map_err(|e| failed(ErrorCode::AgentFailed, format!("agent {id}: {e}")))?;
    let declared = match first {
        AgentReply::FileStart { size_bytes } => size_bytes,
        AgentReply::Refused(r) => {
            return Err(NotStored {
                failure: Failure::refused_by(&id, &r),
                kind: "refused",
                detail: format!("file {path} refused by {id}: {}", r.reason),
            });
        }
        AgentReply::FileRefused(f) => {
            // A rule of the machine's (its policy or what it never sends) is a refusal by
            // the agent, like a scope its policy denies; the rest say the file is unfit.
            let code = match f {
                FileRefusal::Forbidden { .. } => ErrorCode::AgentRefused,
                _ => ErrorCode::FileUnavailable,
            };
            return Err(NotStored::new(
                code,
                "refused",
                format!("file from {id}: {f}"),
            ));
        }
        AgentReply::Failed { reason } => {
            return Err(failed(
                ErrorCode::AgentFailed,
                format!("file {path} on {id}: {reason}"),
            ));
        }
        other => {
            return Err(abandon(
                stream,
                format!(
                    "agent {id} answered a file request with {}",
                    reply_name(&other)
                ),
            )
            .await);
        }
    };
    if declared > limit {
        return Err(abandon(
            stream,
            format!(
                "agent {id} announced {declared} bytes for {path}, over the {limit}-byte limit for one collected file"
            ),
        )
        .await);
    }
    let writer = receive(shared, &id, path, declared, stream, out).await;
    let writer = match writer {
        Ok(w) => w,
        Err(reason) => return Err(abandon(stream, reason).await),
    };
    // Exactly the declared bytes are in; anything more the agent sent is read as the
    // next frame and refused there.
    let sent = stream.reply_within(ANSWER_TIMEOUT).await;
    let item = match sent {
        Ok(AgentReply::FileSent(item)) => *item,
        Ok(other) => {
            let reason = format!(
                "agent {id} followed the {declared} bytes of {path} with {} instead of its manifest",
                reply_name(&other)
            );
            return Err(abandon(stream, reason).await);
        }
        Err(e) => {
            let reason = format!(
                "agent {id}: after the {declared} bytes it announced for {path}, no manifest: {e}"
            );
            return Err(abandon(stream, reason).await);
        }
    };
    let received_ms = started.elapsed().as_millis();
    let stored = keep::store(shared, tech, &id, ticket, path, declared, writer, item).await;
    match stored {
        Ok((manifest, evidence, manifest_evidence)) => {
            stream.acknowledge(&NoticeAck::Recorded).await;
            let elapsed = started.elapsed();
            let mib_s = declared as f64 / 1_048_576.0 / elapsed.as_secs_f64().max(1e-6);
            let total_ms = elapsed.as_millis();
            info!(sha256 = %evidence.sha256, bytes = declared, received_ms, total_ms, mib_s, "file stored");
            Ok(CollectReport {
                ticket,
                agent: id,
                manifest,
                evidence,
                manifest_evidence,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            })
        }
        Err((failure, permanent)) => {
            let ack = if permanent {
                NoticeAck::Rejected {
                    reason: failure.detail.clone(),
                }
            } else {
                NoticeAck::Retry {
                    reason: failure.detail.clone(),
                }
            };
            stream.acknowledge(&ack).await;
            Err(failure)
        }
    }
}

/// Gives up on a transfer the agent got wrong: it loses the stream (and is told why);
/// the technician is told too. Whatever was written aside is already gone.
async fn abandon(stream: &mut dyn AgentStream, reason: String) -> NotStored {
    warn!(%reason, "file transfer refused");
    stream.stop(close::TRANSFER_ABORTED);
    stream
        .acknowledge(&NoticeAck::Rejected {
            reason: reason.clone(),
        })
        .await;
    NotStored::new(ErrorCode::AgentFailed, "rejected", reason)
}

/// Reads exactly `declared` bytes into a new blob, off the reactor, telling the
/// technician how far it is. The blob is not committed yet.
async fn receive<S: ReplySink>(
    shared: &Shared,
    agent: &str,
    path: &str,
    declared: u64,
    from_agent: &mut dyn AgentStream,
    out: &mut S,
) -> Result<Box<dyn BlobWriter>, String> {
    let blobs = shared.blobs.clone();
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = blobs.begin().map_err(|e| e.to_string())?;
        while let Some(piece) = rx.blocking_recv() {
            for chunk in &piece {
                w.write(chunk).map_err(|e| e.to_string())?;
            }
        }
        Ok::<_, String>(w)
    });
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    let read = async {
        while received < declared {
            // The stream's own buffers, handed on as they are: the writer copies them
            // once, into its staging buffer.
            let mut piece = Vec::new();
            let mut gathered = 0;
            while gathered < WRITE_CHUNK_BYTES && received < declared {
                let left = usize::try_from(declared - received).unwrap_or(usize::MAX);
                let chunk = match tokio::time::timeout(STALL_TIMEOUT, from_agent.read_chunk(left))
                    .await
                {
                    Err(_) => {
                        return Err(format!(
                            "agent {agent} stopped sending {path} for {} s at {received} of {declared} bytes",
                            STALL_TIMEOUT.as_secs()
                        ));
                    }
                    Ok(Err(e)) => {
                        return Err(format!(
                            "agent {agent} broke off {path} at {received} of {declared} bytes: {e}"
                        ));
                    }
                    Ok(Ok(None)) => {
                        return Err(format!(
                            "agent {agent} ended {path} after {received} of the {declared} bytes it announced"
                        ));
                    }
                    Ok(Ok(Some(chunk))) => chunk,
                };
                gathered += chunk.len();
                received += chunk.len() as u64;
                piece.push(chunk);
            }
            if tx.send(piece).await.is_err() {
                // The writer stopped; its error says why.
                break;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let progress = TechReply::CollectProgress {
                    received_bytes: received,
                    total_bytes: declared,
                };
                out.send(&progress).await;
            }
        }
        Ok(())
    };
    let read: Result<(), String> = read.await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| format!("storing {path}: the writer stopped: {e}"))?
        .map_err(|e| format!("storing {path} from {agent}: {e}"));
    // A read failure wins: the writer's partial blob is dropped (and deleted) here.
    read?;
    let w = written?;
    if w.written() != declared {
        return Err(format!(
            "storing {path} from {agent}: {} of {declared} bytes written",
            w.written()
        ));
    }
    Ok(w)
}

fn reply_name(reply: &AgentReply) -> &'static str {
    match reply {
        AgentReply::Snapshot(_) => "a snapshot",
        AgentReply::Evidence(_) => "a run record",
        AgentReply::Session(_) => "a session outcome",
        AgentReply::Ended { .. } => "a session end",
        AgentReply::Run(_) => "script output",
        AgentReply::Refused(_) => "a refusal",
        AgentReply::Failed { .. } => "a failure",
        AgentReply::FileStart { .. } => "a second file header",
        AgentReply::FileSent(_) => "a manifest",
        AgentReply::FileRefused(_) => "a file refusal",
        AgentReply::SelfService { .. } => "a self-service cache answer",
    }
}
