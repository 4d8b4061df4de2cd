//! The one way the operations reach an agent: open a request stream to agent X, send the
//! request, await its reply (or a run of replies), acknowledge the evidence it carried.
//!
//! Today the server's registry of live QUIC connections implements [`AgentLink`]
//! (`server/agents.rs`). Reaching an agent held by another controller node is another
//! implementation of these two traits, not edits to the operations.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck};
use deskside_transport::TransportError;

use crate::store::StoreResult;

/// A boxed future borrowing its receiver: the traits here are used as trait objects.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request to an agent got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("agent {0} is not connected")]
    Offline(String),
    #[error("agent {agent} did not answer within {secs} s")]
    Timeout { agent: String, secs: u64 },
    #[error("agent {agent}: {source}")]
    Transport {
        agent: String,
        source: TransportError,
    },
}

/// The agents this controller can reach.
pub trait AgentLink: Send + Sync + fmt::Debug {
    /// Whether agent `id` can be asked now.
    fn is_online(&self, id: &str) -> bool;

    /// The current round-trip time to agent `id`, when it is connected.
    fn round_trip(&self, id: &str) -> Option<Duration>;

    /// The agent whose user offered support `code`, if the code is still valid. Codes are
    /// shared by every node of a cluster (they live in the store), so this may wait on it.
    fn code_owner<'a>(&'a self, code: &'a str) -> Pending<'a, StoreResult<Option<String>>>;

    /// Agent `agent`'s user offers support `code` until `expires_at_secs`; it replaces
    /// any code that agent offered before.
    fn offer_code<'a>(
        &'a self,
        agent: &'a str,
        code: &'a str,
        expires_at_secs: u64,
    ) -> Pending<'a, StoreResult<()>>;

    /// Opens a request stream to agent `id` (for requests whose replies stream).
    fn open<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Box<dyn AgentStream>, CallError>>;
}

/// One request stream to an agent: requests out, replies (and raw file bytes) in.
pub trait AgentStream: Send {
    /// Sends one framed request.
    fn send<'a>(&'a mut self, req: &'a AgentRequest) -> Pending<'a, Result<(), TransportError>>;

    /// Reads one framed reply, waiting at most `limit` for the whole of it.
    fn reply_within(&mut self, limit: Duration) -> Pending<'_, Result<AgentReply, TransportError>>;

    /// Up to `max` raw bytes as they arrive (a collected file's body); `None` at the end.
    fn read_chunk(&mut self, max: usize) -> Pending<'_, Result<Option<Bytes>, TransportError>>;

    /// Tells the agent what became of the evidence it replied with, and ends the
    /// request's sending side; without this it delivers the item again from its spool.
    fn acknowledge<'a>(&'a mut self, ack: &'a NoticeAck) -> Pending<'a, ()>;

    /// Ends the request's sending side: nothing more will be asked on this stream.
    fn finish(&mut self);

    /// Stops reading with `code`: the agent's sending fails at once and it gives up.
    fn stop(&mut self, code: u32);
}

impl dyn AgentLink {
    /// Sends `req` to agent `id` on a new stream and waits up to `limit` for the reply.
    pub async fn call(
        &self,
        id: &str,
        req: &AgentRequest,
        limit: Duration,
    ) -> Result<AgentReply, CallError> {
        let (reply, mut stream) = self.call_open(id, req, limit).await?;
        stream.finish();
        Ok(reply)
    }

    /// `call` that leaves the request's stream open: a reply carrying
    /// evidence is acknowledged on it once stored ([`AgentStream::acknowledge`]).
    pub async fn call_open(
        &self,
        id: &str,
        req: &AgentRequest,
        limit: Duration,
    ) -> Result<(AgentReply, Box<dyn AgentStream>), CallError> {
        let mut stream = self.open(id).await?;
        let exchange = async {
            stream.send(req).await?;
            stream.reply_within(limit).await
        };
        match exchange.await {
            Ok(reply) => Ok((reply, stream)),
            Err(TransportError::Timeout { .. }) => Err(CallError::Timeout {
                agent: id.to_owned(),
                secs: limit.as_secs(),
            }),
            Err(source) => Err(CallError::Transport {
                agent: id.to_owned(),
                source,
            }),
        }
    }
}
