//! Enrollment and login tokens: made by the admin (`deskside token create`, `tech add`,
//! the console's admin page), recorded hashed in the store, redeemed once.

use std::time::Duration;

use anyhow::{Result, bail};
use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::enroll::{EnrollToken, TokenKind};
use sha2::{Digest, Sha256};

use crate::clock::now_secs;
use crate::datadir::DataDir;
use crate::store::{TokenFor, TokenRecord};

/// Makes and records a token; returns its text.
pub fn make_token(
    data: &DataDir,
    kind: TokenFor,
    controller: &str,
    ttl: Duration,
) -> Result<String> {
    let valid = controller.len() <= MAX_NAME_BYTES
        && controller.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
    if !valid {
        bail!(
            "--controller must be HOST:PORT as agents will reach it, e.g. 192.0.2.10:4433 (got {controller:?})"
        );
    }
    let keys = data.load()?;
    let store = data.open_store()?;
    let secret: [u8; 32] = rand::random();
    let now = now_secs();
    let record = TokenRecord {
        secret_sha256: hex::encode(Sha256::digest(secret)),
        for_: kind.clone(),
        created_at: now,
        expires_at: now.saturating_add(ttl.as_secs()),
    };
    store.blocking(|db| db.insert_token(&record))?;
    let token = EnrollToken {
        kind: match kind {
            TokenFor::Agent => TokenKind::Agent,
            TokenFor::Technician(_) => TokenKind::Technician,
        },
        controller: controller.to_owned(),
        ca_sha256: keys.ca_sha256,
        secret,
    };
    Ok(token.to_text())
}
