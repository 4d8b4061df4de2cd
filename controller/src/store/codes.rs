//! Support codes users offer, in the store so that a technician on any node finds the
//! agent whichever node it is connected to. Kept as the SHA-256 of the code's digits;
//! one live code per agent.

use sha2::{Digest, Sha256};

use super::StoreResult;
use super::db::{Db, to_i64};
use super::sql::{Sql, args};

/// Support codes are read over the phone: compare digits only.
fn code_key(code: &str) -> String {
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    hex::encode(Sha256::digest(digits.as_bytes()))
}

impl Db {
    /// Agent `agent`'s user offers `code` until `expires_at`: it replaces the agent's
    /// previous code (and an expired or older holder of the same digits).
    pub fn offer_code(
        &mut self,
        agent: &str,
        code: &str,
        expires_at: u64,
        now: u64,
    ) -> StoreResult<()> {
        let key = code_key(code);
        let mut tx = self.write()?;
        tx.exec(
            "DELETE FROM support_codes WHERE agent_id = ?1 OR code_sha256 = ?2 OR expires_at <= ?3",
            args![agent, key.as_str(), to_i64(now)],
        )?;
        tx.exec(
            "INSERT INTO support_codes (code_sha256, agent_id, expires_at) VALUES (?1, ?2, ?3)",
            args![key, agent, to_i64(expires_at)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The agent whose user offers `code`, if it has not expired by `now`.
    pub fn code_owner(&mut self, code: &str, now: u64) -> StoreResult<Option<String>> {
        self.conn.row(
            "SELECT agent_id FROM support_codes WHERE code_sha256 = ?1 AND expires_at > ?2",
            args![code_key(code), to_i64(now)],
            |r| r.get(0),
        )
    }

    /// Forgets codes expired by `now`; returns how many.
    pub fn forget_expired_codes(&mut self, now: u64) -> StoreResult<usize> {
        let n = self.conn.exec(
            "DELETE FROM support_codes WHERE expires_at <= ?1",
            args![to_i64(now)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_code_offered_through_one_handle_is_found_through_another() -> anyhow::Result<()> {
        crate::store::testing::engine_pairs(|b, a| {
            b.offer_code("agent-1", "123-456", 200, 100)?;
            // Read over the phone with other separators.
            assert_eq!(a.code_owner("123 456", 150)?, Some("agent-1".into()));
            assert_eq!(a.code_owner("123456", 200)?, None, "expired at 200");
            assert_eq!(a.code_owner("654-321", 150)?, None);
            Ok(())
        })
    }

    #[test]
    fn a_new_code_replaces_the_agents_previous_one() -> anyhow::Result<()> {
        crate::store::testing::engines(|db| {
            db.offer_code("agent-1", "111-111", 500, 100)?;
            db.offer_code("agent-2", "222-222", 500, 100)?;
            db.offer_code("agent-1", "333-333", 500, 110)?;
            assert_eq!(db.code_owner("111-111", 120)?, None);
            assert_eq!(db.code_owner("333-333", 120)?, Some("agent-1".into()));
            assert_eq!(db.code_owner("222-222", 120)?, Some("agent-2".into()));
            // The same digits offered by another agent now are theirs.
            db.offer_code("agent-3", "222-222", 500, 130)?;
            assert_eq!(db.code_owner("222222", 140)?, Some("agent-3".into()));
            assert_eq!(db.forget_expired_codes(600)?, 2);
            Ok(())
        })
    }
}
