//! The directory's records — companies, users, their admin settings — and the pure rules over
//! them (who holds external permission, what a valid id is). No I/O.

use crossroom_protocol::close::CloseReason;
use crossroom_protocol::{CompanyId, UserId, UserInfo};
use serde::{Deserialize, Serialize};

/// A company (tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: CompanyId,
    pub name: String,
    pub settings: CompanySettings,
    /// Created by someone who signed up through an invitation link, not by the operator: its
    /// domain and name are what that person typed, unverified (shown wherever it is listed).
    #[serde(default)]
    pub self_registered: bool,
}

/// Who may talk with other companies (docs/rules.md, "Company settings").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalPermission {
    /// Every member (subject to `external_chat`).
    AllMembers,
    /// Only members whose `external_permission` flag is granted.
    PerMember,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupCreation {
    AdminsOnly,
    AlsoMembers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadReceipts {
    Off,
    SenderOnly,
    Everyone,
}

/// A company's admin settings, with the defaults of docs/rules.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompanySettings {
    pub external_chat: bool,
    pub external_permission: ExternalPermission,
    pub group_creation: GroupCreation,
    pub masters_can_change_settings: bool,
    /// Seconds: 3600 (1 h) or 86400 (24 h).
    pub recall_window_secs: u64,
    pub read_receipts: ReadReceipts,
    pub shared_storage_quota: u64,
    pub max_groups: u64,
}

impl Default for CompanySettings {
    fn default() -> Self {
        CompanySettings {
            external_chat: false,
            external_permission: ExternalPermission::AllMembers,
            group_creation: GroupCreation::AlsoMembers,
            masters_can_change_settings: true,
            recall_window_secs: 3600,
            read_receipts: ReadReceipts::SenderOnly,
            shared_storage_quota: 10 * 1024 * 1024 * 1024,
            max_groups: 100_000,
        }
    }
}

/// What the operator lets a company admin set at most ([`CompanySettings::within_ceilings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceilings {
    pub shared_storage_quota: u64,
    pub max_groups: u64,
}

impl CompanySettings {
    /// An admin's change from `before`: no value raised past the operator's ceilings (a value
    /// the operator set higher may stay, or be lowered).
    pub fn within_ceilings(&self, before: &CompanySettings, c: &Ceilings) -> Result<(), String> {
        if self.shared_storage_quota > c.shared_storage_quota
            && self.shared_storage_quota > before.shared_storage_quota
        {
            return Err(format!(
                "shared_storage_quota may be at most {} (the operator's ceiling)",
                c.shared_storage_quota
            ));
        }
        if self.max_groups > c.max_groups && self.max_groups > before.max_groups {
            return Err(format!(
                "max_groups may be at most {} (the operator's ceiling)",
                c.max_groups
            ));
        }
        Ok(())
    }

    /// These settings with no value past `c` (a new self-registered company's).
    pub fn capped(mut self, c: &Ceilings) -> CompanySettings {
        self.shared_storage_quota = self.shared_storage_quota.min(c.shared_storage_quota);
        self.max_groups = self.max_groups.min(c.max_groups);
        self
    }

    /// Check the values an admin may set.
    pub fn validate(&self) -> Result<(), String> {
        if self.recall_window_secs != 3600 && self.recall_window_secs != 86_400 {
            return Err("recall_window_secs must be 3600 (1 h) or 86400 (24 h)".into());
        }
        if self.max_groups == 0 {
            return Err("max_groups must be at least 1".into());
        }
        Ok(())
    }
}

/// A company member (`works`) or a consumer LINE user (`line`, general rooms only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Works,
    Line,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Works => "works",
            UserKind::Line => "line",
        }
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `login@company`.
    pub id: UserId,
    pub company: CompanyId,
    pub name: String,
    pub email: String,
    pub kind: UserKind,
    pub active: bool,
    /// The per-member grant, used when the company's `external_permission` is `per_member`.
    #[serde(rename = "external_permission")]
    pub external_granted: bool,
    /// Tokens issued before this time (seconds since the Unix epoch) are refused: an admin
    /// revoked them.
    #[serde(default)]
    pub tokens_valid_after: i64,
}

impl User {
    pub fn info(&self) -> UserInfo {
        UserInfo {
            id: self.id.clone(),
            company: self.company.clone(),
            name: self.name.clone(),
            kind: self.kind.as_str().to_owned(),
            company_self_registered: false,
        }
    }
}

/// A change to some of a user's fields, applied to the user as stored at the instant it is
/// written ([`crate::store::DirectoryStore::change_user`]): two admins changing different fields at once
/// both see their change kept, and a revocation never moves back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserChange {
    pub name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    pub external_granted: Option<bool>,
    /// Refuse every token issued at or before this second (revocation).
    pub revoke_tokens_at: Option<i64>,
}

impl UserChange {
    /// `user` with this change.
    pub fn apply(&self, user: &User) -> User {
        let mut u = user.clone();
        if let Some(n) = &self.name {
            u.name = n.clone();
        }
        if let Some(e) = &self.email {
            u.email = e.clone();
        }
        if let Some(a) = self.active {
            u.active = a;
        }
        if let Some(g) = self.external_granted {
            u.external_granted = g;
        }
        if let Some(t) = self.revoke_tokens_at {
            u.tokens_valid_after = u.tokens_valid_after.max(t);
        }
        u
    }
}

/// The settings an admin changes, as JSON fields: merged into the settings as stored at the
/// instant they are written ([`crate::store::DirectoryStore::change_settings`]).
pub type SettingsPatch = serde_json::Map<String, serde_json::Value>;

