//! `/catalog`: each approved script — what it does, what it changes, its tier and its
//! parameters.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use deskside_proto::msg::script::CatalogEntry;
use deskside_proto::msg::tech::{TechReply, TechRequest};

use super::agent::{Field, fields};
use super::{ask, unexpected};
use crate::console::Console;
use crate::console::auth::Session;
use crate::console::view::{self, Me};

#[derive(askama::Template)]
#[template(path = "console/catalog.html")]
struct CatalogPage {
    me: Option<Me>,
    scripts: Vec<(CatalogEntry, Vec<Field>, String)>,
}

pub async fn page(State(console): State<Arc<Console>>, session: Session) -> Response {
    let scripts = match ask(&console, &session, TechRequest::ListScripts).await {
        Ok(TechReply::Scripts(s)) => s,
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    };
    view::render(&CatalogPage {
        me: Some(session.me()),
        scripts: scripts
            .into_iter()
            .map(|s| {
                let f = fields(&s);
                let sha = hex::encode(s.body_sha256);
                (s, f, sha)
            })
            .collect(),
    })
}
