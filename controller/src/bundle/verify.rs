//! Checking a bundle without the controller: every item's hash and signature, the
//! certificates against the bundled CA, and the timeline's hash chain.

use deskside_proto::evidence::EvidenceKind;

use super::{BUNDLE_FORMAT, Bundle, BundleError, EVIDENCE_JSON, ITEMS_DIR, Signer, io};

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

/// Why a bundled certificate is not the one it should be; the text follows the
/// certificate's name in the error (`the controller's record-signing certificate …`).
#[derive(Debug, thiserror::Error)]
enum CertProblem {
    #[error("is not X.509: {0}")]
    NotX509(String),
    #[error("(CA) is not X.509: {0}")]
    CaNotX509(String),
    #[error("has unreadable key usages: {0}")]
    UnreadableUsages(String),
    #[error("is not a record-signing certificate (document signing only)")]
    NotRecordSigning,
    #[error("was not issued by the bundled CA")]
    NotIssuedByCa,
}

/// The controller's certificate must be for document signing only: an agent's or a
/// technician's certificate (client authentication) cannot stand in for it.
fn check_record_signing(cert: &rustls_pki_types::CertificateDer<'_>) -> Result<(), CertProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CertProblem::NotX509(e.to_string()))?;
    let wanted = crate::ca::DOCUMENT_SIGNING_OID
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let eku = cert
        .extended_key_usage()
        .map_err(|e| CertProblem::UnreadableUsages(e.to_string()))?
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
        _ => Err(CertProblem::NotRecordSigning),
    }
}

fn check_issued_by(
    cert: &rustls_pki_types::CertificateDer<'_>,
    ca: &rustls_pki_types::CertificateDer<'_>,
) -> Result<(), CertProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CertProblem::NotX509(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca)
        .map_err(|e| CertProblem::CaNotX509(e.to_string()))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| CertProblem::NotIssuedByCa)
}
