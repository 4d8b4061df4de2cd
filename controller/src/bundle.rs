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
//! `deskside ticket verify DIR` checks all of it without the controller.

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TicketSummary, TimelineEntry};
use serde::{Deserialize, Serialize};

pub const EVIDENCE_JSON: &str = "evidence.json";
pub const ITEMS_DIR: &str = "items";
pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";
/// Bumped when the bundle layout changes meaning. 2: every item is signed, session
/// records by the controller (`controller_cert_pem`, `items[].signer`).
pub const BUNDLE_FORMAT: u32 = 2;

/// `evidence.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    pub generated_at_secs: u64,
    /// Software that made it, e.g. `deskside 0.1.0`.
    pub generator: String,
    pub ticket: TicketSummary,
    /// Present when the bundle was made by an escalation.
    pub escalation: Option<Escalation>,
    pub timeline: Vec<TimelineEntry>,
    pub items: Vec<BundleItem>,
    pub agents: Vec<BundleAgent>,
    /// The controller CA that issued every agent certificate in `agents` and
    /// `controller_cert_pem`.
    pub ca_pem: String,
    /// The controller's record-signing certificate: it signs the items the controller
    /// made itself (session records).
    pub controller_cert_pem: String,
}

/// Who signed an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signer {
    /// The agent named by the item, with the key its certificate in `agents` certifies.
    Agent,
    /// The controller, with the key `controller_cert_pem` certifies (session records).
    Controller,
}

