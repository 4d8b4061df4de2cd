//! `deskside script list | show` and `deskside run`: the signed catalog, and one script
//! run on an agent with its output live and its record stored on the ticket.

use deskside_proto::msg::script::OutputStream;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use super::remote::{request, unexpected};
use super::{CliError, ScriptEnd, render};
use crate::client::TechClient;
use crate::profile;

pub async fn list(json: bool) -> Result<(), CliError> {
    match request(TechRequest::ListScripts).await? {
        TechReply::Scripts(list) if json => Ok(render::print_json(&list)?),
        TechReply::Scripts(list) => {
            render::scripts(&list);
            Ok(())
        }
        other => Err(unexpected(&other).into()),
    }
}

pub async fn show(name: String, json: bool) -> Result<(), CliError> {
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
