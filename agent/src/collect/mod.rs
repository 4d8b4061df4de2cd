//! Collecting a file as evidence (the `files` scope): the same gate as diagnostics and
//! scripts (kill switch, the machine's policy, the user's grant), then the regular file
//! at an absolute path is read, hashed and streamed raw on the request's own stream, and
//! a signed manifest follows. Nothing of it goes through the spool: a transfer that
//! loses its link fails, and the technician asks again. Which file may be opened, and
//! how, is `open` (with `protect`, `secrets` and `nofollow`).
//!
//! This module is Linux-only and stays outside `crate::os` on purpose: its safety rests
//! on Linux semantics throughout (openat2 with `RESOLVE_NO_SYMLINKS`, device and inode
//! identities, the built-in list of Linux secret paths), so a port would rewrite it rather
//! than supply a few functions beneath it. Account homes come from `crate::os::accounts`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use bytes::Bytes;
use deskside_proto::close;
use deskside_proto::msg::agent::{AgentReply, NoticeAck, Requester};
use deskside_proto::msg::files::FileManifest;
use deskside_proto::msg::session::Scope;
use deskside_transport::framed;
use quinn::{RecvStream, SendStream};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::policy::Policy;
use crate::serve::{AgentCtx, failed, refused};

mod nofollow;
mod open;
mod protect;
mod secrets;

use open::{Opened, open_regular};
use protect::Protected;

/// One read from the file and one write to the stream. Large, so that a 256 MiB file is
/// a few hundred system calls and QUIC packets are filled back to back.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks read ahead of the network. Per transfer the reader holds at most
/// `CHUNK_BYTES * (READ_AHEAD + 2)`, plus up to [`SPARE_CHUNKS`] buffers waiting to be
/// reused, besides what QUIC keeps until the controller acknowledges it.
const READ_AHEAD: usize = 4;
/// How long the controller may take to make the file durable and say so.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

const SCOPE: &str = "files";

/// Chunk buffers kept for reuse once QUIC has sent them and the peer acknowledged them.
const SPARE_CHUNKS: usize = READ_AHEAD + 4;

/// A chunk buffer that goes back to its reader when the last `Bytes` of it is dropped.
/// A fresh allocation of this size is mapped and unmapped each time, with a page fault
/// for every 4 KiB of it: more CPU than hashing the chunk. Once the reader is gone the
/// buffer is simply freed.
struct Recycled {
    buf: Vec<u8>,
    home: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let _ = self.home.try_send(buf);
    }
}

/// Why a file stopped being read part-way; the transfer is aborted with this text.
#[derive(Debug, thiserror::Error)]
enum ReadFailed {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} shrank while it was being read ({got} of {size} bytes); collect it again")]
    Shrank { path: String, got: u64, size: u64 },
    #[error("the transfer was abandoned")]
    Abandoned,
}

/// Reads exactly `size` bytes in chunks, hashing as it goes, and hands each chunk to
/// the network side. Runs on a blocking thread. Returns the SHA-256 of what was sent.
fn read_chunks(
    mut file: File,
    size: u64,
    path: &str,
    out: &mpsc::Sender<Bytes>,
) -> Result<[u8; 32], ReadFailed> {
    let mut hasher = Sha256::new();
    let mut left = size;
    let (home, spare) = std::sync::mpsc::sync_channel(SPARE_CHUNKS);
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK_BYTES, |l| l.min(CHUNK_BYTES));
        // Read into spare capacity: no zeroing of a buffer the file overwrites anyway.
        let mut buf = spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(want));
        let got = (&mut file)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|source| ReadFailed::Io {
                path: path.to_owned(),
                source,
            })?;
        if got < want {
            return Err(ReadFailed::Shrank {
                path: path.to_owned(),
                got: size - left + got as u64,
                size,
            });
        }
        hasher.update(&buf);
        left -= want as u64;
        let chunk = Bytes::from_owner(Recycled {
            buf,
            home: home.clone(),
        });
        if out.blocking_send(chunk).is_err() {
            return Err(ReadFailed::Abandoned);
        }
    }
    Ok(hasher.finalize().into())
}

/// Serves one `CollectFile` request on its stream.
pub async fn serve(
    ctx: &AgentCtx,
    who: Requester,
    path: String,
    max_bytes: u64,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let outcome = transfer(ctx, &who, &path, max_bytes, &mut send).await;
    ctx.sessions.set_activity(None);
    let (sha, size) = match outcome {
        Ok(sent) => sent,
        Err(Stop::Reply(reply)) => {
            let _ = framed::send(&mut send, &reply).await;
            let _ = send.finish();
            return;
        }
        Err(Stop::Aborted(reason)) => {
            let _ = send.reset(close::TRANSFER_ABORTED.into());
            let _ = ctx.audit(&who, SCOPE, "failed", reason);
            return;
        }
    };
    let _ = send.finish();
    let (outcome, detail) = match framed::recv_within::<NoticeAck>(&mut recv, RECEIPT_TIMEOUT).await
    {
        Ok(NoticeAck::Recorded) => ("served", "stored by the controller".to_owned()),
        Ok(NoticeAck::Rejected { reason } | NoticeAck::Retry { reason }) => (
            "failed",
            format!("the controller did not store it: {reason}"),
        ),
        Ok(other) => ("failed", format!("unexpected receipt {other:?}")),
        Err(e) => ("failed", format!("no receipt from the controller: {e}")),
    };
    let _ = ctx.audit(
        &who,
        SCOPE,
        outcome,
        format!("file {path}: {size} bytes, sha256:{sha}; {detail}"),
    );
}

