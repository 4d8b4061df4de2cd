//! What the user controls on the machine: disabling remote help, a policy deny no session
//! overcomes, the support screen, and notices whose sender cannot be checked.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_everything_until_enable_and_policy_deny_cannot_be_overridden() -> Result<()>
{
    let mut cluster = Cluster::start().await?;
    let managed = cluster
        .agent(
            "kiosk",
            "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"deny\"\n",
        )
        .await?;
    let (_p, tech) = cluster.technician("bob", Tier::L2).await?;
    wait_online(&tech, &managed.id).await?;
    let t = ticket(&tech, &managed.id).await?;

    // Policy allow: a session is granted without a prompt; deny is final for anyone.
    let got = outcome(
        tech.request(&ask(&managed.id, t, &[Scope::Diagnostics], 60, 5))
            .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Approved(ref g) if g.origin == GrantOrigin::Policy),
        "{got:?}"
    );
    let got = outcome(
        tech.request(&ask(
            &managed.id,
            t,
            &[Scope::Diagnostics, Scope::ScriptsL1],
            60,
            5,
        ))
        .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("denies scripts:l1")),
        "{got:?}"
    );

    let mut user = control(&managed).await?;
    user.call(&ControlRequest::Disable).await?;
    assert_eq!(
        code_of(diag(&tech, &managed.id, t).await),
        Some(ErrorCode::AgentDisabled)
    );
    let got = outcome(
        tech.request(&ask(&managed.id, t, &[Scope::Diagnostics], 60, 5))
            .await,
    )?;
    assert!(
        matches!(got, SessionOutcome::Refused { ref reason } if reason.contains("switched Deskside off")),
        "{got:?}"
    );
    user.call(&ControlRequest::Enable).await?;
    assert!(matches!(
        diag(&tech, &managed.id, t).await?,
        TechReply::Diagnostics(_)
    ));

    let (audit, _) = deskside_agent::audit::read(&managed.state.audit_log())?;
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "refused" && e.detail.contains("switched Deskside off"))
    );
    managed.stop().await;
    cluster.stop().await;
    Ok(())
}

/// The user's screen: `deskside-agent support` (the real binary) shows a code, sees the
/// technician join, and ends the session from the keyboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_screen_shows_a_code_and_ends_the_session_on_a_key() -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("home-pc", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    control(&agent).await?; // the service's socket is up

    let mut screen = Command::new(deskside_tests::bin("deskside-agent")?)
        .arg("--state")
        .arg(agent.state.root())
        .args(["support", "--scopes", "diagnostics", "--for", "10m"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut keys = screen
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdin"))?;
    let stdout = screen
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    async fn until(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        needle: &str,
    ) -> Result<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(_)) => {}
                _ => bail!("the support screen never showed {needle:?}"),
            }
        }
    }
    let line = until(&mut lines, "Your support code is").await?;
    let code: String = line
        .split_whitespace()
        .find(|w| w.len() == 7 && w.contains('-'))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 7, "{line}");

    let mut joined = None;
    for _ in 0..100 {
        if let Ok(reply) = tech
            .request(&TechRequest::JoinSession {
                code: code.clone(),
                ticket: t,
            })
            .await
        {
            joined = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(joined, Some(TechReply::Session(_))), "{joined:?}");
    until(&mut lines, "Active session").await?;
    until(&mut lines, "hotline (l1)").await.ok();

    keys.write_all(b"e\n")?;
    until(&mut lines, "ended").await?;
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::NoSession)
    );
    keys.write_all(b"q\n")?;
    let status = tokio::task::spawn_blocking(move || screen.wait()).await??;
    assert!(status.success());
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_whose_sender_cannot_be_checked_is_deferred_not_taken() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let tech = &tech;
    let join = move |code: String| async move {
        tech.request(&TechRequest::JoinSession { code, ticket: t })
            .await
    };

    // The column every delivery's revocation check reads is gone. The user's support
    // code reaches the controller as a notice; it must not be taken while the controller
    // cannot tell whether this machine was revoked.
    cluster.sql("ALTER TABLE agents RENAME COLUMN revoked_at TO revoked_at_gone")?;
    let mut user = control(&agent).await?;
    let code = offer_code(&mut user).await?;
    // Each refused try counts as a wrong code: stay within the free ones, so that every
    // try is looked up rather than held back by the throttle.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            code_of(join(code.code.clone()).await),
            Some(ErrorCode::NotFound),
            "a code was offered by a machine whose revocation could not be checked"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    // Once the store is whole again, the agent's next delivery of the same notice is
    // taken and the code works.
    cluster.sql("ALTER TABLE agents RENAME COLUMN revoked_at_gone TO revoked_at")?;
    let mut joined = None;
    for _ in 0..300 {
        match join(code.code.clone()).await {
            Ok(reply) => {
                joined = Some(reply);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let Some(reply) = joined else {
        bail!("the deferred support code never arrived");
    };
    assert!(
        matches!(outcome(Ok(reply))?, SessionOutcome::Approved(_)),
        "the user's own code must open the session"
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
