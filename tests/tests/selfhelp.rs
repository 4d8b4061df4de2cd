//! L0 self-service end to end, with a real controller and a real agent: the catalog's
//! self-service scripts reach the agent ahead of time, the machine's user runs one from
//! the control socket (and the audit log shows who), a script not marked self-service or
//! changed after signing is refused, the machine's policy can deny it all, and asking for
//! help opens a ticket with the evidence that `deskside ticket list` shows and whose
//! export `deskside ticket verify` accepts — until the per-machine limit refuses.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::selfhelp::{cache, client};
use deskside_agent::state::StateDir;
use deskside_controller::server;
use deskside_proto::msg::identity::Tier;
use deskside_tests::{Agent, Cluster, bin, run};
use serde_json::Value;

const FIX_BODY: &str = "echo \"fixed with mode $DESKSIDE_PARAM_MODE\"\n";

/// A controller with one self-service script (`fix-it`, an enum parameter) and one
/// ordinary script (`plain`), and an agent that has cached what it was offered.
async fn setup() -> Result<(Cluster, Agent)> {
    let cluster = Cluster::start().await?;
    cluster.add_test_script(
        "fix-it",
        "l1",
        30,
        "self_service = true\n\n[[params]]\nname = \"mode\"\ndescription = \"how\"\ntype = \"enum\"\nvalues = [\"quick\", \"full\"]\ndefault = \"quick\"\n",
        FIX_BODY,
    )?;
    cluster.add_test_script("plain", "l1", 30, "", "echo plain\n")?;
    let agent = cluster.agent("pc", "").await?;
    wait_cached(&agent.state, "fix-it").await?;
    Ok((cluster, agent))
}

