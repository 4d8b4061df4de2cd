//! The local control socket: how the machine's user approves, denies and ends sessions,
//! starts a support code, checks the computer and switches the agent off; the desktop
//! helper watches it for changes. The socket is 0666 in a 0755
//! directory outside the 0700 state directory; who may use it is decided from the peer's
//! credentials on every request (`crate::local_user`: root, the agent's own user, and
//! users with a local session on this machine).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deskside_proto::codec::Message;
use deskside_proto::msg::agent::Requester;
use deskside_proto::msg::session::Scope;
use deskside_transport::{TransportError, framed};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::local_user::{Caller, LocalSessions};
use crate::serve::AgentCtx;
use crate::session::{SessionStatus, SupportCode, Watched};

mod client;
mod selfserve;

pub use client::ControlClient;

/// Why the control socket could not be served, or a call to it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("creating the control socket's directory {}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening up {} to local users", .dir.display())]
    OpenDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checking the control socket's directory {}", .dir.display())]
    CheckDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to serve the control socket in {}: it is owned by uid {uid} with mode {mode:o}, so another user could replace the socket; make it owned by the agent's user and not writable by group or others (chmod 0755), or choose another path (--socket, control_socket in agent.toml)",
        .dir.display()
    )]
    UnsafeDir { dir: PathBuf, uid: u32, mode: u32 },
    #[error("binding the control socket {}", .path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the control socket {} to local users", .path.display())]
    OpenSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the agent service at {} — is `deskside-agent run` running?",
        .path.display()
    )]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The service answered with an error; its words.
    #[error("{0}")]
    Refused(String),
    #[error("the agent service closed the control connection")]
    Closed,
}

/// A local client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(600);
/// Open control connections at once. A desktop has a helper and a command or two; the cap
/// keeps a local user from holding the agent's file descriptors with idle connections.
const MAX_CLIENTS: usize = 64;
/// Longest a watch waits for a change. Well under the idle limit, so a helper that only
/// watches keeps its connection; short enough that it notices a dead agent soon.
pub const MAX_WATCH_SECS: u32 = 30;
/// The socket's directory when the agent creates it: everyone may reach the socket in it.
const SOCKET_DIR_MODE: u32 = 0o755;
/// The socket itself: anyone may connect; each request's caller is checked.
const SOCKET_MODE: u32 = 0o666;

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
    /// Answers when the state differs from generation `seen` (0: at once), or after
    /// `wait_secs` (capped at [`MAX_WATCH_SECS`]) with the state as it is: the desktop
    /// helper's long poll.
    Watch {
        seen: u64,
        wait_secs: u32,
    },
    /// "Check my computer": a local snapshot's findings with what the user can do about
    /// each, for the user only (nothing is sent).
    Check,
    /// The self-service scripts this machine holds (L0; see [`crate::selfhelp`]).
    SelfFixes,
    /// Run a self-service script; answered when it ends.
    SelfFix {
        name: String,
        params: Vec<(String, String)>,
    },
    /// Ask the help desk for help with a sentence.
    AskForHelp {
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlReply {
    Status(SessionStatus),
    Done { message: String },
    Code(SupportCode),
    Error { message: String },
    Watched(Watched),
    Checked(Box<crate::selfhelp::CheckReport>),
    SelfFixes(Vec<crate::selfhelp::SelfFix>),
    Fixed(Box<crate::selfhelp::FixOutcome>),
    Asked(crate::selfhelp::Asked),
}

impl Message for ControlRequest {
    const KIND: &'static str = "control request";
    const MAX_BYTES: u32 = 4096;
}

impl Message for ControlReply {
    const KIND: &'static str = "control reply";
    const MAX_BYTES: u32 = 256 * 1024;
}

/// Starts listening on the control socket
/// ([`crate::state::StateDir::control_socket`]); `access` says who may use it.
pub fn serve(
    ctx: AgentCtx,
    access: LocalSessions,
    cancel: CancellationToken,
) -> Result<(), ControlError> {
    let path = ctx.state.control_socket();
    let listener = bind(&path)?;
    info!(socket = %path.display(), "control socket ready");
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
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
            let Ok(permit) = Arc::clone(&clients).try_acquire_owned() else {
                warn!("{MAX_CLIENTS} control connections are open; dropping a new one");
                continue;
            };
            let ctx = ctx.clone();
            let access = access.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                // A stopping service closes its clients too: a desktop helper's watch
                // must not go on watching a service that is gone.
                tokio::select! {
                    () = client(ctx, access, stream) => {}
                    () = cancel.cancelled() => {}
                }
                drop(permit);
            });
        }
        let _ = std::fs::remove_file(ctx.state.control_socket());
    });
    Ok(())
}

