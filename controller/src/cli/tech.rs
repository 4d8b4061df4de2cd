//! Technician commands: logging in, and the requests about agents and tickets that are
//! one question and one answer. Sessions, scripts and bundles have their own modules.

use anyhow::{Context, Result, bail};
use deskside_proto::msg::enroll::{EnrollToken, TokenKind};
use deskside_proto::msg::identity::Identity;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_transport::enroll::enroll;

use super::remote::{request, unexpected};
use super::{CliError, render};
use crate::profile::{self, Profile};

const SOFTWARE: &str = concat!("deskside ", env!("CARGO_PKG_VERSION"));

pub async fn login(token: &str) -> Result<(), CliError> {
    let path = profile::default_path()?;
    let profile = login_to(token, &path).await?;
    println!(
        "logged in as {} ({}) to {}; profile saved to {}",
        profile.name,
        profile.tier,
        profile.controllers.join(", "),
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
    let host = crate::host::hostname();
    let done = enroll(&token, &host, std::env::consts::OS, SOFTWARE)
        .await
        .with_context(|| {
            format!(
                "logging in to the controller at {}",
                token.controllers.join(", ")
            )
        })?;
    let Identity::Technician { name } = done.enrollment.identity.clone() else {
        bail!("the controller issued an agent certificate for a technician token");
    };
    let tier = done
        .enrollment
        .tier
        .context("the controller did not say the technician's tier")?;
    let profile = Profile {
        controllers: token.controllers.clone(),
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
