//! Tasks (T1): who may create, change, complete and delete them, what each entry does to the
//! task, and who hears about a change (the assigner and the assignees).

use super::context::*;
use super::limits::*;
use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Action, Completion, Event, EventBody, Item, Task, TaskFields, UserId};
use std::collections::BTreeMap;

pub(super) fn task(ctx: &Context, id: u64) -> ApiResult<&Task> {
    match &ctx.item {
        Some(Item::Task(t)) if t.id == id => Ok(t),
        _ => Err(gone("task", id)),
    }
}

pub(super) fn check_task(room: &RoomRecord, f: &TaskFields) -> ApiResult<TaskFields> {
    check_len("title", &f.title, 1, MAX_TASK_TITLE)?;
    check_len("content", &f.content, 0, MAX_TASK_CONTENT)?;
    check_len("category", &f.category, 0, 100)?;
    let mut f = f.clone();
    f.assignees.sort();
    f.assignees.dedup();
    if f.assignees.is_empty() || f.assignees.len() > MAX_ASSIGNEES {
        return Err(ApiError::invalid(format!(
            "a task has 1 to {MAX_ASSIGNEES} assignees"
        )));
    }
    if let Some(u) = f
        .assignees
        .iter()
        .find(|u| room.members.binary_search(u).is_err())
    {
        return Err(ApiError::invalid(format!(
            "{u} is not a member of this room"
        )));
    }
    Ok(f)
}

/// Decide an action on tasks (T1).
pub(super) fn tasks(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateTask(t) => {
            check_switch(room, f.task, "tasks")?;
            vec![EventBody::TaskCreated {
                task: check_task(room, t)?,
            }]
        }
        Action::UpdateTask { task: id, fields } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            if t.assigner != *user && !t.status.contains_key(user) && !master {
                return Err(forbidden(
                    "only the assigner, an assignee or a master changes a task",
                ));
            }
            vec![EventBody::TaskUpdated {
                task: *id,
                fields: check_task(room, fields)?,
            }]
        }
        Action::CompleteTask { task: id } | Action::ReopenTask { task: id } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            let complete = matches!(action, Action::CompleteTask { .. });
            match t.status.get(user) {
                None => return Err(forbidden("only an assignee completes or reopens a task")),
                Some(done) if *done == complete => Vec::new(),
                Some(_) if complete => vec![EventBody::TaskCompleted { task: *id }],
                Some(_) => vec![EventBody::TaskReopened { task: *id }],
            }
        }
        Action::DeleteTask { task: id } => {
            check_switch(room, f.task, "tasks")?;
            let t = task(ctx, *id)?;
            if t.assigner != *user && !master {
                return Err(forbidden("only the assigner or a master deletes a task"));
            }
            vec![EventBody::TaskDeleted { task: *id }]
        }
        _ => return Err(misrouted()),
    })
}

pub(super) fn task_done(status: &BTreeMap<UserId, bool>, completion: Completion) -> bool {
    match completion {
        Completion::All => !status.is_empty() && status.values().all(|d| *d),
        Completion::Any => status.values().any(|d| *d),
    }
}

/// [`super::apply`] for an entry about a task.
pub(super) fn apply_task(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, author) = (event.seq, &event.author);
    match (&event.body, item) {
        (EventBody::TaskCreated { task }, _) => {
            let status = task.assignees.iter().map(|u| (u.clone(), false)).collect();
            Some(Item::Task(Task {
                id: seq,
                assigner: author.clone(),
                fields: task.clone(),
                status,
                done: false,
            }))
        }
        (EventBody::TaskUpdated { fields, .. }, Some(Item::Task(mut t))) => {
            t.status = fields
                .assignees
                .iter()
                .map(|u| (u.clone(), t.status.get(u).copied().unwrap_or(false)))
                .collect();
            t.fields = fields.clone();
            t.done = task_done(&t.status, t.fields.completion);
            Some(Item::Task(t))
        }
        (
            EventBody::TaskCompleted { .. } | EventBody::TaskReopened { .. },
            Some(Item::Task(mut t)),
        ) => {
            let done = matches!(event.body, EventBody::TaskCompleted { .. });
            if let Some(s) = t.status.get_mut(author) {
                *s = done;
            }
            t.done = task_done(&t.status, t.fields.completion);
            Some(Item::Task(t))
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// T1: the assigner and the assignees of a task hear about every change to it.
pub fn task_audience(entries: &[EventBody], ctx: &Context, actor: &UserId) -> Vec<UserId> {
    let mut who: Vec<UserId> = Vec::new();
    for e in entries {
        match e {
            EventBody::TaskCreated { task } => {
                who.push(actor.clone());
                who.extend(task.assignees.iter().cloned());
            }
            EventBody::TaskUpdated { fields, .. } => who.extend(fields.assignees.iter().cloned()),
            _ => {}
        }
    }
    if let Some(Item::Task(t)) = &ctx.item {
        who.push(t.assigner.clone());
        who.extend(t.status.keys().cloned());
    }
    who.sort();
    who.dedup();
    who
}

/// The task an entry is about (`Some(None)`: the task it creates), if any.
pub fn task_of(body: &EventBody) -> Option<Option<u64>> {
    match body {
        EventBody::TaskCreated { .. } => Some(None),
        EventBody::TaskUpdated { task, .. }
        | EventBody::TaskCompleted { task }
        | EventBody::TaskReopened { task }
        | EventBody::TaskDeleted { task } => Some(Some(*task)),
        _ => None,
    }
}