/// `current` with `patch` merged in, checked.
pub fn patch_settings(
    current: &CompanySettings,
    patch: &SettingsPatch,
) -> Result<CompanySettings, String> {
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    if let serde_json::Value::Object(m) = &mut merged {
        m.extend(patch.clone());
    }
    let settings: CompanySettings =
        serde_json::from_value(merged).map_err(|e| format!("settings: {e}"))?;
    settings.validate()?;
    Ok(settings)
}

/// Why a session opened by a token issued at `issued_at` may no longer stay open, with the
/// user as the directory has them now (`None`: gone): disabled, or the token revoked.
pub fn session_refusal(user: Option<&User>, issued_at: i64) -> Option<CloseReason> {
    match user {
        None => Some(CloseReason::Unauthorized),
        Some(u) if !u.active => Some(CloseReason::UserDisabled),
        Some(u) if issued_at <= u.tokens_valid_after => Some(CloseReason::TokensRevoked),
        Some(_) => None,
    }
}

/// docs/rules.md: a user **holds external permission** when their company has `external_chat` on and the
/// user is granted by `external_permission`, the user is `works`, and the user is active.
pub fn holds_external_permission(user: &User, company: &CompanySettings) -> bool {
    user.active
        && user.kind == UserKind::Works
        && company.external_chat
        && match company.external_permission {
            ExternalPermission::AllMembers => true,
            ExternalPermission::PerMember => user.external_granted,
        }
}

/// Validate a login (the part before `@`): 1–64 of `a-z 0-9 . _ -`.
pub fn validate_login(login: &str) -> Result<(), String> {
    if crossroom_protocol::ids::is_login(login) {
        Ok(())
    } else {
        Err("login must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'".into())
    }
}

/// Validate a company id: a lowercase domain name such as `acme.example`.
pub fn validate_company_id(id: &str) -> Result<(), String> {
    if crossroom_protocol::ids::is_company_id(id) {
        Ok(())
    } else {
        Err("company id must be a lowercase domain name such as acme.example".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(kind: UserKind, active: bool, granted: bool) -> User {
        User {
            id: UserId::from("u@a.example"),
            company: CompanyId::from("a.example"),
            name: "U".into(),
            email: "u@a.example".into(),
            kind,
            active,
            external_granted: granted,
            tokens_valid_after: 0,
        }
    }

    #[test]
    fn external_permission_needs_every_condition() {
        let on = CompanySettings {
            external_chat: true,
            ..Default::default()
        };
        let per_member = CompanySettings {
            external_chat: true,
            external_permission: ExternalPermission::PerMember,
            ..Default::default()
        };
        let off = CompanySettings::default();
        assert!(holds_external_permission(
            &user(UserKind::Works, true, false),
            &on
        ));
        assert!(!holds_external_permission(
            &user(UserKind::Works, true, true),
            &off
        ));
        assert!(!holds_external_permission(
            &user(UserKind::Line, true, true),
            &on
        ));
        assert!(!holds_external_permission(
            &user(UserKind::Works, false, true),
            &on
        ));
        assert!(!holds_external_permission(
            &user(UserKind::Works, true, false),
            &per_member
        ));
        assert!(holds_external_permission(
            &user(UserKind::Works, true, true),
            &per_member
        ));
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = CompanySettings::default();
        assert!(!s.external_chat);
        assert_eq!(s.external_permission, ExternalPermission::AllMembers);
        assert_eq!(s.group_creation, GroupCreation::AlsoMembers);
        assert!(s.masters_can_change_settings);
        assert_eq!(s.recall_window_secs, 3600);
        assert_eq!(s.read_receipts, ReadReceipts::SenderOnly);
        assert_eq!(s.shared_storage_quota, 10 << 30);
        assert_eq!(s.max_groups, 100_000);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn user_changes_keep_other_fields_and_never_undo_a_revocation() {
        let mut u = user(UserKind::Works, true, false);
        u.tokens_valid_after = 100;
        let name = UserChange {
            name: Some("New".into()),
            ..Default::default()
        };
        let off = UserChange {
            active: Some(false),
            revoke_tokens_at: Some(50),
            ..Default::default()
        };
        let both = off.apply(&name.apply(&u));
        assert_eq!((both.name.as_str(), both.active), ("New", false));
        assert_eq!(
            both.tokens_valid_after, 100,
            "an older revocation does not move it back"
        );
        assert_eq!(name.apply(&off.apply(&u)), both, "in either order");
    }

    #[test]
    fn settings_patches_merge_and_are_checked() {
        let mut p = SettingsPatch::new();
        p.insert("external_chat".into(), serde_json::json!(true));
        let s = patch_settings(&CompanySettings::default(), &p).expect("valid");
        assert!(s.external_chat);
        assert_eq!(s.max_groups, CompanySettings::default().max_groups);
        p.insert("recall_window_secs".into(), serde_json::json!(5));
        assert!(patch_settings(&CompanySettings::default(), &p).is_err());
        let mut bad = SettingsPatch::new();
        bad.insert("no_such_field".into(), serde_json::json!(1));
        assert!(patch_settings(&CompanySettings::default(), &bad).is_err());
    }

    #[test]
    fn ids_are_validated() {
        assert!(validate_company_id("acme.example").is_ok());
        assert!(validate_company_id("acme").is_err());
        assert!(validate_company_id("Acme.example").is_err());
        assert!(validate_company_id("-a.example").is_err());
        assert!(validate_login("alice").is_ok());
        assert!(validate_login("").is_err());
        assert!(validate_login("a@b").is_err());
    }
}
