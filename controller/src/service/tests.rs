//! The service layer on its own: no QUIC and no server, agents reached through an
//! in-memory [`AgentLink`]. This is what any front end gets by calling it: the same
//! authority, visibility and audit, with nothing of its own to add.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck, Refusal, RefusalCode};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{ErrorCode, TechReply, TechRequest};
use deskside_transport::TransportError;

use super::common::Shared;
use super::link::{AgentLink, AgentStream, CallError, Pending};
use super::seen::Seen;
use super::throttle::JoinThrottle;
use super::{Principal, ReplySink, agents, diagnostics, handle, tickets};
use crate::datadir::DataDir;
use crate::evidence::DirBlobs;
use crate::store::Store;
use crate::store::{NewAgent, NewTicket};

/// Agents that answer from a script, and remember what they were asked.
#[derive(Debug, Default)]
struct ScriptedAgents {
    replies: Mutex<VecDeque<AgentReply>>,
    asked: Mutex<Vec<AgentRequest>>,
}

struct ScriptedStream(Arc<ScriptedAgents>);

#[derive(Debug)]
struct Link(Arc<ScriptedAgents>);

impl AgentLink for Link {
    fn is_online(&self, id: &str) -> bool {
        id == AGENT
    }

    fn round_trip(&self, _: &str) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }

    fn code_owner<'a>(
        &'a self,
        _: &'a str,
    ) -> Pending<'a, crate::store::StoreResult<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    fn offer_code<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
    ) -> Pending<'a, crate::store::StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn open<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Box<dyn AgentStream>, CallError>> {
        let agents = self.0.clone();
        Box::pin(async move {
            if id != AGENT {
                return Err(CallError::Offline(id.to_owned()));
            }
            Ok(Box::new(ScriptedStream(agents)) as Box<dyn AgentStream>)
        })
    }
}

impl AgentStream for ScriptedStream {
    fn send<'a>(&'a mut self, req: &'a AgentRequest) -> Pending<'a, Result<(), TransportError>> {
        if let Ok(mut asked) = self.0.asked.lock() {
            asked.push(req.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn reply_within(&mut self, _: Duration) -> Pending<'_, Result<AgentReply, TransportError>> {
        let next = self.0.replies.lock().ok().and_then(|mut r| r.pop_front());
        Box::pin(async move {
            next.ok_or(TransportError::Truncated {
                kind: "agent reply",
            })
        })
    }

    fn read_chunk(&mut self, _: usize) -> Pending<'_, Result<Option<Bytes>, TransportError>> {
        Box::pin(async { Ok(None) })
    }

    fn acknowledge<'a>(&'a mut self, _: &'a NoticeAck) -> Pending<'a, ()> {
        Box::pin(async {})
    }

    fn finish(&mut self) {}

    fn stop(&mut self, _: u32) {}
}

/// Replies streamed before the last one.
#[derive(Default)]
struct Collected(Vec<TechReply>);

impl ReplySink for Collected {
    async fn send(&mut self, reply: &TechReply) {
        self.0.push(reply.clone());
    }

    fn gone(&self) -> bool {
        false
    }
}

const AGENT: &str = "agent-1";

fn principal(name: &str, tier: Tier) -> Principal {
    Principal {
        name: name.to_owned(),
        tier,
        certificate: None,
    }
}

/// A controller's state in `dir` with technicians alice (L1) and carol (L3), one agent,
/// and a ticket at each tier: (shared, L1 ticket, L3 ticket, the agents' script).
async fn controller(dir: &std::path::Path) -> Result<(Shared, u64, u64, Arc<ScriptedAgents>)> {
    let data = DataDir::new(dir);
    data.init()?;
    let keys = data.load()?;
    let signing = data.record_signing(&keys.ca)?;
    let store = Store::open(&data.database())?;
    let agents = Arc::new(ScriptedAgents::default());
    let shared = Shared {
        seen: Seen::start(store.clone()),
        store,
        blobs: Arc::new(DirBlobs::new(data.evidence())),
        ca: keys.ca,
        script_public_key: keys.script_key.verifying_key().to_bytes(),
        request_keys: crate::request_key::RequestKeys::derive(&keys.script_key),
        records: crate::records::RecordSigner::new(signing),
        agents: Arc::new(Link(agents.clone())),
        sla: crate::sla::SlaConfig::default(),
        bundles: dir.join("bundles"),
        ticketing: None,
        metrics: Arc::new(crate::metrics::Metrics::default()),
        request_timeout: Duration::from_secs(10),
        client_validity: Duration::from_secs(86_400),
        max_collect_bytes: 1 << 20,
        join_throttle: JoinThrottle::default(),
        events: crate::service::Events::default(),
    };
    let (low, high) = shared
        .store
        .run(|db| {
            db.insert_technician("alice", Tier::L1)?;
            db.insert_technician("carol", Tier::L3)?;
            db.insert_agent(&NewAgent {
                id: AGENT.into(),
                hostname: "pc-7".into(),
                os: "linux".into(),
                cert_sha256: "00".repeat(32),
                cert_pem: String::new(),
                cert_not_after: u64::MAX / 2,
            })?;
            fn ticket(by: &str, tier: Tier) -> NewTicket<'_> {
                NewTicket {
                    title: "printer",
                    requester: "bob",
                    priority: "normal",
                    agent: Some(AGENT),
                    by,
                    tier,
                }
            }
            let low = db.create_ticket(&ticket("alice", Tier::L1))?;
            let high = db.create_ticket(&ticket("carol", Tier::L3))?;
            Ok((low, high))
        })
        .await?;
    Ok((shared, low, high, agents))
}

