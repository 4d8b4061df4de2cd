//! A generic webhook: one JSON POST per sync, signed so the receiver can tell it came
//! from this controller.
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Deskside-Signature: sha256=<hex HMAC-SHA256(secret, exact body bytes)>
//! X-Deskside-Delivery: <controller>:<ticket>:<sync>
//!
//! {"ticket": {…TicketSummary…}, "tier": "l2", "note": "…", "report_md": "…",
//!  "items": [{"sha256": "…", "kind": "snapshot", "size": 1234}, …]}
//! ```
//!
//! Any 2xx answer is success; anything else is an error the outbox retries. A POST whose
//! answer did not come in time is sent again with the same `X-Deskside-Delivery`, so a
//! receiver that keeps the ones it has seen can drop the repeat.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::bundle_files::BundleFiles;
use super::config::WebhookConfig;
use super::http::Client;
use super::{AdapterError, SyncJob, SyncOutcome, TicketSystem};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::TicketSummary;

const SYSTEM: &str = "the ticketing webhook";

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Deskside-Signature";

/// The same for every attempt of one sync, different between syncs.
pub const DELIVERY_HEADER: &str = "X-Deskside-Delivery";

/// The JSON body.
#[derive(Debug, Serialize)]
pub struct WebhookPayload<'a> {
    pub ticket: &'a TicketSummary,
    pub tier: Tier,
    pub note: &'a str,
    pub report_md: &'a str,
    pub items: Vec<WebhookItem>,
}

#[derive(Debug, Serialize)]
pub struct WebhookItem {
    pub sha256: String,
    pub kind: String,
    pub size: u64,
}

/// The header value for `body`: `sha256=<hex HMAC-SHA256>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// The webhook adapter.
#[derive(Debug, Clone)]
pub struct Webhook {
    config: WebhookConfig,
    http: Client,
    /// Names this controller in the delivery id.
    origin: String,
}

impl Webhook {
    pub fn new(config: WebhookConfig, origin: &str) -> Webhook {
        let http = Client::new(SYSTEM, config.timeout, None);
        Webhook {
            config,
            http,
            origin: origin.to_owned(),
        }
    }
}

impl TicketSystem for Webhook {
    fn sync(&self, job: &SyncJob) -> Result<SyncOutcome, AdapterError> {
        let files = BundleFiles::read(&job.bundle_dir)?;
        let items: Vec<WebhookItem> = files
            .evidence
            .items
            .iter()
            .map(|i| WebhookItem {
                sha256: i.sha256.clone(),
                kind: i.kind.clone(),
                size: i.size_bytes,
            })
            .collect();
        let count = items.len();
        let payload = WebhookPayload {
            ticket: &job.ticket,
            tier: job.tier,
            note: &job.note,
            report_md: &files.report_md,
            items,
        };
        let body = serde_json::to_vec(&payload).map_err(|e| AdapterError::Protocol {
            system: SYSTEM,
            method: "POST",
            url: self.config.url.clone(),
            reason: format!("cannot encode the payload: {e}"),
        })?;
        let sig = signature(self.config.secret.expose().as_bytes(), &body);
        let delivery = format!("{}:{}:{}", self.origin, job.ticket.number, job.sync_id);
        let reply = self.http.send(
            "POST",
            &self.config.url,
            "application/json",
            &[(SIGNATURE_HEADER, &sig), (DELIVERY_HEADER, &delivery)],
            &body,
        )?;
        if !reply.is_success() {
            return Err(self.http.status_error("POST", &self.config.url, &reply));
        }
        Ok(SyncOutcome {
            external_ref: format!("webhook:{}", self.config.host),
            detail: format!(
                "webhook {} accepted ticket #{} for {} with {count} evidence item(s) (HTTP {})",
                self.config.host, job.ticket.number, job.tier, reply.status
            ),
            link: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size.
        assert_eq!(
            signature(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
