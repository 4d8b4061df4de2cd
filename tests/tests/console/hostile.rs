//! Data from machines we do not control, in the console: an agent whose hostname and
//! process names are markup (`<script>…`, `"><img onerror=…>`) is listed, opened and its
//! snapshot read in the browser; nothing runs, the text shows as written, and the HTML the
//! console sends carries it escaped.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use deskside_agent::state::StateDir;
use deskside_controller::client::TechClient;
use deskside_proto::evidence;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, CheckIn, SignedItem};
use deskside_proto::msg::diag::{Process, SNAPSHOT_VERSION, Snapshot};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::Cluster;
use deskside_tests::browser::Browser;
use deskside_tests::console::{Https, SESSION_COOKIE};
use deskside_transport::{endpoint, framed, pki, tls};
use fantoccini::Locator;
use sha2::{Digest, Sha256};

use super::HOSTILE_OUTPUT;
use super::open_ticket;

/// What the hostile machine calls itself.
const HOSTNAME: &str = "<script>alert(1)</script>";
/// Its busiest process.
const PROCESS: &str = "\"><img src=x onerror=alert(1)>";

/// A machine enrolled through the real token path that reports markup as its hostname
/// and, asked for diagnostics, a snapshot with markup for process names. Serves until
/// the connection is dropped.
struct HostileAgent {
    id: String,
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    _checkin: quinn::SendStream,
}

impl HostileAgent {
    async fn connect(cluster: &Cluster, technician: &TechClient) -> Result<HostileAgent> {
        let state = StateDir::new(cluster.dir.path().join("hostile-agent"));
        let token = cluster.token(Duration::from_secs(60))?;
        let enrolled = deskside_agent::enroll::enroll(&state, &token).await?;
        let cert_pem = std::fs::read_to_string(state.cert())?;
        let key_pem = std::fs::read_to_string(state.key())?;
        let ca_pem = std::fs::read_to_string(cluster.data.root().join("ca.crt"))?;
        let addr = endpoint::resolve(&cluster.addr).await?;
        let ep = endpoint::client_endpoint(addr)?;
        let config = tls::client_config(
            pki::cert_from_pem(&ca_pem)?,
            pki::cert_from_pem(&cert_pem)?,
            pki::key_from_pem(&key_pem)?,
        )?;
        let conn = endpoint::connect(&ep, addr, config).await?;
        let (mut checkin, _) = endpoint::hello(&conn, "hostile agent").await?;
        framed::send(
            &mut checkin,
            &CheckIn {
                hostname: HOSTNAME.into(),
                os: PROCESS.into(),
                kernel: "6.1.0".into(),
                agent_version: "0.1.0".into(),
            },
        )
        .await?;
        deskside_tests::wait_online(technician, &enrolled.agent_id).await?;
        tokio::spawn(serve(conn.clone(), key_pem));
        Ok(HostileAgent {
            id: enrolled.agent_id,
            _endpoint: ep,
            conn,
            _checkin: checkin,
        })
    }
}

/// Answers every diagnostics request with the hostile snapshot, signed with the agent's
/// own key, as a genuine agent signs its evidence.
async fn serve(conn: quinn::Connection, key_pem: String) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let Ok(req) = framed::recv::<AgentRequest>(&mut recv).await else {
            continue;
        };
        let reply = match req {
            AgentRequest::Diagnostics { .. } => match snapshot(&key_pem) {
                Ok(item) => AgentReply::Snapshot(Box::new(item)),
                Err(e) => AgentReply::Failed {
                    reason: e.to_string(),
                },
            },
            _ => AgentReply::Failed {
                reason: "this test agent only serves diagnostics".into(),
            },
        };
        let _ = framed::send(&mut send, &reply).await;
        let _ = send.finish();
    }
}

