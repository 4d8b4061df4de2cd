//! `deskside-agent enroll TOKEN`: make a key here, get it certified, keep the CA pinned.

use deskside_proto::msg::enroll::{EnrollToken, TokenError, TokenKind};
use deskside_proto::msg::identity::Identity;
use deskside_transport::enroll::{EnrollError as ExchangeError, enroll as run_enrollment};

use crate::policy::DEFAULT_POLICY;
use crate::state::{Enrollment, StateDir, StateError, write_atomic};

/// Why this machine could not be enrolled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error("reading the enrollment token")]
    Token(#[source] TokenError),
    #[error(
        "this is a technician login token; use it with `deskside login`, and enroll with a token from `deskside token create`"
    )]
    TechnicianToken,
    #[error(
        "already enrolled as {agent_id} with {controller} ({}); remove {} to enroll again",
        .record.display(),
        .root.display()
    )]
    AlreadyEnrolled {
        agent_id: String,
        controller: String,
        record: std::path::PathBuf,
        root: std::path::PathBuf,
    },
    #[error("enrolling with the controller at {controller}")]
    Exchange {
        controller: String,
        #[source]
        source: ExchangeError,
    },
    #[error("the controller issued a technician certificate for an agent token")]
    TechnicianCertificate,
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Encode(#[from] toml::ser::Error),
}

pub const SOFTWARE: &str = concat!("deskside-agent ", env!("CARGO_PKG_VERSION"));

/// Enrolls this machine with the controller named in `token_text`.
pub async fn enroll(state: &StateDir, token_text: &str) -> Result<Enrollment, EnrollError> {
    let token = EnrollToken::parse(token_text).map_err(EnrollError::Token)?;
    if token.kind != TokenKind::Agent {
        return Err(EnrollError::TechnicianToken);
    }
    if state.is_enrolled() {
        let current = state.enrollment()?;
        return Err(EnrollError::AlreadyEnrolled {
            agent_id: current.agent_id,
            controller: current.controllers.join(", "),
            record: state.enrollment_file(),
            root: state.root().to_owned(),
        });
    }
    state.create()?;
    let (hostname, os, _) = crate::host_identity();
    let done = run_enrollment(&token, &hostname, &os, SOFTWARE)
        .await
        .map_err(|source| EnrollError::Exchange {
            controller: token.controllers.join(", "),
            source,
        })?;
    let Identity::Agent { id } = done.enrollment.identity.clone() else {
        return Err(EnrollError::TechnicianCertificate);
    };
    write_atomic(&state.key(), done.key_pem.as_bytes(), 0o600)?;
    write_atomic(&state.cert(), done.enrollment.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&state.ca(), done.enrollment.ca_pem.as_bytes(), 0o644)?;
    if !state.policy().exists() {
        write_atomic(&state.policy(), DEFAULT_POLICY.as_bytes(), 0o644)?;
    }
    let record = Enrollment {
        agent_id: id,
        controllers: token.controllers.clone(),
        ca_sha256: hex::encode(token.ca_sha256),
        script_public_key: hex::encode(done.enrollment.script_public_key),
        enrolled_at_secs: crate::now_secs(),
        cert_not_after_secs: done.enrollment.cert_not_after_secs,
    };
    // Written last: its presence is what "enrolled" means.
    write_atomic(
        &state.enrollment_file(),
        toml::to_string(&record)?.as_bytes(),
        0o644,
    )?;
    Ok(record)
}
