//! Chain of custody end to end: agent-signed evidence, redaction on the machine,
//! escalation with a bundle written by the real CLI, and `ticket verify` catching every
//! kind of tampering while naming what failed.

#![allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use deskside_controller::bundle;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::{Cluster, bin, run, wait_online};
use serde_json::Value;

const POLICY: &str = "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\n\n[redact]\nip_addresses = true\nmac_addresses = true\n";

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.join("items"))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    for entry in std::fs::read_dir(from.join("items"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join("items").join(entry.file_name()))?;
    }
    Ok(())
}

fn edit_json(dir: &Path, f: impl FnOnce(&mut Value)) -> Result<()> {
    let path = dir.join(bundle::EVIDENCE_JSON);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

fn verify_err(dir: &Path) -> String {
    match bundle::verify(dir) {
        Ok(v) => format!("unexpectedly verified: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_bundle_verifies_and_every_tampering_is_named() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.add_test_script("say-hello", "l1", 10, "", "echo hello from the machine\n")?;
    let agent = cluster.agent("laptop", POLICY).await?;
    let (_p, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::NewTicket {
            title: "VPN drops <every> hour".into(),
            agent: Some(agent.id.clone()),
            requester: "pat@example.org".into(),
            priority: "urgent".into(),
        })
        .await?
    else {
        bail!("ticket");
    };
    let t = v.ticket.number;
    assert_eq!(
        (v.ticket.status.as_str(), v.ticket.priority.as_str()),
        ("new", "urgent")
    );
    assert!(v.ticket.sla.response_due_secs > v.ticket.created_at_secs);

    // Two snapshots and a script run, all signed on the machine; IPs and MACs redacted there.
    let mut shas = Vec::new();
    for _ in 0..2 {
        let TechReply::Diagnostics(d) = tech
            .request(&TechRequest::Diagnostics {
                agent: agent.id.clone(),
                ticket: t,
            })
            .await?
        else {
            bail!("diag");
        };
        assert!(d.evidence.signature.is_some());
        assert_eq!(d.evidence.redaction, vec!["mac_addresses", "ip_addresses"]);
        let stored = std::fs::read_to_string(&d.evidence.location)?;
        assert!(
            !stored.contains("127.0.0.1") && stored.contains("[ip]"),
            "loopback address not redacted"
        );
        assert!(
            !stored.contains("00:00:00:00:00:00") && stored.contains("[mac]"),
            "MAC not redacted"
        );
        shas.push(d.evidence.sha256);
    }
    let finished = tech
        .stream(
            &TechRequest::RunScript {
                agent: agent.id.clone(),
                ticket: t,
                script: "say-hello".into(),
                params: vec![],
            },
            |_| {},
        )
        .await?;
    let TechReply::RunFinished(r) = finished else {
        bail!("run")
    };
    assert_eq!(r.result.exit_code, Some(0));
    assert!(r.evidence.signature.is_some());
    tech.request(&TechRequest::Note {
        number: t,
        text: "user says it started after the update".into(),
    })
    .await?;

    // Escalate through the real CLI, writing the bundle on "the technician's machine".
    let out = cluster.dir.path().join("bundle-l2");
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args([
            "ticket",
            "escalate",
            &t.to_string(),
            "--to",
            "l2",
            "--note",
            "needs a driver look",
            "--out",
        ])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("escalated to l2"), "{stdout}");
    let verified = bundle::verify(&out)?;
    assert_eq!((verified.items, verified.signed), (3, 3));
    let (code, stdout, _) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 0);
    assert!(stdout.contains("verifies"), "{stdout}");

    let evidence: Value = serde_json::from_slice(&std::fs::read(out.join(bundle::EVIDENCE_JSON))?)?;
    assert_eq!(evidence["ticket"]["tier"], "l2");
    assert_eq!(evidence["escalation"]["note"], "needs a driver look");
    let report = std::fs::read_to_string(out.join(bundle::REPORT_MD))?;
    assert!(
        report.contains("VPN drops")
            && report.contains("say-hello")
            && report.contains("needs a driver look"),
        "{report}"
    );
    let html = std::fs::read_to_string(out.join(bundle::REPORT_HTML))?;
    assert!(html.contains("VPN drops &lt;every&gt; hour") && !html.contains("<every>"));

    // The ticket moved up, unassigned, and the controller's own copy matches.
    let TechReply::Ticket(v) = tech.request(&TechRequest::ShowTicket { number: t }).await? else {
        bail!("show")
    };
    assert_eq!(
        (
            v.ticket.status.as_str(),
            v.ticket.tier,
            v.ticket.owner.clone()
        ),
        ("escalated", Tier::L2, None)
    );
    assert!(v.timeline.iter().any(|e| e.kind == "escalated"));

    // Tampering, one kind per copy; each names what failed.
    let item = shas.first().context("a snapshot")?.clone();
    let other = shas.get(1).context("a second snapshot")?.clone();
    let scratch = tempfile::tempdir()?;
    let case = |name: &str| -> Result<std::path::PathBuf> {
        let d = scratch.path().join(name);
        copy_dir(&out, &d)?;
        Ok(d)
    };

    let d = case("byte")?;
    let f = d.join("items").join(&item);
    let mut bytes = std::fs::read(&f)?;
    if let Some(b) = bytes.get_mut(10) {
        *b ^= 0x20;
    }
    std::fs::write(&f, bytes)?;
    let msg = verify_err(&d);
    assert!(msg.contains(&item) && msg.contains("altered"), "{msg}");

    let d = case("deleted-file")?;
    std::fs::remove_file(d.join("items").join(&item))?;
    let msg = verify_err(&d);
    assert!(msg.contains(&item) && msg.contains("missing"), "{msg}");

    let d = case("deleted-entry")?;
    edit_json(&d, |v| {
        if let Some(items) = v["items"].as_array_mut() {
            items.retain(|i| i["sha256"] != Value::String(item.clone()));
        }
    })?;
    let msg = verify_err(&d);
    assert!(msg.contains(&item) && msg.contains("deleted"), "{msg}");

    let d = case("reordered")?;
    edit_json(&d, |v| {
        if let Some(tl) = v["timeline"].as_array_mut() {
            tl.swap(1, 2);
        }
    })?;
    let msg = verify_err(&d);
    assert!(
        msg.contains("timeline entry") && msg.contains("out of order"),
        "{msg}"
    );

    let d = case("edited")?;
    edit_json(&d, |v| {
        v["timeline"][0]["detail"] = Value::String("nothing happened".into())
    })?;
    let msg = verify_err(&d);
    assert!(
        msg.contains("timeline entry 1") && msg.contains("edited"),
        "{msg}"
    );

    let d = case("swapped-signature")?;
    edit_json(&d, |v| {
        if let Some(items) = v["items"].as_array_mut() {
            let a = items
                .iter()
                .position(|i| i["sha256"] == Value::String(item.clone()));
            let b = items
                .iter()
                .position(|i| i["sha256"] == Value::String(other.clone()));
            if let (Some(a), Some(b)) = (a, b) {
                let sa = items[a]["signature"].clone();
                items[a]["signature"] = items[b]["signature"].clone();
                items[b]["signature"] = sa;
            }
        }
    })?;
    let msg = verify_err(&d);
    assert!(
        msg.contains("signature does not verify") && (msg.contains(&item) || msg.contains(&other)),
        "{msg}"
    );
    let (code, _, stderr) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&d))?;
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.contains("does NOT verify"), "{stderr}");

    // Export works without escalating; resolve closes the ticket.
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["ticket", "export", &t.to_string(), "--out"])
        .arg(cluster.dir.path().join("export")))?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    bundle::verify(&cluster.dir.path().join("export"))?;
    tech.request(&TechRequest::Resolve {
        number: t,
        note: "driver updated".into(),
    })
    .await?;
    let TechReply::Tickets(list) = tech.request(&TechRequest::ListTickets).await? else {
        bail!("list")
    };
    assert_eq!(list.first().map(|t| t.status.as_str()), Some("resolved"));
    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
