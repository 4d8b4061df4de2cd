//! The user runs a cached self-service script: the machine's policy must allow it, the
//! script is verified again and its parameters checked, then it runs exactly as a
//! technician's run does (own process group, timeout, output cap). The run is audited
//! with the local user's name, and its signed record is kept for the next request for
//! help.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use deskside_proto::msg::script::{OutputStream, RunEvent, RunRecord};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::policy::{Policy, SelfService};
use crate::script::run::{RunSpec, run as run_spec};
use crate::script::verify::verify;
use crate::serve::AgentCtx;

use super::render::shown;
use super::{FixOutcome, SCOPE, actor, cache, kept};

/// One self-fix at a time: a second click while a fix runs waits for it, rather than
/// running two scripts that touch the same thing.
static RUNNING: Mutex<()> = Mutex::const_new(());

/// Why the machine's policy refuses, or `None`.
pub fn policy_refusal(policy: &Policy) -> Option<String> {
    (policy.scopes.self_service == SelfService::Deny).then(|| {
        "this machine's policy does not allow self-service fixes (policy.toml: [scopes] self-service = \"deny\"); ask your help desk instead: deskside-agent ask \"what is wrong\"".to_owned()
    })
}

pub(crate) async fn run(
    ctx: &AgentCtx,
    user: &str,
    name: &str,
    params: &[(String, String)],
) -> Result<FixOutcome, String> {
    let policy = Policy::load(&ctx.state.policy())
        .map_err(|e| format!("the machine's policy cannot be read, so nothing runs: {e}"))?;
    let script = cache::find(&ctx.state, &ctx.script_key, name)?;
    let who = actor(user, script.entry.tier, 0);
    if let Some(reason) = policy_refusal(&policy) {
        let _ = ctx.audit(&who, SCOPE, "refused", format!("script {name}: {reason}"));
        return Err(reason);
    }
    let env = match verify(&script, params, &ctx.script_key) {
        Ok(env) => env,
        Err(refusal) => {
            let _ = ctx.audit(&who, SCOPE, "refused", refusal.reason.clone());
            return Err(refusal.reason);
        }
    };
    ctx.deliveries.room().map_err(|e| e.to_string())?;
    let _one = RUNNING.lock().await;
    let shown_params: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    ctx.audit(
        &who,
        SCOPE,
        "started",
        format!(
            "script {name} v{} {}",
            script.entry.version,
            shown_params.join(" ")
        ),
    )?;
    let work_dir = ctx.state.run_dir();
    std::fs::create_dir_all(&work_dir)
        .and_then(|()| std::fs::set_permissions(&work_dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("script {name}: cannot prepare {}: {e}", work_dir.display()))?;
    ctx.sessions.set_activity(Some(format!(
        "{user} is running the self-service fix {name}"
    )));
    let spec = RunSpec {
        interpreter: script.entry.interpreter,
        body: script.body.clone(),
        env: env.clone(),
        timeout: Duration::from_secs(u64::from(script.entry.timeout_secs)),
        work_dir,
    };
    let (tx, mut rx) = mpsc::channel::<RunEvent>(32);
    let started_at_ms = crate::now_ms();
    let runner = tokio::spawn(async move { run_spec(spec, CancellationToken::new(), tx).await });
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = rx.recv().await {
        if let RunEvent::Output { stream, data } = event {
            match stream {
                OutputStream::Stdout => stdout.extend_from_slice(&data),
                OutputStream::Stderr => stderr.extend_from_slice(&data),
            }
        }
    }
    ctx.sessions.set_activity(None);
    let result = match runner.await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            let reason = format!("script {name} could not start: {e}");
            let _ = ctx.audit(&who, SCOPE, "failed", reason.clone());
            return Err(reason);
        }
        Err(e) => return Err(format!("script {name}: the runner stopped: {e}")),
    };
    let record = RunRecord {
        script: name.to_owned(),
        version: script.entry.version,
        body_sha256: hex::encode(script.entry.body_sha256),
        tier: script.entry.tier,
        agent: ctx.agent_id.clone(),
        technician: who.technician.clone(),
        ticket: 0,
        grant: None,
        params: env,
        started_at_ms,
        result: result.clone(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    let item = ctx
        .seal(&record)
        .map_err(|e| format!("script {name}: {e}"))?;
    kept::put(&ctx.state, &who, &item).map_err(|e| format!("keeping the run of {name}: {e}"))?;
    ctx.audit(
        &who,
        SCOPE,
        "finished",
        format!(
            "script {name}: exit {:?} signal {:?} in {} ms{}{}, key {}",
            result.exit_code,
            result.signal,
            result.duration_ms,
            if result.timed_out { ", timed out" } else { "" },
            if result.truncated {
                ", output truncated"
            } else {
                ""
            },
            item.key
        ),
    )?;
    Ok(FixOutcome {
        script: name.to_owned(),
        version: script.entry.version,
        result,
        stdout: shown(&record.stdout),
        stderr: shown(&record.stderr),
        evidence_key: item.key,
    })
}
