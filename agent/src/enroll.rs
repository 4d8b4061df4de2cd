//! `deskside-agent enroll TOKEN`: make a key here, get it certified, keep the CA pinned.

use anyhow::{Context, Result, bail};
use deskside_proto::msg::enroll::{EnrollToken, TokenKind};
use deskside_proto::msg::identity::Identity;
use deskside_transport::enroll::enroll as run_enrollment;

use crate::policy::DEFAULT_POLICY;
use crate::state::{Enrollment, StateDir, write_atomic};

pub const SOFTWARE: &str = concat!("deskside-agent ", env!("CARGO_PKG_VERSION"));

/// Enrolls this machine with the controller named in `token_text`.
pub async fn enroll(state: &StateDir, token_text: &str) -> Result<Enrollment> {
    let token = EnrollToken::parse(token_text).context("reading the enrollment token")?;
    if token.kind != TokenKind::Agent {
        bail!(
            "this is a technician login token; use it with `deskside login`, and enroll with a token from `deskside token create`"
        );
    }
    if state.is_enrolled() {
        let current = state.enrollment()?;
        bail!(
            "already enrolled as {} with {} ({}); remove {} to enroll again",
            current.agent_id,
            current.controller,
            state.enrollment_file().display(),
            state.root().display()
        );
    }
    state.create()?;
    let (hostname, os, _) = crate::host_identity();
    let done = run_enrollment(&token, &hostname, &os, SOFTWARE)
        .await
        .with_context(|| format!("enrolling with the controller at {}", token.controller))?;
    let Identity::Agent { id } = done.enrollment.identity.clone() else {
        bail!("the controller issued a technician certificate for an agent token");
    };
    write_atomic(&state.key(), done.key_pem.as_bytes(), 0o600)?;
    write_atomic(&state.cert(), done.enrollment.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&state.ca(), done.enrollment.ca_pem.as_bytes(), 0o644)?;
    if !state.policy().exists() {
        write_atomic(&state.policy(), DEFAULT_POLICY.as_bytes(), 0o644)?;
    }
    let record = Enrollment {
        agent_id: id,
        controller: token.controller.clone(),
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
