//! `/tickets/{n}`: the hash-chained timeline, notes, evidence (each viewable and
//! downloadable), the HTML report, escalate, resolve, the export bundle, and the Request
//! Tracker link with its sync state.

use std::io::Read;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use deskside_proto::evidence::{EvidenceKind, open_bytes};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::files::FileManifest;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::RunRecord;
use deskside_proto::msg::tech::{TechReply, TechRequest, TicketView, TimelineEntry};
use serde::Deserialize;

use super::{ask, unexpected};
use crate::console::Console;
use crate::console::auth::{Posted, Session};
use crate::console::view::{self, Me, Problem};
use crate::service::{self, Failure, ReplySink, tickets};

/// Largest item shown in the page as text; larger ones are downloaded.
const MAX_VIEW_BYTES: u64 = 8 * 1024 * 1024;

#[derive(askama::Template)]
#[template(path = "console/ticket.html")]
struct TicketPage {
    me: Option<Me>,
    view: TicketView,
    notes: usize,
    tiers_above: Vec<Tier>,
    chain_ok: bool,
}

#[derive(askama::Template)]
#[template(path = "console/timeline.html")]
struct TimelineFragment {
    timeline: Vec<TimelineEntry>,
}

/// Whether each entry's `prev_hash` is the hash of the one before (the store computes and
/// checks the hashes themselves; this shows the chain unbroken at a glance).
fn chained(timeline: &[TimelineEntry]) -> bool {
    timeline
        .windows(2)
        .all(|w| matches!(w, [a, b] if b.prev_hash == a.hash))
        && timeline
            .first()
            .is_none_or(|e| e.prev_hash == crate::store::GENESIS_HASH)
}

async fn show(console: &Console, session: &Session, number: u64) -> Result<TicketView, Response> {
    match ask(console, session, TechRequest::ShowTicket { number }).await? {
        TechReply::Ticket(view) => Ok(*view),
        other => Err(unexpected(&other)),
    }
}

pub async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(number): Path<u64>,
) -> Response {
    let view = match show(&console, &session, number).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notes = view.timeline.iter().filter(|e| e.kind == "note").count();
    let tiers_above = [Tier::L2, Tier::L3]
        .into_iter()
        .filter(|t| *t > view.ticket.tier)
        .collect();
    let chain_ok = chained(&view.timeline);
    view::render(&TicketPage {
        me: Some(session.me()),
        view,
        notes,
        tiers_above,
        chain_ok,
    })
}

/// The timeline alone, for the live update of an open ticket page.
pub async fn timeline(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(number): Path<u64>,
) -> Response {
    match show(&console, &session, number).await {
        Ok(view) => view::render(&TimelineFragment {
            timeline: view.timeline,
        }),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
pub struct TextForm {
    #[serde(default)]
    text: String,
    #[serde(default)]
    to: String,
}

fn back_to(number: u64) -> Response {
    Redirect::to(&format!("/tickets/{number}")).into_response()
}

async fn change(console: &Console, session: &Session, number: u64, req: TechRequest) -> Response {
    match ask(console, session, req).await {
        Ok(_) => back_to(number),
        Err(r) => r,
    }
}

pub async fn note(
    State(console): State<Arc<Console>>,
    Path(number): Path<u64>,
    posted: Posted<TextForm>,
) -> Response {
    if posted.form.text.trim().is_empty() {
        return Problem::new(StatusCode::BAD_REQUEST, "Write the note first.")
            .for_me(posted.session.me())
            .into_response();
    }
    let req = TechRequest::Note {
        number,
        text: posted.form.text.clone(),
    };
    change(&console, &posted.session, number, req).await
}

pub async fn resolve(
    State(console): State<Arc<Console>>,
    Path(number): Path<u64>,
    posted: Posted<TextForm>,
) -> Response {
    let req = TechRequest::Resolve {
        number,
        note: posted.form.text.clone(),
    };
    change(&console, &posted.session, number, req).await
}

pub async fn sync(
    State(console): State<Arc<Console>>,
    Path(number): Path<u64>,
    posted: Posted<TextForm>,
) -> Response {
    change(
        &console,
        &posted.session,
        number,
        TechRequest::Sync { number },
    )
    .await
}

/// Collects a bundle's files, as `export` and `escalate` stream them, into a directory.
struct BundleDir {
    root: PathBuf,
    failed: Option<String>,
}

/// A bundle path is relative and plain (`items/<sha256>`): nothing else is written.
fn inside(root: &FsPath, path: &str) -> Option<PathBuf> {
    let p = FsPath::new(path);
    (!path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_))))
        .then(|| root.join(p))
}

impl ReplySink for BundleDir {
    async fn send(&mut self, reply: &TechReply) {
        let TechReply::BundleFile { path, offset, data } = reply else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        let Some(target) = inside(&self.root, path) else {
            self.failed = Some(format!("the bundle named a file outside itself: {path:?}"));
            return;
        };
        let written = (|| {
            use std::io::{Seek, SeekFrom, Write};
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)?;
            f.seek(SeekFrom::Start(*offset))?;
            f.write_all(data)
        })();
        if let Err(e) = written {
            self.failed = Some(format!("writing the bundle aside: {e}"));
        }
    }

    fn gone(&self) -> bool {
        self.failed.is_some()
    }
}

