//! Actions that take a while (pull diagnostics, ask for a session, run a script, collect
//! a file) run as jobs: the form's POST starts the operation through the service layer
//! and sends the browser to the job's page, which streams what happens over server-sent
//! events — script output as it arrives, the user's answer when it comes — and ends with
//! the outcome. A job is its starter's alone; anyone else gets "not found".

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use deskside_proto::msg::script::OutputStream;
use deskside_proto::msg::session::SessionOutcome;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use tokio::sync::Notify;

use super::Console;
use super::auth::{Session, random_token};
use super::view::{self, Me, Problem};
use crate::service::{self, ReplySink};

/// Jobs kept at once; the oldest finished ones go first.
const MAX_JOBS: usize = 256;
/// A finished job's page stays this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// Output a job keeps for its page; the full output is on the ticket.
const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `out`, `err`, `info`, `ok` or `failed`.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Default)]
struct Log {
    lines: Vec<Line>,
    bytes: usize,
    truncated: bool,
    finished: Option<Instant>,
    /// Where to go next (the ticket, the agent).
    links: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Job {
    owner: String,
    title: String,
    log: Mutex<Log>,
    changed: Notify,
}

impl Job {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, kind: &'static str, text: String) {
        {
            let mut log = self.log();
            if log.bytes + text.len() > MAX_LOG_BYTES {
                if !log.truncated {
                    log.truncated = true;
                    log.lines.push(Line {
                        kind: "info",
                        text: "… more output than this page keeps; the full output is stored on the ticket".into(),
                    });
                }
            } else {
                log.bytes += text.len();
                log.lines.push(Line { kind, text });
            }
        }
        self.changed.notify_waiters();
    }

    fn finish(&self, kind: &'static str, text: String, links: Vec<(String, String)>) {
        {
            let mut log = self.log();
            log.lines.push(Line { kind, text });
            log.links = links;
            log.finished = Some(Instant::now());
        }
        self.changed.notify_waiters();
    }
}

#[derive(Debug, Default)]
pub struct Jobs(Mutex<HashMap<String, Arc<Job>>>);

impl Jobs {
    fn get(&self, id: &str, owner: &str) -> Option<Arc<Job>> {
        let jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        jobs.get(id).filter(|j| j.owner == owner).cloned()
    }

    fn insert(&self, job: Arc<Job>) -> Option<String> {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        jobs.retain(|_, j| {
            j.log()
                .finished
                .is_none_or(|at| now.duration_since(at) < KEEP_FINISHED)
        });
        if jobs.len() >= MAX_JOBS {
            let oldest = jobs
                .iter()
                .filter_map(|(id, j)| j.log().finished.map(|at| (at, id.clone())))
                .min()
                .map(|(_, id)| id);
            match oldest {
                Some(id) => {
                    jobs.remove(&id);
                }
                None => return None,
            }
        }
        let id = random_token();
        jobs.insert(id.clone(), job);
        Some(id)
    }
}

/// Streams an operation's replies into its job.
struct JobSink(Arc<Job>);

impl ReplySink for JobSink {
    async fn send(&mut self, reply: &TechReply) {
        match reply {
            TechReply::RunOutput { stream, data } => {
                let kind = match stream {
                    OutputStream::Stdout => "out",
                    OutputStream::Stderr => "err",
                };
                self.0
                    .push(kind, String::from_utf8_lossy(data).into_owned());
            }
            TechReply::CollectProgress {
                received_bytes,
                total_bytes,
            } => self.0.push(
                "info",
                format!(
                    "received {} of {}\n",
                    view::bytes(received_bytes),
                    view::bytes(total_bytes)
                ),
            ),
            _ => {}
        }
    }

    fn gone(&self) -> bool {
        false
    }
}

/// Starts `req` for the signed-in technician as a job and sends them to its page.
pub async fn start(
    console: &Arc<Console>,
    session: &Session,
    title: String,
    req: TechRequest,
) -> Response {
    let job = Arc::new(Job {
        owner: session.principal.name.clone(),
        title: title.clone(),
        log: Mutex::new(Log::default()),
        changed: Notify::new(),
    });
    let Some(id) = console.jobs.insert(job.clone()) else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The console is running as many actions as it keeps; wait for one to finish.",
        )
        .for_me(session.me())
        .into_response();
    };
    job.push("info", format!("{title}\n"));
    let (shared, who) = (console.shared.clone(), session.principal.clone());
    let span = tracing::info_span!("console", technician = %who.name, kind = tracing::field::Empty, ticket = tracing::field::Empty, agent = tracing::field::Empty);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut sink = JobSink(job.clone());
            let reply = service::handle(&shared, &who, req, &mut sink).await;
            let (kind, text, links) = outcome(&reply);
            job.finish(kind, text, links);
        },
        span,
    ));
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

