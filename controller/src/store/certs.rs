//! Which client certificates are accepted, and renewal: a renewed certificate becomes
//! the current one while the certificate the client renewed *with* stays accepted until
//! it expires — so a client that never received its new certificate (lost reply, crash
//! before the write) can still connect and renew again.

use super::StoreResult;
use super::db::{Db, to_i64};
use super::sql::{Sql, args};

/// The certificates the store accepts for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub current: String,
    pub previous: Option<String>,
    pub revoked: bool,
}

impl Credentials {
    /// Whether a certificate with this SHA-256 (hex) may identify the client.
    pub fn accepts(&self, fingerprint: &str) -> bool {
        self.current == fingerprint || self.previous.as_deref() == Some(fingerprint)
    }
}

impl Db {
    pub fn agent_credentials_of(&mut self, id: &str) -> StoreResult<Option<Credentials>> {
        self.conn.row(
            "SELECT cert_sha256, prev_cert_sha256, revoked_at IS NOT NULL FROM agents WHERE id = ?1",
            args![id],
            |r| {
                Ok(Credentials {
                    current: r.get(0)?,
                    previous: r.get(1)?,
                    revoked: r.get(2)?,
                })
            },
        )
    }

    /// Records agent `id`'s renewed certificate; `presented` is the one it renewed with.
    pub fn renew_agent_cert(
        &mut self,
        id: &str,
        presented: &str,
        cert_sha256: &str,
        cert_pem: &str,
        not_after: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "UPDATE agents SET prev_cert_sha256 = ?2, cert_sha256 = ?3, cert_pem = ?4, cert_not_after = ?5 \
             WHERE id = ?1",
            args![id, presented, cert_sha256, cert_pem, to_i64(not_after)],
        )?;
        Ok(())
    }

    /// Records technician `name`'s renewed certificate; `presented` as above.
    pub fn renew_technician_cert(
        &mut self,
        name: &str,
        presented: &str,
        cert_sha256: &str,
        not_after: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "UPDATE technicians SET prev_cert_sha256 = ?2, cert_sha256 = ?3, cert_not_after = ?4 \
             WHERE name = ?1",
            args![name, presented, cert_sha256, to_i64(not_after)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAgent;

    #[test]
    fn renewal_keeps_the_certificate_renewed_with() -> anyhow::Result<()> {
        crate::store::testing::engines(keeps_the_certificate_renewed_with)
    }

    fn keeps_the_certificate_renewed_with(db: &mut Db) -> anyhow::Result<()> {
        db.insert_agent(&NewAgent {
            id: "ag-1".into(),
            hostname: "pc".into(),
            os: "linux".into(),
            cert_sha256: "aa".into(),
            cert_pem: "old".into(),
            cert_not_after: 10,
        })?;
        db.renew_agent_cert("ag-1", "aa", "bb", "new", 20)?;
        let c = db.agent_credentials_of("ag-1")?;
        let c = c.ok_or_else(|| anyhow::anyhow!("agent gone"))?;
        assert!(c.accepts("aa") && c.accepts("bb") && !c.accepts("cc"));
        // The reply was lost and the agent renewed again with its old certificate:
        // the one it holds stays accepted, the never-delivered one does not.
        db.renew_agent_cert("ag-1", "aa", "cc", "newer", 30)?;
        let c = db.agent_credentials_of("ag-1")?;
        let c = c.ok_or_else(|| anyhow::anyhow!("agent gone"))?;
        assert!(c.accepts("aa") && c.accepts("cc") && !c.accepts("bb"));
        assert_eq!(db.agent_cert("ag-1")?, "newer");
        Ok(())
    }
}
