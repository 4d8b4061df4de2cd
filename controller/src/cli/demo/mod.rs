//! `deskside demo`: a throwaway controller, agent and technician on 127.0.0.1, all going
//! through the real enrollment, mutual TLS and diagnostics paths. The agent is the real
//! `deskside-agent` binary (`demo/agent.rs`), found next to the running `deskside`.

mod agent;
mod desktop;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};

use super::admin::make_token;
use super::tech::login_to;
use crate::client::TechClient;
use crate::datadir::DataDir;
use crate::store::TokenFor;
use agent::DemoAgent;

/// The demo agent's policy: diagnostics without a prompt, as on a managed device.
const DEMO_POLICY: &str = "# Demo only: diagnostics without asking (an unattended managed device); scripts prompt.\n\
[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"prompt\"\n\"scripts:l2\" = \"prompt\"\n\"scripts:l3\" = \"prompt\"\nfiles = \"prompt\"\n";

/// How long the demo waits for its agent to connect.
const AGENT_WAIT: Duration = Duration::from_secs(20);

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

pub async fn run(keep_console: bool) -> Result<()> {
    // Before anything is made: without the agent binary there is no demo.
    let agent_bin = agent::locate()?;
    let root = tempfile::Builder::new()
        .prefix("deskside-demo-")
        .tempdir()
        .context("creating a scratch directory")?
        .keep();
    println!(
        "Deskside demo — everything runs on 127.0.0.1 in {}",
        root.display()
    );

    step(
        1,
        "deskside init: a new CA, server certificate, script-signing key and database",
    );
    let data = DataDir::new(root.join("controller"));
    data.init()?;

    step(
        2,
        "deskside serve: the controller listens on QUIC (mutual TLS, ALPN deskside/1)",
    );
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let options = crate::server::Options {
        listen: loopback,
        console: Some(crate::console::ConsoleConfig::issued(loopback)),
        ..crate::server::Options::default()
    };
    let running = crate::server::start_with(&data, &options).await?;
    let controller = running.addr.to_string();
    println!("    listening on {controller}");
    let console = running
        .console_addr
        .map(|a| format!("https://{a}"))
        .context("the demo controller did not start its web console")?;
    println!("    web console on {console}/ (HTTPS, certificate from the demo's own CA)");

    let demo = Demo {
        root: &root,
        data: &data,
        controller: &controller,
        console: &console,
        keep_console,
    };
    let result = scenario(&demo, agent_bin).await;
    running.shutdown();
    running.stopped().await;
    result?;
    println!(
        "\nDemo data kept in {} (remove it when done).",
        root.display()
    );
    Ok(())
}

/// Where the demo runs.
struct Demo<'a> {
    root: &'a std::path::Path,
    data: &'a DataDir,
    controller: &'a str,
    /// The web console's base URL.
    console: &'a str,
    /// Keep everything running after the scenario (`--console`).
    keep_console: bool,
}

async fn scenario(demo: &Demo<'_>, agent_bin: std::path::PathBuf) -> Result<()> {
    let (root, data, controller) = (demo.root, demo.data, demo.controller);
    step(
        3,
        "deskside token create + deskside-agent enroll: the agent makes its own key, pins the CA, gets a certificate",
    );
    let token = make_token(data, TokenFor::Agent, controller, Duration::from_secs(600))?;
    let mut agent = DemoAgent::new(agent_bin, root)?;
    let agent_id = agent.enroll(&token).await?;
    println!(
        "    enrolled as {agent_id} (state in {})",
        agent.state().display()
    );
    agent.set_policy(DEMO_POLICY)?;
    println!(
        "    NOTE: the demo agent's policy.toml sets diagnostics = \"allow\" — it serves diagnostics"
    );
    println!(
        "          WITHOUT asking a user, like an unattended managed device. Real agents default to \"prompt\"."
    );

    step(
        4,
        "deskside-agent run: the agent dials out and stays connected",
    );
    agent.start()?;
    println!("    its log: {}", agent.log().display());
    let helper = desktop::start(
        &agent.state().join("control.sock"),
        &root.join("desktop.log"),
    );
    helper.say();

    let mut outcome = technician(demo, &agent_id, &mut agent).await;
    if outcome.is_ok() && demo.keep_console {
        if matches!(helper, desktop::Desktop::Started { .. }) {
            println!(
                "\nTry it: in the console, open the agent and ask the user for a session — this desktop shows the request."
            );
        }
        println!(
            "\nThe controller, the agent and the web console keep running: open {}/ (sign in as above). Ctrl-C stops everything.",
            demo.console
        );
        outcome = super::admin::shutdown_signal().await;
    }
    helper.stop().await;
    agent.stop().await;
    outcome
}

