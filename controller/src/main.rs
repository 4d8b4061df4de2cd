//! `deskside`: parses arguments, sets up logging, runs the command, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use deskside_controller::cli::tech::Exit;
use deskside_controller::cli::{self, Cli, Command, exit};
use deskside_controller::client::Refused;
use deskside_proto::msg::tech::ErrorCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Validated before anything else happens; a bad file exits 64 naming key and reason.
    let config = match deskside_controller::config::load(cli.config.as_deref(), &|k| {
        std::env::var(k).ok()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::BAD_CONFIG);
        }
    };
    let level = match cli.command {
        Command::Serve { .. } => config.log_level.clone(),
        _ => "warn".to_owned(),
    };
    deskside_transport::logging::init(cli.log_format.unwrap_or(config.log_format), &level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(cli::run(cli, config)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(Exit(code, _)) = e.downcast_ref::<Exit>() {
        return *code;
    }
    match e.downcast_ref::<Refused>().map(|r| r.0.code) {
        Some(ErrorCode::NoSession) => exit::NO_SESSION,
        Some(ErrorCode::SessionExpired) => exit::SESSION_EXPIRED,
        Some(ErrorCode::AgentDisabled) => exit::REFUSED,
        Some(ErrorCode::AgentRefused) => exit::REFUSED,
        Some(ErrorCode::Timeout) => exit::TIMED_OUT,
        Some(ErrorCode::AgentOffline) => exit::OFFLINE,
        _ if e.chain().any(|c| {
            c.is::<toml::de::Error>() || c.is::<deskside_controller::config::ConfigError>()
        }) =>
        {
            exit::BAD_CONFIG
        }
        _ => exit::FAILURE,
    }
}
