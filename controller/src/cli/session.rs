//! `deskside session request | join | end`: a support session with the user of a machine,
//! and its outcome as an exit status (approved 0, refused 3, no answer 4).

use std::time::Duration;

use deskside_proto::msg::session::{GrantOrigin, Scope, SessionOutcome};
use deskside_proto::msg::tech::{SessionReport, TechReply, TechRequest};

use super::remote::{request, unexpected};
use super::{CliError, render};

pub async fn request_session(
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
        TechReply::Session(report) => outcome(&report, json),
        other => Err(unexpected(&other).into()),
    }
}

pub async fn join(code: String, ticket: u64, json: bool) -> Result<(), CliError> {
    match request(TechRequest::JoinSession { code, ticket }).await? {
        TechReply::Session(report) => outcome(&report, json),
        other => Err(unexpected(&other).into()),
    }
}

fn outcome(report: &SessionReport, json: bool) -> Result<(), CliError> {
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

pub async fn end(agent: String, ticket: u64) -> Result<(), CliError> {
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