async fn technician(demo: &Demo<'_>, agent_id: &str, agent: &mut DemoAgent) -> Result<()> {
    let (root, data, controller) = (demo.root, demo.data, demo.controller);
    step(
        5,
        "deskside tech add + deskside login: a hotline engineer gets a workstation certificate",
    );
    let store = data.open_store()?;
    store.blocking(|db| db.insert_technician("demo-hotline", Tier::L1))?;
    let token = make_token(
        data,
        TokenFor::Technician("demo-hotline".into()),
        controller,
        Duration::from_secs(600),
    )?;
    let profile_path = root.join("technician").join("profile.toml");
    let profile = login_to(&token, &profile_path).await?;
    println!(
        "    logged in as {} ({}); profile {}",
        profile.name,
        profile.tier,
        profile_path.display()
    );
    let setup = crate::console::add_login(&store, "demo-hotline", true)?;
    println!(
        "    deskside console add demo-hotline --admin: the web console login's one-time setup link"
    );
    println!(
        "    (choose a password, add the key to an authenticator app — or `oathtool --totp -b KEY`):"
    );
    println!("    {}{setup}", demo.console);
    println!(
        "    the browser asks to trust the demo's CA once: `deskside --data {} console ca > demo-ca.pem`",
        data.root().display()
    );
    let client = TechClient::connect(&profile).await?;

    let started = Instant::now();
    loop {
        if let TechReply::Agents(list) = client.request(&TechRequest::ListAgents).await?
            && list.iter().any(|a| a.id == agent_id && a.online)
        {
            break;
        }
        agent.check_running()?;
        if started.elapsed() > AGENT_WAIT {
            bail!(
                "the demo agent did not connect within {}s; its log is {}",
                AGENT_WAIT.as_secs(),
                agent.log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("    deskside agents: {agent_id} is online");

    step(6, "deskside ticket new: the user says the laptop is slow");
    let number = match client
        .request(&TechRequest::NewTicket {
            requester: "Pat (accounting)".into(),
            priority: "high".into(),
            title: "User reports the laptop is slow".into(),
            agent: Some(agent_id.to_owned()),
        })
        .await?
    {
        TechReply::Ticket(view) => view.ticket.number,
        other => bail!("unexpected reply {other:?}"),
    };
    println!("    ticket #{number}");

    step(
        7,
        "deskside diag: the controller asks the agent for a snapshot and stores it on the ticket",
    );
    let t = Instant::now();
    let report = match client
        .request(&TechRequest::Diagnostics {
            agent: agent_id.to_owned(),
            ticket: number,
        })
        .await?
    {
        TechReply::Diagnostics(r) => r,
        other => bail!("unexpected reply {other:?}"),
    };
    println!("    snapshot in {} ms:\n", t.elapsed().as_millis());
    for line in deskside_proto::summary::render(&report.snapshot).lines() {
        println!("    {line}");
    }
    println!(
        "\n    evidence sha256:{} ({} bytes)",
        report.evidence.sha256, report.evidence.size_bytes
    );
    println!("    stored at {}", report.evidence.location);
    println!(
        "    check it yourself: sha256sum {}",
        report.evidence.location
    );

    step(
        8,
        "deskside script add catalog/*.toml: the admin signs the starter catalog with the controller's script key",
    );
    let manifests = crate::starter::write_to(&root.join("catalog"))?;
    super::admin::script_add(data, &manifests)?;

    step(
        9,
        "deskside session request --scopes scripts:l1: the agent asks its user",
    );
    let req = TechRequest::RequestSession {
        agent: agent_id.to_owned(),
        ticket: number,
        scopes: vec![Scope::ScriptsL1],
        duration_secs: 600,
        wait_secs: 60,
    };
    let approver = agent.approve_first_request(AGENT_WAIT);
    let (reply, approved) = tokio::join!(client.request(&req), approver);
    approved?;
    match reply? {
        TechReply::Session(r) => match r.outcome {
            SessionOutcome::Approved(g) => println!(
                "    session {} approved: {} until {}",
                g.id,
                Scope::list(&g.scopes),
                crate::clock::format_secs(g.expires_at_secs)
            ),
            other => bail!("the demo session was not approved: {other:?}"),
        },
        other => bail!("unexpected reply {other:?}"),
    }

    step(
        10,
        "deskside run disk-usage: the agent verifies signature, hash, grant and parameters, then runs it",
    );
    let run = TechRequest::RunScript {
        agent: agent_id.to_owned(),
        ticket: number,
        script: "disk-usage".into(),
        params: vec![
            ("path".into(), root.display().to_string()),
            ("top".into(), "5".into()),
        ],
    };
    let finished = client
        .stream(&run, |reply| {
            if let TechReply::RunOutput { data, .. } = reply {
                for line in String::from_utf8_lossy(data).lines() {
                    println!("    | {line}");
                }
            }
        })
        .await?;
    if let TechReply::RunFinished(r) = finished {
        println!(
            "    exit {} in {} ms; stored as evidence sha256:{}",
            r.result
                .exit_code
                .map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
            r.result.duration_ms,
            r.evidence.sha256
        );
    }

    step(
        11,
        "deskside ticket escalate --to l2: the ticket moves up with a signed, verifiable evidence bundle",
    );
    let out = root.join("bundle-l2");
    let escalate = TechRequest::Escalate {
        number,
        to: Tier::L2,
        note: "Disk and CPU look fine; the slowness needs a desktop engineer.".into(),
    };
    let summary = super::export::receive_bundle(&client, &escalate, Some(&out)).await?;
    let verified = crate::bundle::verify(&out)?;
    println!(
        "    {} files, {} bytes; all {} items signed: {} on the machine by the agent, {} by the controller (session {}); chain of {} entries intact",
        summary.files,
        summary.bytes,
        verified.items,
        verified.signed - verified.by_controller,
        verified.by_controller,
        if verified.by_controller == 1 {
            "record"
        } else {
            "records"
        },
        verified.entries
    );
    println!(
        "    report: {}",
        out.join(crate::bundle::REPORT_HTML).display()
    );
    println!(
        "    check it yourself: deskside ticket verify {}",
        out.display()
    );

    step(12, "deskside ticket show: the timeline, hash-chained");
    if let TechReply::Ticket(view) = client.request(&TechRequest::ShowTicket { number }).await? {
        for e in &view.timeline {
            println!(
                "    {}. {} {}: {} (hash {}…)",
                e.seq,
                e.kind,
                e.actor,
                e.detail,
                e.hash.get(..12).unwrap_or_default()
            );
        }
    }
    client.close().await;
    Ok(())
}
