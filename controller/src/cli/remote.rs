//! Talking to the controller as a technician: one request over a fresh connection, and
//! what to say when the reply is not the one the request calls for.

use deskside_proto::msg::tech::{TechReply, TechRequest};

use super::CliError;
use crate::client::TechClient;
use crate::profile;

/// Longest excerpt of an unexpected reply shown to the user.
const SHOWN_REPLY_CHARS: usize = 200;

pub(super) async fn request(req: TechRequest) -> Result<TechReply, CliError> {
    let client = TechClient::connect_renewing(&profile::default_path()?).await?;
    let reply = client.request(&req).await;
    client.close().await;
    Ok(reply?)
}

pub(super) fn unexpected(reply: &TechReply) -> anyhow::Error {
    let mut shown = format!("{reply:?}");
    if shown.len() > SHOWN_REPLY_CHARS {
        let mut end = SHOWN_REPLY_CHARS;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    anyhow::anyhow!("the controller sent an unexpected reply: {shown}")
}
