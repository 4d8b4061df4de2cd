//! Sessions the user starts with a support code, and wrong or reused codes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_started_session_by_code_and_wrong_or_reused_codes() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, tech) = cluster.technician("hotline", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let t = ticket(&tech, &agent.id).await?;
    let mut user = control(&agent).await?;
    let code = offer_code(&mut user).await?;
    match tech
        .request(&TechRequest::JoinSession {
            code: "000-000".into(),
            ticket: t,
        })
        .await
    {
        Err(e) if e.to_string().contains("no connected machine offers") => {}
        other => bail!("a wrong code must be refused, got {other:?}"),
    }
    // The code reaches the controller as a notice; wait for it to be joinable. (Each try
    // before it arrives counts as a wrong code; past the free ones the throttle makes the
    // next try wait, and this loop waits with it.)
    let mut joined = None;
    for _ in 0..100 {
        match tech
            .request(&TechRequest::JoinSession {
                code: code.code.replace('-', " "),
                ticket: t,
            })
            .await
        {
            Ok(reply) => {
                joined = Some(reply);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let got = outcome(
        joined
            .ok_or_else(|| anyhow::anyhow!("never joined"))
            .map(Ok)?,
    )?;
    let SessionOutcome::Approved(grant) = got else {
        bail!("expected approval, got {got:?}")
    };
    assert_eq!(grant.origin, GrantOrigin::UserCode);
    assert_eq!(grant.scopes, vec![Scope::Diagnostics]);
    assert!(matches!(
        diag(&tech, &agent.id, t).await?,
        TechReply::Diagnostics(_)
    ));

    // Reused: the agent refuses; codes are single-use.
    let again = tech
        .request(&TechRequest::JoinSession {
            code: code.code.clone(),
            ticket: t,
        })
        .await;
    let msg = format!(
        "{:#}",
        again
            .map_err(anyhow::Error::from)
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("no error"))
    );
    assert!(msg.contains("already used"), "{msg}");

    // The user ends it; the technician is refused from then on and the ticket says so.
    let ControlReply::Done { message } = user.call(&ControlRequest::End).await? else {
        bail!("end")
    };
    assert!(message.contains("ended"), "{message}");
    assert_eq!(
        code_of(diag(&tech, &agent.id, t).await),
        Some(ErrorCode::NoSession)
    );
    let mut ended = false;
    for _ in 0..100 {
        let TechReply::Ticket(view) = tech.request(&TechRequest::ShowTicket { number: t }).await?
        else {
            bail!("ticket")
        };
        if view
            .timeline
            .iter()
            .any(|e| e.kind == "session_ended" && e.detail.contains("(user)"))
        {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the user's end never reached the ticket timeline");
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
