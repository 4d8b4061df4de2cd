//! The console's pages. Each handler asks the service layer, as the signed-in technician,
//! for what it shows, and renders a template; a failure is the CLI's message on the
//! problem page with the matching HTTP status.

pub mod actions;
pub mod admin;
pub mod agent;
pub mod agents;
pub mod catalog;
pub mod dashboard;
pub mod ticket;
pub mod tickets;

use axum::response::Response;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use super::Console;
use super::auth::Session;
use super::live::NoStream;
use super::view;
use crate::service::{self, Failure};

/// Serves `req` for the signed-in technician: the reply, or the problem page.
pub(super) async fn ask(
    console: &Console,
    session: &Session,
    req: TechRequest,
) -> Result<TechReply, Response> {
    match service::handle(&console.shared, &session.principal, req, &mut NoStream).await {
        TechReply::Error(e) => Err(view::failure(
            session.me(),
            &Failure::new(e.code, e.message),
        )),
        reply => Ok(reply),
    }
}

/// The problem page for a reply of the wrong kind (a bug, not a user error).
pub(super) fn unexpected(reply: &TechReply) -> Response {
    view::internal(&format!("unexpected reply {reply:?}"))
}
