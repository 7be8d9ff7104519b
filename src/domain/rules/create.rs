//! Creating rooms: who may create an external group or a general room, with whom, and who is
//! left out (G1–G3, G5, G6, G20, R1).

use super::checks::*;
use crate::domain::directory::{CompanySettings, GroupCreation, UserKind};
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{CompanyId, ErrorCode, LeftOut, UserId};
use std::collections::{BTreeSet, HashMap, HashSet};

/// What a create request turns into once the rules have run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Sorted, unique.
    pub members: Vec<UserId>,
    /// Sorted, unique.
    pub masters: Vec<UserId>,
    pub left_out: Vec<LeftOut>,
}

/// The request to create an external group, with everything the rules need looked up.
pub struct GroupRequest<'a> {
    pub creator: &'a Person,
    pub group_creation: GroupCreation,
    pub name: &'a str,
    pub description: &'a str,
    pub members: &'a [UserId],
    pub masters: &'a [UserId],
    pub add_self_as_member: bool,
    /// Every named user that exists.
    pub people: &'a HashMap<UserId, Person>,
    /// The creator's contacts (G7).
    pub contacts: &'a HashSet<UserId>,
    pub max_participants: usize,
}

/// Can someone of `adder_company` bring `person` into an external group? G5 (permission),
/// G6 (no LINE users), G7 (contacts first for other companies' users, when `contacts` is given;
/// an admin adding through the admin API needs none).
pub(super) fn check_group_candidate(
    adder_company: &CompanyId,
    person: &Person,
    contacts: Option<&HashSet<UserId>>,
) -> ApiResult<()> {
    if person.user.kind == UserKind::Line {
        return Err(ApiError::new(
            ErrorCode::LineUserNotAllowed,
            format!(
                "{} is a LINE user; LINE users cannot join external groups",
                person.user.id
            ),
        ));
    }
    if let Some(contacts) = contacts {
        if person.user.company != *adder_company && !contacts.contains(&person.user.id) {
            return Err(ApiError::new(
                ErrorCode::NotInContacts,
                format!("{} is not in your contacts; add them first", person.user.id),
            ));
        }
    }
    if !person.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            format!("{} does not hold external permission", person.user.id),
        ));
    }
    Ok(())
}

/// G5–G7 for users to add to an external group: those who may join, and those left out for
/// lacking external permission (any other refusal is an error). Users for whom `skip` holds
/// (already in, or the adder) are passed over.
pub(super) fn admit(
    adder_company: &CompanyId,
    ids: &[UserId],
    skip: impl Fn(&UserId) -> bool,
    people: &HashMap<UserId, Person>,
    contacts: Option<&HashSet<UserId>>,
) -> ApiResult<(BTreeSet<UserId>, Vec<LeftOut>)> {
    let mut admitted = BTreeSet::new();
    let mut left_out: Vec<LeftOut> = Vec::new();
    for id in ids {
        if skip(id) || admitted.contains(id) || left_out.iter().any(|l| l.user == *id) {
            continue;
        }
        let p = people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
        match check_group_candidate(adder_company, p, contacts) {
            Ok(()) => {
                admitted.insert(id.clone());
            }
            // G5: left out automatically, and told.
            Err(e) if e.code == ErrorCode::NoExternalPermission => left_out.push(LeftOut {
                user: id.clone(),
                reason: ErrorCode::NoExternalPermission,
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((admitted, left_out))
}

/// G1 (create from contacts, "add the master as a member"), G4, G5, G6, G7.
pub fn plan_group(req: &GroupRequest<'_>) -> ApiResult<Plan> {
    let creator = &req.creator.user;
    if req.group_creation == GroupCreation::AdminsOnly {
        return Err(ApiError::new(
            ErrorCode::GroupCreationNotAllowed,
            "your company lets only admins create groups",
        ));
    }
    if !req.creator.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            "you need external permission to create an external group",
        ));
    }
    let name = check_name(req.name)?;
    check_description(req.description)?;
    if req.members.len() + req.masters.len() > req.max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {} participants per request", req.max_participants),
        ));
    }
    let lookup = |id: &UserId| -> ApiResult<&Person> {
        req.people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))
    };

    let mut masters = BTreeSet::from([creator.id.clone()]);
    for id in req.masters {
        if *id == creator.id {
            continue;
        }
        // G5: a master must hold external permission — an error, never a silent drop.
        check_group_candidate(&creator.company, lookup(id)?, Some(req.contacts))?;
        masters.insert(id.clone());
    }

    let mut members = BTreeSet::new();
    if req.add_self_as_member {
        members.insert(creator.id.clone());
    }
    let (admitted, left_out) = admit(
        &creator.company,
        req.members,
        |id| *id == creator.id,
        req.people,
        Some(req.contacts),
    )?;
    members.extend(admitted);
    Ok(Plan {
        name,
        description: req.description.to_owned(),
        members: members.into_iter().collect(),
        masters: masters.into_iter().collect(),
        left_out,
    })
}

