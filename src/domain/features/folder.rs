//! The shared folder (F1): folders and files, the trash, restoring into what still exists,
//! purging a subtree; what each entry does to its item.

use super::context::*;
use super::limits::*;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Action, Event, EventBody, FileItem, Folder, Item, Trashed};

pub(super) fn check_folder_name(name: &str) -> ApiResult<()> {
    check_len("name", name, 1, MAX_FOLDER_NAME)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err(ApiError::invalid(
            "a name cannot contain '/' or be '.' or '..'",
        ));
    }
    Ok(())
}

/// The parent folder named by an action must exist and not be in the trash.
pub(super) fn check_parent(ctx: &Context, parent: Option<u64>) -> ApiResult<()> {
    match parent {
        None => Ok(()),
        Some(id) => match &ctx.parent {
            Some(Item::Folder(f)) if f.id == id && f.trashed.is_none() => Ok(()),
            _ => Err(gone("folder", id)),
        },
    }
}

/// Decide an action on the folder (F1).
pub(super) fn folder(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By {
        room,
        user,
        master,
        ctx,
        ..
    } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateFolder {
            parent,
            name,
            notify_on_new_file,
        } => {
            check_switch(room, f.folder, "the folder")?;
            check_folder_name(name)?;
            check_parent(ctx, *parent)?;
            vec![EventBody::FolderCreated {
                parent: *parent,
                name: name.clone(),
                notify_on_new_file: *notify_on_new_file,
            }]
        }
        Action::UpdateFolder {
            folder,
            name,
            notify_on_new_file,
        } => {
            check_switch(room, f.folder, "the folder")?;
            match &ctx.item {
                Some(Item::Folder(x)) if x.id == *folder && x.trashed.is_none() => {}
                _ => return Err(gone("folder", *folder)),
            }
            if let Some(n) = name {
                check_folder_name(n)?;
            }
            vec![EventBody::FolderUpdated {
                folder: *folder,
                name: name.clone(),
                notify_on_new_file: *notify_on_new_file,
            }]
        }
        Action::Trash { item } | Action::Restore { item } | Action::Purge { item } => {
            check_switch(room, f.folder, "the folder")?;
            let it = match &ctx.item {
                Some(i @ (Item::Folder(_) | Item::File(_))) if i.id() == *item => i,
                _ => return Err(gone("folder item", *item)),
            };
            match (action, trashed(it)) {
                (Action::Trash { .. }, None) => vec![EventBody::ItemTrashed { item: *item }],
                (Action::Trash { .. }, Some(_)) => {
                    return Err(ApiError::invalid("already in the trash"))
                }
                // Visible again: the trashed folders above it come back first, outermost first.
                (Action::Restore { .. }, Some(_)) => ctx
                    .ancestors
                    .iter()
                    .rev()
                    .filter(|a| trashed(a).is_some())
                    .map(|a| EventBody::ItemRestored { item: a.id() })
                    .chain([EventBody::ItemRestored { item: *item }])
                    .collect(),
                (Action::Purge { .. }, Some(t)) if t.by == *user || master => {
                    vec![EventBody::ItemPurged { item: *item }]
                }
                (Action::Purge { .. }, Some(_)) => {
                    return Err(forbidden(
                        "only whoever trashed it, or a master, deletes it for good",
                    ))
                }
                (Action::Restore { .. } | Action::Purge { .. }, None) => {
                    return Err(ApiError::invalid("not in the trash"))
                }
                _ => return Err(ApiError::internal()),
            }
        }
        _ => return Err(misrouted()),
    })
}

/// [`apply`] for an entry about a folder or a file.
pub(super) fn apply_folder(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, ts, author) = (event.seq, event.ts, &event.author);
    match (&event.body, item) {
        (
            EventBody::FolderCreated {
                parent,
                name,
                notify_on_new_file,
            },
            _,
        ) => Some(Item::Folder(Folder {
            id: seq,
            parent: *parent,
            name: name.clone(),
            notify_on_new_file: *notify_on_new_file,
            created_by: author.clone(),
            trashed: None,
        })),
        (
            EventBody::FolderUpdated {
                name,
                notify_on_new_file,
                ..
            },
            Some(Item::Folder(mut f)),
        ) => {
            if let Some(n) = name {
                f.name = n.clone();
            }
            if let Some(x) = notify_on_new_file {
                f.notify_on_new_file = *x;
            }
            Some(Item::Folder(f))
        }
        (
            EventBody::FileAdded {
                folder,
                file,
                name,
                size,
                content_type,
                sha256,
            },
            _,
        ) => Some(Item::File(FileItem {
            id: seq,
            file: file.clone(),
            folder: *folder,
            name: name.clone(),
            size: *size,
            content_type: content_type.clone(),
            sha256: sha256.clone(),
            uploaded_by: author.clone(),
            trashed: None,
        })),
        (EventBody::ItemTrashed { .. } | EventBody::ItemRestored { .. }, Some(mut it)) => {
            let t = matches!(event.body, EventBody::ItemTrashed { .. }).then(|| Trashed {
                by: author.clone(),
                ts,
            });
            match &mut it {
                Item::Folder(f) => f.trashed = t,
                Item::File(f) => f.trashed = t,
                _ => {}
            }
            Some(it)
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// The folder a folder item is in (`None`: the root, or not a folder item).
pub(super) fn folder_of(item: &Item) -> Option<u64> {
    match item {
        Item::Folder(f) => f.parent,
        Item::File(f) => f.folder,
        _ => None,
    }
}

/// The folders above item `id`, its own folder first, up to the root.
pub fn ancestors(items: &[Item], id: u64) -> Vec<Item> {
    let by_id: std::collections::HashMap<u64, &Item> = items.iter().map(|i| (i.id(), i)).collect();
    let mut out: Vec<Item> = Vec::new();
    let mut next = by_id.get(&id).and_then(|i| folder_of(i));
    while let Some(p) = next {
        // A folder's parent was created before it, so the chain ends; the guard is for a
        // damaged projection.
        match by_id.get(&p) {
            Some(f) if out.len() < by_id.len() => {
                out.push((*f).clone());
                next = folder_of(f);
            }
            _ => break,
        }
    }
    out
}

/// Where trashed `item` comes back ([`Restore`]).
pub fn restore_of(items: &[Item], item: &Item) -> crossroom_protocol::Restore {
    crossroom_protocol::Restore {
        item: item.id(),
        into: folder_of(item),
        with: ancestors(items, item.id())
            .iter()
            .rev()
            .filter(|a| trashed(a).is_some())
            .map(Item::id)
            .collect(),
    }
}

/// Ids of `root` and every folder item below it (for a purge).
pub fn subtree(items: &[Item], root: u64) -> Vec<u64> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for it in items {
            let under = match it {
                Item::Folder(f) => f.parent == Some(parent),
                Item::File(f) => f.folder == Some(parent),
                _ => false,
            };
            if under && !out.contains(&it.id()) {
                out.push(it.id());
            }
        }
        i += 1;
    }
    out
}
