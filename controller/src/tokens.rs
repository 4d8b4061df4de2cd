//! Enrollment and login tokens: made by the admin (`deskside token create`, `tech add`,
//! the console's admin page), recorded hashed in the store, redeemed once.

use std::time::Duration;

use anyhow::{Result, anyhow};
use deskside_proto::msg::enroll::{EnrollToken, TokenKind, check_controllers};
use sha2::{Digest, Sha256};

use crate::clock::now_secs;
use crate::datadir::DataDir;
use crate::store::{TokenFor, TokenRecord};

/// Makes and records a token naming one controller, `controller`; returns its text.
pub fn make_token(
    data: &DataDir,
    kind: TokenFor,
    controller: &str,
    ttl: Duration,
) -> Result<String> {
    make_cluster_token(data, kind, &[controller.to_owned()], ttl)
}

/// Makes and records a token naming `controllers` (every node, as clients reach them);
/// returns its text.
pub fn make_cluster_token(
    data: &DataDir,
    kind: TokenFor,
    controllers: &[String],
    ttl: Duration,
) -> Result<String> {
    let controllers = check_controllers(controllers).map_err(|e| {
        anyhow!(
            "--controller: {e}; give each node as HOST:PORT as agents will reach it, e.g. --controller 192.0.2.10:4433 (repeat it, or separate with commas, for several nodes; or set [cluster] controllers in controller.toml)"
        )
    })?;
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
        controllers,
        ca_sha256: keys.ca_sha256,
        secret,
    };
    Ok(token.to_text())
}
