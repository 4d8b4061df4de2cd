//! The controller's self-service scripts arriving on the agent's link: each offered one
//! is cached if it verifies (`crate::selfhelp::cache`), and the list withdraws the rest.

use deskside_proto::msg::agent::AgentReply;
use deskside_proto::msg::script::SignedScript;
use tracing::warn;

use super::{AgentCtx, failed, refused};
use crate::selfhelp::cache::{MAX_CACHED, SCOPE, admit, controller, dir, names, path};
use crate::state::write_atomic;

/// The controller offers `script`: cache it if it verifies, refuse it otherwise.
pub(crate) fn offered(ctx: &AgentCtx, script: SignedScript) -> AgentReply {
    let who = controller();
    let name = script.entry.name.clone();
    if let Err(refusal) = admit(&script, &ctx.script_key) {
        return refused(ctx, &who, SCOPE, refusal);
    }
    let held = names(&ctx.state);
    if held.len() >= MAX_CACHED && !held.contains(&name) {
        return failed(
            ctx,
            &who,
            SCOPE,
            format!("{MAX_CACHED} self-service scripts are cached already; {name} is not"),
        );
    }
    let stored = std::fs::create_dir_all(dir(&ctx.state))
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::to_vec(&script).map_err(|e| e.to_string()))
        .and_then(|json| {
            write_atomic(&path(&ctx.state, &name), &json, 0o600).map_err(|e| e.to_string())
        });
    if let Err(e) = stored {
        return failed(ctx, &who, SCOPE, format!("caching script {name}: {e}"));
    }
    let detail = format!(
        "self-service script {name} v{} verified and cached",
        script.entry.version
    );
    if let Err(reason) = ctx.audit(&who, SCOPE, "cached", detail) {
        return AgentReply::Failed { reason };
    }
    AgentReply::SelfService {
        cached: names(&ctx.state),
    }
}

/// Drops every cached script not in `keep` (no longer self-service, or removed).
pub(crate) fn retain(ctx: &AgentCtx, keep: &[String]) -> AgentReply {
    for name in names(&ctx.state) {
        if !keep.contains(&name) {
            if let Err(e) = std::fs::remove_file(path(&ctx.state, &name)) {
                warn!(script = %name, error = %e, "a withdrawn self-service script was not removed");
                continue;
            }
            let _ = ctx.audit(
                &controller(),
                SCOPE,
                "withdrawn",
                format!("self-service script {name} is no longer in the catalog; removed"),
            );
        }
    }
    AgentReply::SelfService {
        cached: names(&ctx.state),
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::agent::RefusalCode;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::selfhelp::cache::tests::signed;
    use crate::state::StateDir;

    #[test]
    fn an_offered_script_is_cached_only_when_signed_and_self_service() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path().to_owned());
        state.create()?;
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let ctx = AgentCtx::new(state.clone(), "pc-1".into(), String::new(), public)?;

        let plain = offered(&ctx, signed(&key, false));
        assert!(
            matches!(&plain, AgentReply::Refused(r) if r.code == RefusalCode::Policy),
            "{plain:?}"
        );
        let mut forged = signed(&key, true);
        forged.body.push_str("rm -rf ~\n");
        let forged = offered(&ctx, forged);
        assert!(
            matches!(&forged, AgentReply::Refused(r) if r.code == RefusalCode::BadSignature),
            "{forged:?}"
        );
        assert!(names(&state).is_empty(), "nothing refused was cached");

        let good = offered(&ctx, signed(&key, true));
        assert_eq!(
            good,
            AgentReply::SelfService {
                cached: vec!["flush-dns".into()]
            }
        );
        assert_eq!(
            retain(&ctx, &[]),
            AgentReply::SelfService { cached: Vec::new() }
        );
        Ok(())
    }
}