/// Why a transfer stopped early: before any byte (a reply says why) or part-way (the
/// stream is reset; the audit log says why).
enum Stop {
    Reply(AgentReply),
    Aborted(String),
}

async fn transfer(
    ctx: &AgentCtx,
    who: &Requester,
    path: &str,
    max_bytes: u64,
    send: &mut SendStream,
) -> Result<(String, u64), Stop> {
    let (cancel, grant) = ctx
        .sessions
        .authorize(who, Scope::Files)
        .map_err(|r| Stop::Reply(refused(ctx, who, SCOPE, r)))?;
    let p = path.to_owned();
    let state = ctx.state.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let policy = Policy::load(&state.policy())
            .map_err(|e| format!("the machine's policy cannot be read: {e:#}"))?;
        let protected = Protected::scan(state.root(), crate::config::loaded_from());
        debug!(protected = protected.len(), "protected files listed");
        Ok::<_, String>(open_regular(&p, max_bytes, &protected, &policy.files))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|e| Stop::Reply(failed(ctx, who, SCOPE, format!("opening {path}: {e}"))))?;
    let Opened { file, meta } = match opened {
        Ok(o) => o,
        Err(refusal) => {
            let _ = ctx.audit(who, SCOPE, "refused", refusal.to_string());
            return Err(Stop::Reply(AgentReply::FileRefused(refusal)));
        }
    };
    let size = meta.len();
    let session = grant.map_or_else(
        || "allowed unattended by the machine's policy".to_owned(),
        |g| format!("session {g}"),
    );
    ctx.audit(
        who,
        SCOPE,
        "started",
        format!("sending file {path} ({size} bytes, {session})"),
    )
    .map_err(|reason| Stop::Reply(AgentReply::Failed { reason }))?;
    ctx.sessions.set_activity(Some(format!(
        "{} is collecting the file {path}",
        who.technician
    )));
    framed::send(send, &AgentReply::FileStart { size_bytes: size })
        .await
        .map_err(|e| Stop::Aborted(format!("file {path}: {e}")))?;
    let digest = stream_file(file, size, path, send, &cancel).await?;
    let sha = hex::encode(digest);
    let file_signature = ctx
        .sign_digest(&digest, path)
        .map_err(|e| Stop::Aborted(format!("file {path}: {e}")))?;
    let manifest = FileManifest {
        path: path.to_owned(),
        size_bytes: size,
        sha256: sha.clone(),
        file_signature: hex::encode(file_signature),
        modified_at_secs: meta.mtime(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        hostname: crate::host_identity().0,
        agent: ctx.agent_id.clone(),
        technician: who.technician.clone(),
        ticket: who.ticket,
        collected_at_ms: crate::now_ms(),
    };
    let item = ctx
        .seal_unredacted(&manifest)
        .map_err(|e| Stop::Aborted(format!("file {path}: manifest: {e}")))?;
    framed::send(send, &AgentReply::FileSent(Box::new(item)))
        .await
        .map_err(|e| Stop::Aborted(format!("file {path}: {e}")))?;
    Ok((sha, size))
}

/// Reads on a blocking thread, writes on this task, with a few chunks in between.
async fn stream_file(
    file: File,
    size: u64,
    path: &str,
    send: &mut SendStream,
    cancel: &CancellationToken,
) -> Result<[u8; 32], Stop> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(READ_AHEAD);
    let p = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || read_chunks(file, size, &p, &tx));
    let mut written = 0u64;
    let sent = loop {
        let chunk = tokio::select! {
            c = rx.recv() => c,
            _ = cancel.cancelled() => break Err(format!("file {path}: the session ended after {written} of {size} bytes")),
        };
        let Some(chunk) = chunk else {
            break Ok(());
        };
        written += chunk.len() as u64;
        if let Err(e) = send.write_chunk(chunk).await {
            break Err(format!("file {path}: sending: {e}"));
        }
    };
    // Dropping the receiver makes a reader that is still going stop at its next chunk.
    drop(rx);
    let read = reader
        .await
        .map_err(|e| Stop::Aborted(format!("file {path}: the reader stopped: {e}")))?;
    sent.map_err(Stop::Aborted)?;
    let digest = read.map_err(|reason| {
        warn!(%reason, "file not sent");
        Stop::Aborted(reason.to_string())
    })?;
    debug!(path, size, "file sent");
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_the_size_and_hashes_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data)?;
        let (tx, mut rx) = mpsc::channel(64);
        let digest = read_chunks(File::open(&path)?, data.len() as u64, "f", &tx)?;
        drop(tx);
        let mut got = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));
        let (tx, _rx) = mpsc::channel(64);
        let short = read_chunks(File::open(&path)?, data.len() as u64 + 1, "f", &tx);
        assert!(
            matches!(&short, Err(ReadFailed::Shrank { got, size, .. }) if got + 1 == *size),
            "{short:?}"
        );
        Ok(())
    }
}