/// G3: a company admin creates an external group owned by their company, choosing its masters
/// (at least one, each holding external permission) and members (those without permission left
/// out). An admin needs no contacts (G7 binds users).
pub fn plan_admin_group(
    owner: &CompanyId,
    name: &str,
    description: &str,
    masters: &[UserId],
    members: &[UserId],
    people: &HashMap<UserId, Person>,
    max_participants: usize,
) -> ApiResult<Plan> {
    let name = check_name(name)?;
    check_description(description)?;
    if masters.len() + members.len() > max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max_participants} participants per request"),
        ));
    }
    if masters.is_empty() {
        return Err(ApiError::invalid("a group needs at least one master (G10)"));
    }
    let lookup = |id: &UserId| -> ApiResult<&Person> {
        people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))
    };
    let mut master_set = BTreeSet::new();
    for id in masters {
        check_group_candidate(owner, lookup(id)?, None)?;
        master_set.insert(id.clone());
    }
    let (member_set, left_out) = admit(owner, members, |_| false, people, None)?;
    Ok(Plan {
        name,
        description: description.to_owned(),
        members: member_set.into_iter().collect(),
        masters: master_set.into_iter().collect(),
        left_out,
    })
}

/// G20: a company cannot own more groups than its `max_groups`.
pub fn check_group_count(owned: u64, settings: &CompanySettings) -> ApiResult<()> {
    if owned >= settings.max_groups {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            group_limit_message(settings.max_groups),
        ));
    }
    Ok(())
}

/// What a creation past G20's limit is told.
pub fn group_limit_message(max: u64) -> String {
    format!("the company owns its maximum of {max} groups")
}

/// R1: a general room of the creator and `members`. Colleagues always; other companies' WORKS
/// users when both sides hold external permission; LINE users always. Those who do not qualify
/// are left out and told.
pub fn plan_room(
    creator: &Person,
    name: &str,
    members: &[UserId],
    people: &HashMap<UserId, Person>,
    max_participants: usize,
) -> ApiResult<Plan> {
    if members.len() > max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max_participants} participants per request"),
        ));
    }
    let n = name.trim().chars().count();
    if n > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    let mut chosen = BTreeSet::from([creator.user.id.clone()]);
    let mut left_out = Vec::new();
    for id in members {
        if chosen.contains(id) || left_out.iter().any(|l: &LeftOut| l.user == *id) {
            continue;
        }
        let Some(p) = people.get(id) else {
            return Err(ApiError::not_found(format!("user {id}")));
        };
        let external = p.user.company != creator.user.company;
        let allowed = p.user.active
            && (!external || p.user.kind == UserKind::Line || (creator.permitted && p.permitted));
        if allowed {
            chosen.insert(id.clone());
        } else {
            left_out.push(LeftOut {
                user: id.clone(),
                reason: ErrorCode::NoExternalPermission,
            });
        }
    }
    if chosen.len() < 2 {
        return Err(ApiError::invalid(
            "a room needs at least one other participant who may join",
        ));
    }
    Ok(Plan {
        name: name.trim().to_owned(),
        description: String::new(),
        members: chosen.into_iter().collect(),
        masters: Vec::new(),
        left_out,
    })
}
