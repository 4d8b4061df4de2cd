//! Both ends of a relay number what they send and check what they receive: core NATS
//! drops messages to a slow consumer and says nothing, so a missing number, a frame that
//! does not decode or a silent peer is turned into an error here — never a gap in the
//! bytes.

use std::time::Duration;

use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;

use super::wire::{Frame, WireError};

/// Sends numbered frames to one subject, in order. One task owns it per relay end, so
/// the order frames are numbered in is the order they are handed to the client.
#[derive(Debug)]
pub(super) struct Numbered {
    client: Client,
    subject: String,
    next: u64,
}

impl Numbered {
    pub(super) fn new(client: Client, subject: &str) -> Numbered {
        Numbered {
            client,
            subject: subject.to_owned(),
            next: 0,
        }
    }

    /// Publishes `encode(seq)` with the next number.
    pub(super) async fn send(&mut self, encode: impl FnOnce(u64) -> Bytes) -> Result<(), String> {
        let payload = encode(self.next);
        self.client
            .publish(self.subject.clone(), payload)
            .await
            .map_err(|e| format!("publishing to NATS failed: {e}"))?;
        self.next += 1;
        Ok(())
    }
}

/// Why the peer's frames stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Broken {
    #[error("frame {got} arrived where {expected} was due: NATS dropped {} frame(s)", got.saturating_sub(*expected))]
    Gap { expected: u64, got: u64 },
    #[error("nothing heard from node {node} for {} s", silence.as_secs())]
    Silent { node: String, silence: Duration },
    #[error("the subscription to node {node} ended")]
    Ended { node: String },
    #[error("{0}")]
    Wire(#[from] WireError),
}

/// Receives the peer's numbered frames in order.
#[derive(Debug)]
pub(super) struct Inbound {
    sub: Subscriber,
    expected: u64,
    node: String,
    silence: Duration,
    /// When the peer was last heard from (or the relay began).
    heard: tokio::time::Instant,
}

impl Inbound {
    pub(super) fn new(sub: Subscriber, node: &str, silence: Duration) -> Inbound {
        Inbound {
            sub,
            expected: 0,
            node: node.to_owned(),
            silence,
            heard: tokio::time::Instant::now(),
        }
    }

    /// The next frame, checked for its number; an error once `silence` has passed since
    /// the last one. Cancel-safe: a frame is taken from the subscription only when it is
    /// returned, and the silence is counted from the last frame, not from this call.
    pub(super) async fn next<T>(
        &mut self,
        decode: impl Fn(Bytes) -> Result<Frame<T>, WireError>,
    ) -> Result<T, Broken> {
        let msg = tokio::time::timeout_at(self.heard + self.silence, self.sub.next())
            .await
            .map_err(|_| Broken::Silent {
                node: self.node.clone(),
                silence: self.silence,
            })?
            .ok_or_else(|| Broken::Ended {
                node: self.node.clone(),
            })?;
        self.heard = tokio::time::Instant::now();
        let frame = decode(msg.payload)?;
        if frame.seq != self.expected {
            return Err(Broken::Gap {
                expected: self.expected,
                got: frame.seq,
            });
        }
        self.expected += 1;
        Ok(frame.body)
    }
}
