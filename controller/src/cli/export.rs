//! `deskside ticket escalate | export | verify`: the evidence bundle the controller
//! builds, written file by file into a directory, and checked offline.

use std::path::{Path, PathBuf};

use anyhow::Result;
use deskside_proto::msg::tech::{BundleSummary, TechReply, TechRequest};

use super::remote::unexpected;
use super::{CliError, render};
use crate::client::TechClient;
use crate::profile;

/// Escalate or export: the controller builds the bundle; with `out`, every file is also
/// written here.
pub async fn ticket_bundle(
    req: TechRequest,
    out: Option<PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let result = receive_bundle(&client, &req, out.as_deref()).await;
    client.close().await;
    let summary = result?;
    if json {
        return Ok(render::print_json(&summary)?);
    }
    if let Some(to) = summary.escalated_to {
        println!("ticket #{} escalated to {to}", summary.ticket);
    }
    println!(
        "bundle: {} files, {} bytes, on the controller at {}",
        summary.files, summary.bytes, summary.location
    );
    if let Some(dir) = &out {
        println!(
            "written to {} (report: {})",
            dir.display(),
            dir.join(crate::bundle::REPORT_HTML).display()
        );
    }
    if let Some(sync) = &summary.sync {
        println!("external ticket system: {sync}");
    }
    Ok(())
}

/// Sends an `Escalate` or `Export` request and writes the streamed bundle into `out`.
pub async fn receive_bundle(
    client: &TechClient,
    req: &TechRequest,
    out: Option<&Path>,
) -> Result<BundleSummary> {
    if let Some(dir) = out {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            anyhow::bail!(
                "{} exists and is not empty; choose a new directory for the bundle",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir.join(crate::bundle::ITEMS_DIR))?;
    }
    let mut write_error: Option<anyhow::Error> = None;
    let result = client
        .stream(req, |reply| {
            if let (TechReply::BundleFile { path, offset, data }, Some(dir)) = (reply, out)
                && write_error.is_none()
                && let Err(e) = write_chunk(dir, path, *offset, data)
            {
                write_error = Some(e);
            }
        })
        .await;
    if let Some(e) = write_error {
        return Err(e);
    }
    match result? {
        TechReply::Bundle(s) => Ok(*s),
        other => Err(unexpected(&other)),
    }
}

/// Writes one bundle chunk under `dir`, refusing any path the bundle format does not have.
fn write_chunk(dir: &Path, path: &str, offset: u64, data: &[u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let allowed = [
        crate::bundle::EVIDENCE_JSON,
        crate::bundle::REPORT_MD,
        crate::bundle::REPORT_HTML,
    ]
    .contains(&path)
        || path
            .strip_prefix("items/")
            .is_some_and(deskside_proto::digest::is_sha256_hex);
    if !allowed {
        anyhow::bail!(
            "the controller sent an unexpected bundle path {path:?}; refusing to write it"
        );
    }
    let target = dir.join(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .open(&target)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    Ok(())
}

pub fn verify(dir: &Path, json: bool) -> Result<(), CliError> {
    match crate::bundle::verify(dir) {
        Ok(v) => {
            if json {
                render::print_json(
                    &serde_json::json!({"ok": true, "ticket": v.ticket, "items": v.items, "signed": v.signed, "signed_by_controller": v.by_controller, "entries": v.entries}),
                )?;
            } else {
                println!(
                    "bundle for ticket #{} verifies: {} items, every one signed ({} by their agent, {} by the controller), {} timeline entries, chain intact",
                    v.ticket,
                    v.items,
                    v.signed - v.by_controller,
                    v.by_controller,
                    v.entries
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                render::print_json(&serde_json::json!({"ok": false, "error": e.to_string()}))?;
            }
            Err(CliError::NotVerified(e))
        }
    }
}
