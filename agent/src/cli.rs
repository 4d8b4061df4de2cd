//! `deskside-agent` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use deskside_proto::findings;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditError;
use crate::backoff::BackoffError;
use crate::consent::ConsentError;
use crate::control::ControlRequest;
use crate::enroll::EnrollError;
use crate::link::{LinkError, LinkStatus};
use crate::local_user::LocalSessions;
use crate::policy::{Policy, PolicyError};
use crate::state::{StateDir, StateError};
use deskside_proto::msg::session::Scope;

/// A configuration or policy problem found by our own checks (exit 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

/// Exit statuses (also in the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// Invalid policy or state file.
    pub const BAD_CONFIG: u8 = 64;
}

/// Why a `deskside-agent` command did not succeed. The message (with its causes) is what
/// the user reads after `error: `; [`AgentCliError::exit_code`] is what a script reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentCliError {
    #[error(transparent)]
    BadConfig(#[from] BadConfig),
    /// The reconnect timing in agent.toml is inconsistent.
    #[error(transparent)]
    Backoff(#[from] BackoffError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A self-service call on the control socket failed or was refused.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

impl AgentCliError {
    /// The exit status for this ending: the one place that decides it. An invalid policy,
    /// a damaged state file or an inconsistent config is [`exit::BAD_CONFIG`].
    pub fn exit_code(&self) -> u8 {
        let bad_state = |e: &StateError| matches!(e, StateError::Damaged { .. });
        let bad = match self {
            AgentCliError::BadConfig(_) | AgentCliError::Backoff(_) => true,
            AgentCliError::Policy(e) => matches!(e, PolicyError::Invalid { .. }),
            AgentCliError::State(e) | AgentCliError::Enroll(EnrollError::State(e)) => bad_state(e),
            AgentCliError::Link(LinkError::State(e)) => bad_state(e),
            AgentCliError::Link(LinkError::Backoff(_)) => true,
            AgentCliError::Enroll(_)
            | AgentCliError::Link(_)
            | AgentCliError::Consent(_)
            | AgentCliError::Audit(_)
            | AgentCliError::Json(_)
            | AgentCliError::Control(_) => false,
        };
        if bad { exit::BAD_CONFIG } else { exit::FAILURE }
    }
}

type Result<T> = std::result::Result<T, AgentCliError>;

#[derive(Debug, Parser)]
#[command(
    name = "deskside-agent",
    version,
    about = "Deskside agent: diagnostics for your help desk, on your terms"
)]
pub struct Cli {
    /// Agent state directory (key, certificate, policy, audit log).
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The agent service's control socket (default $DESKSIDE_AGENT_SOCKET, else
    /// /run/deskside-agent/control.sock for the system state directory).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Agent service config (default $DESKSIDE_AGENT_CONFIG, else /etc/deskside/agent.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr: human or json (one object per line); default from the config.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<deskside_config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this machine with a token from `deskside token create`.
    Enroll { token: String },
    /// Run the agent service: connect to the controller and stay connected.
    Run,
    /// Enrollment, policy and link state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Collect a diagnostics snapshot locally and print it; nothing is sent.
    Diag {
        #[arg(long)]
        json: bool,
    },
    /// The local log of every request this agent received and what it did.
    Audit {
        #[arg(long)]
        json: bool,
    },
    /// Start a session yourself: shows a code to read to the help desk, then requests and
    /// the session live; approve, deny or end from the keyboard.
    Support {
        /// What the help desk may do in the session.
        #[arg(long, default_value = "diagnostics,scripts:l1", value_parser = parse_scopes)]
        scopes: ScopeList,
        /// How long the session lasts once they join.
        #[arg(long = "for", default_value = "1h", value_parser = session_duration)]
        duration: std::time::Duration,
    },
    /// Session requests waiting for an answer, and the active session.
    Pending {
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending session request.
    Approve { id: u32 },
    /// Deny a pending session request.
    Deny { id: u32 },
    /// End the active session now; anything it is running is stopped.
    End,
    /// Refuse everything, whoever asks, until `enable`.
    Disable,
    /// Undo `disable`.
    Enable,
    /// The agent's service configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check this computer: what is wrong, and what you can do about it.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// List the fixes you may run yourself (self-service scripts from your help desk).
    Fixes {
        #[arg(long)]
        json: bool,
    },
    /// Run a self-service fix, e.g. `deskside-agent fix flush-dns`.
    Fix {
        name: String,
        /// A parameter as KEY=VALUE (repeatable); `fixes` shows the choices.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Ask your help desk for help: your words, a fresh check of this computer and the
    /// fixes you ran go with it; prints the ticket number.
    Ask {
        text: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE, e.g. --param dry_run=true"))
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate agent.toml, the environment and the machine's policy.toml without starting.
    Check,
    /// Print the annotated example agent.toml.
    Example,
}

/// Parsed `--scopes` (a newtype so clap treats the list as one value).
#[derive(Debug, Clone)]
pub struct ScopeList(pub Vec<Scope>);

fn parse_scopes(s: &str) -> std::result::Result<ScopeList, String> {
    Scope::parse_list(s)
        .map(ScopeList)
        .map_err(|e| e.to_string())
}

/// `--for`: a session lasts at least a second and at most what the protocol allows.
fn session_duration(
    s: &str,
) -> std::result::Result<std::time::Duration, deskside_config::DurationError> {
    let max = std::time::Duration::from_secs(deskside_proto::msg::session::MAX_SESSION_SECS);
    deskside_config::parse_duration_in(s, std::time::Duration::from_secs(1)..=max)
}

pub async fn run(cli: Cli, config: crate::config::AgentConfig) -> Result<()> {
    let state_flag = cli.state.clone().or_else(|| config.state.clone());
    let socket = cli.socket.clone().or_else(|| config.control_socket.clone());
    let state = || {
        let state = StateDir::resolve(state_flag.clone())?;
        Ok::<_, StateError>(match &socket {
            Some(s) => state.with_control_socket(s),
            None => state,
        })
    };
    match &cli.command {
        Command::Enroll { token } => {
            let state = state()?;
            let e = crate::enroll::enroll(&state, token).await?;
            println!(
                "enrolled as {} with {}; state in {}",
                e.agent_id,
                e.controllers.join(", "),
                state.root().display()
            );
            println!(
                "policy: {} (every scope prompts until the machine's admin edits it)",
                state.policy().display()
            );
            println!(
                "next: the packaged service starts by itself; otherwise run: deskside-agent run"
            );
            Ok(())
        }
        Command::Run => {
            let state = state()?;
            // Validate before connecting: a bad policy exits 64 now, not at the first request.
            let policy = Policy::load(&state.policy())?;
            crate::redact::Redactor::new(&policy.redact)
                .map_err(|e| BadConfig(format!("{}: {e}", state.policy().display())))?;
            let backoff = config.backoff()?;
            let cancel = CancellationToken::new();
            let stopper = cancel.clone();
            tokio::spawn(async move {
                if shutdown_signal().await.is_ok() {
                    stopper.cancel();
                }
            });
            Ok(crate::link::run_with(state, backoff, LocalSessions::system(), cancel).await?)
        }
        Command::Status { json } => status(&state()?, *json),
        Command::Diag { json } => {
            // A one-shot run has no warm cache: count pending updates now (the service
            // keeps this warm, so technicians never wait for it).
            crate::diag::warm_up();
            crate::diag::wait_for_pending_updates(std::time::Duration::from_secs(60)).await;
            let mut snapshot = crate::diag::collect().await;
            snapshot.findings = findings::evaluate(&snapshot);
            if *json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", deskside_proto::summary::render(&snapshot));
            }
            Ok(())
        }
        Command::Audit { json } => audit(&state()?, *json),
        Command::Support { scopes, duration } => {
            Ok(crate::consent::support(&state()?, scopes.0.clone(), *duration).await?)
        }
        Command::Pending { json } => say(&state()?, ControlRequest::Status, *json).await,
        Command::Approve { id } => say(&state()?, ControlRequest::Approve { id: *id }, false).await,
        Command::Deny { id } => say(&state()?, ControlRequest::Deny { id: *id }, false).await,
        Command::End => say(&state()?, ControlRequest::End, false).await,
        Command::Disable => say(&state()?, ControlRequest::Disable, false).await,
        Command::Enable => say(&state()?, ControlRequest::Enable, false).await,
        Command::Check { json } => {
            let report = crate::selfhelp::client::check(&state()?).await?;
            show(*json, &report, crate::selfhelp::render::check)
        }
        Command::Fixes { json } => {
            let list = crate::selfhelp::client::fixes(&state()?).await?;
            show(*json, &list, |l| crate::selfhelp::render::fixes(l))
        }
        Command::Fix { name, params, json } => {
            let outcome = crate::selfhelp::client::fix(&state()?, name, params.clone()).await?;
            show(*json, &outcome, crate::selfhelp::render::fixed)
        }
        Command::Ask { text, json } => {
            let asked = crate::selfhelp::client::ask(&state()?, text).await?;
            show(*json, &asked, |a| format!("{}\n", a.message))
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", crate::config::example());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let state = state()?;
            match &config.source {
                Some(p) => println!("{}: valid", p.display()),
                None => println!(
                    "no agent.toml (looked at $DESKSIDE_AGENT_CONFIG and {}); built-in defaults are valid",
                    crate::config::DEFAULT_PATH
                ),
            }
            println!("  state dir   {}", state.root().display());
            println!("  socket      {}", state.control_socket().display());
            println!(
                "  reconnect   {:?} doubling to {:?}",
                config.reconnect_base, config.reconnect_cap
            );
            println!(
                "  log         {:?}, level {}",
                config.log_format, config.log_level
            );
            let policy = Policy::load(&state.policy())?;
            crate::redact::Redactor::new(&policy.redact)
                .map_err(|e| BadConfig(format!("{}: {e}", state.policy().display())))?;
            println!("  policy      {}: valid", state.policy().display());
            Ok(())
        }
    }
}

/// Prints `value` as JSON, or as `text` renders it.
fn show<T: serde::Serialize>(json: bool, value: &T, text: impl Fn(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

async fn say(state: &StateDir, req: ControlRequest, json: bool) -> Result<()> {
    println!("{}", crate::consent::command(state, req, json).await?);
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct Status {
    state_dir: String,
    enrolled: bool,
    enrollment: Option<crate::state::Enrollment>,
    policy: Option<Policy>,
    policy_error: Option<String>,
    link: Option<LinkStatus>,
}

fn status(state: &StateDir, json: bool) -> Result<()> {
    let enrollment = if state.is_enrolled() {
        Some(state.enrollment()?)
    } else {
        None
    };
    let (policy, policy_error) = match Policy::load(&state.policy()) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let link = state
        .read(&state.status_file())
        .ok()
        .and_then(|t| serde_json::from_str::<LinkStatus>(&t).ok());
    let s = Status {
        state_dir: state.root().display().to_string(),
        enrolled: enrollment.is_some(),
        enrollment,
        policy,
        policy_error,
        link,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    match &s.enrollment {
        None => println!(
            "not enrolled (state dir {}); run: deskside-agent enroll TOKEN",
            s.state_dir
        ),
        Some(e) => println!(
            "enrolled as {} with {} (state dir {})",
            e.agent_id,
            e.controllers.join(", "),
            s.state_dir
        ),
    }
    match (&s.policy, &s.policy_error) {
        (Some(p), _) => println!(
            "policy: diagnostics={:?} scripts:l1={:?} scripts:l2={:?}",
            p.scopes.diagnostics, p.scopes.scripts_l1, p.scopes.scripts_l2
        ),
        (None, Some(e)) => println!("policy: INVALID: {e}"),
        _ => {}
    }
    match &s.link {
        Some(l) => println!(
            "link: {} since {} (pid {}){}",
            l.state,
            l.since_secs,
            l.pid,
            l.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => println!("link: the service has not run yet (deskside-agent run)"),
    }
    Ok(())
}

fn audit(state: &StateDir, json: bool) -> Result<()> {
    let (entries, damaged) = crate::audit::read(&state.audit_log())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        println!("no requests received yet");
    } else {
        for e in &entries {
            println!(
                "{} ticket #{} {} ({}) {}: {} — {}",
                e.at_secs, e.ticket, e.technician, e.tier, e.scope, e.outcome, e.detail
            );
        }
    }
    if damaged > 0 {
        eprintln!(
            "warning: {damaged} damaged line(s) in {}",
            state.audit_log().display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_policy_or_damaged_state_exits_64_and_anything_else_1() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path());
        std::fs::write(state.policy(), "[scopes]\ndiagnostics = \"sometimes\"\n")?;
        let e = AgentCliError::from(
            Policy::load(&state.policy())
                .err()
                .ok_or_else(|| anyhow::anyhow!("an unknown decision was accepted"))?,
        );
        assert_eq!(e.exit_code(), exit::BAD_CONFIG);
        assert!(
            crate::error_chain(&e).starts_with("invalid policy in "),
            "{e}"
        );

        std::fs::write(state.enrollment_file(), "agent_id = ")?;
        let damaged = state
            .enrollment()
            .err()
            .ok_or_else(|| anyhow::anyhow!("parsed"))?;
        assert_eq!(
            AgentCliError::from(LinkError::from(damaged)).exit_code(),
            exit::BAD_CONFIG
        );

        let e = AgentCliError::from(BadConfig("redact: bad pattern".into()));
        assert_eq!(e.exit_code(), exit::BAD_CONFIG);
        let e = AgentCliError::from(StateError::TooLarge(state.policy()));
        assert_eq!(e.exit_code(), exit::FAILURE);
        let e = AgentCliError::from(ConsentError::NoCode);
        assert_eq!(e.exit_code(), exit::FAILURE);
        assert_eq!(e.to_string(), "the agent did not return a support code");
        Ok(())
    }
}
