//! `deskside-agent`: parses arguments, sets up logging, runs the command, maps errors to
//! exit codes.

use std::process::ExitCode;

use clap::Parser;
use deskside_agent::cli::{self, Cli, Command, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Two worker threads: the agent is mostly idle, and blocking probes use their own pool.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_config = e.chain().any(|c| c.is::<toml::de::Error>());
            ExitCode::from(if bad_config {
                exit::BAD_CONFIG
            } else {
                exit::FAILURE
            })
        }
    }
}
