//! A hotline engineer's call, start to end, in Chromium: set up the console login from
//! the one-time link, sign in with password and TOTP, open the machine, open a ticket,
//! pull diagnostics, ask the user for a session (answered on the machine through the
//! agent's control socket) and watch the answer arrive, run a catalog script and watch its
//! output stream in, escalate with a note, download the bundle and verify it with the
//! real `deskside ticket verify`. Screenshots of each page go to target/console-screens/.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use deskside_agent::control::ControlRequest;
use deskside_controller::client::TechClient;
use deskside_controller::console::add_login;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::TechRequest;
use deskside_tests::browser::{Browser, PAGE_WITHIN};
use deskside_tests::console::{Https, SESSION_COOKIE, totp_code};
use deskside_tests::{ALLOW_DIAGNOSTICS, bin, control, pending_request, run, wait_online};
use fantoccini::Locator;

use super::{HOSTILE_OUTPUT, PASSWORD, console_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_works_a_ticket_in_chromium() -> Result<()> {
    let started = Instant::now();
    let (cluster, https) = console_cluster().await?;
    let desk = cluster.agent("desk", ALLOW_DIAGNOSTICS).await?;
    // A colleague on the CLI, who watches the machine come online (and later plays the
    // hostile machine's technician).
    let (_, colleague) = cluster.technician("lee", Tier::L1).await?;
    wait_online(&colleague, &desk.id).await?;
    cluster
        .store()?
        .blocking(|db| db.insert_technician("ana", Tier::L1))?;
    let link = add_login(&cluster.store()?, "ana", true)?;
    let gate = cluster.dir.path().join("gate");
    cluster.add_test_script(
        "echo-html",
        "l1",
        60,
        "",
        &format!(
            "printf '%s\\n' '{}' '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'second half'\n",
            HOSTILE_OUTPUT[0],
            HOSTILE_OUTPUT[1].replace('\'', "'\\''"),
            gate.display()
        ),
    )?;

    let browser = Browser::start().await?;
    let outcome = async {
        let ticket = works_a_ticket(&browser, &https, &link, &desk, &gate, &colleague).await?;
        super::hostile::shown_inert_in_the_browser(&browser, &cluster, &https, &colleague)
            .await
            .context("hostile data in the browser")?;
        Ok::<_, anyhow::Error>(ticket)
    }
    .await;
    // The browser quits whatever happened; the test's own failure is the one reported.
    let closed = browser.close().await;
    outcome?;
    closed?;
    eprintln!(
        "console browser test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    desk.stop().await;
    Ok(())
}

/// The technician's session in the browser; returns the ticket they worked.
async fn works_a_ticket(
    browser: &Browser,
    https: &Https,
    link: &str,
    desk: &deskside_tests::Agent,
    gate: &std::path::Path,
    colleague: &TechClient,
) -> Result<u64> {
    let scratch = gate.parent().unwrap_or(gate);
    let base = https.base();
    let c = &browser.client;

    // The one-time setup link: the page shows the key the authenticator app would scan.
    c.goto(&format!("{base}{link}")).await?;
    ensure!(
        c.title().await?.contains("Set up"),
        "the setup page did not load: {:?}",
        c.title().await?
    );
    let secret = browser.text("#totp-secret").await?;
    browser.fill("#password", PASSWORD).await?;
    browser.fill("#confirm", PASSWORD).await?;
    browser.fill("#code", &totp_code(&secret, 0)?).await?;
    super::shot(browser, "setup").await?;
    browser.click("#finish-setup").await?;
    browser.path_until(|p| p.starts_with("/login")).await?;
    super::shot(browser, "login").await?;

    // Sign in with the password and the next code (setup used this step's).
    browser.fill("#name", "ana").await?;
    browser.fill("#password", PASSWORD).await?;
    browser.fill("#code", &totp_code(&secret, 1)?).await?;
    browser.click("#sign-in").await?;
    browser
        .path_until(|p| p == "/")
        .await
        .context("signing in")?;
    ensure!(browser.text("#whoami").await?.contains("ana (l1)"));
    super::shot(browser, "dashboard").await?;

    // The machine in the list, then its page; no ticket yet, so it offers to open one.
    c.goto(&format!("{base}/agents")).await?;
    let row = browser
        .text(&format!("tr[data-agent='{}']", desk.id))
        .await?;
    ensure!(row.contains("online"), "{row}");
    super::shot(browser, "agents").await?;
    c.goto(&format!("{base}/agents/{}", desk.id)).await?;
    browser
        .fill("input[name=title]", "Outlook hangs at start")
        .await?;
    browser
        .fill("input[name=requester]", "M. Jones, accounts")
        .await?;
    browser.click("#open-ticket").await?;
    let option = c
        .wait()
        .at_most(PAGE_WITHIN)
        .for_element(Locator::Css("select[name=ticket] option"))
        .await?;
    let ticket: u64 = option.attr("value").await?.unwrap_or_default().parse()?;
    ensure!(option.text().await?.contains("Outlook hangs"));

    // Diagnostics: the job page follows the pull and ends with the outcome.
    browser.click("#pull-diagnostics").await?;
    browser.path_until(|p| p.starts_with("/jobs/")).await?;
    browser
        .text_until("#job-state", |t| t == "Finished.")
        .await?;
    let log = browser.text("#job-log").await?;
    ensure!(
        log.contains(&format!("stored on ticket {ticket}")),
        "diagnostics job: {log}"
    );
    super::shot(browser, "job-diagnostics").await?;

    // The agent page now renders that snapshot.
    c.goto(&format!("{base}/agents/{}", desk.id)).await?;
    ensure!(!browser.text("#snapshot-hostname").await?.is_empty());
    super::shot(browser, "agent").await?;

    // A session: the page waits for the user's answer, which arrives without a reload.
    browser.click("#request-session").await?;
    browser.path_until(|p| p.starts_with("/jobs/")).await?;
    mark_page(browser).await?;
    ensure!(browser.text("#job-state").await?.starts_with("Working"));
    let mut user = control(desk).await?;
    let id = pending_request(&mut user).await?;
    user.call(&ControlRequest::Approve { id }).await?;
    let log = browser
        .text_until("#job-log", |t| t.contains("Approved: session"))
        .await
        .context("the user's answer on the job page")?;
    ensure!(log.contains("scripts:l1"), "{log}");
    ensure!(page_marked(browser).await?, "the job page was reloaded");
    super::shot(browser, "job-session").await?;

    // A catalog script through its form: the first half of its output shows while it
    // still runs (it waits for the gate file), the rest when it finishes.
    c.goto(&format!("{base}/agents/{}?script=echo-html#run", desk.id))
        .await?;
    browser.click("#run-script").await?;
    browser.path_until(|p| p.starts_with("/jobs/")).await?;
    mark_page(browser).await?;
    let log = browser
        .text_until("#job-log", |t| t.contains(HOSTILE_OUTPUT[1]))
        .await
        .context("the script's first output on the page")?;
    ensure!(log.contains(HOSTILE_OUTPUT[0]), "{log}");
    ensure!(browser.text("#job-state").await?.starts_with("Working"));
    std::fs::write(gate, b"")?;
    browser
        .text_until("#job-log", |t| {
            t.contains("second half") && t.contains("exit code 0")
        })
        .await
        .context("the script's output after the gate")?;
    browser
        .text_until("#job-state", |t| t == "Finished.")
        .await?;
    ensure!(page_marked(browser).await?, "the job page was reloaded");
    let job = browser.path().await?;
    // Written into the page as text: no dialog opened, no image element made.
    ensure!(
        browser.dialog().await.is_none(),
        "a script in the output ran"
    );
    ensure!(
        c.find_all(Locator::Css("#job-log img, #job-log script"))
            .await?
            .is_empty(),
        "the output became markup"
    );
    super::shot(browser, "job-script").await?;
    let session = c.get_named_cookie(SESSION_COOKIE).await?.value().to_owned();
    let html = https.get(&job, Some(&session)).await?.text();
    super::hostile::inert(&html).context("the script job's HTML")?;

    // The ticket: a colleague's note (on the CLI) appears in the open page's timeline.
    c.goto(&format!("{base}/tickets/{ticket}")).await?;
    ensure!(browser.text("#note-count").await? == "0");
    browser.live(&format!("/events?ticket={ticket}")).await?;
    mark_page(browser).await?;
    colleague
        .request(&TechRequest::Note {
            number: ticket,
            text: "user says it started after the update".into(),
        })
        .await?;
    browser
        .text_until("#timeline", |t| t.contains("started after the update"))
        .await
        .context("a new timeline entry on the open ticket page")?;
    browser.text_until("#note-count", |t| t == "1").await?;
    ensure!(page_marked(browser).await?, "the ticket page was reloaded");
    super::shot(browser, "ticket").await?;

    // Escalate with a note; the page shows the new tier.
    browser
        .fill(
            "#escalate-note",
            "Outlook hangs after the profile repair; needs L2",
        )
        .await?;
    browser.click("#escalate").await?;
    browser
        .text_until("#ticket-tier", |t| t == "l2")
        .await
        .context("escalating")?;
    let timeline = timeline(browser).await?;
    for kind in ["snapshot", "session", "script", "escalated"] {
        ensure!(
            timeline
                .iter()
                .any(|(k, actor)| k.split(' ').any(|c| c == kind) && actor == "ana"),
            "no {kind} entry by ana on the timeline: {timeline:?}"
        );
    }

    // The other pages, for people to look at.
    for (page, name) in [("/catalog", "catalog"), ("/tickets", "tickets")] {
        c.goto(&format!("{base}{page}")).await?;
        browser.text("main h1").await?;
        super::shot(browser, name).await?;
    }
    // An admin makes an enrollment token on the admin page; a machine enrolls with it.
    c.goto(&format!("{base}/admin")).await?;
    browser.click("#make-token").await?;
    let token = browser.text(".made pre.token").await?;
    let state = deskside_agent::state::StateDir::new(scratch.join("enrolled-from-console"));
    deskside_agent::enroll::enroll(&state, token.trim())
        .await
        .context("enrolling with the console's token")?;
    let audit = browser.text("#audit").await?;
    ensure!(
        audit
            .lines()
            .any(|l| l.contains("ana") && l.contains("token_create")),
        "no token in the console audit: {audit}"
    );
    ensure!(
        audit
            .lines()
            .any(|l| l.contains("ana") && l.contains("sign_in") && !l.contains("failed")),
        "no sign-in in the console audit: {audit}"
    );
    super::shot(browser, "admin").await?;

    // The HTML report: the ticket's story with the script's output, inert, and served
    // sandboxed under a policy that allows no script at all.
    let report = https
        .get(&format!("/tickets/{ticket}/report"), Some(&session))
        .await?;
    ensure!(report.status == 200, "report: {}", report.status);
    let csp = report.header("content-security-policy").unwrap_or_default();
    ensure!(
        csp.contains("sandbox") && csp.starts_with("default-src 'none'") && !csp.contains("script"),
        "report CSP {csp:?}"
    );
    super::hostile::no_raw_markup(&report.text()).context("the HTML report")?;
    c.goto(&format!("{base}/tickets/{ticket}/report")).await?;
    ensure!(
        browser.dialog().await.is_none(),
        "a script in the report ran"
    );
    browser.screenshot("report").await?;

    // The bundle, downloaded with the browser's session, verified by the real binary.
    let tar = https
        .get(&format!("/tickets/{ticket}/bundle"), Some(&session))
        .await?;
    ensure!(tar.status == 200, "bundle: {} {}", tar.status, tar.text());
    ensure!(tar.header("content-type").as_deref() == Some("application/x-tar"));
    let out = tempfile::tempdir()?;
    tar::Archive::new(tar.body.as_slice()).unpack(out.path())?;
    let dir = out.path().join(format!("ticket-{ticket}"));
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&dir))?;
    ensure!(
        code == 0 && stdout.contains("verifies"),
        "ticket verify: {code}\n{stdout}\n{stderr}"
    );
    Ok(ticket)
}

/// Leaves a mark on the page's `window`: gone if the page is reloaded.
async fn mark_page(browser: &Browser) -> Result<()> {
    browser
        .client
        .execute("window.desksideMark = 'still here';", vec![])
        .await?;
    Ok(())
}

async fn page_marked(browser: &Browser) -> Result<bool> {
    Ok(browser
        .client
        .execute("return window.desksideMark === 'still here';", vec![])
        .await?
        == serde_json::Value::Bool(true))
}

/// The ticket page's timeline: each entry's classes and actor.
async fn timeline(browser: &Browser) -> Result<Vec<(String, String)>> {
    let mut entries = Vec::new();
    for li in browser
        .client
        .find_all(Locator::Css("#timeline li"))
        .await?
    {
        let class = li.attr("class").await?.unwrap_or_default();
        let actor = li.find(Locator::Css(".actor")).await?.text().await?;
        entries.push((class, actor));
    }
    if entries.is_empty() {
        bail!("the ticket page shows no timeline");
    }
    Ok(entries)
}
