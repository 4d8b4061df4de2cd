//! Signed scripts end to end: catalog → controller → agent over mutual-TLS QUIC, with
//! the agent verifying signature, hash, grant, tier, policy and parameters itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use deskside_agent::control::ControlRequest;
use deskside_controller::client::{ClientError, TechClient};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{MAX_OUTPUT_BYTES, OutputStream};
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{ErrorCode, RunReport, TechReply, TechRequest};
use deskside_tests::{Cluster, control, processes_with_marker, wait_online};

/// L1 and L2 scopes need a session; diagnostics are unattended.
const POLICY: &str =
    "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"prompt\"\n\"scripts:l2\" = \"prompt\"\n";

struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    result: Result<Box<RunReport>>,
}

async fn run(
    tech: &TechClient,
    agent: &str,
    ticket: u64,
    script: &str,
    params: &[(&str, &str)],
) -> Run {
    let req = TechRequest::RunScript {
        agent: agent.into(),
        ticket,
        script: script.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let reply = tech
        .stream(&req, |r| {
            if let TechReply::RunOutput { stream, data } = r {
                match stream {
                    OutputStream::Stdout => stdout.extend_from_slice(data),
                    OutputStream::Stderr => stderr.extend_from_slice(data),
                }
            }
        })
        .await;
    let result = match reply {
        Ok(TechReply::RunFinished(r)) => Ok(r),
        Ok(other) => Err(anyhow::anyhow!("unexpected {other:?}")),
        Err(e) => Err(e.into()),
    };
    Run {
        stdout,
        stderr,
        result,
    }
}

fn refusal(run: Run) -> (Option<ErrorCode>, String) {
    match run.result {
        Ok(r) => (None, format!("ran: {r:?}")),
        Err(e) => {
            let text = format!("{e:#}");
            let reply = e
                .downcast_ref::<ClientError>()
                .and_then(ClientError::refused);
            (reply.map(|r| r.code), text)
        }
    }
}

async fn session(
    tech: &TechClient,
    agent: &str,
    ticket: u64,
    scopes: &[Scope],
    approve: &deskside_tests::Agent,
) -> Result<()> {
    let mut user = control(approve).await?;
    let req = TechRequest::RequestSession {
        agent: agent.into(),
        ticket,
        scopes: scopes.to_vec(),
        duration_secs: 600,
        wait_secs: 30,
    };
    let pending = tech.request(&req);
    let approver = async {
        let id = deskside_tests::pending_request(&mut user).await?;
        user.call(&ControlRequest::Approve { id }).await?;
        anyhow::Ok(())
    };
    let (reply, approved) = tokio::join!(pending, approver);
    approved?;
    match reply? {
        TechReply::Session(r) if matches!(r.outcome, SessionOutcome::Approved(_)) => Ok(()),
        other => bail!("session not approved: {other:?}"),
    }
}

async fn gone(marker: &str) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let left = processes_with_marker(marker);
        if left.is_empty() || start.elapsed() > Duration::from_secs(3) {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_only_signed_granted_and_validated() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let any = "[[params]]\nname = \"text\"\ndescription = \"anything\"\ntype = \"string\"\npattern = \".*\"\nmax_len = 200\n";
    cluster.add_test_script(
        "echo-param",
        "l1",
        10,
        any,
        "set -eu\nprintf 'got:%s\\n' \"$DESKSIDE_PARAM_TEXT\"\necho to-stderr >&2\nexit 3\n",
    )?;
    cluster.add_test_script("l2-only", "l2", 10, "", "echo l2\n")?;
    cluster.add_test_script(
        "flood",
        "l1",
        30,
        "",
        "head -c 3145728 /dev/zero | tr '\\\\0' x\n",
    )?;
    let agent = cluster.agent("pc", POLICY).await?;
    let (_p, l1) = cluster.technician("alice", Tier::L1).await?;
    let (_p, l2) = cluster.technician("bob", Tier::L2).await?;
    wait_online(&l1, &agent.id).await?;
    let TechReply::Ticket(v) = l1
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "scripts".into(),
            agent: Some(agent.id.clone()),
        })
        .await?
    else {
        bail!("ticket")
    };
    let t = v.ticket.number;

    // No session yet: the agent refuses even a valid, signed L1 script.
    let (code, msg) = refusal(run(&l1, &agent.id, t, "echo-param", &[("text", "x")]).await);
    assert_eq!(code, Some(ErrorCode::NoSession), "{msg}");

    session(
        &l1,
        &agent.id,
        t,
        &[Scope::Diagnostics, Scope::ScriptsL1],
        &agent,
    )
    .await?;
    // Parameters arrive as inert data, never as shell: `$(id); rm -rf /` comes back verbatim.
    let hostile = "$(id); rm -rf / `id` \"'";
    let r = run(&l1, &agent.id, t, "echo-param", &[("text", hostile)]).await;
    let report = r.result?;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("got:{hostile}\n")
    );
    assert_eq!(String::from_utf8_lossy(&r.stderr), "to-stderr\n");
    assert_eq!(report.result.exit_code, Some(3));
    let stored = std::fs::read_to_string(&report.evidence.location)?;
    assert!(
        stored.contains("\"exit_code\": 3") && stored.contains("got:$(id)"),
        "{stored}"
    );

    // Unknown and malformed parameters fail validation before anything runs.
    let (code, msg) = refusal(
        run(
            &l1,
            &agent.id,
            t,
            "echo-param",
            &[("text", "x"), ("extra", "1")],
        )
        .await,
    );
    assert_eq!(code, Some(ErrorCode::BadRequest), "{msg}");

    // Tier: an L1 technician may not run an L2 script (the controller refuses) …
    let (code, msg) = refusal(run(&l1, &agent.id, t, "l2-only", &[]).await);
    assert_eq!(code, Some(ErrorCode::Forbidden), "{msg}");
    // … and an L2 technician without an L2 grant is refused by the agent.
    let (code, msg) = refusal(run(&l2, &agent.id, t, "l2-only", &[]).await);
    assert_eq!(code, Some(ErrorCode::NoSession), "{msg}");

    // Output is capped and the truncation marked; every byte is still counted.
    let r = run(&l1, &agent.id, t, "flood", &[]).await;
    let report = r.result?;
    assert!(report.result.truncated);
    assert_eq!(report.result.stdout_bytes, 3 * 1024 * 1024);
    assert_eq!(r.stdout.len(), MAX_OUTPUT_BYTES);

    // A body changed after signing, and a forged signature: the agent refuses both.
    let db = tamper::Db(cluster.data.database());
    db.exec("UPDATE scripts SET body = body || 'echo pwned' WHERE name = 'echo-param'")?;
    let (code, msg) = refusal(run(&l1, &agent.id, t, "echo-param", &[("text", "x")]).await);
    assert_eq!(code, Some(ErrorCode::AgentRefused), "{msg}");
    assert!(msg.contains("does not match the signed hash"), "{msg}");
    cluster.add_test_script(
        "echo-param",
        "l1",
        10,
        any,
        "printf 'got:%s\\n' \"$DESKSIDE_PARAM_TEXT\"\n",
    )?;
    db.exec("UPDATE scripts SET signature = zeroblob(64) WHERE name = 'echo-param'")?;
    let (code, msg) = refusal(run(&l1, &agent.id, t, "echo-param", &[("text", "x")]).await);
    assert_eq!(code, Some(ErrorCode::AgentRefused), "{msg}");
    assert!(msg.contains("signature does not verify"), "{msg}");

    // Both sides recorded every run and refusal.
    let TechReply::Ticket(view) = l1.request(&TechRequest::ShowTicket { number: t }).await? else {
        bail!("ticket")
    };
    assert_eq!(
        view.evidence
            .iter()
            .filter(|e| e.kind == "script_run")
            .count(),
        2
    );
    assert!(view.timeline.iter().filter(|e| e.kind == "refused").count() >= 4);
    let (audit, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "finished" && e.detail.contains("echo-param"))
    );
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "refused" && e.detail.contains("signed hash"))
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_session_end_kill_the_whole_process_group() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let marker = "[[params]]\nname = \"marker\"\ndescription = \"test marker\"\ntype = \"string\"\npattern = \"[a-z0-9]+\"\nmax_len = 40\n";
    // A grandchild in the background, a child in the foreground: both must die.
    let body = "sleep 1000 &\nsleep 1000\n";
    cluster.add_test_script("hang-short", "l1", 2, marker, body)?;
    cluster.add_test_script("hang-long", "l1", 600, marker, body)?;
    let agent = cluster.agent("pc", POLICY).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "hang".into(),
            agent: Some(agent.id.clone()),
        })
        .await?
    else {
        bail!("ticket")
    };
    let t = v.ticket.number;
    session(&tech, &agent.id, t, &[Scope::ScriptsL1], &agent).await?;

    let m1 = format!("timeout{}", std::process::id());
    let report = run(&tech, &agent.id, t, "hang-short", &[("marker", &m1)])
        .await
        .result?;
    assert!(report.result.timed_out, "{report:?}");
    assert_eq!(
        gone(&format!("DESKSIDE_PARAM_MARKER={m1}")).await,
        Vec::<u32>::new(),
        "processes survived the timeout"
    );

    // The user ends the session while the script runs: the run is cancelled, the group killed.
    let m2 = format!("ended{}", std::process::id());
    let tech = Arc::new(tech);
    let running = {
        let (tech, agent_id, m2) = (tech.clone(), agent.id.clone(), m2.clone());
        tokio::spawn(async move {
            run(&tech, &agent_id, t, "hang-long", &[("marker", &m2)])
                .await
                .result
        })
    };
    let needle = format!("DESKSIDE_PARAM_MARKER={m2}");
    let start = Instant::now();
    while processes_with_marker(&needle).len() < 2 {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the script never started");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control(&agent).await?.call(&ControlRequest::End).await?;
    let report = running.await??;
    assert!(report.result.cancelled, "{report:?}");
    assert_eq!(
        gone(&needle).await,
        Vec::<u32>::new(),
        "processes survived the session's end"
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

/// Tampering with the controller's database the way an attacker with disk access would.
mod tamper {
    pub struct Db(pub std::path::PathBuf);
    impl Db {
        pub fn exec(&self, sql: &str) -> anyhow::Result<()> {
            rusqlite::Connection::open(&self.0)?.execute_batch(sql)?;
            Ok(())
        }
    }
}