/// Waits until the agent's service answers on its socket with `name` among its fixes.
async fn wait_cached(state: &StateDir, name: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(list) = client::fixes(state).await
            && list.iter().any(|f| f.name == name)
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the agent never cached self-service script {name}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn audit(agent: &Agent) -> Result<Vec<deskside_agent::audit::AuditEntry>> {
    Ok(deskside_agent::audit::read(&agent.state.audit_log())?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_service_script_runs_from_the_control_socket_and_the_audit_names_the_user()
-> Result<()> {
    let (mut cluster, agent) = setup().await?;
    let fixes = client::fixes(&agent.state).await?;
    assert_eq!(
        fixes.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec!["fix-it"],
        "only the self-service script is offered"
    );

    let outcome = client::fix(&agent.state, "fix-it", vec![("mode".into(), "full".into())]).await?;
    assert_eq!(outcome.result.exit_code, Some(0));
    assert!(
        outcome.stdout.contains("fixed with mode full"),
        "{}",
        outcome.stdout
    );
    let entries = audit(&agent)?;
    let finished = entries
        .iter()
        .find(|e| e.scope == "self-service" && e.outcome == "finished")
        .context("no self-service run in the audit log")?;
    assert!(
        finished.technician.ends_with("(self-service)") && finished.detail.contains("fix-it"),
        "{finished:?}"
    );
    assert!(
        finished.detail.contains(&outcome.evidence_key),
        "{finished:?}"
    );

    // Free text where the manifest offers choices is refused before anything runs.
    let bad = client::fix(
        &agent.state,
        "fix-it",
        vec![("mode".into(), "$(id)".into())],
    )
    .await;
    assert!(bad.is_err_and(|e| e.to_string().contains("mode")));

    // The terminal front end, through the real binary.
    let (code, stdout, stderr) = run(Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(agent.state.root())
        .args(["fix", "fix-it", "--param", "mode=quick"]))?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("fixed with mode quick") && stdout.contains("done"),
        "{stdout}"
    );

    // The machine's policy can deny it: refused with the reason, nothing runs.
    std::fs::write(
        agent.state.policy(),
        "[scopes]\n\"self-service\" = \"deny\"\n",
    )?;
    let denied = client::fix(&agent.state, "fix-it", Vec::new()).await;
    assert!(denied.is_err_and(|e| e.to_string().contains("policy does not allow self-service")),);
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_not_marked_self_service_or_changed_after_signing_is_refused() -> Result<()> {
    let (mut cluster, agent) = setup().await?;
    let plain = client::fix(&agent.state, "plain", Vec::new()).await;
    assert!(plain.is_err_and(|e| {
        e.to_string()
            .contains("no self-service script named \"plain\"")
    }),);

    // Someone with access to the state dir flags the ordinary script as self-service:
    // the flag is signed, so the signature no longer verifies.
    let mut forged = cluster.store()?.blocking(|db| db.script("plain"))?.script;
    forged.entry.self_service = true;
    std::fs::write(
        cache::dir(&agent.state).join("plain.json"),
        serde_json::to_vec(&forged)?,
    )?;
    let refused = client::fix(&agent.state, "plain", Vec::new()).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("signature does not verify")),);

    // The cached self-service script with its body changed: refused too.
    let path = cache::dir(&agent.state).join("fix-it.json");
    let mut cached: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    cached["body"] = Value::String("echo owned\n".into());
    std::fs::write(&path, serde_json::to_vec(&cached)?)?;
    let changed = client::fix(&agent.state, "fix-it", Vec::new()).await;
    assert!(changed.is_err_and(|e| e.to_string().contains("does not match the signed hash")));
    assert!(
        !audit(&agent)?.iter().any(|e| e.outcome == "started"),
        "nothing ran"
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_help_opens_a_ticket_with_the_evidence_and_the_fourth_ask_in_an_hour_is_refused()
-> Result<()> {
    let (mut cluster, agent) = setup().await?;
    client::fix(&agent.state, "fix-it", Vec::new()).await?;
    let report = client::check(&agent.state).await?;
    assert!(!report.hostname.is_empty());

    let asked = client::ask(
        &agent.state,
        "the printer prints nothing\nsince this morning",
    )
    .await?;
    let ticket = asked
        .ticket
        .context("the ask was not answered with a ticket")?;
    assert!(
        asked.message.contains(&format!("#{ticket}")),
        "{}",
        asked.message
    );

    // An L1 technician sees it in the list, opened from the machine for its user.
    cluster.technician("lee", Tier::L1).await?;
    let tech = || {
        let mut c = Command::new(bin("deskside").unwrap_or_default());
        c.env("DESKSIDE_PROFILE", cluster.profile_path("lee"));
        c
    };
    let (code, stdout, stderr) = run(tech().args(["ticket", "list", "--json"]))?;
    assert_eq!(code, 0, "{stderr}");
    let list: Value = serde_json::from_str(&stdout)?;
    let t = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["number"] == ticket))
        .context("the ticket is not in `ticket list`")?;
    assert_eq!(t["title"], "the printer prints nothing");
    assert_eq!(t["agent"], agent.id.as_str());
    assert!(
        t["requester"].as_str().is_some_and(|r| r.contains('@')),
        "{t}"
    );
    assert_eq!(t["evidence_count"], 2, "the snapshot and the self-fix run");

    let out = cluster.dir.path().join("export");
    let (code, stdout, stderr) = run(tech()
        .args(["ticket", "export", &ticket.to_string(), "--out"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("verifies"), "{stdout}");

    // Two more fit in the hour; the fourth is refused with the reason and when to retry.
    for n in 2..=3 {
        let again = client::ask(&agent.state, &format!("still broken ({n})")).await?;
        assert!(again.ticket.is_some_and(|t| t > ticket), "{again:?}");
    }
    let fourth = client::ask(&agent.state, "please").await;
    let said = fourth.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        said.contains("3 times in the last hour") && said.contains("try again in"),
        "{said}"
    );
    let (code, stdout, stderr) = run(Command::new(bin("deskside-agent")?)
        .arg("--state")
        .arg(agent.state.root())
        .args(["ask", "once more"]))?;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("try again in"), "{stderr}");
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_help_made_while_the_controller_is_down_opens_its_ticket_when_it_returns()
-> Result<()> {
    let (mut cluster, agent) = setup().await?;
    let addr = cluster
        .running
        .as_ref()
        .map(|r| r.addr)
        .context("not running")?;
    cluster.stop().await;
    let asked = client::ask(&agent.state, "no network since the update").await?;
    assert_eq!(asked.ticket, None);
    assert!(asked.message.contains("saved"), "{}", asked.message);

    cluster.running = Some(server::start(&cluster.data, addr).await?);
    let start = Instant::now();
    let ticket = loop {
        let tickets = cluster.store()?.blocking(|db| db.tickets())?;
        if let Some(t) = tickets
            .iter()
            .find(|t| t.title == "no network since the update")
        {
            break t.clone();
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("the saved request never became a ticket");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ticket.agent.as_deref(), Some(agent.id.as_str()));
    assert_eq!(ticket.evidence_count, 1, "its snapshot");
    // The user finds the number in the agent's audit log.
    let start = Instant::now();
    while !audit(&agent)?
        .iter()
        .any(|e| e.outcome == "opened" && e.ticket == ticket.number)
    {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the audit log never named ticket #{}", ticket.number);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
