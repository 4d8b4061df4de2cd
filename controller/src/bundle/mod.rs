//! Evidence bundles: what escalation and export hand to the next engineer. A directory:
//!
//! ```text
//! evidence.json          ticket, hash-chained timeline, items with hashes and signatures,
//!                        the agents' certificates, the controller's record-signing
//!                        certificate and the CA that issued them all
//! items/<sha256>         each evidence item, byte-exact
//! report.md, report.html the same for people
//! ```
//!
//! `deskside ticket verify DIR` checks all of it without the controller (`verify.rs`).

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::tech::{TicketSummary, TimelineEntry};

mod format;
mod verify;

pub use format::{
    BUNDLE_FORMAT, Bundle, BundleAgent, BundleItem, EVIDENCE_JSON, Escalation, ITEMS_DIR,
    REPORT_HTML, REPORT_MD, Signer,
};
pub use verify::{Verified, verify};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Blob(#[from] crate::evidence::BlobError),
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a bundle is made from.
#[derive(Debug)]
pub struct Contents {
    pub ticket: TicketSummary,
    pub escalation: Option<Escalation>,
    pub timeline: Vec<TimelineEntry>,
    pub evidence: Vec<deskside_proto::msg::tech::EvidenceRef>,
    pub agents: Vec<BundleAgent>,
    pub ca_pem: String,
    pub controller_cert_pem: String,
}

/// Writes a bundle into `dir` (created; must not exist). Returns it with the file list.
pub fn write(
    dir: &std::path::Path,
    c: Contents,
    blobs: &dyn crate::evidence::BlobStore,
) -> Result<(Bundle, Vec<String>), BundleError> {
    if dir.exists() {
        return Err(BundleError::Invalid(format!(
            "{} already exists; bundles are never overwritten",
            dir.display()
        )));
    }
    let items_dir = dir.join(ITEMS_DIR);
    std::fs::create_dir_all(&items_dir).map_err(io(&items_dir))?;
    let mut files = Vec::new();
    let mut items = Vec::new();
    let mut bytes_of = std::collections::HashMap::new();
    for e in &c.evidence {
        let rel = format!("{ITEMS_DIR}/{}", e.sha256);
        let path = dir.join(&rel);
        // Copied in pieces (a collected file may be a GiB), hashed on the way.
        let copied = blobs.copy_to(&e.sha256, &path)?;
        // The blob store is content-addressed; a mismatch means the disk was tampered with.
        if copied != e.sha256 {
            return Err(BundleError::Invalid(format!(
                "stored evidence {} no longer matches its hash; the controller's evidence store was altered",
                e.sha256
            )));
        }
        files.push(rel);
        // The report reads snapshots and run records; collected files stay on disk.
        if e.kind != EvidenceKind::File.as_str() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            bytes_of.insert(e.sha256.clone(), bytes);
        }
        items.push(BundleItem {
            sha256: e.sha256.clone(),
            kind: e.kind.clone(),
            size_bytes: e.size_bytes,
            agent: e.agent.clone(),
            created_at_secs: e.created_at_secs,
            signer: Signer::of_kind(&e.kind),
            signature: e.signature.clone(),
            redaction: e.redaction.clone(),
        });
    }
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        generated_at_secs: crate::clock::now_secs(),
        generator: concat!("deskside ", env!("CARGO_PKG_VERSION")).to_owned(),
        ticket: c.ticket,
        escalation: c.escalation,
        timeline: c.timeline,
        items,
        agents: c.agents,
        ca_pem: c.ca_pem,
        controller_cert_pem: c.controller_cert_pem,
    };
    let source = |sha: &str| bytes_of.get(sha).cloned();
    let outputs = [
        (
            EVIDENCE_JSON,
            serde_json::to_vec_pretty(&bundle).map_err(|e| BundleError::Invalid(e.to_string()))?,
        ),
        (
            REPORT_MD,
            crate::report::markdown(&bundle, &source).into_bytes(),
        ),
        (
            REPORT_HTML,
            crate::report::html(&bundle, &source).into_bytes(),
        ),
    ];
    for (name, data) in outputs {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(io(&path))?;
        files.push(name.to_owned());
    }
    Ok((bundle, files))
}
