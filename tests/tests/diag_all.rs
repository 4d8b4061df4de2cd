//! `deskside diag --all` through the real binary: one technician connection pulls from
//! every selected agent, each snapshot lands on the ticket, refusals carry their reason.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{ALLOW_DIAGNOSTICS, Cluster, bin, run, wait_online};
use serde_json::Value;

const DENY_DIAGNOSTICS: &str = "[scopes]\ndiagnostics = \"deny\"\n";

/// Runs `deskside ARGS` as the technician off the reactor; returns (code, stdout, stderr).
async fn deskside(profile: PathBuf, args: Vec<String>) -> Result<(i32, String, String)> {
    let exe = bin("deskside")?;
    tokio::task::spawn_blocking(move || {
        run(Command::new(exe)
            .env("DESKSIDE_PROFILE", profile)
            .args(args))
    })
    .await?
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn parse(out: &str) -> Result<Value> {
    serde_json::from_str(out).with_context(|| format!("stdout is not one JSON document: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diag_all_stores_every_allowed_snapshot_and_reports_the_refusal() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let a = cluster.agent("a", ALLOW_DIAGNOSTICS).await?;
    let b = cluster.agent("b", ALLOW_DIAGNOSTICS).await?;
    let deny = cluster.agent("deny", DENY_DIAGNOSTICS).await?;
    let (_, tech) = cluster.technician("alice", Tier::L1).await?;
    for id in [&a.id, &b.id, &deny.id] {
        wait_online(&tech, id).await?;
    }
    let TechReply::Ticket(view) = tech
        .request(&TechRequest::NewTicket {
            title: "fleet check".into(),
            agent: None,
            requester: String::new(),
            priority: "normal".into(),
        })
        .await?
    else {
        bail!("no ticket");
    };
    let ticket = view.ticket.number.to_string();
    let profile = cluster.profile_path("alice");

    let (code, out, err) = deskside(
        profile.clone(),
        args(&["diag", "--all", "--ticket", &ticket, "--json"]),
    )
    .await?;
    // Not every agent stored: the refusal decides the documented exit status.
    assert_eq!(code, 3, "{out}{err}");
    let doc = parse(&out)?;
    assert_eq!(doc["ticket"], view.ticket.number);
    assert_eq!(doc["selected"], 3);
    assert_eq!(doc["summary"]["stored"], 2, "{doc:#}");
    assert_eq!(doc["summary"]["refused"], 1, "{doc:#}");
    assert_eq!(doc["summary"]["failed"], 0, "{doc:#}");
    let agents = doc["agents"].as_array().context("agents")?;
    let refused: Vec<&Value> = agents
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{doc:#}");
    assert_eq!(refused[0]["agent"], deny.id.as_str());
    let reason = refused[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("policy"), "{reason}");
    for stored in agents.iter().filter(|r| r["outcome"] == "stored") {
        assert_eq!(
            stored["evidence_sha256"].as_str().map(str::len),
            Some(64),
            "{stored}"
        );
        assert!(stored["findings"].is_array(), "{stored}");
    }
    let TechReply::Ticket(after) = tech
        .request(&TechRequest::ShowTicket {
            number: view.ticket.number,
        })
        .await?
    else {
        bail!("no ticket view");
    };
    assert_eq!(after.evidence.len(), 2, "evidence on the ticket");

    // --match: a glob on the agent id (all three share this machine's hostname).
    let (code, out, err) = deskside(
        profile.clone(),
        args(&[
            "diag", "--all", "--ticket", &ticket, "--match", &a.id, "--json",
        ]),
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    let doc = parse(&out)?;
    assert_eq!(doc["selected"], 1);
    assert_eq!(doc["agents"][0]["agent"], a.id.as_str());
    assert_eq!(doc["summary"]["stored"], 1);

    // --os: the OS name the agents checked in with, in another case, selects all three;
    // one no machine runs selects none, which is an error that says so.
    let TechReply::Agents(list) = tech.request(&TechRequest::ListAgents).await? else {
        bail!("no agent list");
    };
    let os = list
        .first()
        .map(|x| x.os.to_uppercase())
        .unwrap_or_default();
    let (code, out, err) = deskside(
        profile.clone(),
        args(&[
            "diag", "--all", "--ticket", &ticket, "--os", &os, "--match", "*", "--json",
        ]),
    )
    .await?;
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(parse(&out)?["selected"], 3);
    let (code, out, err) = deskside(
        profile.clone(),
        args(&["diag", "--all", "--ticket", &ticket, "--os", "plan9"]),
    )
    .await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no enrolled agent matches"), "{err}");

    // AGENT and --all together is a usage error.
    let (code, _, err) = deskside(
        profile,
        args(&["diag", &a.id, "--all", "--ticket", &ticket]),
    )
    .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");

    for agent in [a, b, deny] {
        agent.stop().await;
    }
    cluster.stop().await;
    Ok(())
}