/// Binds the socket at `path`, creating its directory (0755) if missing. The directory
/// must be the agent's own and writable by nobody else: whoever could write it could put
/// their own socket in the agent's place.
fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(SOCKET_DIR_MODE)
            .create(dir)
            .map_err(|source| ControlError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        // The umask may have narrowed it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SOCKET_DIR_MODE)).map_err(
            |source| ControlError::OpenDir {
                dir: dir.to_owned(),
                source,
            },
        )?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| ControlError::CheckDir {
        dir: dir.to_owned(),
        source,
    })?;
    let me = crate::os::effective_uid();
    if Some(meta.uid()) != me || meta.mode() & 0o022 != 0 {
        return Err(ControlError::UnsafeDir {
            dir: dir.to_owned(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
        });
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| ControlError::OpenSocket {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(listener)
}

/// Why a control request is refused before it is read: the caller is not one who may
/// use the socket, or cannot be identified.
#[derive(Debug, thiserror::Error)]
enum Unauthorised {
    #[error("the agent cannot tell who is calling (peer credentials: {0}); refused")]
    NoPeerCredentials(std::io::Error),
    #[error("{0}")]
    NotLocal(#[from] crate::local_user::NotLocal),
    #[error("the agent could not check who is calling: {0}; try again")]
    CheckFailed(tokio::task::JoinError),
}

/// Who sent this request: the peer's uid, read from the socket (SO_PEERCRED) and judged
/// against the local sessions as they are now.
async fn authorise(stream: &UnixStream, access: &LocalSessions) -> Result<Caller, Unauthorised> {
    let uid = crate::os::peer_uid(stream).map_err(Unauthorised::NoPeerCredentials)?;
    let access = access.clone();
    match tokio::task::spawn_blocking(move || access.authorise(uid)).await {
        Ok(verdict) => Ok(verdict?),
        Err(e) => Err(Unauthorised::CheckFailed(e)),
    }
}

async fn client(ctx: AgentCtx, access: LocalSessions, mut stream: UnixStream) {
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
        // Every request, not once per connection: a user who has left the machine loses
        // the socket at their next request.
        let caller = match authorise(&stream, &access).await {
            Ok(c) => c,
            Err(refused) => {
                let message = refused.to_string();
                warn!(%message, "control request refused");
                let _ = framed::send_io(&mut stream, &ControlReply::Error { message }).await;
                return;
            }
        };
        debug!(?req, %caller, "control request");
        let reply = match req {
            ControlRequest::Watch { seen, wait_secs } => {
                let wait = Duration::from_secs(u64::from(wait_secs.min(MAX_WATCH_SECS)));
                ControlReply::Watched(ctx.sessions.watch(seen, wait).await)
            }
            req => match selfserve::serve(&ctx, &caller, &req).await {
                Some(reply) => reply,
                None => handle(&ctx, &caller, req),
            },
        };
        if framed::send_io(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

fn handle(ctx: &AgentCtx, caller: &Caller, req: ControlRequest) -> ControlReply {
    let s = &ctx.sessions;
    let done = |m: &str| ControlReply::Done {
        message: m.to_owned(),
    };
    let err = |m: String| ControlReply::Error { message: m };
    match req {
        ControlRequest::Status => ControlReply::Status(s.status()),
        ControlRequest::Approve { id } => match s.answer(id, true) {
            Ok(who) => done(&audited(ctx, &who, "answered", format!("request {id} approved by {caller}"), "approved")),
            Err(e) => err(e.to_string()),
        },
        ControlRequest::Deny { id } => match s.answer(id, false) {
            Ok(who) => done(&audited(ctx, &who, "answered", format!("request {id} denied by {caller}"), "denied")),
            Err(e) => err(e.to_string()),
        },
        ControlRequest::End => match s.end("user") {
            Some(g) => {
                let who = Requester { technician: g.technician.clone(), tier: g.tier, ticket: g.ticket, request_key: g.request_key.clone() };
                let said = format!("session {} with {} ended; anything it was running was stopped", g.id, g.technician);
                done(&audited(ctx, &who, "ended", format!("session {} ended by {caller}", g.id), &said))
            }
            None => done("no session was active"),
        },
        ControlRequest::Disable => s.disable().map_or_else(|e| err(e.to_string()), |()| done("Deskside is switched off on this machine: every request is refused until `deskside-agent enable`")),
        ControlRequest::Enable => s.enable().map_or_else(|e| err(e.to_string()), |()| done("Deskside is switched on again")),
        ControlRequest::Support { scopes, duration_secs } => s.start_support(scopes, duration_secs).map_or_else(|e| err(e.to_string()), ControlReply::Code),
        // Served in `client` (the watch waits) or by `selfserve::serve` before this.
        ControlRequest::Watch { .. } => ControlReply::Status(s.status()),
        ControlRequest::SelfFixes | ControlRequest::SelfFix { .. } | ControlRequest::Check | ControlRequest::AskForHelp { .. } => err("self-service requests are served elsewhere".into()),
    }
}

/// Writes who answered to the audit log (scope `session`); returns `said` for the user,
/// with a warning if the log could not be written (the answer itself stands).
fn audited(ctx: &AgentCtx, who: &Requester, outcome: &str, detail: String, said: &str) -> String {
    match ctx.audit(who, "session", outcome, detail) {
        Ok(()) => said.to_owned(),
        Err(e) => format!("{said} (warning: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o7777)
    }

    #[tokio::test]
    async fn bind_makes_a_missing_dir_0755_and_the_socket_0666() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let socket = dir
            .path()
            .join("run")
            .join("deskside-agent")
            .join("control.sock");
        let listener = bind(&socket)?;
        assert_eq!(mode(socket.parent().context("parent")?), 0o755);
        assert_eq!(mode(&socket), 0o666);
        // A second start replaces the stale socket.
        drop(listener);
        let _again = bind(&socket)?;
        Ok(())
    }

    #[tokio::test]
    async fn bind_refuses_a_directory_others_can_write() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let open = dir.path().join("open");
        std::fs::create_dir(&open)?;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
        let err = bind(&open.join("control.sock"))
            .err()
            .map(|e| crate::error_chain(&e));
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("refusing to serve the control socket")
                    && e.contains("mode 777")),
            "{err:?}"
        );
        assert!(!open.join("control.sock").exists());
        Ok(())
    }
}
