//! The script catalog in the store: signed entries with their bodies.

use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, args};
use super::{StoreError, StoreResult};
use crate::clock::now_secs;
use deskside_proto::msg::script::{CatalogEntry, SignedScript};

/// A catalog row.
#[derive(Debug, Clone)]
pub struct StoredScript {
    pub script: SignedScript,
    pub added_at: u64,
}

fn decode_entry(json: &str) -> StoreResult<CatalogEntry> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Conflict(format!("a catalog entry in the database is damaged: {e}"))
    })
}

impl Db {
    /// Adds or replaces a script.
    pub fn put_script(&mut self, s: &SignedScript) -> StoreResult<()> {
        let json =
            serde_json::to_string(&s.entry).map_err(|e| StoreError::Conflict(e.to_string()))?;
        self.conn.exec(
            "INSERT INTO scripts (name, version, entry_json, body, signature, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, entry_json = excluded.entry_json, \
             body = excluded.body, signature = excluded.signature, added_at = excluded.added_at",
            args![s.entry.name.as_str(), i64::from(s.entry.version), json, s.body.as_str(), s.signature.as_slice(), to_i64(now_secs())],
        )?;
        Ok(())
    }

    pub fn script(&mut self, name: &str) -> StoreResult<StoredScript> {
        let row = self.conn.row(
            "SELECT entry_json, body, signature, added_at FROM scripts WHERE name = ?1",
            args![name],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<i64>(3)?,
                ))
            },
        )?;
        let (json, body, signature, added_at) = row.ok_or_else(|| {
            StoreError::NotFound(format!(
                "no script named {name:?} in the catalog; `deskside script list` shows them"
            ))
        })?;
        Ok(StoredScript {
            script: SignedScript {
                entry: decode_entry(&json)?,
                body,
                signature,
            },
            added_at: to_u64(added_at),
        })
    }

    pub fn scripts(&mut self) -> StoreResult<Vec<CatalogEntry>> {
        let rows: Vec<String> = self.conn.rows(
            "SELECT entry_json FROM scripts ORDER BY name",
            args![],
            |r| r.get(0),
        )?;
        rows.iter().map(|j| decode_entry(j)).collect()
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::identity::Tier;
    use deskside_proto::msg::script::Interpreter;

    use super::*;

    fn signed(version: u32, signature: Vec<u8>) -> SignedScript {
        SignedScript {
            entry: CatalogEntry {
                name: "flush-dns".into(),
                version,
                description: "flushes the resolver cache".into(),
                changes: "the resolver cache".into(),
                tier: Tier::L1,
                interpreter: Interpreter::Sh,
                os: "linux".into(),
                timeout_secs: 30,
                params: Vec::new(),
                body_sha256: [7; 32],
                self_service: false,
            },
            body: "resolvectl flush-caches\n".into(),
            signature,
        }
    }

    #[test]
    fn a_script_and_its_signature_bytes_come_back_and_a_new_version_replaces_it()
    -> anyhow::Result<()> {
        crate::store::testing::engines(|db| {
            // Every byte value, NUL and high bit included, survives BLOB and BYTEA.
            let bytes: Vec<u8> = (0..=255).collect();
            db.put_script(&signed(1, bytes.clone()))?;
            let got = db.script("flush-dns")?;
            assert_eq!(got.script, signed(1, bytes));
            db.put_script(&signed(2, vec![1, 2, 3]))?;
            assert_eq!(db.script("flush-dns")?.script, signed(2, vec![1, 2, 3]));
            assert_eq!(db.scripts()?.len(), 1);
            assert!(matches!(db.script("nope"), Err(StoreError::NotFound(_))));
            Ok(())
        })
    }
}
