//! Hostile peers, one case per test: each asserts the refusal and its reason, and that a
//! good agent connected before the attack still answers a technician afterwards.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_controller::server::Options;
use deskside_proto::msg::agent::{AgentNotice, CheckIn, Delivery, NoticeAck};
use deskside_proto::msg::identity::{Identity, Tier};
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{ErrorCode, ErrorReply, TechReply, TechRequest};
use deskside_tests::hostile::{
    EVENTUALLY, Scene, alpn_config, diag, frame, new_ticket, raw_connect, refusal, refused_reason,
};
use deskside_tests::raw::RawAgent;
use deskside_transport::tls::MAX_CONCURRENT_STREAMS;
use deskside_transport::{TransportError, endpoint, framed, pki};
use time::OffsetDateTime;

mod handshake;
mod identity;
mod streams;
mod visibility;

/// A request timeout short enough that a test waits about a second for it. Honest
/// requests send their whole frame in the packet that opens the stream.
const SHORT: Duration = Duration::from_secs(1);
/// A hello timeout a test waits for once; the good agent and technicians in the same
/// scene must still say hello within it on a busy machine.
const SHORT_HELLO: Duration = Duration::from_secs(2);

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// The reason a connection was closed with, waiting for the close.
async fn close_reason(conn: &quinn::Connection) -> Result<String> {
    let closed = tokio::time::timeout(EVENTUALLY, conn.closed())
        .await
        .context("the controller never closed the connection")?;
    Ok(TransportError::explain(&closed))
}

/// TLS alert 120 is `no_application_protocol`; rustls adds its own words.
fn assert_no_application_protocol(reason: &str) {
    assert!(
        reason.contains("error 120") && reason.contains("doesn't support any known protocol"),
        "{reason}"
    );
}
