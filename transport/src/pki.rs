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
}
