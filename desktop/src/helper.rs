//! The helper's loop: one task watches the control socket (reconnecting when the agent
//! restarts) and hands each new state over; the loop turns pending requests into prompts
//! and the running session into a notification, and the user's clicks into answers.
//! It ends when the desktop session's bus goes away, or on SIGTERM / Ctrl-C.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use deskside_agent::backoff::Backoff;
use deskside_agent::control::{ControlClient, ControlReply, ControlRequest, MAX_WATCH_SECS};
use deskside_agent::session::{PendingView, Watched};
use futures_util::StreamExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::notify::{Action, Closed, Desktop, Note, Urgency};
use crate::texts;

/// First retry after the agent could not be reached; an agent restart takes about this.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// Longest wait between tries: a user who starts the agent sees prompts within seconds.
const RETRY_CAP: Duration = Duration::from_secs(10);
/// The details window's binary, installed beside the helper.
const WINDOW: &str = "deskside-desktop-window";

/// What the watching task reports.
#[derive(Debug)]
enum Event {
    State(Box<Watched>),
    /// The agent went away or refused us; the text says why.
    Lost(String),
}

/// Runs the helper until the desktop session ends.
pub async fn run(socket: &Path) -> anyhow::Result<()> {
    let bus = zbus::Connection::session().await.context(
        "connecting to the desktop session's bus ($DBUS_SESSION_BUS_ADDRESS); deskside-desktop runs inside a graphical session",
    )?;
    let desktop = Desktop::connect(&bus)
        .await
        .context("reaching the desktop's notification service (org.freedesktop.Notifications)")?;
    let mut invoked = desktop.proxy().receive_action_invoked().await?;
    let mut closed = desktop.proxy().receive_notification_closed().await?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let (tx, mut rx) = mpsc::channel(4);
    let watcher = tokio::spawn(watch(socket.to_owned(), tx));
    let mut shown = Shown::new(socket);
    info!(socket = %socket.display(), "watching the agent for session requests");
    let result = loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::State(w)) => shown.update(&desktop, &w).await,
                Some(Event::Lost(why)) => {
                    if shown.lost.as_deref() != Some(why.as_str()) {
                        warn!("{why}");
                    }
                    shown.clear(&desktop).await;
                    shown.lost = Some(why);
                }
                None => break Ok(()),
            },
            signal = invoked.next() => match signal {
                Some(s) => match s.args() {
                    Ok(a) => shown.acted(&desktop, a.id, &a.action_key).await,
                    Err(e) => warn!(error = %e, "an ActionInvoked signal we cannot read"),
                },
                None => break Ok(()),
            },
            signal = closed.next() => match signal {
                Some(s) => match s.args() {
                    Ok(a) => shown.closed(&desktop, a.id, Closed::from_reason(a.reason)).await,
                    Err(e) => warn!(error = %e, "a NotificationClosed signal we cannot read"),
                },
                // The bus is gone: the desktop session ended.
                None => break Ok(()),
            },
            _ = term.recv() => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    watcher.abort();
    shown.clear(&desktop).await;
    result
}

