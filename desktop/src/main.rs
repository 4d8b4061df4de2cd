//! `deskside-desktop`: the helper in the user's session (started by the desktop's
//! autostart). Exits 0 when the desktop session ends, 1 on a failure it cannot wait out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Asks you, in desktop notifications, whether a help desk technician may help on this
/// computer, and shows a running session with a way to end it.
#[derive(Debug, Parser)]
#[command(name = "deskside-desktop", version)]
struct Cli {
    /// The agent service's control socket.
    #[arg(long, env = "DESKSIDE_AGENT_SOCKET", default_value = deskside_agent::state::SYSTEM_SOCKET)]
    socket: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the helper's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(deskside_desktop::helper::run(&cli.socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
