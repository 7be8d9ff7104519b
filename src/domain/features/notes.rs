//! Notes (N1): who may post, edit, delete, comment and like, and what each entry does to the note.

use super::context::*;
use super::limits::*;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Action, Comment, ErrorCode, Event, EventBody, Item, Note, NoteFields};

/// A note takes one more comment only within [`MAX_COMMENTS_PER_NOTE`] and
/// [`MAX_NOTE_COMMENT_BYTES`].
fn check_room_for_comment(n: &Note, text: &str) -> ApiResult<()> {
    let bytes: usize = n.comments.iter().map(|c| c.text.len()).sum();
    if n.comments.len() >= MAX_COMMENTS_PER_NOTE || bytes + text.len() > MAX_NOTE_COMMENT_BYTES {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!(
                "a note holds at most {MAX_COMMENTS_PER_NOTE} comments and {} KiB of their text; \
                 delete some first",
                MAX_NOTE_COMMENT_BYTES / 1024
            ),
        ));
    }
    Ok(())
}

pub(super) fn note(ctx: &Context, id: u64) -> ApiResult<&Note> {
    match &ctx.item {
        Some(Item::Note(n)) if n.id == id => Ok(n),
        _ => Err(gone("note", id)),
    }
}

pub(super) fn check_note_fields(f: &NoteFields) -> ApiResult<()> {
    check_len("title", &f.title, 1, MAX_NOTE_TITLE)?;
    check_len("body", &f.body, 0, MAX_NOTE_BODY)
}

/// Decide an action on notes (N1).
pub(super) fn notes(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        notices,
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::PostNote(n) => {
            check_switch(room, f.note, "note")?;
            check_note_fields(n)?;
            let mut out = vec![EventBody::NotePosted { note: n.clone() }];
            if n.notify && notices {
                out.push(EventBody::Notice {
                    text: format!("{} posted a note: {}", ctx.actor_name, n.title),
                });
            }
            out
        }
        Action::EditNote {
            note: id,
            title,
            body,
            others_may_edit,
            pinned,
        } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            let author = n.author == *user;
            if !author && !n.fields.others_may_edit {
                return Err(forbidden("only the author may edit this note"));
            }
            if others_may_edit.is_some() && !author {
                return Err(forbidden("only the author decides who may edit"));
            }
            if title.is_none() && body.is_none() && others_may_edit.is_none() && pinned.is_none() {
                return Err(ApiError::invalid("nothing to change"));
            }
            if let Some(t) = title {
                check_len("title", t, 1, MAX_NOTE_TITLE)?;
            }
            if let Some(b) = body {
                check_len("body", b, 0, MAX_NOTE_BODY)?;
            }
            vec![EventBody::NoteEdited {
                note: *id,
                title: title.clone(),
                body: body.clone(),
                others_may_edit: *others_may_edit,
                pinned: *pinned,
            }]
        }
        Action::DeleteNote { note: id } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            if n.author != *user && !master {
                return Err(forbidden("only the author or a master deletes a note"));
            }
            vec![EventBody::NoteDeleted { note: *id }]
        }
        Action::CommentNote { note: id, text } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            check_len("comment", text, 1, MAX_COMMENT)?;
            check_room_for_comment(n, text)?;
            vec![EventBody::NoteCommented {
                note: *id,
                text: text.clone(),
            }]
        }
        Action::DeleteComment { note: id, comment } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            let c = n
                .comments
                .iter()
                .find(|c| c.id == *comment)
                .ok_or_else(|| gone("comment", *comment))?;
            if c.author != *user && !master {
                return Err(forbidden("only its author or a master deletes a comment"));
            }
            vec![EventBody::CommentDeleted {
                note: *id,
                comment: *comment,
            }]
        }
        Action::LikeNote { note: id, like } => {
            check_switch(room, f.note, "note")?;
            let n = note(ctx, *id)?;
            if n.likes.contains(user) == *like {
                Vec::new()
            } else {
                vec![EventBody::NoteLiked {
                    note: *id,
                    like: *like,
                }]
            }
        }
        _ => return Err(misrouted()),
    })
}

/// [`apply`] for an entry about a note.
pub(super) fn apply_note(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, ts, author) = (event.seq, event.ts, &event.author);
    match (&event.body, item) {
        (EventBody::NotePosted { note }, _) => Some(Item::Note(Note {
            id: seq,
            author: author.clone(),
            created_at: ts,
            edited_at: None,
            fields: note.clone(),
            comments: Vec::new(),
            likes: Default::default(),
            readers: Default::default(),
        })),
        (
            EventBody::NoteEdited {
                title,
                body,
                others_may_edit,
                pinned,
                ..
            },
            Some(Item::Note(mut n)),
        ) => {
            if let Some(t) = title {
                n.fields.title = t.clone();
            }
            if let Some(b) = body {
                n.fields.body = b.clone();
            }
            if let Some(o) = others_may_edit {
                n.fields.others_may_edit = *o;
            }
            if let Some(p) = pinned {
                n.fields.pinned = *p;
            }
            n.edited_at = Some(ts);
            Some(Item::Note(n))
        }
        (EventBody::NoteCommented { text, .. }, Some(Item::Note(mut n))) => {
            n.comments.push(Comment {
                id: seq,
                author: author.clone(),
                text: text.clone(),
                ts,
            });
            Some(Item::Note(n))
        }
        (EventBody::CommentDeleted { comment, .. }, Some(Item::Note(mut n))) => {
            n.comments.retain(|c| c.id != *comment);
            Some(Item::Note(n))
        }
        (EventBody::NoteLiked { like, .. }, Some(Item::Note(mut n))) => {
            if *like {
                n.likes.insert(author.clone());
            } else {
                n.likes.remove(author);
            }
            Some(Item::Note(n))
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}
