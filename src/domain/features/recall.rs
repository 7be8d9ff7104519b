//! Recall (M1): an author takes a message back within their company's window; masters may too.

use super::context::*;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Action, EventBody};

/// Decide an action on a recall (M1).
pub(super) fn recall(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::Recall { message } => {
            check_switch(room, f.message, "messages")?;
            let ev = ctx
                .message
                .as_ref()
                .filter(|e| e.seq == *message)
                .ok_or_else(|| gone("message", *message))?;
            let EventBody::Message { recalled, .. } = &ev.body else {
                return Err(gone("message", *message));
            };
            if *recalled {
                return Err(ApiError::invalid("already recalled"));
            }
            let in_window =
                ctx.now_ms - ev.ts <= (ctx.recall_window_secs as i64).saturating_mul(1000);
            if !(master || (ev.author == *user && in_window)) {
                return Err(forbidden(
                    "only the author, within their company's recall window, or a master recalls a message",
                ));
            }
            vec![EventBody::MessageRecalled { message: *message }]
        }
        _ => return Err(misrouted()),
    })
}
