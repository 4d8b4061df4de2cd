//! The user's side of consent: `deskside-agent support` (an interactive terminal screen)
//! and the one-shot `pending`/`approve`/`deny`/`end`/`disable`/`enable` commands. All go
//! through the running service's control socket.

use std::io::IsTerminal;
use std::time::Duration;

use deskside_proto::msg::session::{Scope, SessionAsk};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::control::{ControlClient, ControlError, ControlReply, ControlRequest};
use crate::session::SessionStatus;
use crate::state::StateDir;

fn when(secs: u64) -> String {
    let left = secs.saturating_sub(crate::now_secs());
    format!("{}m{:02}s", left / 60, left % 60)
}

fn describe_ask(a: &SessionAsk) -> String {
    let title = if a.ticket_title.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", a.ticket_title)
    };
    format!(
        "{} ({}) asks, for ticket #{}{title}, to use: {} for {} minutes",
        a.technician,
        a.tier,
        a.ticket,
        Scope::list(&a.scopes),
        a.duration_secs / 60
    )
}

/// The status as lines of text for people.
pub fn render(s: &SessionStatus) -> String {
    let mut out = Vec::new();
    if s.disabled {
        out.push(
            "Deskside is SWITCHED OFF on this machine (deskside-agent enable to switch it on)."
                .to_owned(),
        );
    }
    if let Some(c) = &s.code {
        out.push(format!(
            "Support code: {}  — read it to the help desk (valid {} more, single use)",
            c.code,
            when(c.expires_at_secs)
        ));
    }
    for p in &s.pending {
        out.push(format!(
            "[request {}] {} — answer within {}",
            p.id,
            describe_ask(&p.ask),
            when(p.answer_by_secs)
        ));
    }
    match &s.active {
        Some(g) => {
            out.push(format!(
                "Active session {}: {} ({}) on ticket #{}, may use {}, ends in {}",
                g.id,
                g.technician,
                g.tier,
                g.ticket,
                Scope::list(&g.scopes),
                when(g.expires_at_secs)
            ));
            out.push(format!(
                "Right now: {}",
                s.activity.as_deref().unwrap_or("nothing")
            ));
        }
        None => out.push("No active session.".to_owned()),
    }
    out.join("\n")
}

/// `deskside-agent support`: show a code, then requests and the session live; the user
/// types `a ID` / `d ID` to answer, `e` to end the session, `q` to leave.
/// Why a `support` or one-shot command could not talk to the agent service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the agent did not return a support code")]
    NoCode,
    #[error("unexpected reply from the agent")]
    Unexpected,
    /// The service answered with an error; its words.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

type Result<T> = std::result::Result<T, ConsentError>;

pub async fn support(state: &StateDir, scopes: Vec<Scope>, duration: Duration) -> Result<()> {
    let mut control = ControlClient::connect(state).await?;
    let ControlReply::Code(code) = control
        .call(&ControlRequest::Support {
            scopes,
            duration_secs: duration.as_secs(),
        })
        .await?
    else {
        return Err(ConsentError::NoCode);
    };
    println!(
        "Your support code is  {}  — read it to the help desk engineer.",
        code.code
    );
    println!(
        "It works once, within 10 minutes, and lets them use: {}",
        Scope::list(&code.scopes)
    );
    println!(
        "Keys: a ID = approve request, d ID = deny request, e = end the session now, q = quit (the session continues)\n"
    );
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        let ControlReply::Status(status) = control.call(&ControlRequest::Status).await? else {
            return Err(ConsentError::Unexpected);
        };
        let screen = render(&status);
        if screen != last {
            if tty {
                print!("\x1b[2J\x1b[H");
                println!(
                    "Deskside support — code {}   (a ID approve, d ID deny, e end, q quit)\n",
                    code.code
                );
            }
            println!("{screen}\n");
            last = screen;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            line = lines.next_line(), if stdin_open => match line? {
                None => stdin_open = false,
                Some(line) => {
                    let mut words = line.split_whitespace();
                    let req = match (words.next(), words.next().and_then(|w| w.parse().ok())) {
                        (Some("a" | "approve"), Some(id)) => ControlRequest::Approve { id },
                        (Some("d" | "deny"), Some(id)) => ControlRequest::Deny { id },
                        (Some("e" | "end"), _) => ControlRequest::End,
                        (Some("q" | "quit"), _) => return Ok(()),
                        (None, _) => continue,
                        _ => {
                            println!("keys: a ID, d ID, e, q");
                            continue;
                        }
                    };
                    match control.call(&req).await {
                        Ok(ControlReply::Done { message }) => println!("{message}"),
                        Ok(_) => {}
                        Err(e) => println!("{}", crate::error_chain(&e)),
                    }
                }
            },
        }
    }
}

/// One-shot commands: returns the text to print.
pub async fn command(state: &StateDir, req: ControlRequest, json: bool) -> Result<String> {
    let switch = matches!(req, ControlRequest::Disable | ControlRequest::Enable);
    let mut control = match ControlClient::connect(state).await {
        Ok(c) => c,
        // The kill switch works even when the service is not running.
        Err(_) if switch => {
            if req == ControlRequest::Disable {
                std::fs::write(state.disabled_flag(), b"disabled by the user\n")?;
                return Ok("Deskside is switched off on this machine: every request is refused until `deskside-agent enable`".into());
            }
            match std::fs::remove_file(state.disabled_flag()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => return Ok("Deskside is switched on again".into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match control.call(&req).await? {
        ControlReply::Status(s) if json => serde_json::to_string_pretty(&s)?,
        ControlReply::Status(s) => render(&s),
        ControlReply::Done { message } => message,
        ControlReply::Code(c) => c.code,
        ControlReply::Watched(w) if json => serde_json::to_string_pretty(&w)?,
        ControlReply::Watched(w) => render(&w.status),
        ControlReply::Checked(c) if json => serde_json::to_string_pretty(&c)?,
        ControlReply::Checked(c) => c
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.severity, f.message))
            .collect::<Vec<_>>()
            .join("\n"),
        ControlReply::Error { message } => return Err(ConsentError::Refused(message)),
        other => format!("{other:?}"),
    })
}
