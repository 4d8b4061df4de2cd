//! A technician's QUIC connection: one request per stream, decoded, handed to the service
//! layer ([`crate::service::handle`]), and its replies encoded back. No policy lives here.

use std::sync::Arc;

use deskside_proto::close;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{ErrorCode, TechReply, TechRequest};
use deskside_transport::framed;
use quinn::{Connection, RecvStream, SendStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use super::agents::Registry;
use crate::service::{self, Failure, Principal, ReplySink, Shared};

pub(super) async fn serve(
    shared: &Arc<Shared>,
    registry: &Registry,
    conn: &Connection,
    name: &str,
    tier: Tier,
    cancel: &CancellationToken,
) {
    let who = Principal {
        name: name.to_owned(),
        tier,
        certificate: super::peer_certificate(conn),
    };
    registry.add_tech(name, conn, &shared.metrics.technicians_connected);
    serve_streams(shared, conn, &who, cancel).await;
    registry.remove_tech(conn, &shared.metrics.technicians_connected);
}

async fn serve_streams(
    shared: &Arc<Shared>,
    conn: &Connection,
    who: &Principal,
    cancel: &CancellationToken,
) {
    loop {
        let (send, recv) = tokio::select! {
            _ = cancel.cancelled() => {
                conn.close(close::SHUTDOWN.into(), b"controller shutting down");
                return;
            }
            stream = conn.accept_bi() => match stream {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (shared, who) = (shared.clone(), who.clone());
        let span = info_span!(
            "request",
            technician = %who.name,
            kind = tracing::field::Empty,
            ticket = tracing::field::Empty,
            agent = tracing::field::Empty
        );
        tokio::spawn(async move { handle(&shared, &who, send, recv).await }.instrument(span));
    }
}

/// One request stream: decode, serve, reply, finish.
async fn handle(shared: &Shared, who: &Principal, send: SendStream, mut recv: RecvStream) {
    let started = std::time::Instant::now();
    let mut out = QuicReplies { send, live: true };
    let reply = match framed::recv_within::<TechRequest>(&mut recv, shared.request_timeout).await {
        Ok(req) => service::handle(shared, who, req, &mut out).await,
        Err(e) => {
            let reply = TechReply::from(Failure::new(
                ErrorCode::BadRequest,
                format!("unreadable request: {e}"),
            ));
            let outcome = service::outcome_of(&reply);
            shared
                .metrics
                .observe("unreadable", &outcome, started.elapsed());
            reply
        }
    };
    out.send(&reply).await;
    let _ = out.send.finish();
}

/// The replies of one request stream. A technician who goes away does not stop the
/// operation (a script run, a file transfer): the rest of its replies are dropped.
struct QuicReplies {
    send: SendStream,
    live: bool,
}

impl ReplySink for QuicReplies {
    async fn send(&mut self, reply: &TechReply) {
        if self.live && framed::send(&mut self.send, reply).await.is_err() {
            debug!("technician went away before the reply");
            self.live = false;
        }
    }

    fn gone(&self) -> bool {
        !self.live
    }
}
