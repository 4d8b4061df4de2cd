//! The control socket's self-service requests (L0, `crate::selfhelp`): list, run a
//! fix, check, ask for help.

use super::{ControlReply, ControlRequest};
use crate::local_user::Caller;
use crate::serve::AgentCtx;

/// Serves a self-service request from the control socket; `None` for other requests.
pub(crate) async fn serve(
    ctx: &AgentCtx,
    caller: &Caller,
    req: &ControlRequest,
) -> Option<ControlReply> {
    let user = crate::selfhelp::user_name(caller);
    let err = |message: String| ControlReply::Error { message };
    Some(match req {
        ControlRequest::SelfFixes => ControlReply::SelfFixes(
            crate::selfhelp::cache::load(&ctx.state, &ctx.script_key)
                .into_iter()
                .map(|s| crate::selfhelp::SelfFix {
                    name: s.entry.name,
                    version: s.entry.version,
                    description: s.entry.description,
                    changes: s.entry.changes,
                    params: s.entry.params,
                })
                .collect(),
        ),
        ControlRequest::SelfFix { name, params } => {
            crate::selfhelp::fix::run(ctx, &user, name, params)
                .await
                .map_or_else(err, |o| ControlReply::Fixed(Box::new(o)))
        }
        ControlRequest::Check => {
            ControlReply::Checked(Box::new(crate::selfhelp::check::check(ctx).await))
        }
        ControlRequest::AskForHelp { text } => crate::selfhelp::ask::ask(ctx, &user, text)
            .await
            .map_or_else(err, ControlReply::Asked),
        _ => return None,
    })
}
