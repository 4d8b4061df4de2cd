//! The web console against a real controller, real agents and a real Chromium: a
//! technician's working session in the browser (`browser.rs`), then data from hostile
//! machines shown in the same browser and found inert (`hostile.rs`), and forged, guessed
//! and revoked requests refused (`refusals.rs`, plain HTTPS). One chromedriver for the
//! binary: the browser test starts it and runs the hostile-data checks in it.

use anyhow::{Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::console::{ConsoleConfig, add_login};
use deskside_controller::server;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::Cluster;
use deskside_tests::console::{Https, totp_code};

mod browser;
mod hostile;
mod refusals;

/// Output a script writes that would run if a page treated it as HTML.
const HOSTILE_OUTPUT: [&str; 2] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
];

/// Every password the tests choose (the console asks for at least 12 characters).
const PASSWORD: &str = "correct horse battery staple";

/// A controller serving the web console on an ephemeral loopback port.
async fn console_cluster() -> Result<(Cluster, Https)> {
    let cluster = Cluster::start_with(server::Options {
        console: Some(ConsoleConfig::issued("127.0.0.1:0".parse()?)),
        ..server::Options::default()
    })
    .await?;
    let https = Https::new(&cluster)?;
    Ok((cluster, https))
}

/// A technician of `tier` with a console login (admin or not), set up through its
/// one-time link with [`PASSWORD`]; returns their CLI client and TOTP key.
async fn console_technician(
    cluster: &Cluster,
    https: &Https,
    name: &str,
    tier: Tier,
    admin: bool,
) -> Result<(TechClient, String)> {
    let (_, client) = cluster.technician(name, tier).await?;
    let link = add_login(&cluster.store()?, name, admin)?;
    let secret = https.set_up(&link, PASSWORD).await?;
    Ok((client, secret))
}

/// Signs `name` in over HTTPS with the next TOTP step (setup used the current one);
/// returns the session cookie.
async fn signed_in(https: &Https, name: &str, secret: &str) -> Result<String> {
    https.session(name, PASSWORD, &totp_code(secret, 1)?).await
}

/// Opens a ticket as `client`'s technician; returns its number.
async fn open_ticket(client: &TechClient, title: &str, agent: Option<&str>) -> Result<u64> {
    match client
        .request(&TechRequest::NewTicket {
            requester: "reception desk".into(),
            priority: "normal".into(),
            title: title.into(),
            agent: agent.map(str::to_owned),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        other => bail!("unexpected {other:?}"),
    }
}

/// Writes a full-page screenshot of what the browser shows (`target/console-screens/
/// NAME.png`) and checks the page fits the window's width.
async fn shot(browser: &deskside_tests::browser::Browser, name: &str) -> Result<()> {
    browser.screenshot(name).await?;
    let wide = browser.too_wide().await?;
    anyhow::ensure!(
        wide.is_empty(),
        "{name}: the page is wider than the window: {wide:?}"
    );
    Ok(())
}
