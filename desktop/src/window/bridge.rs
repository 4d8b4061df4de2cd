//! The window's link to the control socket: a thread with its own small runtime watches
//! the agent and carries out the user's commands, so GTK's main loop never blocks on it.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use deskside_agent::control::{ControlClient, ControlReply, ControlRequest, MAX_WATCH_SECS};
use deskside_agent::selfhelp::{Asked, CheckReport, FixOutcome, SelfFix};
use deskside_agent::session::Watched;
use tokio::sync::mpsc as tokio_mpsc;

/// What the thread tells the window.
#[derive(Debug)]
pub enum Update {
    State(Box<Watched>),
    /// The agent answered a command: its words.
    Said(String),
    /// The agent cannot be reached or refused: its words.
    Failed(String),
    /// "Check my computer" came back.
    Checked(Box<CheckReport>),
    /// The machine's self-service scripts.
    Fixes(Vec<SelfFix>),
    /// A self-service script ran.
    Fixed(Box<FixOutcome>),
    /// A self-service script was not run: the agent's reason.
    FixRefused(String),
    /// The help desk got the request for help (or it waits in the spool).
    Asked(Asked),
    /// The request for help was not taken: the agent's reason.
    AskRefused(String),
}

/// Wait between tries while the agent cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Starts the thread; returns where to send commands and where updates arrive.
pub fn start(
    socket: PathBuf,
) -> std::io::Result<(
    tokio_mpsc::UnboundedSender<ControlRequest>,
    mpsc::Receiver<Update>,
)> {
    let (cmd_tx, cmd_rx) = tokio_mpsc::unbounded_channel();
    let (up_tx, up_rx) = mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || runtime.block_on(serve(socket, cmd_rx, up_tx)))?;
    Ok((cmd_tx, up_rx))
}

async fn serve(
    socket: PathBuf,
    mut commands: tokio_mpsc::UnboundedReceiver<ControlRequest>,
    updates: mpsc::Sender<Update>,
) {
    let watcher = {
        let (socket, updates) = (socket.clone(), updates.clone());
        tokio::spawn(async move {
            loop {
                let failed = match ControlClient::connect_to(&socket).await {
                    Ok(mut c) => {
                        let mut seen = 0;
                        loop {
                            match c.watch(seen, MAX_WATCH_SECS).await {
                                Ok(w) => {
                                    seen = w.generation;
                                    if updates.send(Update::State(Box::new(w))).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => break deskside_agent::error_chain(&e),
                            }
                        }
                    }
                    Err(e) => deskside_agent::error_chain(&e),
                };
                if updates.send(Update::Failed(failed)).is_err() {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        })
    };
    while let Some(req) = commands.recv().await {
        let fixing = matches!(req, ControlRequest::SelfFix { .. });
        let asking = matches!(req, ControlRequest::AskForHelp { .. });
        let result = match ControlClient::connect_to(&socket).await {
            Ok(mut c) => c.call(&req).await,
            Err(e) => Err(e),
        };
        let update = match result {
            Ok(ControlReply::Done { message }) => Update::Said(message),
            Ok(ControlReply::Code(code)) => Update::Said(format!("code {}", code.code)),
            Ok(ControlReply::Checked(check)) => Update::Checked(check),
            Ok(ControlReply::SelfFixes(list)) => Update::Fixes(list),
            Ok(ControlReply::Fixed(outcome)) => Update::Fixed(outcome),
            Ok(ControlReply::Asked(asked)) => Update::Asked(asked),
            Ok(_) => continue,
            Err(e) if fixing => Update::FixRefused(deskside_agent::error_chain(&e)),
            Err(e) if asking => Update::AskRefused(deskside_agent::error_chain(&e)),
            Err(e) => Update::Failed(deskside_agent::error_chain(&e)),
        };
        if updates.send(update).is_err() {
            break;
        }
    }
    watcher.abort();
}
