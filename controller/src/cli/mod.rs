//! `deskside`: the controller's admin commands and the technician CLI. `args.rs` is the
//! command line, `error.rs` how a command fails and with which exit status; `run` below
//! hands each command to its module.

pub mod admin;
mod args;
pub mod check;
pub mod collect;
pub mod demo;
pub mod diag_all;
mod error;
pub mod export;
mod remote;
mod render;
pub mod script;
pub mod session;
pub mod tech;

use std::path::PathBuf;

use anyhow::Context;
use deskside_proto::msg::tech::TechRequest;

pub use args::{
    AgentCommand, ArgError, Cli, Command, ConfigCommand, ConsoleCommand, ScopeList, ScriptCommand,
    SessionCommand, TechCommand, TicketCommand, TokenCommand,
};
pub use error::{CliError, ScriptEnd, Shortfall, exit};
pub use render::print_json;

/// The data directory: `--data`, `DESKSIDE_DATA`, else `/var/lib/deskside` for root and
/// `<data dir>/deskside` for other users; with the store `config` names (`[store] url`,
/// else the SQLite file in it). Every command that opens the store gets it from here.
pub fn data_dir(
    flag: Option<PathBuf>,
    config: &crate::config::ControllerConfig,
) -> anyhow::Result<crate::datadir::DataDir> {
    let root = match flag {
        Some(p) => p,
        None if is_root() => PathBuf::from("/var/lib/deskside"),
        None => dirs::data_dir()
            .context("no data directory for this user; pass --data DIR")?
            .join("deskside"),
    };
    Ok(crate::datadir::DataDir::new(root).with_store(config.store_url.clone()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a parsed command line. `config` is the loaded controller config (file, then
/// environment); flags override it. The admin commands work on local files and report
/// through anyhow; their errors are failures (exit 1) or, for a bad state file, 64.
pub async fn run(cli: Cli, config: crate::config::ControllerConfig) -> Result<(), CliError> {
    let data = cli.data.clone().or_else(|| config.data.clone());
    match cli.command {
        Command::Init => Ok(admin::init(&data_dir(data.clone(), &config)?)?),
        Command::Serve {
            listen,
            metrics_listen,
        } => {
            let options = crate::server::Options {
                listen: listen.unwrap_or(config.listen),
                metrics_listen: Some(metrics_listen.unwrap_or(config.metrics_listen)),
                sla: config.sla.clone(),
                ticketing: config.ticketing.clone(),
                client_validity: config.client_validity,
                max_collect_bytes: config.max_collect_bytes,
                console: config.console.clone(),
                cluster: config.cluster.clone(),
                ..crate::server::Options::default()
            };
            Ok(admin::serve(&data_dir(data, &config)?, &options).await?)
        }
        Command::Config {
            command: ConfigCommand::Check { reach },
        } => Ok(check::config(&config, data, reach).await?),
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", crate::config::example());
            Ok(())
        }
        Command::Backup { out } => Ok(admin::backup(&data_dir(data, &config)?, &out)?),
        Command::Restore { archive } => Ok(admin::restore(&archive, &data_dir(data, &config)?)?),
        Command::Agent {
            command: AgentCommand::Revoke { id },
        } => Ok(admin::revoke(
            &data_dir(data.clone(), &config)?,
            Some(&id),
            None,
        )?),
        Command::Console { command } => Ok(console(command, &config, data)?),
        Command::Tech {
            command: TechCommand::Revoke { name },
        } => Ok(admin::revoke(
            &data_dir(data.clone(), &config)?,
            None,
            Some(&name),
        )?),
        Command::Token {
            command: TokenCommand::Create { controller, ttl },
        } => {
            let controllers = if controller.is_empty() {
                config.cluster.controllers.clone()
            } else {
                controller
            };
            if controllers.is_empty() {
                return Err(anyhow::anyhow!(
                    "no controller address for the token: give --controller HOST:PORT as agents will reach this controller (repeat it for each node of a cluster), or set [cluster] controllers in controller.toml"
                )
                .into());
            }
            Ok(admin::token_create(
                &data_dir(data.clone(), &config)?,
                &controllers,
                ttl,
            )?)
        }
        Command::Tech {
            command:
                TechCommand::Add {
                    name,
                    tier,
                    controller,
                    ttl,
                },
        } => {
            let controllers = if !controller.is_empty() {
                controller
            } else if !config.cluster.controllers.is_empty() {
                config.cluster.controllers.clone()
            } else {
                let (addr, why) = admin::assumed_controller(config.listen);
                let from = config.source.as_ref().map_or_else(
                    || "the built-in default listen address".to_owned(),
                    |p| format!("listen in {}", p.display()),
                );
                eprintln!(
                    "no --controller given: the token names {addr} ({why}, from {from}); if the technician's workstation reaches the controller otherwise, run again with --controller HOST:PORT"
                );
                vec![addr]
            };
            Ok(admin::tech_add(
                &data_dir(data.clone(), &config)?,
                &name,
                tier,
                &controllers,
                ttl,
            )?)
        }
        Command::Login { token } => tech::login(&token).await,
        Command::Agents { json } => tech::agents(json).await,
        Command::Ticket { command } => match command {
            TicketCommand::New {
                title,
                agent,
                requester,
                priority,
                json,
            } => tech::ticket_new(title, agent, requester, priority, json).await,
            TicketCommand::List { json } => tech::ticket_list(json).await,
            TicketCommand::Show { number, json } => tech::ticket_show(number, json).await,
            TicketCommand::Note { number, text } => tech::ticket_note(number, text).await,
            TicketCommand::Resolve { number, note } => tech::ticket_resolve(number, note).await,
            TicketCommand::Escalate {
                number,
                to,
                note,
                out,
                json,
            } => export::ticket_bundle(TechRequest::Escalate { number, to, note }, out, json).await,
            TicketCommand::Export { number, out, json } => {
                export::ticket_bundle(TechRequest::Export { number }, Some(out), json).await
            }
            TicketCommand::Verify { dir, json } => export::verify(&dir, json),
            TicketCommand::Sync { number } => tech::ticket_sync(number).await,
        },
        Command::Diag {
            agent: Some(agent),
            all: false,
            ticket,
            json,
            ..
        } => tech::diag(agent, ticket, json).await,
        Command::Diag {
            ticket,
            hostname_glob,
            os,
            concurrency,
            json,
            ..
        } => {
            let selection = diag_all::Selection { hostname_glob, os };
            diag_all::run(ticket, selection, concurrency, json).await
        }
        Command::Session { command } => match command {
            SessionCommand::Request {
                agent,
                ticket,
                scopes,
                duration,
                wait,
                json,
            } => session::request_session(agent, ticket, scopes.0, duration, wait, json).await,
            SessionCommand::Join { code, ticket, json } => session::join(code, ticket, json).await,
            SessionCommand::End { agent, ticket } => session::end(agent, ticket).await,
        },
        Command::Script { command } => match command {
            ScriptCommand::List { json } => script::list(json).await,
            ScriptCommand::Show { name, json } => script::show(name, json).await,
            ScriptCommand::Add { files } => Ok(admin::script_add(
                &data_dir(data.clone(), &config)?,
                &files,
            )?),
        },
        Command::Run {
            agent,
            script,
            ticket,
            params,
            json,
        } => script::run(agent, script, ticket, params, json).await,
        Command::Collect {
            agent,
            path,
            ticket,
            json,
        } => collect::collect(agent, path, ticket, json).await,
        Command::Status { metrics, json } => {
            let metrics = metrics.unwrap_or_else(|| admin::reachable(config.metrics_listen));
            Ok(check::status(metrics, json).await?)
        }
        Command::Demo { console } => Ok(demo::run(console).await?),
    }
}

/// `deskside console add|ca`.
fn console(
    command: ConsoleCommand,
    config: &crate::config::ControllerConfig,
    data: Option<PathBuf>,
) -> anyhow::Result<()> {
    let data = data_dir(data, config)?;
    match command {
        ConsoleCommand::Ca => {
            let keys = data.load()?;
            print!("{}", keys.ca.cert_pem);
            Ok(())
        }
        ConsoleCommand::Add { name, admin, url } => {
            let base = match (url, &config.console) {
                (Some(u), _) => u.trim_end_matches('/').to_owned(),
                (None, Some(c)) => {
                    let scheme = match c.tls {
                        crate::console::ConsoleTls::BehindProxy { .. } => "http",
                        _ => "https",
                    };
                    format!("{scheme}://{}", admin::reachable(c.listen))
                }
                (None, None) => anyhow::bail!(
                    "the console is not configured: add a [console] table with listen to controller.toml, or give --url"
                ),
            };
            let store = data.open_store()?;
            let path = crate::console::add_login(&store, &name, admin)?;
            eprintln!(
                "console login for {name}{} ready; the link works once, for {}; open it in their browser:",
                if admin { " (admin)" } else { "" },
                admin::human_duration(crate::console::SETUP_LINK_VALIDITY)
            );
            println!("{base}{path}");
            Ok(())
        }
    }
}