impl Signer {
    pub fn of_kind(kind: &str) -> Signer {
        if crate::records::controller_made(kind) {
            Signer::Controller
        } else {
            Signer::Agent
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub from: Tier,
    pub to: Tier,
    pub note: String,
    pub by: String,
    pub at_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleItem {
    /// Hex SHA-256 of the item's bytes; the file is `items/<sha256>`.
    pub sha256: String,
    /// `snapshot` (a `Snapshot` as JSON), `script_run` (a `RunRecord` as JSON),
    /// `file`, `file_manifest`, or `session` (a session record the controller made).
    pub kind: String,
    pub size_bytes: u64,
    pub agent: Option<String>,
    pub created_at_secs: u64,
    pub signer: Signer,
    /// The signer's signature over the SHA-256 digest (hex, ECDSA P-256 ASN.1 DER): the
    /// agent's, made before the item left the machine, or the controller's for the
    /// records it made. `verify` refuses an item without one.
    pub signature: Option<String>,
    /// Redaction rules the agent applied before sending (empty when none).
    pub redaction: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleAgent {
    pub id: String,
    pub hostname: String,
    /// The certificate the controller issued to this agent (PEM).
    pub cert_pem: String,
}

/// Largest item `verify` reads: agents send at most 16 MiB per item
/// (`deskside_proto::limits::MAX_EVIDENCE_BYTES`); anything bigger was not made by one.
const MAX_ITEM_BYTES: u64 = deskside_proto::limits::MAX_EVIDENCE_BYTES as u64;

/// Largest collected file `verify` hashes: the most `[evidence] max_file_bytes` allows.
const MAX_FILE_ITEM_BYTES: u64 = crate::config::MAX_COLLECT_LIMIT;

/// SHA-256 of a file, read in pieces.
fn hash_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

/// Largest `evidence.json` `verify` reads: a ticket with thousands of entries is a few MiB.
const MAX_EVIDENCE_JSON_BYTES: u64 = 64 * 1024 * 1024;

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

/// What `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub ticket: u64,
    pub items: usize,
    pub entries: usize,
    /// Items whose signature verified: all of them, or `verify` fails.
    pub signed: usize,
    /// Of those, the ones the controller signed (session records).
    pub by_controller: usize,
}

/// Checks a bundle directory: every item's hash and signature (against the agent's
/// certificate, itself checked against the bundled CA), and the timeline chain. The error
/// names the first item or entry that fails.
pub fn verify(dir: &std::path::Path) -> Result<Verified, BundleError> {
    use std::io::Read;
    let bad = BundleError::Invalid;
    let path = dir.join(EVIDENCE_JSON);
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let mut text = Vec::new();
    file.take(MAX_EVIDENCE_JSON_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io(&path))?;
    if text.len() as u64 > MAX_EVIDENCE_JSON_BYTES {
        return Err(bad(format!(
            "{} is over {MAX_EVIDENCE_JSON_BYTES} bytes",
            path.display()
        )));
    }
    let bundle: Bundle = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("{} is not a Deskside bundle: {e}", path.display())))?;
    if bundle.format != BUNDLE_FORMAT {
        return Err(bad(format!(
            "bundle format {} is not {BUNDLE_FORMAT}; use a matching deskside (a format 1 \
             bundle left session records unsigned: export the ticket again)",
            bundle.format
        )));
    }
    let number = bundle.ticket.number;

    // The chain: consecutive, each linked to the one before, each hash recomputed.
    let mut prev = crate::store::GENESIS_HASH.to_owned();
    for (i, e) in bundle.timeline.iter().enumerate() {
        let at = format!("timeline entry {} ({} by {})", e.seq, e.kind, e.actor);
        if e.seq != i as u64 + 1 {
            return Err(bad(format!(
                "{at}: out of order — position {} holds seq {} (entries removed or reordered)",
                i + 1,
                e.seq
            )));
        }
        if e.prev_hash != prev {
            return Err(bad(format!(
                "{at}: does not link to the entry before it (removed, inserted or reordered)"
            )));
        }
        if crate::store::entry_hash(number, e) != e.hash {
            return Err(bad(format!(
                "{at}: its content does not match its hash (edited)"
            )));
        }
        prev = e.hash.clone();
    }

    let ca = deskside_transport::pki::cert_from_pem(&bundle.ca_pem)
        .map_err(|e| bad(format!("the bundled CA: {e}")))?;
    let controller = deskside_transport::pki::cert_from_pem(&bundle.controller_cert_pem)
        .map_err(|e| bad(format!("the controller's record-signing certificate: {e}")))?;
    check_issued_by(&controller, &ca)
        .map_err(|e| bad(format!("the controller's record-signing certificate {e}")))?;
    check_record_signing(&controller)
        .map_err(|e| bad(format!("the controller's record-signing certificate {e}")))?;
    let mut signed = 0;
    let mut by_controller = 0;
    for item in &bundle.items {
        let at = format!("item {} ({})", item.sha256, item.kind);
        if !deskside_proto::digest::is_sha256_hex(&item.sha256) {
            return Err(bad(format!("{at}: not a SHA-256 name")));
        }
        let path = dir.join(ITEMS_DIR).join(&item.sha256);
        let size = std::fs::metadata(&path)
            .map_err(|e| bad(format!("{at}: missing ({e})")))?
            .len();
        let limit = if item.kind == EvidenceKind::File.as_str() {
            MAX_FILE_ITEM_BYTES
        } else {
            MAX_ITEM_BYTES
        };
        if size > limit {
            return Err(bad(format!(
                "{at}: {size} bytes, over the {limit}-byte limit for one item"
            )));
        }
        let digest = hash_file(&path).map_err(|e| bad(format!("{at}: missing ({e})")))?;
        if hex::encode(digest) != item.sha256 {
            return Err(bad(format!(
                "{at}: the file's SHA-256 is {} (altered)",
                hex::encode(digest)
            )));
        }
        if !bundle
            .timeline
            .iter()
            .any(|e| e.evidence_sha256.as_deref() == Some(item.sha256.as_str()))
        {
            return Err(bad(format!("{at}: not recorded on the timeline")));
        }
        let Some(sig) = &item.signature else {
            return Err(bad(format!(
                "{at}: unsigned; every item must carry its agent's or the controller's signature"
            )));
        };
        if item.signer != Signer::of_kind(&item.kind) {
            return Err(bad(format!(
                "{at}: claims to be signed by the {:?} signer, but {} items are not",
                item.signer, item.kind
            )));
        }
        let (cert, whose) = match item.signer {
            Signer::Controller => (controller.clone(), "the controller's".to_owned()),
            Signer::Agent => {
                let agent = item
                    .agent
                    .as_deref()
                    .ok_or_else(|| bad(format!("{at}: signed by an agent, but names none")))?;
                let cert_pem = bundle
                    .agents
                    .iter()
                    .find(|a| a.id == agent)
                    .map(|a| a.cert_pem.as_str())
                    .ok_or_else(|| {
                        bad(format!(
                            "{at}: no certificate for agent {agent} in the bundle"
                        ))
                    })?;
                let cert = deskside_transport::pki::cert_from_pem(cert_pem)
                    .map_err(|e| bad(format!("{at}: agent certificate: {e}")))?;
                check_issued_by(&cert, &ca)
                    .map_err(|e| bad(format!("{at}: agent {agent}'s certificate {e}")))?;
                (cert, format!("agent {agent}'s"))
            }
        };
        let sig = hex::decode(sig).map_err(|_| bad(format!("{at}: the signature is not hex")))?;
        deskside_transport::pki::verify_evidence(&cert, &digest, &sig).map_err(|_| {
            bad(format!(
                "{at}: the signature does not verify with {whose} certificate (altered or forged)"
            ))
        })?;
        signed += 1;
        if item.signer == Signer::Controller {
            by_controller += 1;
        }
    }
    for e in &bundle.timeline {
        if let Some(sha) = &e.evidence_sha256
            && !bundle.items.iter().any(|i| &i.sha256 == sha)
        {
            return Err(bad(format!(
                "timeline entry {} ({}): its evidence item {sha} is not in the bundle (deleted)",
                e.seq, e.kind
            )));
        }
    }
    Ok(Verified {
        ticket: number,
        items: bundle.items.len(),
        entries: bundle.timeline.len(),
        signed,
        by_controller,
    })
}

/// The controller's certificate must be for document signing only: an agent's or a
/// technician's certificate (client authentication) cannot stand in for it.
fn check_record_signing(cert: &rustls_pki_types::CertificateDer<'_>) -> Result<(), String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("is not X.509: {e}"))?;
    let wanted = crate::ca::DOCUMENT_SIGNING_OID
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let eku = cert
        .extended_key_usage()
        .map_err(|e| format!("has unreadable key usages: {e}"))?
        .map(|e| e.value);
    match eku {
        Some(eku)
            if !eku.any
                && !eku.client_auth
                && !eku.server_auth
                && eku.other.iter().any(|o| o.to_id_string() == wanted) =>
        {
            Ok(())
        }
        _ => Err("is not a record-signing certificate (document signing only)".to_owned()),
    }
}

fn check_issued_by(
    cert: &rustls_pki_types::CertificateDer<'_>,
    ca: &rustls_pki_types::CertificateDer<'_>,
) -> Result<(), String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("is not X.509: {e}"))?;
    let (_, ca) =
        x509_parser::parse_x509_certificate(ca).map_err(|e| format!("(CA) is not X.509: {e}"))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| "was not issued by the bundled CA".to_owned())
}
