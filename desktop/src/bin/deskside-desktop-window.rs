//! `deskside-desktop-window`: the helper's details window, started from a notification's
//! Details (or by hand). Exits when closed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use deskside_desktop::window::{self, Opened};

/// Shows a request waiting for your answer, the running session, or Get help.
#[derive(Debug, Parser)]
#[command(name = "deskside-desktop-window", version)]
struct Cli {
    /// The agent service's control socket.
    #[arg(long, env = "DESKSIDE_AGENT_SOCKET", default_value = deskside_agent::state::SYSTEM_SOCKET)]
    socket: PathBuf,
    /// Show this pending request (its number in `deskside-agent pending`).
    #[arg(long)]
    request: Option<u32>,
}

/// GTK's renderer, unless the user chose one: software (cairo) needs no GL context and
/// holds ~28 MB where GL through Mesa's software rasteriser holds ~200 MB, for the same
/// pixels in a window of labels and buttons.
const RENDERER: &str = "cairo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // GTK reads GSK_RENDERER as it starts; setting it in-process needs `unsafe` in edition
    // 2024, so the window starts itself again with it set.
    if std::env::var_os("GSK_RENDERER").is_none()
        && let Ok(me) = std::env::current_exe()
    {
        let err = std::process::Command::new(me)
            .args(std::env::args_os().skip(1))
            .env("GSK_RENDERER", RENDERER)
            .exec();
        eprintln!("warning: could not restart with GSK_RENDERER={RENDERER}: {err}");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opened = cli.request.map_or(Opened::Current, Opened::Request);
    match window::run(cli.socket, opened) {
        Ok(code) if code == gtk4::glib::ExitCode::SUCCESS => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
