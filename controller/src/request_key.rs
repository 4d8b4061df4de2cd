//! Request keys: the controller's proof, echoed by an agent, that it asked *that agent*
//! for something on *that ticket* on behalf of *that technician*.
//!
//! Every request the controller sends an agent carries a key; the agent echoes it with
//! what the request produces (in the spooled delivery of late evidence, and in the grant
//! whose end it reports). Items that arrive on the request's own stream are bound by the
//! stream; items that arrive later from the agent's spool are stored only when their key
//! checks out for the delivering agent, the ticket and the technician they name.
//!
//! A key is `issued-at (16 hex) ‖ HMAC-SHA256(secret, agent, ticket, technician,
//! issued-at)` truncated to 128 bits (32 hex): nothing is written per request, and a key
//! cannot be moved to another agent, ticket or technician. The secret is derived from
//! the controller's script-signing key with its own label (see [`RequestKeys::derive`]),
//! so every data directory — including those made before keys existed, and restored
//! backups — has it without a new file.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an agent may hold evidence in its spool and still deliver it: 90 days, the
/// default life of an agent certificate (`ca::CLIENT_VALIDITY`). An agent away longer
/// cannot connect on the certificate it had anyway; a shorter life would throw away the
/// evidence of a laptop that spent a long holiday offline.
pub const REQUEST_KEY_TTL_SECS: u64 = 90 * 24 * 3600;
/// Tolerated clock step backwards between issuing and checking a key.
const CLOCK_SLACK_SECS: u64 = 300;
/// Label mixed into the derivation, so the secret is no other use of the script key.
const DERIVE_LABEL: &[u8] = b"deskside request keys v1";
/// Label heading every MAC input.
const MAC_LABEL: &[u8] = b"deskside request key v1\0";
/// Hex digits of the issue time, then of the 128-bit tag.
const TIME_HEX: usize = 16;
const TAG_BYTES: usize = 16;

/// Why a delivered item's key was refused; the reason goes back to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("it carries no well-formed request key")]
    Malformed,
    #[error(
        "its request key was not issued to agent {agent} for ticket {ticket} by technician {technician}"
    )]
    NotIssued {
        agent: String,
        ticket: u64,
        technician: String,
    },
    #[error("its request key expired at {expired_at} (keys last {days} days)")]
    Expired { expired_at: String, days: u64 },
}

/// Issues and checks request keys.
#[derive(Clone)]
pub struct RequestKeys {
    secret: [u8; 32],
}

impl std::fmt::Debug for RequestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestKeys(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl RequestKeys {
    /// The secret is HMAC-SHA256(script key seed, label): a derived key, never used to
    /// sign anything itself.
    pub fn derive(script_key: &SigningKey) -> RequestKeys {
        let mut mac = HmacSha256::new_from_slice(script_key.as_bytes())
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(DERIVE_LABEL);
        RequestKeys {
            secret: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, agent: &str, ticket: u64, technician: &str, issued_at: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(MAC_LABEL);
        mac.update(&issued_at.to_be_bytes());
        mac.update(&ticket.to_be_bytes());
        // Lengths first: ("ab", "c") and ("a", "bc") must not collide.
        for field in [agent, technician] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// A key for a request to `agent` on `ticket` for `technician`, issued at `now_secs`.
    pub fn issue(&self, agent: &str, ticket: u64, technician: &str, now_secs: u64) -> String {
        let tag = self
            .mac(agent, ticket, technician, now_secs)
            .finalize()
            .into_bytes();
        let tag = tag.get(..TAG_BYTES).unwrap_or_default();
        format!("{now_secs:016x}{}", hex::encode(tag))
    }

    /// Whether `key` was issued to `agent` for `ticket` and `technician`, and is still
    /// within [`REQUEST_KEY_TTL_SECS`] at `now_secs`.
    pub fn check(
        &self,
        key: &str,
        agent: &str,
        ticket: u64,
        technician: &str,
        now_secs: u64,
    ) -> Result<(), KeyRefusal> {
        if key.len() != TIME_HEX + 2 * TAG_BYTES || !key.is_ascii() {
            return Err(KeyRefusal::Malformed);
        }
        let (time, tag) = key.split_at(TIME_HEX);
        let issued_at = u64::from_str_radix(time, 16).map_err(|_| KeyRefusal::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| KeyRefusal::Malformed)?;
        self.mac(agent, ticket, technician, issued_at)
            .verify_truncated_left(&tag)
            .map_err(|_| KeyRefusal::NotIssued {
                agent: agent.to_owned(),
                ticket,
                technician: technician.to_owned(),
            })?;
        let expires_at = issued_at.saturating_add(REQUEST_KEY_TTL_SECS);
        // A key from the future was issued by a controller whose clock has since gone
        // back more than the slack: treat it as expired rather than valid for longer.
        if now_secs > expires_at || issued_at > now_secs.saturating_add(CLOCK_SLACK_SECS) {
            return Err(KeyRefusal::Expired {
                expired_at: crate::clock::format_secs(expires_at),
                days: REQUEST_KEY_TTL_SECS / (24 * 3600),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8) -> RequestKeys {
        RequestKeys::derive(&SigningKey::from_bytes(&[seed; 32]))
    }

    const NOW: u64 = 1_790_000_000;

    #[test]
    fn a_key_checks_only_for_its_agent_ticket_and_technician() {
        let k = keys(1);
        let key = k.issue("ag-1", 7, "alice", NOW);
        assert_eq!(k.check(&key, "ag-1", 7, "alice", NOW + 60), Ok(()));
        for (agent, ticket, tech) in [
            ("ag-2", 7, "alice"),
            ("ag-1", 8, "alice"),
            ("ag-1", 7, "bob"),
        ] {
            let refused = k.check(&key, agent, ticket, tech, NOW);
            assert!(
                matches!(&refused, Err(KeyRefusal::NotIssued { agent: a, .. }) if a == agent),
                "{agent} {ticket} {tech}: {refused:?}"
            );
        }
        // Another controller's key is no key here.
        let other = keys(2).issue("ag-1", 7, "alice", NOW);
        assert!(matches!(
            k.check(&other, "ag-1", 7, "alice", NOW),
            Err(KeyRefusal::NotIssued { .. })
        ));
    }

    #[test]
    fn field_boundaries_do_not_collide() {
        let k = keys(1);
        let key = k.issue("ab", 7, "c", NOW);
        assert!(k.check(&key, "a", 7, "bc", NOW).is_err());
    }

    #[test]
    fn a_moved_issue_time_or_an_old_key_is_refused() {
        let k = keys(1);
        let key = k.issue("ag-1", 7, "alice", NOW);
        let later = format!(
            "{:016x}{}",
            NOW + 3600,
            key.get(TIME_HEX..).unwrap_or_default()
        );
        assert!(matches!(
            k.check(&later, "ag-1", 7, "alice", NOW),
            Err(KeyRefusal::NotIssued { .. })
        ));
        let at_limit = NOW + REQUEST_KEY_TTL_SECS;
        assert_eq!(k.check(&key, "ag-1", 7, "alice", at_limit), Ok(()));
        let refused = k.check(&key, "ag-1", 7, "alice", at_limit + 1);
        assert!(
            matches!(refused, Err(KeyRefusal::Expired { days: 90, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let k = keys(1);
        for bad in [
            "",
            "zz",
            &"g".repeat(48),
            &"é".repeat(24),
            "0123456789abcdef",
        ] {
            assert_eq!(
                k.check(bad, "ag-1", 7, "alice", NOW),
                Err(KeyRefusal::Malformed),
                "{bad:?}"
            );
        }
    }
}
