//! Guessing support codes: a technician who enters wrong codes is slowed, then locked
//! out of joining by code; the user's real code still opens the session for a colleague.

use std::time::Duration;

use anyhow::{Result, bail};
use deskside_agent::control::{ControlReply, ControlRequest};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_controller::client::{ClientError, TechClient};
use deskside_controller::server::Options;
use deskside_controller::service::{FIRST_BACKOFF, FREE_WRONG_CODES, LOCKOUT_AFTER};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{ErrorCode, ErrorReply, TechReply, TechRequest};
use deskside_tests::hostile::new_ticket;
use deskside_tests::raw::{metric, metrics};
use deskside_tests::{Cluster, control, wait_online};

async fn join(tech: &TechClient, code: &str, ticket: u64) -> Result<TechReply, ErrorReply> {
    let req = TechRequest::JoinSession {
        code: code.into(),
        ticket,
    };
    match tech.request(&req).await {
        Ok(reply) => Ok(reply),
        Err(ClientError::Refused(r)) => Err(r.0),
        Err(e) => Err(ErrorReply {
            code: ErrorCode::Internal,
            message: format!("{:#}", anyhow::Error::from(e)),
        }),
    }
}

/// A six-digit code that is not `real`.
fn wrong_code(n: u32, real: &str) -> String {
    let real: String = real.chars().filter(char::is_ascii_digit).collect();
    let mut guess = format!("{:06}", 100_000 + n);
    if guess == real {
        guess = format!("{:06}", 200_000 + n);
    }
    guess
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_codes_is_slowed_then_locked_out_and_the_real_code_still_opens_the_session()
-> Result<()> {
    let mut cluster = Cluster::start_with(Options {
        metrics_listen: Some("127.0.0.1:0".parse()?),
        ..Options::default()
    })
    .await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, hotline) = cluster.technician("hotline", Tier::L1).await?;
    let (_p, mallory) = cluster.technician("mallory", Tier::L1).await?;
    wait_online(&hotline, &agent.id).await?;
    let ours = new_ticket(&hotline, &agent.id).await?;
    let theirs = new_ticket(&mallory, &agent.id).await?;

    // The user starts a session and reads out a code; someone else starts guessing.
    let mut user = control(&agent).await?;
    let ControlReply::Code(real) = user
        .call(&ControlRequest::Support {
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
        })
        .await?
    else {
        bail!("the user got no code");
    };

    // The first wrong codes are taken as typos.
    for n in 1..=FREE_WRONG_CODES {
        let e = join(&mallory, &wrong_code(n, &real.code), theirs)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a wrong code opened a session"))?;
        assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
        assert!(
            e.message
                .contains("no connected machine offers that support code")
                && e.message
                    .contains(&format!("wrong support code {n} of {LOCKOUT_AFTER}")),
            "{e:?}"
        );
    }
    // Past them, each wrong code makes the next wait, and a try before the wait is over
    // is not even checked: the real code is turned down with the wait named.
    let mut wait = FIRST_BACKOFF;
    for n in FREE_WRONG_CODES + 1..LOCKOUT_AFTER {
        let e = join(&mallory, &wrong_code(n, &real.code), theirs)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a wrong code opened a session"))?;
        assert!(
            e.message.contains(&format!(
                "wait {} s before entering another",
                wait.as_secs()
            )),
            "{e:?}"
        );
        let early = join(&mallory, &real.code, theirs).await;
        let Err(e) = early else {
            bail!("a guess during the back-off was checked: {early:?}");
        };
        assert_eq!(e.code, ErrorCode::Throttled, "{e:?}");
        assert!(
            e.message
                .contains("too many wrong support codes in a row: wait"),
            "{e:?}"
        );
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
        wait *= 2;
    }
    // The last one locks the technician out; the real code is refused to them, saying
    // for how long and what to do instead.
    let e = join(&mallory, &wrong_code(LOCKOUT_AFTER, &real.code), theirs)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong code opened a session"))?;
    assert!(
        e.message
            .contains("joining by code is now locked for this technician for 15 min"),
        "{e:?}"
    );
    let locked = join(&mallory, &real.code, theirs).await;
    let Err(e) = locked else {
        bail!("a locked-out technician joined: {locked:?}");
    };
    assert_eq!(e.code, ErrorCode::Throttled, "{e:?}");
    assert!(
        e.message
            .contains("joining by code is locked for this technician for another")
            && e.message.contains("deskside session request"),
        "{e:?}"
    );

    // The technician the user is on the phone with joins with the real code.
    let reply = join(&hotline, &real.code, ours).await;
    let Ok(TechReply::Session(report)) = reply else {
        bail!("the real code did not open the session: {reply:?}");
    };
    let SessionOutcome::Approved(grant) = report.outcome else {
        bail!("expected approval, got {:?}", report.outcome);
    };
    assert_eq!(grant.origin, GrantOrigin::UserCode);
    assert_eq!(grant.technician, "hotline");

    // Every wrong code is on the guesser's ticket, under their name; never the code.
    let TechReply::Ticket(view) = mallory
        .request(&TechRequest::ShowTicket { number: theirs })
        .await?
    else {
        bail!("no ticket view");
    };
    let wrong: Vec<_> = view
        .timeline
        .iter()
        .filter(|e| e.detail.contains("session join by support code refused"))
        .collect();
    assert_eq!(wrong.len(), usize::try_from(LOCKOUT_AFTER)?, "{view:?}");
    assert!(wrong.iter().all(|e| e.actor == "mallory"), "{wrong:?}");
    assert!(
        wrong
            .iter()
            .all(|e| !e.detail.contains(&wrong_code(1, &real.code))),
        "{wrong:?}"
    );

    // And counted.
    let text = metrics(&cluster).await?;
    let refusals = |reason: &str| {
        metric(
            &text,
            &format!("deskside_support_code_refusals_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refusals("wrong_code"), f64::from(LOCKOUT_AFTER), "{text}");
    assert_eq!(
        refusals("backoff"),
        f64::from(LOCKOUT_AFTER - FREE_WRONG_CODES - 1),
        "{text}"
    );
    assert_eq!(refusals("locked_out"), 1.0, "{text}");
    assert_eq!(
        metric(&text, "deskside_support_code_lockouts_total"),
        1.0,
        "{text}"
    );
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_sent_in_parallel_do_not_slip_past_the_throttle() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let agent = cluster.agent("desk", DEFAULT_POLICY).await?;
    let (_p, mallory) = cluster.technician("mallory", Tier::L1).await?;
    wait_online(&mallory, &agent.id).await?;
    let ticket = new_ticket(&mallory, &agent.id).await?;
    let mallory = std::sync::Arc::new(mallory);
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..40 {
        let mallory = mallory.clone();
        guesses.spawn(async move { join(&mallory, &wrong_code(n, "000000"), ticket).await });
    }
    let (mut checked, mut held) = (0u32, 0u32);
    while let Some(done) = guesses.join_next().await {
        match done? {
            Err(e) if e.code == ErrorCode::NotFound => checked += 1,
            Err(e) if e.code == ErrorCode::Throttled => held += 1,
            other => bail!("unexpected {other:?}"),
        }
    }
    // Only the free tries and one more were looked up; everything else waited.
    assert_eq!(checked, FREE_WRONG_CODES + 1, "{held} held");
    assert_eq!(held, 40 - checked);
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
