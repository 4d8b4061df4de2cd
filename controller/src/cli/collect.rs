//! `deskside collect AGENT PATH --ticket N`: a file from the agent's machine, stored on
//! the ticket as evidence, with a progress bar when stderr is a terminal.

use std::io::IsTerminal;

use deskside_proto::msg::tech::{CollectReport, TechReply, TechRequest};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::remote::unexpected;
use super::{CliError, render};
use crate::client::TechClient;
use crate::profile;

pub async fn collect(agent: String, path: String, ticket: u64, json: bool) -> Result<(), CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let req = TechRequest::Collect {
        agent,
        ticket,
        path,
    };
    let bar = progress_bar(json);
    let result = client
        .stream(&req, |reply| {
            if let TechReply::CollectProgress {
                received_bytes,
                total_bytes,
            } = reply
            {
                bar.set_length(*total_bytes);
                bar.set_position(*received_bytes);
            }
        })
        .await;
    bar.finish_and_clear();
    client.close().await;
    let report = match result? {
        TechReply::Collected(report) => report,
        other => return Err(unexpected(&other).into()),
    };
    if json {
        Ok(render::print_json(&report)?)
    } else {
        summary(&report);
        Ok(())
    }
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes}  {binary_bytes_per_sec}  {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn summary(r: &CollectReport) {
    let m = &r.manifest;
    let secs = r.elapsed_ms as f64 / 1000.0;
    let rate = if secs > 0.0 {
        format!(", {:.0} MiB/s", m.size_bytes as f64 / 1_048_576.0 / secs)
    } else {
        String::new()
    };
    println!("file      {} on {} ({})", m.path, m.hostname, r.agent);
    println!("size      {} bytes in {secs:.2} s{rate}", m.size_bytes);
    println!("sha256    {}", r.evidence.sha256);
    println!(
        "mode      {:o}, uid {}, gid {}, modified {}",
        m.mode & 0o7777,
        m.uid,
        m.gid,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(m.modified_at_secs).unwrap_or(0))
        )
    );
    println!(
        "signed    by agent {} (manifest sha256:{})",
        r.agent, r.manifest_evidence.sha256
    );
    println!(
        "stored    on ticket #{} at {}",
        r.ticket, r.evidence.location
    );
}