/// Watches the control socket forever, reconnecting with backoff.
async fn watch(socket: PathBuf, tx: mpsc::Sender<Event>) {
    let Ok(mut backoff) = Backoff::new(RETRY_BASE, RETRY_CAP) else {
        return;
    };
    loop {
        let why = match ControlClient::connect_to(&socket).await {
            Ok(mut control) => {
                let mut seen = 0;
                loop {
                    match control.watch(seen, MAX_WATCH_SECS).await {
                        Ok(w) => {
                            backoff.reset();
                            seen = w.generation;
                            if tx.send(Event::State(Box::new(w))).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => break deskside_agent::error_chain(&e),
                    }
                }
            }
            Err(_) => texts::agent_unreachable(&socket.display().to_string()),
        };
        if tx.send(Event::Lost(why)).await.is_err() {
            return;
        }
        let delay = backoff.next_delay(&mut rand::thread_rng());
        tokio::time::sleep(delay).await;
    }
}

/// The running session's notification.
#[derive(Debug)]
struct SessionNote {
    grant: String,
    id: u32,
    body: String,
}

/// What is on screen, keyed both ways.
#[derive(Debug)]
struct Shown {
    socket: PathBuf,
    /// Pending request id → its prompt's notification id.
    prompts: HashMap<u32, u32>,
    /// Requests shown in the window because no notification could be shown (no
    /// notification service on this desktop): the window alone asks.
    windowed: std::collections::HashSet<u32>,
    session: Option<SessionNote>,
    /// The last reason the agent could not be watched (logged once, not every retry).
    lost: Option<String>,
}

impl Shown {
    fn new(socket: &Path) -> Shown {
        Shown {
            socket: socket.to_owned(),
            prompts: HashMap::new(),
            windowed: std::collections::HashSet::new(),
            session: None,
            lost: None,
        }
    }

    async fn update(&mut self, desktop: &Desktop, w: &Watched) {
        self.lost = None;
        let now = deskside_agent::now_secs();
        for p in &w.status.pending {
            if self.prompts.contains_key(&p.id) {
                continue;
            }
            match desktop.show(&prompt(p, now).note()).await {
                Ok(id) => {
                    info!(request = p.id, notification = id, "asked the user");
                    self.prompts.insert(p.id, id);
                }
                Err(e) => {
                    if self.windowed.insert(p.id) {
                        warn!(request = p.id, error = %e, "no notification could be shown; asking in the window");
                        self.details(Some(p.id));
                    }
                }
            }
        }
        self.windowed
            .retain(|req| w.status.pending.iter().any(|p| p.id == *req));
        // Answered here or elsewhere, or timed out: the prompt goes.
        let gone: Vec<(u32, u32)> = self
            .prompts
            .iter()
            .filter(|(req, _)| !w.status.pending.iter().any(|p| p.id == **req))
            .map(|(r, n)| (*r, *n))
            .collect();
        for (req, id) in gone {
            self.prompts.remove(&req);
            let _ = desktop.close(id).await;
        }
        match &w.status.active {
            Some(g) => {
                let ticket = texts::ticket(g.ticket, &w.active_ticket_title);
                let left = texts::duration(g.expires_at_secs.saturating_sub(now) / 60 * 60);
                let body = texts::session_body(&ticket, &left, w.status.activity.as_deref());
                let same_grant = self.session.as_ref().filter(|s| s.grant == g.id);
                if same_grant.is_some_and(|s| s.body == body) {
                    return;
                }
                let replaces = same_grant.map_or(0, |s| s.id);
                let summary = texts::session_summary(&g.technician);
                let note = Note {
                    replaces,
                    summary: &summary,
                    body: &body,
                    actions: &[
                        (Action::End, texts::END_SESSION),
                        (Action::Details, texts::DETAILS),
                    ],
                    urgency: Urgency::Normal,
                };
                if replaces == 0
                    && let Some(old) = self.session.take()
                {
                    let _ = desktop.close(old.id).await;
                }
                match desktop.show(&note).await {
                    Ok(id) => {
                        self.session = Some(SessionNote {
                            grant: g.id.clone(),
                            id,
                            body,
                        })
                    }
                    Err(e) => warn!(error = %e, "could not show the running session"),
                }
            }
            None => {
                if let Some(old) = self.session.take() {
                    let _ = desktop.close(old.id).await;
                }
            }
        }
    }

    /// Closes everything (the agent went away, or the helper stops).
    async fn clear(&mut self, desktop: &Desktop) {
        for (_, id) in self.prompts.drain() {
            let _ = desktop.close(id).await;
        }
        if let Some(s) = self.session.take() {
            let _ = desktop.close(s.id).await;
        }
    }

    async fn acted(&mut self, desktop: &Desktop, id: u32, key: &str) {
        let Some(action) = Action::from_key(key) else {
            return;
        };
        let request = self
            .prompts
            .iter()
            .find(|(_, n)| **n == id)
            .map(|(r, _)| *r);
        let req = match (request, action) {
            (Some(r), Action::Allow) => ControlRequest::Approve { id: r },
            (Some(r), Action::Deny) => ControlRequest::Deny { id: r },
            (None, Action::End) if self.session.as_ref().is_some_and(|s| s.id == id) => {
                ControlRequest::End
            }
            (request, Action::Details) => {
                self.details(request);
                return;
            }
            _ => return,
        };
        self.send(desktop, req).await;
    }

    async fn closed(&mut self, desktop: &Desktop, id: u32, why: Closed) {
        let request = self
            .prompts
            .iter()
            .find(|(_, n)| **n == id)
            .map(|(r, _)| *r);
        if let Some(r) = request {
            self.prompts.remove(&r);
            // Dismissing the prompt is a no; anything else leaves it to the deadline.
            if why == Closed::Dismissed {
                self.send(desktop, ControlRequest::Deny { id: r }).await;
            }
        }
        if self.session.as_ref().is_some_and(|s| s.id == id) && why != Closed::ByCall {
            // Keep the record so it is not raised again for the same session unchanged.
            if let Some(s) = self.session.as_mut() {
                s.id = 0;
            }
        }
    }

    /// Opens the details window (`deskside-desktop-window`, beside this binary) on
    /// `request`, or on whatever is current.
    fn details(&self, request: Option<u32>) {
        let exe = match std::env::current_exe() {
            Ok(me) => me.with_file_name(WINDOW),
            Err(e) => {
                warn!(error = %e, "cannot tell where {WINDOW} is");
                return;
            }
        };
        let mut cmd = tokio::process::Command::new(&exe);
        // The window goes when the helper does (the desktop session ended).
        cmd.arg("--socket").arg(&self.socket).kill_on_drop(true);
        if let Some(id) = request {
            cmd.arg("--request").arg(id.to_string());
        }
        match cmd.spawn() {
            // Reaped when it closes.
            Ok(mut child) => drop(tokio::spawn(async move { child.wait().await })),
            Err(e) => warn!(error = %e, exe = %exe.display(), "cannot open the details window"),
        }
    }

    /// Sends the user's answer on its own connection (the watch holds the other).
    async fn send(&self, desktop: &Desktop, req: ControlRequest) {
        let result = match ControlClient::connect_to(&self.socket).await {
            Ok(mut c) => c.call(&req).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ControlReply::Done { message }) => info!(?req, "{message}"),
            Ok(_) => {}
            Err(e) => {
                let why = deskside_agent::error_chain(&e);
                warn!(?req, "{why}");
                let note = Note {
                    replaces: 0,
                    summary: texts::ANSWER_FAILED,
                    body: &why,
                    actions: &[],
                    urgency: Urgency::Normal,
                };
                let _ = desktop.show(&note).await;
            }
        }
    }
}

/// The prompt for one pending request: Deny first, so it is the default where the
/// server marks the first action as such.
fn prompt(p: &PendingView, now: u64) -> OwnedNote {
    let a = &p.ask;
    OwnedNote {
        summary: texts::prompt_summary(&a.technician),
        body: texts::prompt_body(
            &a.technician,
            a.tier,
            &texts::ticket(a.ticket, &a.ticket_title),
            &a.scopes,
            a.duration_secs,
            p.answer_by_secs.saturating_sub(now),
        ),
    }
}

/// A prompt's texts, owned.
#[derive(Debug)]
struct OwnedNote {
    summary: String,
    body: String,
}

impl OwnedNote {
    fn note(&self) -> Note<'_> {
        Note {
            replaces: 0,
            summary: &self.summary,
            body: &self.body,
            actions: PROMPT_ACTIONS,
            urgency: Urgency::Critical,
        }
    }
}

const PROMPT_ACTIONS: &[(Action, &str)] = &[
    (Action::Deny, texts::DENY),
    (Action::Allow, texts::ALLOW),
    (Action::Details, texts::DETAILS),
];
