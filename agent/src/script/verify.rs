//! Checks a script from the controller before anything runs: signature by the script key
//! learnt at enrollment, body hash, manifest sanity, and every parameter's type.

use deskside_proto::msg::agent::{Refusal, RefusalCode};
use deskside_proto::msg::script::{MAX_BODY_BYTES, SignedScript, signing_bytes};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

fn bad(code: RefusalCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Verifies `script` against `public_key` and resolves `params` into environment pairs.
pub fn verify(
    script: &SignedScript,
    params: &[(String, String)],
    public_key: &[u8; 32],
) -> Result<Vec<(String, String)>, Refusal> {
    verify_signed(script, public_key)?;
    let name = &script.entry.name;
    script
        .entry
        .resolve_params(params)
        .map_err(|e| bad(RefusalCode::BadParams, format!("script {name}: {e}")))
}

/// Everything [`verify`] checks but the parameters: signature, body hash, manifest
/// sanity and operating system. Used to cache a script before anyone runs it.
pub fn verify_signed(script: &SignedScript, public_key: &[u8; 32]) -> Result<(), Refusal> {
    let name = &script.entry.name;
    let key = VerifyingKey::from_bytes(public_key).map_err(|e| {
        bad(
            RefusalCode::BadSignature,
            format!("the enrolled script key is unusable: {e}"),
        )
    })?;
    let sig_bytes: [u8; 64] = script.signature.as_slice().try_into().map_err(|_| {
        bad(
            RefusalCode::BadSignature,
            format!("script {name}: the signature is not 64 bytes"),
        )
    })?;
    key.verify(&signing_bytes(&script.entry), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| bad(RefusalCode::BadSignature, format!("script {name}: the signature does not verify with the controller's script key; refusing to run it")))?;
    if script.body.len() > MAX_BODY_BYTES {
        return Err(bad(
            RefusalCode::BadSignature,
            format!("script {name}: body over {MAX_BODY_BYTES} bytes"),
        ));
    }
    let digest: [u8; 32] = Sha256::digest(script.body.as_bytes()).into();
    if digest != script.entry.body_sha256 {
        return Err(bad(
            RefusalCode::BadSignature,
            format!(
                "script {name}: the body does not match the signed hash (changed after signing); refusing to run it"
            ),
        ));
    }
    script
        .entry
        .check()
        .map_err(|e| bad(RefusalCode::BadSignature, format!("script {name}: {e}")))?;
    if script.entry.os != std::env::consts::OS {
        return Err(bad(
            RefusalCode::BadParams,
            format!(
                "script {name} is for {}, this machine runs {}",
                script.entry.os,
                std::env::consts::OS
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_proto::msg::identity::Tier;
    use deskside_proto::msg::script::{CatalogEntry, Interpreter, ParamKind, ParamSpec};
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, body: &str) -> SignedScript {
        let entry = CatalogEntry {
            name: "echo".into(),
            version: 1,
            description: "d".into(),
            changes: "nothing".into(),
            tier: Tier::L1,
            interpreter: Interpreter::Sh,
            os: "linux".into(),
            timeout_secs: 5,
            params: vec![ParamSpec {
                name: "word".into(),
                description: String::new(),
                kind: ParamKind::String {
                    pattern: "[a-z]+".into(),
                    max_len: 10,
                },
                default: None,
            }],
            body_sha256: Sha256::digest(body.as_bytes()).into(),
            self_service: false,
        };
        let signature = key.sign(&signing_bytes(&entry)).to_bytes().to_vec();
        SignedScript {
            entry,
            body: body.into(),
            signature,
        }
    }

    fn p(v: &str) -> Vec<(String, String)> {
        vec![("word".into(), v.into())]
    }

    #[test]
    fn good_script_verifies_and_params_resolve() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let s = signed(&key, "echo \"$DESKSIDE_PARAM_WORD\"\n");
        assert_eq!(
            verify(&s, &p("hi"), &key.verifying_key().to_bytes()),
            Ok(vec![("DESKSIDE_PARAM_WORD".into(), "hi".into())])
        );
    }

    #[test]
    fn changed_body_forged_signature_other_key_and_bad_params_are_refused() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let public = key.verifying_key().to_bytes();
        let mut s = signed(&key, "echo hi\n");
        s.body.push_str("rm -rf /\n");
        assert_eq!(
            verify(&s, &p("hi"), &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature)
        );

        let mut s = signed(&key, "echo hi\n");
        if let Some(b) = s.signature.first_mut() {
            *b ^= 1;
        }
        assert_eq!(
            verify(&s, &p("hi"), &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature)
        );

        let mut s = signed(&key, "echo hi\n");
        s.entry.timeout_secs = 3600;
        assert_eq!(
            verify(&s, &p("hi"), &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature),
            "entry edited after signing"
        );

        let other = SigningKey::from_bytes(&[2; 32]);
        let s = signed(&other, "echo hi\n");
        assert_eq!(
            verify(&s, &p("hi"), &public).map_err(|r| r.code),
            Err(RefusalCode::BadSignature)
        );

        let s = signed(&key, "echo hi\n");
        for bad in ["x; rm -rf /", "$(id)", "HI"] {
            assert_eq!(
                verify(&s, &p(bad), &public).map_err(|r| r.code),
                Err(RefusalCode::BadParams),
                "{bad}"
            );
        }
    }
}
