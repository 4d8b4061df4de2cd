//! The holding node's end: answers other nodes' pings and stream-open requests for the
//! agents connected here, and pumps each relayed stream — requests and acknowledgements
//! down to the agent, its bytes up within the requester's credit — until either side
//! ends it, breaks, or falls silent.

use std::sync::Arc;

use async_nats::{Client, Message};
use bytes::{Bytes, BytesMut};
use deskside_proto::close;
use deskside_proto::codec;
use deskside_proto::msg::agent::{AgentRequest, NoticeAck};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::numbered::{Inbound, Numbered};
use super::wire::{Down, MAX_DATA_BYTES, Open, Opened, Up};
use super::{BEAT, MAX_RELAYS, SILENCE, Subjects, WINDOW_BYTES};
use crate::service::{AgentLink, AgentStream};

/// Serves this node's subjects until `cancel`.
pub(super) async fn serve(
    client: Client,
    subjects: Subjects,
    local: Arc<dyn AgentLink>,
    cancel: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut opens = client.subscribe(subjects.open(&subjects.node)).await?;
    let mut pings = client.subscribe(subjects.ping(&subjects.node)).await?;
    let slots = Arc::new(Semaphore::new(MAX_RELAYS));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ping = pings.next() => match ping {
                    Some(Message { reply: Some(reply), .. }) => {
                        let _ = client.publish(reply, Bytes::new()).await;
                    }
                    Some(_) => {}
                    None => return,
                },
                request = opens.next() => match request {
                    Some(msg) => {
                        let (client, local, node) = (client.clone(), local.clone(), subjects.node.clone());
                        let slot = slots.clone().try_acquire_owned();
                        tokio::spawn(async move {
                            let Ok(_slot) = slot else {
                                let busy = format!("node {node} is relaying {MAX_RELAYS} streams already; try again shortly");
                                return answer(&client, &msg, &Opened::Failed(busy)).await;
                            };
                            relay_one(client, &node, local, msg).await;
                        });
                    }
                    None => return,
                },
            }
        }
    });
    Ok(())
}

async fn answer(client: &Client, msg: &Message, opened: &Opened) {
    if let Some(reply) = &msg.reply {
        let _ = client.publish(reply.clone(), opened.encode()).await;
    }
}

/// One open request: opens the stream on the agent's connection and pumps it.
async fn relay_one(client: Client, node: &str, local: Arc<dyn AgentLink>, msg: Message) {
    let req = match Open::decode(msg.payload.clone()) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "unreadable relay request from another node");
            return answer(
                &client,
                &msg,
                &Opened::Failed(format!("unreadable request: {e}")),
            )
            .await;
        }
    };
    if !local.is_online(&req.agent) {
        return answer(&client, &msg, &Opened::Offline).await;
    }
    let stream = match local.open(&req.agent).await {
        Ok(s) => s,
        Err(e) => return answer(&client, &msg, &Opened::Failed(e.to_string())).await,
    };
    let down = client.new_inbox();
    let sub = match client.subscribe(down.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("node {node} could not subscribe: {e}");
            return answer(&client, &msg, &Opened::Failed(why)).await;
        }
    };
    answer(&client, &msg, &Opened::Stream { down }).await;
    debug!(agent = %req.agent, from = %req.from, "relaying a stream for another node");
    let up = Numbered::new(client, &req.up);
    let inbound = Inbound::new(sub, &req.from, SILENCE);
    let outcome = pump(stream, up, inbound).await;
    match outcome {
        Ok(()) => debug!(agent = %req.agent, "relayed stream done"),
        Err(e) => info!(agent = %req.agent, reason = %e, "relayed stream cut"),
    }
}

/// What a relayed stream is doing, from the holder's side.
struct Pump {
    stream: Box<dyn AgentStream>,
    up: Numbered,
    /// Bytes of the agent's stream sent up, in all.
    sent: u64,
    /// What the requester has consumed, in all (its credit).
    credit: u64,
    /// The agent's stream ended or was stopped: nothing more to read.
    done_reading: bool,
}

