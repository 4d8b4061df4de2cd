//! What the console refuses, over plain HTTPS: pages without their security headers or
//! cookies without their flags would be bugs; a forged cross-site change, a ticket above
//! the technician's tier, guessed sign-in codes and a revoked technician's session are
//! all refused, the way the CLI refuses them.

use std::process::Command;

use anyhow::{Result, ensure};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::console::{LOGIN_COOKIE, SESSION_COOKIE, between, csrf_field, totp_code};
use deskside_tests::hostile::refusal;
use deskside_tests::{bin, run};

use super::{PASSWORD, console_cluster, console_technician, open_ticket, signed_in};

/// The policy every console response carries: no inline script, nothing from elsewhere.
fn csp_forbids_inline_script(csp: Option<String>, what: &str) -> Result<()> {
    let csp = csp.unwrap_or_default();
    ensure!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{what}: Content-Security-Policy {csp:?}"
    );
    ensure!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: Content-Security-Policy {csp:?} allows inline script"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_strict_csp_and_cookies_their_flags() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (_, secret) = console_technician(&cluster, &https, "ana", Tier::L1, false).await?;

    let login = https.get("/login", None).await?;
    csp_forbids_inline_script(login.header("content-security-policy"), "/login")?;
    let reply = https
        .sign_in("ana", PASSWORD, &totp_code(&secret, 1)?)
        .await?;
    ensure!(reply.status == 303, "{} {}", reply.status, reply.text());
    for (what, cookies) in [("sign-in page", &login), ("signed in", &reply)] {
        let name = if what == "signed in" {
            SESSION_COOKIE
        } else {
            LOGIN_COOKIE
        };
        let cookie = cookies
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .ok_or_else(|| anyhow::anyhow!("{what}: no {name} cookie"))?;
        ensure!(name.starts_with("__Host-"));
        for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            ensure!(
                cookie.split(';').any(|p| p.trim() == flag),
                "{what}: {cookie:?} lacks {flag}"
            );
        }
        ensure!(!cookie.contains("Domain"), "{what}: {cookie:?}");
    }
    let session = reply
        .cookie(SESSION_COOKIE)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;

    for page in ["/", "/agents", "/tickets", "/catalog", "/no/such/page"] {
        let r = https.get(page, Some(&session)).await?;
        csp_forbids_inline_script(r.header("content-security-policy"), page)?;
        ensure!(
            r.header("x-frame-options").as_deref() == Some("DENY"),
            "{page}"
        );
        ensure!(
            r.header("cache-control").as_deref() == Some("no-store"),
            "{page}"
        );
        // Every script the page loads is a file of this origin's; none is inline.
        let html = r.text();
        for tag in html.split("<script").skip(1) {
            ensure!(
                tag.trim_start().starts_with("src=\"/assets/"),
                "{page}: inline script <script{}",
                tag.get(..80).unwrap_or(tag)
            );
        }
    }
    let js = https.get("/assets/console.js", None).await?;
    ensure!(js.status == 200);
    csp_forbids_inline_script(js.header("content-security-policy"), "console.js")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cross_site_post_is_refused_and_changes_nothing() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (ana, secret) = console_technician(&cluster, &https, "ana", Tier::L1, false).await?;
    let session = signed_in(&https, "ana", &secret).await?;
    let ticket = open_ticket(&ana, "printer offline", None).await?;
    let page = format!("/tickets/{ticket}");
    let csrf = csrf_field(&https.get(&page, Some(&session)).await?.text())
        .ok_or_else(|| anyhow::anyhow!("no CSRF token on {page}"))?;
    let entries = || async {
        match ana
            .request(&TechRequest::ShowTicket { number: ticket })
            .await?
        {
            TechReply::Ticket(v) => Ok::<_, anyhow::Error>(v.timeline.len()),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    let before = entries().await?;
    let cookie = ("cookie", format!("{SESSION_COOKIE}={session}"));
    let note = format!("{page}/note");
    let forged = [
        ("no token", vec![cookie.clone()], vec![("text", "forged")]),
        (
            "a wrong token",
            vec![cookie.clone()],
            vec![("text", "forged"), ("csrf", "0123456789abcdef")],
        ),
        (
            "another site's Origin",
            vec![cookie.clone(), ("origin", "https://evil.example".into())],
            vec![("text", "forged"), ("csrf", csrf.as_str())],
        ),
    ];
    for (what, headers, form) in &forged {
        let r = https.post(&note, headers, form).await?;
        ensure!(r.status == 403, "{what}: {} {}", r.status, r.text());
        ensure!(
            r.text().contains("did not come from a console page"),
            "{what}"
        );
    }
    // A sign-in form posted from elsewhere (no CSRF cookie) is refused the same way.
    let r = https
        .post(
            "/login",
            &[("origin", "https://evil.example".into())],
            &[("name", "ana"), ("password", PASSWORD), ("code", "000000")],
        )
        .await?;
    ensure!(r.status == 403, "forged sign-in: {}", r.status);
    ensure!(
        entries().await? == before,
        "a forged post changed the ticket"
    );

    // The same note from the console's own page goes through.
    let origin = ("origin", https.base());
    let r = https
        .post(
            &note,
            &[cookie, origin],
            &[("text", "from the page"), ("csrf", &csrf)],
        )
        .await?;
    ensure!(r.status == 303, "{} {}", r.status, r.text());
    ensure!(entries().await? == before + 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l1_technician_gets_not_found_for_an_l3_ticket() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (_, carol) = cluster.technician("carol", Tier::L3).await?;
    // A ticket opened by an L3 technician is an L3 ticket.
    let l3_only = open_ticket(&carol, "domain controller replication", None).await?;
    let (bob, secret) = console_technician(&cluster, &https, "bob", Tier::L1, false).await?;
    let session = signed_in(&https, "bob", &secret).await?;

    let cli = refusal(&bob, &TechRequest::ShowTicket { number: l3_only }).await?;
    let page = https
        .get(&format!("/tickets/{l3_only}"), Some(&session))
        .await?;
    ensure!(page.status == 404, "{} {}", page.status, page.text());
    ensure!(
        page.text().contains(&cli.message),
        "the page does not say what the CLI says ({:?}):\n{}",
        cli.message,
        page.text()
    );
    // A ticket that does not exist reads the same, number aside.
    let missing = l3_only + 1000;
    let gone = https
        .get(&format!("/tickets/{missing}"), Some(&session))
        .await?;
    ensure!(gone.status == 404);
    let problem = |html: &str, n: u64| {
        between(html, "id=\"problem\">", "</p>").map(|p| p.replace(&format!("#{n} "), "#N "))
    };
    ensure!(
        problem(&gone.text(), missing) == problem(&page.text(), l3_only),
        "a hidden ticket reads differently from a missing one: {:?} / {:?}",
        problem(&page.text(), l3_only),
        problem(&gone.text(), missing)
    );
    for sub in ["timeline", "bundle", "report"] {
        let r = https
            .get(&format!("/tickets/{l3_only}/{sub}"), Some(&session))
            .await?;
        ensure!(r.status == 404, "{sub}: {}", r.status);
    }
    let r = https
        .get(&format!("/events?ticket={l3_only}"), Some(&session))
        .await?;
    ensure!(r.status == 404, "events: {}", r.status);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_lock_the_login() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (_, secret) = console_technician(&cluster, &https, "dave", Tier::L1, false).await?;
    let right = totp_code(&secret, 1)?;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let limit = deskside_controller::console::LOCK_AFTER_FAILURES;
    for attempt in 1..=limit {
        let r = https.sign_in("dave", PASSWORD, wrong).await?;
        ensure!(r.cookie(SESSION_COOKIE).is_none(), "attempt {attempt}");
        if attempt < limit {
            ensure!(r.status == 401, "attempt {attempt}: {}", r.status);
            ensure!(r.text().contains("Wrong name, password or code."));
        } else {
            ensure!(r.status == 429, "attempt {attempt}: {}", r.status);
            ensure!(r.text().contains("this login is locked"), "{}", r.text());
        }
    }
    // Locked: the right password and a good code are refused too.
    let r = https.sign_in("dave", PASSWORD, &right).await?;
    ensure!(r.status == 429, "while locked: {} {}", r.status, r.text());
    ensure!(r.text().contains("this login is locked"));
    ensure!(r.cookie(SESSION_COOKIE).is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_technician_ends_their_console_session_at_once() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (_, secret) = console_technician(&cluster, &https, "erin", Tier::L1, false).await?;
    let session = signed_in(&https, "erin", &secret).await?;
    let r = https.get("/agents", Some(&session)).await?;
    ensure!(r.status == 200, "{}", r.status);

    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .arg("--data")
        .arg(cluster.data.root())
        .args(["tech", "revoke", "erin"]))?;
    ensure!(code == 0, "tech revoke: {stdout}\n{stderr}");

    let r = https.get("/agents", Some(&session)).await?;
    ensure!(r.status == 303, "after revoke: {} {}", r.status, r.text());
    ensure!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/login")),
        "{:?}",
        r.header("location")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sends_nowhere_but_this_site() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (_, secret) = console_technician(&cluster, &https, "fay", Tier::L1, false).await?;
    // Browsers drop tabs and newlines from URLs: `/<TAB>/evil.example` is `//evil.example`.
    let elsewhere = [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
    ];
    for next in elsewhere {
        let query: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let form = https
            .get(&format!("/login?next={query}"), None)
            .await?
            .text();
        let kept = between(&form, "name=\"next\" value=\"", "\"");
        ensure!(kept == Some("/"), "next={next:?} kept as {kept:?}");
    }
    let form = https
        .get("/login?next=%2Fagents%3Fq%3Dvm", None)
        .await?
        .text();
    ensure!(between(&form, "name=\"next\" value=\"", "\"") == Some("/agents?q=vm"));
    // Posted straight to the form, past the page: the redirect stays here too.
    let r = https
        .sign_in_to("fay", PASSWORD, &totp_code(&secret, 1)?, "/\t/evil.example")
        .await?;
    ensure!(r.status == 303, "{} {}", r.status, r.text());
    ensure!(
        r.header("location").as_deref() == Some("/"),
        "{:?}",
        r.header("location")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_its_starters_and_signing_out_ends_the_session() -> Result<()> {
    let (cluster, https) = console_cluster().await?;
    let (gil, gil_secret) = console_technician(&cluster, &https, "gil", Tier::L1, false).await?;
    let (_, hal_secret) = console_technician(&cluster, &https, "hal", Tier::L1, false).await?;
    let gil_session = signed_in(&https, "gil", &gil_secret).await?;
    let hal_session = signed_in(&https, "hal", &hal_secret).await?;
    let ticket = open_ticket(&gil, "no such machine", None).await?;

    // gil starts an action (on a machine that does not exist: it fails, as a job).
    let csrf = csrf_field(&https.get("/", Some(&gil_session)).await?.text())
        .ok_or_else(|| anyhow::anyhow!("no CSRF token on the dashboard"))?;
    let ticket = ticket.to_string();
    let r = https
        .post(
            "/agents/ag-000000000000/diag",
            &[("cookie", format!("{SESSION_COOKIE}={gil_session}"))],
            &[("csrf", csrf.as_str()), ("ticket", ticket.as_str())],
        )
        .await?;
    ensure!(r.status == 303, "{} {}", r.status, r.text());
    let job = r
        .header("location")
        .filter(|l| l.starts_with("/jobs/"))
        .ok_or_else(|| anyhow::anyhow!("no job: {:?}", r.header("location")))?;
    ensure!(https.get(&job, Some(&gil_session)).await?.status == 200);
    for path in [job.clone(), format!("{job}/events")] {
        let r = https.get(&path, Some(&hal_session)).await?;
        ensure!(
            r.status == 404,
            "{path} for another technician: {}",
            r.status
        );
    }

    // Signing out ends the session on the server, not just in the browser.
    let r = https
        .post(
            "/logout",
            &[("cookie", format!("{SESSION_COOKIE}={gil_session}"))],
            &[("csrf", csrf.as_str())],
        )
        .await?;
    ensure!(r.status == 303, "sign out: {}", r.status);
    let r = https.get("/", Some(&gil_session)).await?;
    ensure!(r.status == 303, "after signing out: {}", r.status);
    ensure!(https.get("/", Some(&hal_session)).await?.status == 200);
    Ok(())
}
