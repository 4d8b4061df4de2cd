//! The async shell around `deskside-proto`: QUIC endpoints, mutual-TLS configuration,
//! framed request/response streams, and key/CSR generation. Shared by the agent, the
//! controller server and the technician CLI, so each speaks the protocol the same way.

pub mod clock;
pub mod endpoint;
pub mod enroll;
pub mod error;
pub mod framed;
pub mod logging;
pub mod pki;
pub mod tls;

pub use error::TransportError;

/// Name the controller's certificate is issued for and every client verifies. The CA is
/// private and pinned, so the name binds the certificate to its role, not to DNS.
pub const SERVER_NAME: &str = "deskside-controller";
