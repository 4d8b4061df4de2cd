//! Keys, certificate requests and fingerprints. Private keys are made here, on the
//! machine that will use them, and never serialised anywhere but its own disk.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::TransportError;

/// A fresh ECDSA P-256 key pair (PEM, PKCS#8) and a CSR for it.
#[derive(Debug)]
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// Makes a key pair and a certificate request. The controller decides the identity it
/// certifies; `label` only helps an admin reading the CSR.
pub fn new_key_and_csr(label: &str) -> Result<KeyAndCsr, TransportError> {
    let key = KeyPair::generate().map_err(|e| TransportError::Pki(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, label);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| TransportError::Pki(e.to_string()))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(|e| TransportError::Pki(e.to_string()))?,
    })
}

/// A CSR for the key already in `key_pem`: certificate renewal keeps the machine's key
/// (evidence it signed stays verifiable; the key still never leaves the machine).
pub fn csr_for_key(key_pem: &str, label: &str) -> Result<String, TransportError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| TransportError::Pki(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, label);
    params.distinguished_name = dn;
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| TransportError::Pki(e.to_string()))
}

/// A certificate's validity window in Unix seconds: (not before, not after).
pub fn validity(cert: &CertificateDer<'_>) -> Result<(u64, u64), TransportError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TransportError::Pki(format!("unreadable certificate: {e}")))?;
    let v = parsed.validity();
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok((
        secs(v.not_before.timestamp()),
        secs(v.not_after.timestamp()),
    ))
}

/// When a certificate valid over `(not_before, not_after)` should be renewed: once two
/// thirds of its life are over, leaving a third for a machine that is offline a while.
pub fn renew_at((not_before, not_after): (u64, u64)) -> u64 {
    not_before + not_after.saturating_sub(not_before) / 3 * 2
}

/// SHA-256 of a certificate's DER bytes: what tokens pin.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// The first certificate in a PEM text.
pub fn cert_from_pem(pem: &str) -> Result<CertificateDer<'static>, TransportError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TransportError::Pki(format!("not a PEM certificate: {e}")))
}

/// The private key in a PEM text.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TransportError::Pki(format!("not a PEM private key: {e}")))
}

/// Domain label for evidence signatures, so they can never be replayed as anything else.
const EVIDENCE_LABEL: &[u8] = b"deskside evidence v1\0";

/// Signs an evidence item's SHA-256 digest with the machine's own key (PEM, PKCS#8,
/// ECDSA P-256): ASN.1 DER signature.
pub fn sign_evidence(key_pem: &str, sha256: &[u8; 32]) -> Result<Vec<u8>, TransportError> {
    use rcgen::SigningKey as _;
    let key = KeyPair::from_pem(key_pem).map_err(|e| TransportError::Pki(e.to_string()))?;
    let mut msg = EVIDENCE_LABEL.to_vec();
    msg.extend_from_slice(sha256);
    key.sign(&msg)
        .map_err(|e| TransportError::Pki(e.to_string()))
}

/// Checks an evidence signature against the public key in `cert` (DER).
pub fn verify_evidence(
    cert: &CertificateDer<'_>,
    sha256: &[u8; 32],
    signature: &[u8],
) -> Result<(), TransportError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| TransportError::Pki(format!("not an X.509 certificate: {e}")))?;
    let public_key = parsed.public_key().subject_public_key.data.as_ref();
    let mut msg = EVIDENCE_LABEL.to_vec();
    msg.extend_from_slice(sha256);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&msg, signature)
        .map_err(|_| {
            TransportError::Pki("the signature does not verify with the agent's certificate".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_parses_and_key_loads() {
        let made = new_key_and_csr("test").map_err(|e| e.to_string());
        let Ok(made) = made else {
            panic!("{made:?}");
        };
        assert!(made.csr_pem.contains("CERTIFICATE REQUEST"));
        assert!(key_from_pem(&made.key_pem).is_ok());
        assert!(cert_from_pem(&made.key_pem).is_err());
    }

    #[test]
    fn evidence_signatures_verify_only_with_the_right_key_and_digest() -> Result<(), TransportError>
    {
        let key = KeyPair::generate().map_err(|e| TransportError::Pki(e.to_string()))?;
        let cert = CertificateParams::default()
            .self_signed(&key)
            .map_err(|e| TransportError::Pki(e.to_string()))?;
        let digest = [7u8; 32];
        let sig = sign_evidence(&key.serialize_pem(), &digest)?;
        verify_evidence(cert.der(), &digest, &sig)?;
        assert!(verify_evidence(cert.der(), &[8u8; 32], &sig).is_err());
        let mut bad = sig.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(verify_evidence(cert.der(), &digest, &bad).is_err());
        Ok(())
    }
}