/// The last line of a job, and where to go next.
fn outcome(reply: &TechReply) -> (&'static str, String, Vec<(String, String)>) {
    let ticket = |n: u64| (format!("/tickets/{n}"), format!("Ticket {n}"));
    let agent = |a: &str| (format!("/agents/{a}"), format!("Agent {a}"));
    match reply {
        TechReply::Diagnostics(r) => {
            let worst = r
                .snapshot
                .findings
                .iter()
                .map(|f| f.severity)
                .max()
                .map_or("none".to_owned(), |s| s.to_string());
            (
                "ok",
                format!(
                    "Snapshot of {} stored on ticket {}: {} findings, worst {worst}.",
                    r.snapshot.host.hostname,
                    r.ticket,
                    r.snapshot.findings.len()
                ),
                vec![agent(&r.agent), ticket(r.ticket)],
            )
        }
        TechReply::Session(r) => {
            let links = vec![agent(&r.agent), ticket(r.ticket)];
            match &r.outcome {
                SessionOutcome::Approved(g) => (
                    "ok",
                    format!(
                        "Approved: session {} on {} until {} ({}).",
                        g.id,
                        r.agent,
                        view::when(&g.expires_at_secs),
                        g.scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    links,
                ),
                SessionOutcome::Refused { reason } => {
                    ("failed", format!("Refused: {reason}."), links)
                }
                SessionOutcome::NoAnswer { waited_secs } => (
                    "failed",
                    format!("No answer from the user within {waited_secs} s: no session."),
                    links,
                ),
            }
        }
        TechReply::SessionEnded { agent: a, grant } => (
            "ok",
            match grant {
                Some(g) => format!("Session {} on {a} ended.", g.id),
                None => format!("No session was active on {a}."),
            },
            vec![agent(a)],
        ),
        TechReply::RunFinished(r) => (
            if r.result.exit_code == Some(0) {
                "ok"
            } else {
                "failed"
            },
            format!(
                "{} v{} finished on {}: {}; stored on ticket {} as {}.",
                r.script,
                r.version,
                r.agent,
                match r.result.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => "killed (timeout or signal)".to_owned(),
                },
                r.ticket,
                r.evidence.sha256
            ),
            vec![agent(&r.agent), ticket(r.ticket)],
        ),
        TechReply::Collected(r) => (
            "ok",
            format!(
                "{} ({}) stored on ticket {} as {}.",
                r.manifest.path,
                view::bytes(&r.manifest.size_bytes),
                r.ticket,
                r.evidence.sha256
            ),
            vec![agent(&r.agent), ticket(r.ticket)],
        ),
        TechReply::Error(e) => ("failed", e.message.clone(), Vec::new()),
        other => ("ok", format!("Done: {other:?}"), Vec::new()),
    }
}

#[derive(askama::Template)]
#[template(path = "console/job.html")]
struct JobPage {
    me: Option<Me>,
    id: String,
    title: String,
    lines: Vec<Line>,
    finished: bool,
    links: Vec<(String, String)>,
}

pub async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Some(job) = console.jobs.get(&id, &session.principal.name) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "There is no such action (it may have finished over an hour ago).",
        )
        .for_me(session.me())
        .into_response();
    };
    let log = job.log();
    view::render(&JobPage {
        me: Some(session.me()),
        id,
        title: job.title.clone(),
        lines: log.lines.clone(),
        finished: log.finished.is_some(),
        links: log.links.clone(),
    })
}

/// The job's log as server-sent events: every line from `Last-Event-ID` on (the event
/// id is the line's index), then each new one, then `end` with the links as HTML-free
/// `href|label` lines.
pub async fn events(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(job) = console.jobs.get(&id, &session.principal.name) else {
        return Problem::new(StatusCode::NOT_FOUND, "There is no such action.").into_response();
    };
    let from: usize = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    Sse::new(lines(job, from))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Yields the job's lines from `next` on, waiting for more until it finishes.
fn lines(
    job: Arc<Job>,
    next: usize,
) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold((job, next, false), |(job, mut next, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let notified = job.changed.notified();
            {
                let log = job.log();
                if let Some(line) = log.lines.get(next) {
                    let event = SseEvent::default()
                        .id(next.to_string())
                        .event(line.kind)
                        .data(line.text.clone());
                    next += 1;
                    return Some((Ok(event), (job.clone(), next, false)));
                }
                if log.finished.is_some() {
                    let links = log
                        .links
                        .iter()
                        .map(|(href, label)| format!("{href}|{label}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let event = SseEvent::default().event("end").data(links);
                    return Some((Ok(event), (job.clone(), next, true)));
                }
            }
            notified.await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Arc<Job> {
        Arc::new(Job {
            owner: "ana".into(),
            title: "t".into(),
            log: Mutex::new(Log::default()),
            changed: Notify::new(),
        })
    }

    #[test]
    fn a_job_is_its_owners_alone() {
        let jobs = Jobs::default();
        let id = jobs.insert(job()).unwrap_or_default();
        assert!(jobs.get(&id, "ana").is_some());
        assert!(jobs.get(&id, "bob").is_none());
        assert!(jobs.get("nope", "ana").is_none());
    }

    #[test]
    fn a_job_keeps_a_bounded_log() {
        let j = job();
        let chunk = "x".repeat(1024 * 1024);
        for _ in 0..6 {
            j.push("out", chunk.clone());
        }
        let log = j.log();
        assert!(log.bytes <= MAX_LOG_BYTES);
        assert!(log.truncated);
        assert_eq!(log.lines.iter().filter(|l| l.kind == "info").count(), 1);
    }
}