/// Pumps until the requester closes (`Ok`) or the relay breaks (`Err`, with why). A
/// node shutting down lets it run, as it lets its own requests in flight finish: the
/// agent's stream ends with the node's endpoint at the latest, and the requester hears.
async fn pump(
    stream: Box<dyn AgentStream>,
    up: Numbered,
    mut inbound: Inbound,
) -> Result<(), String> {
    let mut p = Pump {
        stream,
        up,
        sent: 0,
        credit: 0,
        done_reading: false,
    };
    let mut beat = tokio::time::interval(BEAT);
    let result = loop {
        let may_read = !p.done_reading && p.sent - p.credit.min(p.sent) < WINDOW_BYTES;
        tokio::select! {
            frame = inbound.next(Down::decode) => match frame {
                Ok(Down::Close) => break Ok(()),
                Ok(frame) => {
                    if let Err(e) = p.down(frame).await {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e.to_string()),
            },
            chunk = p.stream.read_chunk(MAX_DATA_BYTES), if may_read => {
                if let Err(e) = p.up_from(chunk).await {
                    break Err(e);
                }
            }
            _ = beat.tick() => {
                if let Err(e) = p.up.send(|seq| Up::Beat.encode(seq)).await {
                    break Err(e);
                }
            }
        }
    };
    if result.is_err() {
        // The agent keeps any evidence it replied with, unacknowledged, and delivers it
        // again; the request it was serving is cut.
        p.stream.stop(close::TRANSFER_ABORTED);
        let _ =
            p.up.send(|seq| Up::Failed("the relay was cut".into()).encode(seq))
                .await;
    }
    result
}

impl Pump {
    /// One frame from the requester.
    async fn down(&mut self, frame: Down) -> Result<(), String> {
        match frame {
            Down::Request(bytes) => {
                let req: AgentRequest = codec::decode(&bytes)
                    .map_err(|e| format!("a request that does not decode: {e}"))?;
                tokio::time::timeout(SILENCE, self.stream.send(&req))
                    .await
                    .map_err(|_| "the agent took no request for too long".to_owned())?
                    .map_err(|e| format!("sending to the agent: {e}"))
            }
            Down::Acknowledge(bytes) => {
                let ack: NoticeAck = codec::decode(&bytes)
                    .map_err(|e| format!("an acknowledgement that does not decode: {e}"))?;
                let acked = tokio::time::timeout(SILENCE, self.stream.acknowledge(&ack)).await;
                acked.map_err(|_| "the agent took no acknowledgement for too long".to_owned())
            }
            Down::Finish => {
                self.stream.finish();
                Ok(())
            }
            Down::Stop(code) => {
                self.stream.stop(code);
                self.done_reading = true;
                Ok(())
            }
            Down::Credit(consumed) => {
                if consumed > self.sent {
                    return Err(format!(
                        "the requester claims {consumed} bytes consumed of the {} sent",
                        self.sent
                    ));
                }
                self.credit = self.credit.max(consumed);
                Ok(())
            }
            Down::Beat | Down::Close => Ok(()),
        }
    }

    /// Sends the agent's next bytes up, gathering what is already there into one frame.
    async fn up_from(
        &mut self,
        first: Result<Option<Bytes>, deskside_transport::TransportError>,
    ) -> Result<(), String> {
        let mut gathered = BytesMut::new();
        let mut next = first;
        let mut ended = false;
        loop {
            match next {
                Ok(Some(chunk)) => gathered.extend_from_slice(&chunk),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    self.flush(gathered).await?;
                    self.done_reading = true;
                    let reason = e.to_string();
                    return self.up.send(|seq| Up::Failed(reason).encode(seq)).await;
                }
            }
            let room = MAX_DATA_BYTES.saturating_sub(gathered.len());
            if room == 0 {
                break;
            }
            // Only what has already arrived: reading is cancel-safe, so a read that
            // would wait is dropped without losing bytes.
            match self.stream.read_chunk(room).now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        self.flush(gathered).await?;
        if ended {
            self.done_reading = true;
            self.up.send(|seq| Up::End.encode(seq)).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, gathered: BytesMut) -> Result<(), String> {
        if gathered.is_empty() {
            return Ok(());
        }
        self.sent += gathered.len() as u64;
        let data = Up::Data(gathered.freeze());
        self.up.send(|seq| data.encode(seq)).await
    }
}