fn snapshot(key_pem: &str) -> Result<SignedItem> {
    let mut s = Snapshot {
        version: SNAPSHOT_VERSION,
        collected_at_ms: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?,
        ..Snapshot::default()
    };
    s.host.hostname = HOSTNAME.into();
    s.os.pretty_name = PROCESS.into();
    s.processes.total = 2;
    s.processes.top_cpu = vec![
        Process {
            pid: 4242,
            name: PROCESS.into(),
            user: HOSTNAME.into(),
            cpu_percent: 99.0,
            memory_bytes: 1 << 30,
            run_time_secs: 3600,
        },
        Process {
            pid: 4243,
            name: HOSTNAME.into(),
            user: "root".into(),
            cpu_percent: 1.0,
            memory_bytes: 1 << 20,
            run_time_secs: 60,
        },
    ];
    let (kind, bytes) = evidence::seal_bytes(&s)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(SignedItem {
        key: format!("hostile-{}", hex::encode(&digest[..8])),
        kind,
        signature: pki::sign_evidence(key_pem, &digest)?,
        bytes,
        redaction: Vec::new(),
    })
}

/// The hostile machine in the signed-in browser: listed, opened, its snapshot shown.
pub async fn shown_inert_in_the_browser(
    browser: &Browser,
    cluster: &Cluster,
    https: &Https,
    colleague: &TechClient,
) -> Result<()> {
    let hostile = HostileAgent::connect(cluster, colleague).await?;
    let ticket = open_ticket(colleague, "odd hostname", Some(&hostile.id)).await?;
    match colleague
        .request(&TechRequest::Diagnostics {
            agent: hostile.id.clone(),
            ticket,
        })
        .await?
    {
        TechReply::Diagnostics(r) => ensure!(r.snapshot.host.hostname == HOSTNAME),
        other => anyhow::bail!("diagnostics from the hostile agent: {other:?}"),
    }
    let base = https.base();
    let c = &browser.client;
    let cookie = c.get_named_cookie(SESSION_COOKIE).await?;
    let session = cookie.value().to_owned();

    for (page, shows) in [
        ("/agents".to_owned(), vec![HOSTNAME, PROCESS]),
        (
            format!("/agents/{}", hostile.id),
            vec![HOSTNAME, PROCESS, "alert(1)"],
        ),
    ] {
        c.goto(&format!("{base}{page}")).await?;
        let text = browser.text("main").await?;
        for s in &shows {
            ensure!(
                text.contains(s),
                "{page} does not show {s:?} as text:\n{text}"
            );
        }
        ensure!(
            browser.dialog().await.is_none(),
            "a dialog opened on {page}: markup from the agent ran"
        );
        ensure!(
            c.find_all(Locator::Css("main img, main script"))
                .await?
                .is_empty(),
            "{page}: the agent's markup became elements"
        );
        // What the server sent: escaped, never the raw markup.
        let html = https.get(&page, Some(&session)).await?.text();
        inert(&html).with_context(|| format!("the HTML of {page}"))?;
    }
    super::shot(browser, "agent-hostile").await?;

    // The machine goes away: the open fleet page says so without a reload.
    c.goto(&format!("{base}/agents")).await?;
    let row = format!("tr[data-agent='{}']", hostile.id);
    ensure!(browser.text(&row).await?.contains("online"));
    browser.live("/events").await?;
    c.execute("window.desksideMark = 'still here';", vec![])
        .await?;
    hostile.conn.close(0u32.into(), b"done");
    browser
        .text_until(&row, |t| t.contains("offline"))
        .await
        .context("the agent going offline on the open fleet page")?;
    ensure!(
        c.execute("return window.desksideMark;", vec![]).await? == "still here",
        "the fleet page was reloaded"
    );
    Ok(())
}

/// `html` carries none of the hostile markup raw.
pub fn no_raw_markup(html: &str) -> Result<()> {
    for raw in [
        HOSTNAME,
        "<img src=x",
        "onerror=alert(1)>",
        HOSTILE_OUTPUT[0],
    ] {
        ensure!(!html.contains(raw), "raw {raw:?} in:\n{html}");
    }
    Ok(())
}

/// `html` carries no raw hostile markup, and carries the script tag escaped.
pub fn inert(html: &str) -> Result<()> {
    no_raw_markup(html)?;
    ensure!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            || html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the hostile text is not there, escaped:\n{html}"
    );
    Ok(())
}
