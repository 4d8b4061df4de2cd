//! A script request: verify its signature against the catalog key, run it under the
//! grant, stream its output, and keep the signed run record.

use std::time::{Duration, Instant};

use deskside_proto::msg::agent::{AgentReply, Requester};
use deskside_proto::msg::script::{OutputStream, RunEvent, RunRecord, SignedScript};
use deskside_proto::msg::session::Scope;
use tokio::sync::mpsc;

use crate::script::run::{RunSpec, run};
use crate::script::verify::verify;

use super::{AgentCtx, failed, keep_and_audit, refused};

pub(super) async fn run_script(
    ctx: &AgentCtx,
    who: &Requester,
    script: SignedScript,
    params: &[(String, String)],
    replies: mpsc::Sender<AgentReply>,
) {
    let scope = Scope::for_script(script.entry.tier);
    let name = script.entry.name.clone();
    if let Err(full) = ctx.deliveries.room() {
        let _ = replies
            .send(failed(ctx, who, scope.as_str(), full.to_string()))
            .await;
        return;
    }
    let checked = ctx
        .sessions
        .authorize(who, scope)
        .and_then(|cancel| verify(&script, params, &ctx.script_key).map(|env| (cancel, env)));
    let ((cancel, grant), env) = match checked {
        Ok(v) => v,
        Err(refusal) => {
            let _ = replies
                .send(refused(ctx, who, scope.as_str(), refusal))
                .await;
            return;
        }
    };
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    let record_params = env.clone();
    let entry = script.entry.clone();
    if let Err(reason) = ctx.audit(
        who,
        scope.as_str(),
        "started",
        format!(
            "script {name} v{} {}",
            script.entry.version,
            shown.join(" ")
        ),
    ) {
        let _ = replies.send(AgentReply::Failed { reason }).await;
        return;
    }
    if let Err(e) = private_dir(&ctx.state.run_dir()) {
        let reason = format!(
            "script {name}: cannot prepare {}: {e}",
            ctx.state.run_dir().display()
        );
        let _ = ctx.audit(who, scope.as_str(), "failed", reason.clone());
        let _ = replies.send(AgentReply::Failed { reason }).await;
        return;
    }
    ctx.sessions
        .set_activity(Some(format!("{} is running script {name}", who.technician)));
    let spec = RunSpec {
        interpreter: script.entry.interpreter,
        body: script.body,
        env,
        timeout: Duration::from_secs(u64::from(script.entry.timeout_secs)),
        work_dir: ctx.state.run_dir(),
    };
    let (tx, mut rx) = mpsc::channel::<RunEvent>(32);
    let started = Instant::now();
    let started_at_ms = crate::now_ms();
    let runner = tokio::spawn(async move { run(spec, cancel, tx).await });
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = rx.recv().await {
        if let RunEvent::Output { stream, data } = &event {
            // The runner already caps each stream at MAX_OUTPUT_BYTES.
            match stream {
                OutputStream::Stdout => stdout.extend_from_slice(data),
                OutputStream::Stderr => stderr.extend_from_slice(data),
            }
        }
        // A technician who went away does not stop the run; output is still counted.
        let _ = replies.send(AgentReply::Run(event)).await;
    }
    ctx.sessions.set_activity(None);
    let result = match runner.await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            let reason = format!("script {name} could not start: {e}");
            let _ = ctx.audit(who, scope.as_str(), "failed", reason.clone());
            let _ = replies.send(AgentReply::Failed { reason }).await;
            return;
        }
        Err(e) => {
            let _ = replies
                .send(AgentReply::Failed {
                    reason: format!("script {name}: the runner stopped: {e}"),
                })
                .await;
            return;
        }
    };
    let detail = format!(
        "script {name}: exit {:?} signal {:?} in {} ms{}{}{}",
        result.exit_code,
        result.signal,
        started.elapsed().as_millis(),
        if result.timed_out { ", timed out" } else { "" },
        if result.cancelled {
            ", cancelled (session ended)"
        } else {
            ""
        },
        if result.truncated {
            ", output truncated"
        } else {
            ""
        },
    );
    let record = RunRecord {
        script: name.clone(),
        version: entry.version,
        body_sha256: hex::encode(entry.body_sha256),
        tier: entry.tier,
        agent: ctx.agent_id.clone(),
        technician: who.technician.clone(),
        ticket: who.ticket,
        grant,
        params: record_params,
        started_at_ms,
        result: result.clone(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    let sealed = ctx.seal(&record);
    let evidence = match sealed {
        Ok(item) => {
            let detail = format!("{detail}, key {}", item.key);
            match keep_and_audit(ctx, who, scope.as_str(), &item, "finished", detail).await {
                Ok(()) => AgentReply::Evidence(Box::new(item)),
                Err(reason) => AgentReply::Failed { reason },
            }
        }
        Err(e) => failed(ctx, who, scope.as_str(), e.to_string()),
    };
    let _ = replies
        .send(AgentReply::Run(RunEvent::Finished(result)))
        .await;
    let _ = replies.send(evidence).await;
}

/// Creates `dir` readable by the agent's user only.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
