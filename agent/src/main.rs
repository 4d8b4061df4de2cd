//! `deskside-agent`: parses arguments, sets up logging, runs the command, maps errors to
//! exit codes.

use std::process::ExitCode;

use clap::Parser;
use deskside_agent::cli::{self, Cli, Command, exit};

fn main() -> ExitCode {
    deskside_agent::os::limit_malloc_arenas();
    let cli = Cli::parse();
    // Validated before anything else happens; a bad file exits 64 naming key and reason.
    let config =
        match deskside_agent::config::load(cli.config.as_deref(), &|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(exit::BAD_CONFIG);
            }
        };
    let service = matches!(cli.command, Command::Run);
    let level = if service {
        config.log_level.clone()
    } else {
        "warn".to_owned()
    };
    deskside_transport::logging::init(cli.log_format.unwrap_or(config.log_format), &level);
    // One thread drives the link, sessions and the control socket: the agent is idle
    // nearly always and its async work is small; what blocks (probes, file hashing) goes
    // to the blocking pool. Worker threads would only add stacks and wake-ups.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(cli::run(cli, config));
    if !service {
        // A one-shot command is done: do not wait for a blocking read that never ends,
        // such as `support`'s read of a terminal the user has not typed into (dropping the
        // runtime would wait for it, and the command would hang after its last word).
        runtime.shutdown_background();
    }
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", deskside_agent::error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
