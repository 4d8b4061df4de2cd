//! The local control socket: how the machine's user approves, denies and ends sessions,
//! starts a support code, and switches the agent off. Only root, the agent's own user and
//! users logged in on this machine may connect (checked with the peer's credentials).

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_proto::codec::Message;
use deskside_proto::msg::session::Scope;
use deskside_transport::framed;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::serve::AgentCtx;
use crate::session::{SessionStatus, SupportCode};
use crate::state::StateDir;

/// A local client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    Status,
    Approve {
        id: u32,
    },
    Deny {
        id: u32,
    },
    End,
    Disable,
    Enable,
    Support {
        scopes: Vec<Scope>,
        duration_secs: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Status(SessionStatus),
    Done { message: String },
    Code(SupportCode),
    Error { message: String },
}

impl Message for ControlRequest {
    const KIND: &'static str = "control request";
    const MAX_BYTES: u32 = 4096;
}

impl Message for ControlReply {
    const KIND: &'static str = "control reply";
    const MAX_BYTES: u32 = 256 * 1024;
}

/// Starts listening on the state directory's control socket.
pub fn serve(ctx: AgentCtx, cancel: CancellationToken) -> Result<()> {
    let path = ctx.state.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    // Anyone may reach the socket file; each connection's credentials are checked.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                s = listener.accept() => match s {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let ctx = ctx.clone();
            tokio::spawn(async move { client(ctx, stream).await });
        }
        let _ = std::fs::remove_file(ctx.state.control_socket());
    });
    Ok(())
}

fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// uids of the users logged in now, from utmp and /etc/passwd.
fn logged_in_uids() -> HashSet<u32> {
    let names: HashSet<String> = crate::diag::logged_in_user_names().into_iter().collect();
    let passwd =
        crate::state::read_bounded(std::path::Path::new("/etc/passwd")).unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            names.contains(name).then_some(uid)
        })
        .collect()
}

fn allowed(uid: u32) -> bool {
    uid == 0 || Some(uid) == own_uid() || logged_in_uids().contains(&uid)
}

async fn client(ctx: AgentCtx, mut stream: UnixStream) {
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    if !allowed(uid) {
        let reply = ControlReply::Error {
            message: format!(
                "permission denied: uid {uid} is neither root nor a user logged in on this machine"
            ),
        };
        let _ = framed::send_io(&mut stream, &reply).await;
        return;
    }
    loop {
        let req =
            match tokio::time::timeout(IDLE, framed::recv_io::<ControlRequest, _>(&mut stream))
                .await
            {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) | Err(_) => return,
                Ok(Err(e)) => {
                    let _ = framed::send_io(
                        &mut stream,
                        &ControlReply::Error {
                            message: e.to_string(),
                        },
                    )
                    .await;
                    return;
                }
            };
        debug!(?req, uid, "control request");
        let reply = handle(&ctx, req);
        if framed::send_io(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

fn handle(ctx: &AgentCtx, req: ControlRequest) -> ControlReply {
    let s = &ctx.sessions;
    let done = |m: &str| ControlReply::Done {
        message: m.to_owned(),
    };
    let err = |m: String| ControlReply::Error { message: m };
    match req {
        ControlRequest::Status => ControlReply::Status(s.status()),
        ControlRequest::Approve { id } => s.answer(id, true).map_or_else(err, |()| done("approved")),
        ControlRequest::Deny { id } => s.answer(id, false).map_or_else(err, |()| done("denied")),
        ControlRequest::End => match s.end("user") {
            Some(g) => done(&format!("session {} with {} ended; anything it was running was stopped", g.id, g.technician)),
            None => done("no session was active"),
        },
        ControlRequest::Disable => s.disable().map_or_else(|e| err(e.to_string()), |()| done("Deskside is switched off on this machine: every request is refused until `deskside-agent enable`")),
        ControlRequest::Enable => s.enable().map_or_else(|e| err(e.to_string()), |()| done("Deskside is switched on again")),
        ControlRequest::Support { scopes, duration_secs } => s.start_support(scopes, duration_secs).map_or_else(err, ControlReply::Code),
    }
}

/// A connection to the running agent service's control socket.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
}

impl ControlClient {
    pub async fn connect(state: &StateDir) -> Result<ControlClient> {
        let path = state.control_socket();
        let stream = UnixStream::connect(&path).await.with_context(|| {
            format!(
                "cannot reach the agent service at {} — is `deskside-agent run` running?",
                path.display()
            )
        })?;
        Ok(ControlClient { stream })
    }

    pub async fn call(&mut self, req: &ControlRequest) -> Result<ControlReply> {
        framed::send_io(&mut self.stream, req).await?;
        match framed::recv_io::<ControlReply, _>(&mut self.stream).await? {
            Some(ControlReply::Error { message }) => bail!("{message}"),
            Some(reply) => Ok(reply),
            None => bail!("the agent service closed the control connection"),
        }
    }
}
