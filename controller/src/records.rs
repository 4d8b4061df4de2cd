//! Evidence the controller makes itself — session records: the grant with its scopes and
//! expiry, a refusal, an unanswered request — signed with the controller's
//! record-signing key, whose certificate (issued by the controller's CA, extended key
//! usage document signing only) travels in every bundle so `ticket verify` can check
//! these items like the agents' own.
//!
//! Why a key of its own: the CA key signs certificates and stays off the request path;
//! the server's TLS key is the server's identity and is re-issued with it; the
//! script-signing key (ed25519) is what agents trust to run code, and a record signature
//! must never be mistaken for a script approval. A separate ECDSA P-256 key also lets
//! `verify` use the one signature check it already has for agents' evidence.

use deskside_proto::evidence::EvidenceKind;
use sha2::{Digest, Sha256};

use crate::ca::CertAndKey;

/// Whether a stored item of kind `kind` (as named in the database) is made (and signed)
/// by the controller, not an agent: a session record ([`EvidenceKind::Session`]).
pub fn controller_made(kind: &str) -> bool {
    kind.parse::<EvidenceKind>()
        .is_ok_and(EvidenceKind::controller_made)
}

/// A session record could not be signed with the record-signing key.
#[derive(Debug, thiserror::Error)]
#[error("signing a session record with the record-signing key: {0}")]
pub struct RecordSignError(#[source] deskside_transport::TransportError);

/// Signs controller-made records.
#[derive(Clone)]
pub struct RecordSigner {
    key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for RecordSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSigner(..)")
    }
}

impl RecordSigner {
    pub fn new(made: CertAndKey) -> RecordSigner {
        RecordSigner {
            key_pem: made.key_pem,
            cert_pem: made.cert_pem,
        }
    }

    /// The signature (hex, ECDSA P-256 ASN.1 DER, over the evidence label and the
    /// SHA-256 of `bytes`) that `verify` checks against [`RecordSigner::cert_pem`].
    pub fn sign(&self, bytes: &[u8]) -> Result<String, RecordSignError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.sign_digest(&digest)
    }

    /// [`RecordSigner::sign`] for bytes whose SHA-256 is `digest`.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<String, RecordSignError> {
        deskside_transport::pki::sign_evidence(&self.key_pem, digest)
            .map(hex::encode)
            .map_err(RecordSignError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_signature_verifies_with_the_certificate_and_only_for_its_bytes()
    -> anyhow::Result<()> {
        let made = crate::ca::new_ca()?;
        let ca = crate::ca::Ca::load(&made.cert_pem, &made.key_pem)?;
        let signer = RecordSigner::new(ca.record_signing_cert()?);
        let sig = hex::decode(signer.sign(b"{\"kind\":\"session\"}")?)?;
        let cert = deskside_transport::pki::cert_from_pem(&signer.cert_pem)?;
        let digest: [u8; 32] = Sha256::digest(b"{\"kind\":\"session\"}").into();
        deskside_transport::pki::verify_evidence(&cert, &digest, &sig)?;
        let other: [u8; 32] = Sha256::digest(b"{\"kind\":\"session!\"}").into();
        assert!(deskside_transport::pki::verify_evidence(&cert, &other, &sig).is_err());
        assert!(controller_made("session") && !controller_made("snapshot"));
        assert!(!controller_made("session!"));
        Ok(())
    }
}