/// Builds the ticket's bundle (or escalates first) into a fresh directory.
async fn bundle_dir(
    console: &Console,
    session: &Session,
    req: TechRequest,
) -> Result<(tempfile::TempDir, u64), Response> {
    let dir = tempfile::tempdir().map_err(|e| view::internal(&e.to_string()))?;
    let mut sink = BundleDir {
        root: dir.path().to_owned(),
        failed: None,
    };
    let reply = service::handle(&console.shared, &session.principal, req, &mut sink).await;
    if let Some(why) = sink.failed {
        return Err(view::internal(&why));
    }
    match reply {
        TechReply::Bundle(summary) => Ok((dir, summary.ticket)),
        TechReply::Error(e) => Err(view::failure(
            session.me(),
            &Failure::new(e.code, e.message),
        )),
        other => Err(unexpected(&other)),
    }
}

pub async fn escalate(
    State(console): State<Arc<Console>>,
    Path(number): Path<u64>,
    posted: Posted<TextForm>,
) -> Response {
    let Ok(to) = posted.form.to.parse::<Tier>() else {
        return Problem::new(StatusCode::BAD_REQUEST, "Choose the tier to escalate to.")
            .for_me(posted.session.me())
            .into_response();
    };
    let req = TechRequest::Escalate {
        number,
        to,
        note: posted.form.text.clone(),
    };
    match bundle_dir(&console, &posted.session, req).await {
        Ok(_) => back_to(number),
        Err(r) => r,
    }
}

/// The bundle's `report.html`: self-contained (inline CSS, no script), served under its
/// own policy that allows that inline CSS and nothing else, sandboxed.
pub async fn report(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(number): Path<u64>,
) -> Response {
    let (dir, _) = match bundle_dir(&console, &session, TechRequest::Export { number }).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match std::fs::read(dir.path().join(crate::bundle::REPORT_HTML)) {
        Ok(html) => {
            let mut r =
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
                ),
            );
            r
        }
        Err(e) => view::internal(&format!("reading the report: {e}")),
    }
}

/// The export bundle as one `.tar` (extract it and run `deskside ticket verify DIR`).
pub async fn bundle(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(number): Path<u64>,
) -> Response {
    let (dir, ticket) = match bundle_dir(&console, &session, TechRequest::Export { number }).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let name = format!("ticket-{ticket}");
    let tarred = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let tar_path = dir.path().with_extension("tar");
        let file = std::fs::File::create(&tar_path)?;
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all(&name, dir.path())?;
        tar.into_inner()?.sync_all()?;
        let file = std::fs::File::open(&tar_path)?;
        // Open files outlive their names: nothing is left behind once the download ends.
        std::fs::remove_file(&tar_path)?;
        drop(dir);
        Ok(file)
    })
    .await;
    let file = match tarred {
        Ok(Ok(f)) => tokio::fs::File::from_std(f),
        Ok(Err(e)) => return view::internal(&format!("packing the bundle: {e}")),
        Err(e) => return view::internal(&e.to_string()),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ticket-{ticket}.tar\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct EvidenceQuery {
    #[serde(default)]
    download: bool,
}

/// One evidence item: shown as text (decoded items as JSON), or downloaded as stored.
pub async fn evidence(
    State(console): State<Arc<Console>>,
    session: Session,
    Path((number, sha)): Path<(u64, String)>,
    Query(q): Query<EvidenceQuery>,
) -> Response {
    let (item, reader) =
        match tickets::evidence(&console.shared, &session.principal, number, &sha).await {
            Ok(found) => found,
            Err(f) => return view::failure(session.me(), &f),
        };
    let kind = item.kind.parse::<EvidenceKind>().ok();
    if q.download || kind == Some(EvidenceKind::File) || item.size_bytes > MAX_VIEW_BYTES {
        let (tx, rx) = tokio::io::duplex(64 * 1024);
        tokio::task::spawn_blocking(move || copy_to_async(reader, tx));
        return (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}-{}\"", item.kind, item.sha256),
                ),
            ],
            Body::from_stream(tokio_util::io::ReaderStream::new(rx)),
        )
            .into_response();
    }
    let bytes = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        reader
            .take(MAX_VIEW_BYTES)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    })
    .await;
    let Ok(Ok(bytes)) = bytes else {
        return view::internal("reading an evidence item failed");
    };
    let text = match kind {
        Some(EvidenceKind::Snapshot) => open_bytes::<Snapshot>(&bytes)
            .ok()
            .and_then(|s| serde_json::to_string_pretty(&s).ok()),
        Some(EvidenceKind::ScriptRun) => open_bytes::<RunRecord>(&bytes)
            .ok()
            .and_then(|s| serde_json::to_string_pretty(&s).ok()),
        Some(EvidenceKind::FileManifest) => open_bytes::<FileManifest>(&bytes)
            .ok()
            .and_then(|s| serde_json::to_string_pretty(&s).ok()),
        _ => None,
    }
    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    // Plain text, never HTML: whatever a machine wrote into it stays text.
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// Copies a blocking reader into the async side of a pipe, from a blocking thread.
fn copy_to_async(mut reader: Box<dyn Read + Send>, tx: tokio::io::DuplexStream) {
    use tokio::io::AsyncWriteExt;
    let handle = tokio::runtime::Handle::current();
    let mut tx = tx;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { return };
        if handle.block_on(tx.write_all(chunk)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_stay_inside_the_directory() {
        let root = FsPath::new("/tmp/b");
        assert!(inside(root, "items/abc").is_some());
        assert!(inside(root, "report.html").is_some());
        for bad in ["../x", "/etc/passwd", "items/../../x", ""] {
            assert!(inside(root, bad).is_none(), "{bad}");
        }
    }
}
