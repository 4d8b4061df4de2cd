//! The self-service scripts the controller sends ahead of time: each is verified as a
//! technician's script is (signature by the enrolled script key, body hash, manifest,
//! operating system) and must carry the signed self-service flag before it is cached in
//! the state directory; it is verified again every time it is read back.

use std::path::{Path, PathBuf};

use deskside_proto::msg::agent::{Refusal, RefusalCode, Requester};
use deskside_proto::msg::identity::{Tier, valid_name};
use deskside_proto::msg::script::SignedScript;
use tracing::warn;

use crate::script::verify::verify_signed;
use crate::state::{StateDir, read_bounded};

/// The audit log's scope for everything a user does with self-service, and the policy
/// key that allows or denies it.
pub const SCOPE: &str = "self-service";

/// Most scripts kept: a catalog holds tens of self-service scripts; the bound keeps a
/// controller from filling the machine's disk through this cache.
pub const MAX_CACHED: usize = 64;
/// Cached scripts end in this; anything else in the directory is not ours.
const SUFFIX: &str = ".json";

/// Where the cache lives: in the 0700 state directory.
pub fn dir(state: &StateDir) -> PathBuf {
    state.root().join("self-service")
}

pub(crate) fn path(state: &StateDir, name: &str) -> PathBuf {
    dir(state).join(format!("{name}{SUFFIX}"))
}

/// Who the cache's audit entries name: the controller that sent the scripts.
pub(crate) fn controller() -> Requester {
    Requester {
        technician: "controller".into(),
        tier: Tier::L1,
        ticket: 0,
        request_key: String::new(),
    }
}

/// Whether `script` may be cached and run as self-service on this machine.
pub fn admit(script: &SignedScript, script_key: &[u8; 32]) -> Result<(), Refusal> {
    verify_signed(script, script_key)?;
    if !script.entry.self_service {
        return Err(Refusal {
            code: RefusalCode::Policy,
            reason: format!(
                "script {} is not marked self-service in the signed catalog; the machine's user may not run it alone",
                script.entry.name
            ),
        });
    }
    Ok(())
}

/// Names of the cached scripts, sorted (not verified: see [`load`]).
pub(crate) fn names(state: &StateDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(state)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.strip_suffix(SUFFIX)
                .filter(|n| valid_name(n))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

fn read(file: &Path, script_key: &[u8; 32]) -> Result<SignedScript, String> {
    let text = read_bounded(file).map_err(|e| e.to_string())?;
    let script: SignedScript =
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", file.display()))?;
    admit(&script, script_key).map_err(|r| r.reason)?;
    Ok(script)
}

/// The cached scripts that still verify, by name. One that does not is skipped (and
/// logged): it will not run.
pub fn load(state: &StateDir, script_key: &[u8; 32]) -> Vec<SignedScript> {
    names(state)
        .into_iter()
        .filter_map(|name| match read(&path(state, &name), script_key) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(script = %name, error = %e, "cached self-service script skipped");
                None
            }
        })
        .collect()
}

/// The cached script `name`, verified now.
pub fn find(state: &StateDir, script_key: &[u8; 32], name: &str) -> Result<SignedScript, String> {
    if !valid_name(name) || !names(state).iter().any(|n| n == name) {
        let have = names(state);
        return Err(format!(
            "no self-service script named {name:?} on this machine (it has: {}); `deskside-agent fixes` lists them",
            if have.is_empty() {
                "none yet".to_owned()
            } else {
                have.join(", ")
            }
        ));
    }
    read(&path(state, name), script_key).map_err(|e| format!("refusing to run {name}: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use deskside_proto::msg::script::{CatalogEntry, Interpreter, signing_bytes};
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha256};

    use super::*;

    pub(crate) fn signed(key: &SigningKey, self_service: bool) -> SignedScript {
        let body = "echo fixed\n";
        let entry = CatalogEntry {
            name: "flush-dns".into(),
            version: 1,
            description: "d".into(),
            changes: "c".into(),
            tier: Tier::L1,
            interpreter: Interpreter::Sh,
            os: "linux".into(),
            timeout_secs: 5,
            params: Vec::new(),
            body_sha256: Sha256::digest(body.as_bytes()).into(),
            self_service,
        };
        let signature = key.sign(&signing_bytes(&entry)).to_bytes().to_vec();
        SignedScript {
            entry,
            body: body.into(),
            signature,
        }
    }

    #[test]
    fn only_a_signed_self_service_script_is_admitted() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        assert_eq!(admit(&signed(&key, true), &public), Ok(()));

        let plain = admit(&signed(&key, false), &public);
        assert!(
            matches!(&plain, Err(r) if r.code == RefusalCode::Policy && r.reason.contains("not marked self-service")),
            "{plain:?}"
        );

        // The flag set after signing: the signature no longer verifies.
        let mut forged = signed(&key, false);
        forged.entry.self_service = true;
        assert_eq!(
            admit(&forged, &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature)
        );

        let other = SigningKey::from_bytes(&[4; 32]);
        assert_eq!(
            admit(&signed(&other, true), &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature)
        );
    }

    #[test]
    fn a_cached_script_changed_on_disk_is_not_loaded_or_found() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path().to_owned());
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        std::fs::create_dir_all(super::dir(&state))?;
        let mut script = signed(&key, true);
        std::fs::write(path(&state, "flush-dns"), serde_json::to_vec(&script)?)?;
        assert_eq!(load(&state, &public).len(), 1);
        assert!(find(&state, &public, "flush-dns").is_ok());

        script.body.push_str("rm -rf ~\n");
        std::fs::write(path(&state, "flush-dns"), serde_json::to_vec(&script)?)?;
        assert!(load(&state, &public).is_empty());
        let refused = find(&state, &public, "flush-dns").err().unwrap_or_default();
        assert!(
            refused.contains("does not match the signed hash"),
            "{refused}"
        );
        let missing = find(&state, &public, "disk-usage")
            .err()
            .unwrap_or_default();
        assert!(
            missing.contains("no self-service script named"),
            "{missing}"
        );
        Ok(())
    }
}
