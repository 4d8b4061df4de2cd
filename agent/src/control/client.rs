//! The client side of the control socket: what the agent's own commands and the desktop
//! helper use to reach the running service.

use std::path::Path;

use deskside_transport::framed;
use tokio::net::UnixStream;

use super::{ControlError, ControlReply, ControlRequest};
use crate::session::Watched;
use crate::state::StateDir;

/// A connection to the running agent service's control socket.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
}

impl ControlClient {
    pub async fn connect(state: &StateDir) -> Result<ControlClient, ControlError> {
        ControlClient::connect_to(&state.control_socket()).await
    }

    /// Connects to the socket at `path` (a desktop helper knows the path, not the state
    /// directory, which is not its to read).
    pub async fn connect_to(path: &Path) -> Result<ControlClient, ControlError> {
        match UnixStream::connect(path).await {
            Ok(stream) => Ok(ControlClient { stream }),
            Err(source) => Err(ControlError::Unreachable {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The state once it differs from generation `seen` (0: now), or after `wait_secs`.
    pub async fn watch(&mut self, seen: u64, wait_secs: u32) -> Result<Watched, ControlError> {
        match self.call(&ControlRequest::Watch { seen, wait_secs }).await? {
            ControlReply::Watched(w) => Ok(w),
            _ => Err(ControlError::Refused(
                "the agent answered a watch with something else; is it an older version? Update deskside-agent".into(),
            )),
        }
    }

    pub async fn call(&mut self, req: &ControlRequest) -> Result<ControlReply, ControlError> {
        framed::send_io(&mut self.stream, req).await?;
        match framed::recv_io::<ControlReply, _>(&mut self.stream).await? {
            Some(ControlReply::Error { message }) => Err(ControlError::Refused(message)),
            Some(reply) => Ok(reply),
            None => Err(ControlError::Closed),
        }
    }
}
