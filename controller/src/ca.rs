//! The controller's certificate authority (rcgen): made once by `init`, then used to
//! issue the server certificate and every agent and technician certificate.
//!
//! The controller certifies the identity *it* chooses; the CSR contributes only the
//! public key (its self-signature is verified, proving the requester holds the key).

use std::time::{Duration, SystemTime};

use deskside_proto::msg::identity::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

use deskside_transport::SERVER_NAME;

/// The CA outlives every certificate it signs; ten years, like most private PKIs.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The controller's own certificate; re-issued by `init`-time tooling well before expiry.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);
/// Agent and technician certificates, by default (`[certificates] validity`). Short
/// enough that a lost laptop's certificate dies on its own; clients renew over the live
/// link once two thirds of it are over.
pub const CLIENT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The controller's record-signing certificate lives as long as a CA.
pub const RECORD_SIGNING_VALIDITY: Duration = CA_VALIDITY;
/// `id-kp-documentSigning` (RFC 9336): the record-signing certificate's only extended
/// key usage, so it can never pass as a TLS client or server certificate, and `verify`
/// accepts no other certificate as the controller's.
pub const DOCUMENT_SIGNING_OID: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 36];
/// Common name of the record-signing certificate.
pub const RECORD_SIGNING_NAME: &str = "Deskside controller records";
/// Tolerated clock difference between the controller and a fresh client.
const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the certificate request is not valid: {0}")]
    BadCsr(String),
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM texts of a certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate just issued to a client.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_sha256: String,
    pub not_after_secs: u64,
}

fn validity(params: &mut CertificateParams, for_: Duration) {
    let now = OffsetDateTime::now_utc();
    // Never a large share of a short life: renewal is timed from not-before.
    params.not_before = now - BACKDATE.min(for_ / 10);
    params.not_after = now + for_;
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive INTEGER: clear the top bit.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Deskside");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Makes a new self-signed CA.
pub fn new_ca() -> Result<CertAndKey, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = named("Deskside controller CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The CA, loaded for signing.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl Ca {
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The controller's TLS server certificate, with a fresh key.
    pub fn server_cert(&self, extra_names: &[String]) -> Result<CertAndKey, CaError> {
        let key = KeyPair::generate()?;
        let mut names = vec![SERVER_NAME.to_owned(), "localhost".to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        params.distinguished_name = named(SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, SERVER_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A new key (ECDSA P-256, like the agents') and certificate with which the controller
    /// signs the evidence it makes itself (session records).
    pub fn record_signing_cert(&self) -> Result<CertAndKey, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(RECORD_SIGNING_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            DOCUMENT_SIGNING_OID.to_vec(),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, RECORD_SIGNING_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks that `csr_pem` is a well-formed request signed by the key it carries.
    pub fn check_csr(&self, csr_pem: &str) -> Result<(), CaError> {
        CertificateSigningRequestParams::from_pem(csr_pem)
            .map(|_| ())
            .map_err(|e| CaError::BadCsr(e.to_string()))
    }

    /// Certifies the key in `csr_pem` as `identity` for `valid_for`.
    pub fn issue_client(
        &self,
        csr_pem: &str,
        identity: &Identity,
        valid_for: Duration,
    ) -> Result<Issued, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        self.certify(&csr, identity, valid_for)
    }

    /// Renewal: certifies `identity` again, for the very key of `current` (the
    /// certificate the client is connected with) — a CSR for any other key is refused.
    pub fn renew_client(
        &self,
        csr_pem: &str,
        identity: &Identity,
        current: &[u8],
        valid_for: Duration,
    ) -> Result<Issued, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(current)
            .map_err(|e| CaError::BadCsr(format!("the current certificate is unreadable: {e}")))?;
        if csr.public_key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(CaError::BadCsr(
                "renewal must keep the key of the current certificate".into(),
            ));
        }
        self.certify(&csr, identity, valid_for)
    }

    fn certify(
        &self,
        csr: &CertificateSigningRequestParams,
        identity: &Identity,
        valid_for: Duration,
    ) -> Result<Issued, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = named(&identity.common_name());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, valid_for);
        let not_after = SystemTime::now() + valid_for;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(Issued {
            cert_sha256: hex::encode(deskside_transport::pki::fingerprint(cert.der())),
            cert_pem: cert.pem(),
            not_after_secs: crate::clock::secs(not_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_client_certificate_for_the_chosen_identity() -> anyhow::Result<()> {
        let made = new_ca()?;
        let ca = Ca::load(&made.cert_pem, &made.key_pem)?;
        let csr = deskside_transport::pki::new_key_and_csr("laptop-7")?;
        let who = Identity::Agent { id: "ag-1".into() };
        let issued = ca.issue_client(&csr.csr_pem, &who, CLIENT_VALIDITY)?;
        let der = deskside_transport::pki::cert_from_pem(&issued.cert_pem)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)?;
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        assert_eq!(cn, Some("agent:ag-1"));
        Ok(())
    }

    #[test]
    fn refuses_garbage_csr() -> anyhow::Result<()> {
        let made = new_ca()?;
        let ca = Ca::load(&made.cert_pem, &made.key_pem)?;
        let who = Identity::Agent { id: "ag-1".into() };
        assert!(matches!(
            ca.issue_client(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                &who,
                CLIENT_VALIDITY
            ),
            Err(CaError::BadCsr(_))
        ));
        Ok(())
    }

    #[test]
    fn renewal_certifies_the_same_key_only() -> anyhow::Result<()> {
        let made = new_ca()?;
        let ca = Ca::load(&made.cert_pem, &made.key_pem)?;
        let who = Identity::Agent { id: "ag-1".into() };
        let first = deskside_transport::pki::new_key_and_csr("pc")?;
        let issued = ca.issue_client(&first.csr_pem, &who, CLIENT_VALIDITY)?;
        let current = deskside_transport::pki::cert_from_pem(&issued.cert_pem)?;
        let again = deskside_transport::pki::csr_for_key(&first.key_pem, "pc")?;
        let renewed = ca.renew_client(&again, &who, &current, Duration::from_secs(3600))?;
        assert_ne!(renewed.cert_sha256, issued.cert_sha256);
        let other = deskside_transport::pki::new_key_and_csr("pc")?;
        let refused = ca.renew_client(&other.csr_pem, &who, &current, CLIENT_VALIDITY);
        assert!(
            matches!(&refused, Err(CaError::BadCsr(m)) if m.contains("keep the key")),
            "{refused:?}"
        );
        Ok(())
    }
}
