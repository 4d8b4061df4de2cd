//! The self-service calls a front end makes on the agent's control socket: the terminal
//! commands (`deskside-agent check`, `fixes`, `fix`, `ask`) and the desktop helper.

use crate::control::{ControlClient, ControlError, ControlReply, ControlRequest};
use crate::state::StateDir;

use super::{Asked, CheckReport, FixOutcome, SelfFix};

async fn call(state: &StateDir, req: &ControlRequest) -> Result<ControlReply, ControlError> {
    ControlClient::connect(state).await?.call(req).await
}

fn unexpected(reply: &ControlReply) -> ControlError {
    ControlError::Refused(format!(
        "the agent service answered something else ({reply:?}); is it the same version as this command?"
    ))
}

/// The self-service scripts this machine holds.
pub async fn fixes(state: &StateDir) -> Result<Vec<SelfFix>, ControlError> {
    match call(state, &ControlRequest::SelfFixes).await? {
        ControlReply::SelfFixes(list) => Ok(list),
        other => Err(unexpected(&other)),
    }
}

/// Runs self-service script `name` with `params` and waits for it to finish.
pub async fn fix(
    state: &StateDir,
    name: &str,
    params: Vec<(String, String)>,
) -> Result<FixOutcome, ControlError> {
    let req = ControlRequest::SelfFix {
        name: name.to_owned(),
        params,
    };
    match call(state, &req).await? {
        ControlReply::Fixed(outcome) => Ok(*outcome),
        other => Err(unexpected(&other)),
    }
}

/// Checks this machine: its findings, with advice.
pub async fn check(state: &StateDir) -> Result<CheckReport, ControlError> {
    match call(state, &ControlRequest::Check).await? {
        ControlReply::Checked(report) => Ok(*report),
        other => Err(unexpected(&other)),
    }
}

/// Asks the help desk for help with `text`.
pub async fn ask(state: &StateDir, text: &str) -> Result<Asked, ControlError> {
    let req = ControlRequest::AskForHelp {
        text: text.to_owned(),
    };
    match call(state, &req).await? {
        ControlReply::Asked(asked) => Ok(asked),
        other => Err(unexpected(&other)),
    }
}
