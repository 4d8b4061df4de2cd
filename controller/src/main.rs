//! `deskside`: parses arguments, sets up logging, runs the command, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use deskside_controller::cli::{self, Cli, CliError, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    // Validated before anything else happens; a bad file exits 64 naming key and reason.
    let config =
        deskside_controller::config::load(cli.config.as_deref(), &|k| std::env::var(k).ok())?;
    let level = match cli.command {
        Command::Serve { .. } => config.log_level.clone(),
        _ => "warn".to_owned(),
    };
    deskside_transport::logging::init(cli.log_format.unwrap_or(config.log_format), &level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(cli::run(cli, config))
}
