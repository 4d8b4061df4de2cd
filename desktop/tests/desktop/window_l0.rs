//! The window's self-service pages, driven through the accessibility tree against the
//! real controller and agent of `window.rs`: Fix it myself lists the machine's one
//! self-service script, shows its parameters as controls with the defaults chosen, runs
//! it (the audit log names the user) and shows the machine policy's refusal with its
//! reason; Ask for help sends a sentence and shows the ticket number, and the technician
//! finds that ticket with the sentence as its title.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_agent::selfhelp::client;
use deskside_controller::client::TechClient;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{Agent, Cluster};

use crate::screen::Screen;

/// The self-service script's parameters: one of each kind the window offers a control for.
const FIX_PARAMS: &str = "self_service = true\n\n\
    [[params]]\nname = \"mode\"\ndescription = \"How thorough\"\ntype = \"enum\"\nvalues = [\"quick\", \"full\"]\ndefault = \"quick\"\n\n\
    [[params]]\nname = \"restart\"\ndescription = \"Restart the spooler\"\ntype = \"bool\"\ndefault = \"true\"\n\n\
    [[params]]\nname = \"tries\"\ndescription = \"How many tries\"\ntype = \"integer\"\nmin = 1\nmax = 5\ndefault = \"2\"\n";
const FIX_BODY: &str = "echo \"fixed: mode $DESKSIDE_PARAM_MODE, restart $DESKSIDE_PARAM_RESTART, tries $DESKSIDE_PARAM_TRIES\"\n";
const SENTENCE: &str = "The printer on the second floor prints blank pages";

/// Puts the self-service script `fix-it` in the controller's catalog (before the agent
/// connects, which is when it receives it).
pub(crate) fn add_fix(cluster: &Cluster) -> Result<()> {
    cluster.add_test_script("fix-it", "l1", 30, FIX_PARAMS, FIX_BODY)
}

pub(crate) async fn fix_and_ask(
    screen: &Screen<'_>,
    agent: &Agent,
    tech: &TechClient,
) -> Result<()> {
    let bound = Instant::now() + Duration::from_secs(60);
    while !client::fixes(&agent.state)
        .await
        .is_ok_and(|l| l.iter().any(|f| f.name == "fix-it"))
    {
        if Instant::now() > bound {
            bail!("the agent never cached self-service script fix-it");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    screen.press("Fix it myself")?;
    screen
        .wait_for(&[
            "Fix it myself",
            "test script fix-it",
            "Changes: nothing outside its temp dir",
        ])
        .await?;
    screen.press("test script fix-it")?;
    let nodes = screen
        .wait_for(&[
            "Fix: test script fix-it",
            "How thorough",
            "Restart the spooler",
            "How many tries",
            "Run this fix",
        ])
        .await?;
    for name in ["How thorough", "How many tries"] {
        assert!(
            nodes.iter().any(|n| n.name == name && n.role != "label"),
            "no control named {name:?} for screen readers: {nodes:#?}"
        );
    }
    screen.press("Run this fix")?;
    screen
        .wait_for(&[
            "The fix finished: exit status 0",
            "fixed: mode quick, restart true, tries 2",
        ])
        .await?;
    screen.shot("fix")?;
    let (entries, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    assert!(
        entries.iter().any(|e| e.scope == "self-service"
            && e.outcome == "finished"
            && e.technician.ends_with("(self-service)")
            && e.detail.contains("fix-it")),
        "no self-service run in the audit log: {entries:#?}"
    );

    // The machine's policy denies self-service: the window says so, with the reason.
    std::fs::write(
        agent.state.policy(),
        "[scopes]\n\"self-service\" = \"deny\"\n",
    )?;
    screen.press("Run this fix")?;
    screen
        .wait_for(&["The fix was not run", "policy does not allow self-service"])
        .await?;
    std::fs::write(agent.state.policy(), DEFAULT_POLICY)?;

    // Ask for help: one sentence, typed; the ticket number comes back.
    screen.press("Back to Get help")?;
    screen.press("Ask for help")?;
    screen
        .wait_for(&["Ask the help desk for help", "What is wrong", "Send"])
        .await?;
    screen.type_text(SENTENCE)?;
    screen.wait_for(&[SENTENCE]).await?;
    screen.press("Send")?;
    let nodes = screen.wait_for(&["Your request is ticket #"]).await?;
    screen.shot("ask")?;
    let said = nodes
        .iter()
        .find_map(|n| n.text.split("Your request is ticket #").nth(1))
        .context("no ticket number shown")?;
    let number: u64 = said
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("no ticket number in {said:?}"))?;
    let TechReply::Ticket(v) = tech.request(&TechRequest::ShowTicket { number }).await? else {
        bail!("ticket #{number} is not there");
    };
    assert_eq!(v.ticket.title, SENTENCE);
    Ok(())
}
