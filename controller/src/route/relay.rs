//! The requesting node's end of a relayed stream: an [`AgentStream`] whose requests go
//! down to the node holding the agent and whose bytes come back up, with credit so the
//! holder never has more than [`WINDOW_BYTES`] in flight, and heartbeats so a dead node
//! is an error within [`SILENCE`](super::SILENCE).

use std::time::Duration;

use bytes::Bytes;
use deskside_proto::codec;
use deskside_proto::frame::{self, HEADER_LEN};
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck};
use deskside_proto::{Message, close};
use deskside_transport::TransportError;
use deskside_transport::framed::FIRST_ALLOCATION;
use tokio::sync::mpsc;

use super::numbered::{Inbound, Numbered};
use super::wire::{Down, Up};
use super::{BEAT, WINDOW_BYTES};
use crate::service::{AgentStream, Pending};

/// The requester grants more credit each time it has consumed this much.
pub(super) const CREDIT_EVERY: u64 = WINDOW_BYTES / 4;

/// A request stream to an agent connected to another node.
pub(super) struct RelayedStream {
    node: String,
    /// To the task that numbers and publishes what goes down (and beats while idle);
    /// dropping it sends `Close`.
    down: mpsc::UnboundedSender<Down>,
    up: Inbound,
    /// Bytes received and not yet read.
    held: Bytes,
    /// The agent ended its stream (after `held`).
    ended: bool,
    /// The relay broke: every later read fails with this.
    broken: Option<String>,
    consumed: u64,
    credited: u64,
}

impl std::fmt::Debug for RelayedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayedStream")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl RelayedStream {
    pub(super) fn new(node: &str, down: Numbered, up: Inbound) -> RelayedStream {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_down(down, rx));
        RelayedStream {
            node: node.to_owned(),
            down: tx,
            up,
            held: Bytes::new(),
            ended: false,
            broken: None,
            consumed: 0,
            credited: 0,
        }
    }

    fn error(&self, what: &str) -> TransportError {
        TransportError::Stream(format!("relay through node {}: {what}", self.node))
    }

    fn put(&mut self, frame: Down) -> Result<(), TransportError> {
        if let Some(b) = &self.broken {
            return Err(self.error(b));
        }
        if self.down.send(frame).is_err() {
            let e = "the connection to NATS failed".to_owned();
            self.broken = Some(e.clone());
            return Err(self.error(&e));
        }
        Ok(())
    }

    /// Waits for bytes (or the end) from the holder; afterwards `held` is non-empty,
    /// or `ended` is set, or an error says why neither.
    async fn fill(&mut self) -> Result<(), TransportError> {
        while self.held.is_empty() && !self.ended {
            if let Some(b) = &self.broken {
                return Err(self.error(b));
            }
            match self.up.next(Up::decode).await {
                Ok(Up::Data(bytes)) => self.held = bytes,
                Ok(Up::End) => self.ended = true,
                Ok(Up::Beat) => {}
                Ok(Up::Failed(reason)) => {
                    self.broken = Some(format!("the agent's stream failed there: {reason}"))
                }
                Err(e) => self.broken = Some(e.to_string()),
            }
        }
        Ok(())
    }

    /// Up to `max` bytes of the agent's stream; `None` at its end.
    async fn take(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        if max == 0 {
            return Ok(Some(Bytes::new()));
        }
        self.fill().await?;
        if self.held.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.held.len());
        let chunk = self.held.split_to(n);
        self.consumed += chunk.len() as u64;
        if self.consumed - self.credited >= CREDIT_EVERY {
            self.credited = self.consumed;
            self.put(Down::Credit(self.consumed))?;
        }
        Ok(Some(chunk))
    }

    async fn read_exact(
        &mut self,
        len: usize,
        kind: &'static str,
    ) -> Result<Vec<u8>, TransportError> {
        let mut out = Vec::with_capacity(len.min(FIRST_ALLOCATION));
        while out.len() < len {
            match self.take(len - out.len()).await? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => return Err(TransportError::Truncated { kind }),
            }
        }
        Ok(out)
    }

    async fn reply(&mut self) -> Result<AgentReply, TransportError> {
        let header = self.read_exact(HEADER_LEN, AgentReply::KIND).await?;
        let header: [u8; HEADER_LEN] =
            header.try_into().map_err(|_| TransportError::Truncated {
                kind: AgentReply::KIND,
            })?;
        let len = frame::payload_len::<AgentReply>(header)?;
        let payload = self.read_exact(len, AgentReply::KIND).await?;
        Ok(codec::decode(&payload)?)
    }
}

/// Numbers and publishes what goes down, in the order it was given; beats while idle,
/// so the holder knows this end is alive while the operation does something else
/// (stores a 256 MiB file); sends `Close` once the stream is dropped.
async fn send_down(mut down: Numbered, mut rx: mpsc::UnboundedReceiver<Down>) {
    loop {
        let frame = match tokio::time::timeout(BEAT, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => Down::Close,
            Err(_) => Down::Beat,
        };
        let last = frame == Down::Close;
        if down.send(|seq| frame.encode(seq)).await.is_err() || last {
            return;
        }
    }
}

impl AgentStream for RelayedStream {
    fn send<'a>(&'a mut self, req: &'a AgentRequest) -> Pending<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let bytes = codec::encode(req)?;
            self.put(Down::Request(Bytes::from(bytes)))
        })
    }

    fn reply_within(&mut self, limit: Duration) -> Pending<'_, Result<AgentReply, TransportError>> {
        Box::pin(async move {
            tokio::time::timeout(limit, self.reply())
                .await
                .map_err(|_| TransportError::Timeout {
                    kind: AgentReply::KIND,
                })?
        })
    }

    fn read_chunk(&mut self, max: usize) -> Pending<'_, Result<Option<Bytes>, TransportError>> {
        Box::pin(self.take(max))
    }

    fn acknowledge<'a>(&'a mut self, ack: &'a NoticeAck) -> Pending<'a, ()> {
        Box::pin(async move {
            if let Ok(bytes) = codec::encode(ack) {
                let _ = self.put(Down::Acknowledge(Bytes::from(bytes)));
            }
        })
    }

    fn finish(&mut self) {
        // A failed send shows in the next read.
        let _ = self.down.send(Down::Finish);
    }

    fn stop(&mut self, code: u32) {
        // Nothing more is read here; the holder stops the agent's stream.
        self.broken = Some(format!(
            "reading stopped ({})",
            close::describe(u64::from(code))
        ));
        let _ = self.down.send(Down::Stop(code));
    }
}
