//! Which audit records an ops stream wants: those involving any of its companies (none listed:
//! all) whose action is one of its kinds (none listed: all) — for the live records and the
//! backlog alike.

use crossroom_protocol::ops::AuditRecord;
use crossroom_protocol::CompanyId;

/// Which audit records a stream wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub companies: Vec<CompanyId>,
    pub kinds: Vec<String>,
}

impl Filter {
    pub fn matches(&self, a: &AuditRecord) -> bool {
        self.takes_company(a) && self.takes_kind(a)
    }

    pub fn takes_company(&self, a: &AuditRecord) -> bool {
        self.companies.is_empty() || a.companies.iter().any(|c| self.companies.contains(c))
    }

    pub fn takes_kind(&self, a: &AuditRecord) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&a.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::{RoomId, UserId};

    fn record(action: &str, companies: &[&str]) -> AuditRecord {
        AuditRecord {
            id: None,
            names: Default::default(),
            ts: 0,
            room: RoomId("r_x".into()),
            actor: UserId("a@acme.example".into()),
            action: action.into(),
            detail: serde_json::Value::Null,
            companies: companies.iter().map(|c| CompanyId((*c).into())).collect(),
        }
    }

    #[test]
    fn an_empty_filter_takes_everything() {
        assert!(Filter::default().matches(&record("created", &["acme.example"])));
    }

    #[test]
    fn filters_by_company_and_kind() {
        let f = Filter {
            companies: vec![CompanyId("globex.example".into())],
            kinds: vec!["member_removed".into()],
        };
        assert!(f.matches(&record(
            "member_removed",
            &["acme.example", "globex.example"]
        )));
        assert!(!f.matches(&record("member_removed", &["acme.example"])));
        assert!(!f.matches(&record("created", &["globex.example"])));
    }
}