#[tokio::test]
async fn a_ticket_above_the_technicians_tier_is_not_found_whichever_operation_asks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (shared, low, high, agents) = controller(dir.path()).await?;
    let alice = principal("alice", Tier::L1);
    let missing = tickets::show(&shared, &alice, 999_999).await.err();
    let hidden = tickets::show(&shared, &alice, high).await.err();
    assert_eq!(hidden.as_ref().map(|f| f.code), Some(ErrorCode::NotFound));
    // The same answer as a ticket that does not exist, apart from the number.
    assert_eq!(
        hidden.map(|f| f.message.replace(&high.to_string(), "N")),
        missing.map(|f| f.message.replace("999999", "N"))
    );
    for req in [
        TechRequest::Note {
            number: high,
            text: "hello".into(),
        },
        TechRequest::Diagnostics {
            agent: AGENT.into(),
            ticket: high,
        },
        TechRequest::Export { number: high },
    ] {
        let kind = req.kind();
        let reply = handle(&shared, &alice, req, &mut Collected::default()).await;
        assert!(
            matches!(&reply, TechReply::Error(e) if e.code == ErrorCode::NotFound),
            "{kind}: {reply:?}"
        );
    }
    // Nothing reached the agent, and the hidden ticket's timeline did not move.
    assert!(agents.asked.lock().map(|a| a.is_empty()).unwrap_or(false));
    let carol = principal("carol", Tier::L3);
    let view = tickets::show(&shared, &carol, high).await?;
    assert!(view.timeline.iter().all(|e| e.kind != "note"));
    assert!(tickets::show(&shared, &alice, low).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn a_revoked_technician_is_refused_on_the_next_request() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (shared, low, _, _) = controller(dir.path()).await?;
    let alice = principal("alice", Tier::L1);
    assert_eq!(agents::list(&shared, &alice).await?.len(), 1);
    shared.store.run(|db| db.revoke_technician("alice")).await?;
    for req in [
        TechRequest::ListAgents,
        TechRequest::ShowTicket { number: low },
        TechRequest::ListScripts,
    ] {
        let reply = handle(&shared, &alice, req, &mut Collected::default()).await;
        assert!(
            matches!(&reply, TechReply::Error(e) if e.code == ErrorCode::Forbidden && e.message.contains("revoked")),
            "{reply:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_agents_refusal_reaches_the_technician_and_the_timeline() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (shared, low, _, agents) = controller(dir.path()).await?;
    if let Ok(mut replies) = agents.replies.lock() {
        replies.push_back(AgentReply::Refused(Refusal {
            code: RefusalCode::Policy,
            reason: "diagnostics are off on this machine".into(),
        }));
    }
    let alice = principal("alice", Tier::L1);
    let failure = diagnostics::pull(&shared, &alice, "pc-7", low).await.err();
    assert_eq!(
        failure.as_ref().map(|f| f.code),
        Some(ErrorCode::AgentRefused)
    );
    assert!(
        failure.is_some_and(|f| f.message.contains("diagnostics are off")),
        "the agent's reason reaches the technician"
    );
    // The request carried who asked, for which ticket, with a key the controller issued.
    let asked = agents.asked.lock().map(|a| a.clone()).unwrap_or_default();
    let Some(AgentRequest::Diagnostics { requester }) = asked.first() else {
        panic!("the agent was asked {asked:?}");
    };
    assert_eq!(
        (requester.technician.as_str(), requester.ticket),
        ("alice", low)
    );
    assert!(
        shared
            .request_keys
            .check(
                &requester.request_key,
                AGENT,
                low,
                "alice",
                crate::clock::now_secs()
            )
            .is_ok()
    );
    let view = tickets::show(&shared, &alice, low).await?;
    assert!(
        view.timeline.iter().any(|e| e.kind == "refused"
            && e.actor == "alice"
            && e.detail.contains("refused by the agent")),
        "{:?}",
        view.timeline
    );
    // An agent that is not connected: offline, said so, and recorded.
    shared
        .store
        .run(|db| {
            db.insert_agent(&NewAgent {
                id: "agent-2".into(),
                hostname: "pc-8".into(),
                os: "linux".into(),
                cert_sha256: "11".repeat(32),
                cert_pem: String::new(),
                cert_not_after: u64::MAX / 2,
            })
        })
        .await?;
    let offline = diagnostics::pull(&shared, &alice, "agent-2", low)
        .await
        .err();
    assert_eq!(offline.map(|f| f.code), Some(ErrorCode::AgentOffline));
    Ok(())
}
