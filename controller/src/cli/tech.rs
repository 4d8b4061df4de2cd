//! Technician commands: they talk to the controller with the profile's certificate.

use anyhow::{Context, Result, bail};
use deskside_proto::msg::enroll::{EnrollToken, TokenKind};
use deskside_proto::msg::identity::Identity;
use std::time::Duration;

use deskside_proto::msg::script::OutputStream;
use deskside_proto::msg::session::{GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{SessionReport, TechReply, TechRequest};
use deskside_transport::enroll::enroll;

use super::{CliError, ScriptEnd, render};
use crate::client::TechClient;
use crate::profile::{self, Profile};

const SOFTWARE: &str = concat!("deskside ", env!("CARGO_PKG_VERSION"));

pub async fn login(token: &str) -> Result<(), CliError> {
    let path = profile::default_path()?;
    let profile = login_to(token, &path).await?;
    println!(
        "logged in as {} ({}) to {}; profile saved to {}",
        profile.name,
        profile.tier,
        profile.controller,
        path.display()
    );
    Ok(())
}

/// Redeems a technician token and saves the resulting profile at `path`.
pub async fn login_to(token: &str, path: &std::path::Path) -> Result<Profile> {
    let token = EnrollToken::parse(token).context("reading the login token")?;
    if token.kind != TokenKind::Technician {
        bail!(
            "this is an agent enrollment token; use it with `deskside-agent enroll`, and log in with a token from `deskside tech add`"
        );
    }
    let host = hostname();
    let done = enroll(&token, &host, std::env::consts::OS, SOFTWARE)
        .await
        .with_context(|| format!("logging in to the controller at {}", token.controller))?;
    let Identity::Technician { name } = done.enrollment.identity.clone() else {
        bail!("the controller issued an agent certificate for a technician token");
    };
    let tier = done
        .enrollment
        .tier
        .context("the controller did not say the technician's tier")?;
    let profile = Profile {
        controller: token.controller.clone(),
        name: name.clone(),
        tier,
        cert_not_after_secs: done.enrollment.cert_not_after_secs,
        ca_pem: done.enrollment.ca_pem,
        cert_pem: done.enrollment.cert_pem,
        key_pem: done.key_pem,
    };
    profile.save(path)?;
    Ok(profile)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

async fn request(req: TechRequest) -> Result<TechReply, CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let reply = client.request(&req).await;
    client.close().await;
    Ok(reply?)
}

pub(super) fn unexpected(reply: &TechReply) -> anyhow::Error {
    let mut shown = format!("{reply:?}");
    if shown.len() > 200 {
        let mut end = 200;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    anyhow::anyhow!("the controller sent an unexpected reply: {shown}")
}

pub async fn agents(json: bool) -> Result<(), CliError> {
    match request(TechRequest::ListAgents).await? {
        TechReply::Agents(list) if json => Ok(render::print_json(&list)?),
        TechReply::Agents(list) => {
            render::agents(&list);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn ticket_new(
    title: String,
    agent: Option<String>,
    requester: String,
    priority: String,
    json: bool,
) -> Result<(), CliError> {
    match request(TechRequest::NewTicket {
        title,
        agent,
        requester,
        priority,
    })
    .await?
    {
        TechReply::Ticket(view) if json => Ok(render::print_json(&view.ticket)?),
        TechReply::Ticket(view) => {
            println!("{}", view.ticket.number);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn ticket_list(json: bool) -> Result<(), CliError> {
    match request(TechRequest::ListTickets).await? {
        TechReply::Tickets(list) if json => Ok(render::print_json(&list)?),
        TechReply::Tickets(list) => {
            render::tickets(&list);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn ticket_show(number: u64, json: bool) -> Result<(), CliError> {
    match request(TechRequest::ShowTicket { number }).await? {
        TechReply::Ticket(view) if json => Ok(render::print_json(&view)?),
        TechReply::Ticket(view) => {
            render::ticket(&view);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn diag(agent: String, ticket: u64, json: bool) -> Result<(), CliError> {
    match request(TechRequest::Diagnostics { agent, ticket }).await? {
        TechReply::Diagnostics(report) if json => {
            Ok(render::print_json(&render::DiagJson::from(&*report))?)
        }
        TechReply::Diagnostics(report) => {
            render::diag(&report);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn session_request(
    agent: String,
    ticket: u64,
    scopes: Vec<Scope>,
    duration: Duration,
    wait: Duration,
    json: bool,
) -> Result<(), CliError> {
    if !json {
        eprintln!(
            "asking the user of {agent} for {} for {} (waiting up to {})…",
            Scope::list(&scopes),
            humantime::format_duration(duration),
            humantime::format_duration(wait)
        );
    }
    let req = TechRequest::RequestSession {
        agent,
        ticket,
        scopes,
        duration_secs: duration.as_secs(),
        wait_secs: wait.as_secs(),
    };
    match request(req).await? {
        TechReply::Session(report) => session_outcome(&report, json),
        other => Err(unexpected(&other).into()),
    }
}

pub async fn session_join(code: String, ticket: u64, json: bool) -> Result<(), CliError> {
    match request(TechRequest::JoinSession { code, ticket }).await? {
        TechReply::Session(report) => session_outcome(&report, json),
        other => Err(unexpected(&other).into()),
    }
}

fn session_outcome(report: &SessionReport, json: bool) -> Result<(), CliError> {
    if json {
        render::print_json(report)?;
    }
    match &report.outcome {
        SessionOutcome::Approved(g) => {
            if !json {
                println!(
                    "session {} approved on {} for ticket #{}: {} until {} ({})",
                    g.id,
                    report.agent,
                    g.ticket,
                    Scope::list(&g.scopes),
                    crate::clock::format_secs(g.expires_at_secs),
                    match g.origin {
                        GrantOrigin::UserApproved => "approved by the user",
                        GrantOrigin::UserCode => "started by the user",
                        GrantOrigin::Policy => "allowed by the machine's policy, no prompt",
                    }
                );
            }
            Ok(())
        }
        SessionOutcome::Refused { reason } => Err(CliError::SessionRefused {
            reason: reason.clone(),
        }),
        SessionOutcome::NoAnswer { waited_secs } => Err(CliError::SessionUnanswered {
            waited_secs: *waited_secs,
        }),
    }
}

pub async fn session_end(agent: String, ticket: u64) -> Result<(), CliError> {
    match request(TechRequest::EndSession { agent, ticket }).await? {
        TechReply::SessionEnded {
            agent,
            grant: Some(g),
        } => {
            println!("session {} on {agent} ended", g.id);
            Ok(())
        }
        TechReply::SessionEnded { agent, grant: None } => {
            println!("no session of yours was active on {agent}");
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn script_list(json: bool) -> Result<(), CliError> {
    match request(TechRequest::ListScripts).await? {
        TechReply::Scripts(list) if json => Ok(render::print_json(&list)?),
        TechReply::Scripts(list) => {
            render::scripts(&list);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn script_show(name: String, json: bool) -> Result<(), CliError> {
    match request(TechRequest::ShowScript { name }).await? {
        TechReply::Script(view) if json => Ok(render::print_json(&view)?),
        TechReply::Script(view) => {
            render::script(&view);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn run(
    agent: String,
    script: String,
    ticket: u64,
    params: Vec<(String, String)>,
    json: bool,
) -> Result<(), CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let req = TechRequest::RunScript {
        agent,
        ticket,
        script,
        params,
    };
    let result = client
        .stream(&req, |reply| {
            if let (TechReply::RunOutput { stream, data }, false) = (reply, json) {
                use std::io::Write;
                // Live output: a closed stdout/stderr only loses the echo, not the evidence.
                let _ = match stream {
                    OutputStream::Stdout => std::io::stdout()
                        .write_all(data)
                        .and_then(|()| std::io::stdout().flush()),
                    OutputStream::Stderr => std::io::stderr()
                        .write_all(data)
                        .and_then(|()| std::io::stderr().flush()),
                };
            }
        })
        .await;
    client.close().await;
    let report = match result? {
        TechReply::RunFinished(report) => report,
        other => return Err(unexpected(&other).into()),
    };
    if json {
        render::print_json(&report)?;
    }
    let r = &report.result;
    let how = match (r.exit_code, r.signal) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended".into(),
    };
    let notes = [
        (r.timed_out, "timed out"),
        (r.cancelled, "cancelled because the session ended"),
        (r.truncated, "output truncated"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(", ");
    let summary = format!(
        "script {} v{} on {} {how} in {} ms{}; stored on ticket #{} as sha256:{}",
        report.script,
        report.version,
        report.agent,
        r.duration_ms,
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({notes})")
        },
        report.ticket,
        report.evidence.sha256
    );
    match r.exit_code {
        Some(0) => {
            if !json {
                eprintln!("{summary}");
            }
            Ok(())
        }
        _ => Err(CliError::Script {
            end: if r.timed_out {
                ScriptEnd::TimedOut
            } else if r.cancelled {
                ScriptEnd::Cancelled
            } else {
                ScriptEnd::Failed
            },
            summary,
        }),
    }
}

pub async fn ticket_note(number: u64, text: String) -> Result<(), CliError> {
    match request(TechRequest::Note { number, text }).await? {
        TechReply::Ticket(view) => {
            println!("note added to ticket #{}", view.ticket.number);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn ticket_resolve(number: u64, note: String) -> Result<(), CliError> {
    match request(TechRequest::Resolve { number, note }).await? {
        TechReply::Ticket(view) => {
            println!("ticket #{} resolved", view.ticket.number);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn ticket_sync(number: u64) -> Result<(), CliError> {
    match request(TechRequest::Sync { number }).await? {
        TechReply::Ticket(view) => {
            println!(
                "ticket #{}: {}",
                view.ticket.number,
                view.ticket.sync_state.as_deref().unwrap_or("no sync state")
            );
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

/// Escalate or export: the controller builds the bundle; with `out`, every file is also
/// written here.
pub async fn ticket_bundle(
    req: TechRequest,
    out: Option<std::path::PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let result = receive_bundle(&client, &req, out.as_deref()).await;
    client.close().await;
    let summary = result?;
    if json {
        return Ok(render::print_json(&summary)?);
    }
    if let Some(to) = summary.escalated_to {
        println!("ticket #{} escalated to {to}", summary.ticket);
    }
    println!(
        "bundle: {} files, {} bytes, on the controller at {}",
        summary.files, summary.bytes, summary.location
    );
    if let Some(dir) = &out {
        println!(
            "written to {} (report: {})",
            dir.display(),
            dir.join(crate::bundle::REPORT_HTML).display()
        );
    }
    if let Some(sync) = &summary.sync {
        println!("external ticket system: {sync}");
    }
    Ok(())
}

/// Sends an `Escalate` or `Export` request and writes the streamed bundle into `out`.
pub async fn receive_bundle(
    client: &TechClient,
    req: &TechRequest,
    out: Option<&std::path::Path>,
) -> Result<deskside_proto::msg::tech::BundleSummary> {
    if let Some(dir) = out {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            anyhow::bail!(
                "{} exists and is not empty; choose a new directory for the bundle",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir.join(crate::bundle::ITEMS_DIR))?;
    }
    let mut write_error: Option<anyhow::Error> = None;
    let result = client
        .stream(req, |reply| {
            if let (TechReply::BundleFile { path, offset, data }, Some(dir)) = (reply, out)
                && write_error.is_none()
                && let Err(e) = write_chunk(dir, path, *offset, data)
            {
                write_error = Some(e);
            }
        })
        .await;
    if let Some(e) = write_error {
        return Err(e);
    }
    match result? {
        TechReply::Bundle(s) => Ok(*s),
        other => Err(unexpected(&other)),
    }
}

/// Writes one bundle chunk under `dir`, refusing any path the bundle format does not have.
fn write_chunk(dir: &std::path::Path, path: &str, offset: u64, data: &[u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let allowed = [
        crate::bundle::EVIDENCE_JSON,
        crate::bundle::REPORT_MD,
        crate::bundle::REPORT_HTML,
    ]
    .contains(&path)
        || path
            .strip_prefix("items/")
            .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    if !allowed {
        anyhow::bail!(
            "the controller sent an unexpected bundle path {path:?}; refusing to write it"
        );
    }
    let target = dir.join(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .open(&target)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    Ok(())
}

pub fn ticket_verify(dir: &std::path::Path, json: bool) -> Result<(), CliError> {
    match crate::bundle::verify(dir) {
        Ok(v) => {
            if json {
                render::print_json(
                    &serde_json::json!({"ok": true, "ticket": v.ticket, "items": v.items, "signed": v.signed, "signed_by_controller": v.by_controller, "entries": v.entries}),
                )?;
            } else {
                println!(
                    "bundle for ticket #{} verifies: {} items, every one signed ({} by their agent, {} by the controller), {} timeline entries, chain intact",
                    v.ticket,
                    v.items,
                    v.signed - v.by_controller,
                    v.by_controller,
                    v.entries
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                render::print_json(&serde_json::json!({"ok": false, "error": e.to_string()}))?;
            }
            Err(CliError::NotVerified(e))
        }
    }
}
