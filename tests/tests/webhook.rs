//! The webhook adapter against a local HTTP receiver on 127.0.0.1: configured from
//! `controller.toml`, it POSTs the ticket, report and item list as JSON signed with
//! HMAC-SHA256 over the exact body; a receiver that answers non-2xx is an error.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use deskside_controller::adapters::webhook::{DELIVERY_HEADER, SIGNATURE_HEADER, signature};
use deskside_controller::adapters::{self, SyncJob};
use deskside_proto::msg::identity::Tier;
use deskside_tests::sample_bundle::{sample_ticket, write_sample_bundle};
use serde_json::Value;

const SECRET: &str = "hook-secret-\u{e9}t\u{e9}";

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    /// Lower-cased names.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Accepts one connection, reads one request (Content-Length body) and answers
/// `status` with `reply`.
fn receiver(status: u16, reply: &'static str) -> Result<(u16, JoinHandle<Result<Received>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let handle = std::thread::spawn(move || -> Result<Received> {
        let (stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().context("no method")?.to_owned();
        let path = parts.next().context("no path")?.to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').context("bad header")?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let len: usize = headers
            .get("content-length")
            .context("no Content-Length")?
            .parse()?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )?;
        stream.flush()?;
        Ok(Received {
            method,
            path,
            headers,
            body,
        })
    });
    Ok((port, handle))
}

/// `controller.toml` in `data` pointing at `port`, with the secret in a file.
fn configure(data: &Path, port: u16) -> Result<std::sync::Arc<dyn adapters::TicketSystem>> {
    std::fs::write(data.join("webhook-secret"), format!("{SECRET}\n"))?;
    std::fs::write(
        data.join("controller.toml"),
        format!(
            "[ticketing]\nbackend = \"webhook\"\n\n[ticketing.webhook]\n\
             url = \"http://127.0.0.1:{port}/hooks/deskside\"\nsecret_file = \"webhook-secret\"\ntimeout_secs = 20\n"
        ),
    )?;
    let config = adapters::load(data)?;
    adapters::from_config(&config, "webhook-test")
        .ok_or_else(|| anyhow!("backend webhook gave no adapter"))
}

fn join(handle: JoinHandle<Result<Received>>) -> Result<Received> {
    handle
        .join()
        .map_err(|_| anyhow!("receiver thread panicked"))?
}

#[test]
fn webhook_posts_signed_json_with_report_and_items() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let ticket = sample_ticket(51, "Teams crashes on start");
    let sample = write_sample_bundle(&scratch.path().join("bundle"), &ticket)?;
    let (port, handle) = receiver(202, "queued")?;
    let system = configure(scratch.path(), port)?;

    let outcome = system.sync(&SyncJob {
        ticket: ticket.clone(),
        tier: Tier::L2,
        note: "needs L2".into(),
        bundle_dir: sample.dir.clone(),
        sync_id: 1,
    })?;
    assert_eq!(outcome.external_ref, "webhook:127.0.0.1");

    let got = join(handle)?;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hooks/deskside");
    assert_eq!(
        got.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let header = got
        .headers
        .get(&SIGNATURE_HEADER.to_ascii_lowercase())
        .context("no signature header")?;
    assert!(header.starts_with("sha256="), "{header}");
    assert_eq!(*header, signature(SECRET.as_bytes(), &got.body));
    assert_ne!(*header, signature(b"another secret", &got.body));
    let mut tampered = got.body.clone();
    tampered.push(b' ');
    assert_ne!(*header, signature(SECRET.as_bytes(), &tampered));
    assert_eq!(
        got.headers
            .get(&DELIVERY_HEADER.to_ascii_lowercase())
            .map(String::as_str),
        Some("webhook-test:51:1"),
        "one delivery id per sync, the same on every attempt"
    );

    let body: Value = serde_json::from_slice(&got.body)?;
    assert_eq!(body["ticket"]["number"], 51);
    assert_eq!(body["ticket"]["title"], "Teams crashes on start");
    assert_eq!(body["tier"], "l2");
    assert_eq!(body["note"], "needs L2");
    assert_eq!(body["report_md"], sample.report_md.as_str());
    let items = body["items"].as_array().context("items")?;
    assert_eq!(items.len(), sample.bundle.items.len());
    for (sent, item) in items.iter().zip(&sample.bundle.items) {
        assert_eq!(sent["sha256"], item.sha256.as_str());
        assert_eq!(sent["kind"], item.kind.as_str());
        assert_eq!(sent["size"], item.size_bytes);
    }
    Ok(())
}

#[test]
fn webhook_answering_500_is_an_error() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let ticket = sample_ticket(52, "Disk full");
    let sample = write_sample_bundle(&scratch.path().join("bundle"), &ticket)?;
    let (port, handle) = receiver(500, "database down")?;
    let system = configure(scratch.path(), port)?;

    let result = system.sync(&SyncJob {
        ticket,
        tier: Tier::L3,
        note: String::new(),
        bundle_dir: sample.dir.clone(),
        sync_id: 1,
    });
    let err = match result {
        Ok(o) => bail!("HTTP 500 was taken as success: {o:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("database down"), "{err}");
    join(handle)?;
    Ok(())
}
