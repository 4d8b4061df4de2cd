//! The desktop helper in the demo: where a graphical session exists (`DISPLAY` or
//! `WAYLAND_DISPLAY`, and a session bus), the demo starts the real `deskside-desktop`
//! found next to `deskside` on the demo agent's control socket, so the technician's
//! requests also appear as desktop notifications.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// The helper binary, next to the running `deskside` when it was built.
pub const DESKTOP_BIN: &str = "deskside-desktop";

/// Whether this process runs in a graphical session the helper can use.
fn graphical() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    (set("DISPLAY") || set("WAYLAND_DISPLAY")) && set("DBUS_SESSION_BUS_ADDRESS")
}

/// What the demo did about the desktop helper, for the demo to say.
#[derive(Debug)]
pub enum Desktop {
    /// No graphical session: the terminal is the user's only way.
    NoDisplay,
    /// A graphical session, but the helper was not built next to `deskside`.
    NotBuilt { expected: PathBuf },
    /// Started, with its log.
    Started { child: Child, log: PathBuf },
    /// It could not be started.
    Failed(String),
}

/// Starts the helper on `socket` when a graphical session exists and the binary is there.
pub fn start(socket: &Path, log: &Path) -> Desktop {
    if !graphical() {
        return Desktop::NoDisplay;
    }
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    else {
        return Desktop::Failed("cannot find the running deskside executable".into());
    };
    let bin = dir.join(DESKTOP_BIN);
    if !bin.is_file() {
        return Desktop::NotBuilt { expected: bin };
    }
    let out = match std::fs::File::create(log) {
        Ok(f) => f,
        Err(e) => return Desktop::Failed(format!("creating {}: {e}", log.display())),
    };
    match Command::new(&bin)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => Desktop::Started {
            child,
            log: log.to_owned(),
        },
        Err(e) => Desktop::Failed(format!("starting {}: {e}", bin.display())),
    }
}

impl Desktop {
    /// Says what happened, in the demo's voice.
    pub fn say(&self) {
        match self {
            Desktop::NoDisplay => println!(
                "    no graphical session here: the user answers in the terminal (with a desktop, the demo also starts {DESKTOP_BIN})"
            ),
            Desktop::NotBuilt { expected } => println!(
                "    a graphical session, but {} is not built; for the desktop prompts: cargo build --release --bin {DESKTOP_BIN} --bin {DESKTOP_BIN}-window (needs GTK 4: apt install libgtk-4-dev)",
                expected.display()
            ),
            Desktop::Started { log, .. } => println!(
                "    {DESKTOP_BIN} started on this desktop: requests show as notifications (Allow / Deny / Details); its log: {}",
                log.display()
            ),
            Desktop::Failed(why) => println!("    the desktop helper did not start: {why}"),
        }
    }

    /// Stops the helper (it exits on SIGTERM; killed on drop otherwise).
    pub async fn stop(self) {
        if let Desktop::Started { mut child, .. } = self {
            let term = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
                .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
            if !matches!(term, Some(Ok(())))
                || tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
