//! The other nodes' agents as this node sees them: read from the location table every
//! [`LOCATION_REFRESH`](super::LOCATION_REFRESH), kept only for nodes that answer a ping,
//! so `is_online` (asked for every agent of a listing) is a map look-up. A ping over NATS
//! rather than the nodes' heartbeats in the store: it tests the very path a relay takes,
//! and a dead node drops out within a refresh instead of three missed heartbeats.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use async_nats::Client;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{LOCATION_REFRESH, PING_TIMEOUT, Subjects};
use crate::store::Store;

/// Agent id → the live node holding it, for agents on other nodes.
#[derive(Debug, Default)]
pub(super) struct Locations {
    online: RwLock<HashMap<String, String>>,
}

impl Locations {
    pub(super) fn online(&self, id: &str) -> bool {
        self.online
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    fn replace(&self, now: HashMap<String, String>) {
        *self.online.write().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

/// Whether `node` answers on NATS.
async fn answers(client: &Client, subjects: &Subjects, node: &str) -> bool {
    let ping = client.request(subjects.ping(node), Bytes::new());
    matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
}

pub(super) async fn refresh(
    locations: Arc<Locations>,
    client: Client,
    subjects: Subjects,
    store: Store,
    cancel: CancellationToken,
) {
    loop {
        let me = subjects.node.clone();
        match store.run(move |db| db.agent_locations_elsewhere(&me)).await {
            Ok(rows) => {
                let nodes: HashSet<&str> = rows.iter().map(|(_, n)| n.as_str()).collect();
                let pings = nodes.into_iter().map(|n| {
                    let (client, subjects) = (&client, &subjects);
                    async move { (n, answers(client, subjects, n).await) }
                });
                let live: HashSet<&str> = futures_util::future::join_all(pings)
                    .await
                    .into_iter()
                    .filter_map(|(n, up)| up.then_some(n))
                    .collect();
                let now = rows
                    .iter()
                    .filter(|(_, n)| live.contains(n.as_str()))
                    .map(|(a, n)| (a.clone(), n.clone()))
                    .collect();
                locations.replace(now);
            }
            Err(e) => warn!(error = %e, "reading where the other nodes' agents are failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LOCATION_REFRESH) => {}
        }
    }
}
