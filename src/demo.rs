//! `crossroom serve --demo`: seed two companies with users, contacts and an external group, and
//! print tokens and how to connect, so the README's first command shows the product working.
//!
//! Seeding is idempotent: a second start finds the companies and only mints fresh tokens.

use crate::directory::keys::{hash_key, new_admin_key};
use crate::directory::{now_secs, Company, CompanySettings, User, UserKind};
use crate::server::Started;
use crate::service::create::{create_group, GroupSpec};
use crossroom_protocol::{CompanyId, Features, UserId};

const COMPANIES: [(&str, &str); 2] = [("acme.example", "Acme Corp"), ("globex.example", "Globex")];
/// (login, company, name, kind)
const USERS: [(&str, &str, &str, UserKind); 5] = [
    ("alice", "acme.example", "Alice Anders", UserKind::Works),
    ("bob", "acme.example", "Bob Berg", UserKind::Works),
    ("carol", "globex.example", "Carol Chen", UserKind::Works),
    ("dave", "globex.example", "Dave Diaz", UserKind::Works),
    ("erin", "globex.example", "Erin (LINE)", UserKind::Line),
];
/// (owner, contact), both ways where people know each other.
/// The demo's groups, all created by alice: name, description, members besides her, whether
/// she is a member, whether the group shares its history with members added later.
const GROUPS: [(&str, &str, &[&str], bool, bool); 3] = [
    (
        "Launch plan",
        "Acme × Globex launch",
        &[
            "bob@acme.example",
            "carol@globex.example",
            "dave@globex.example",
        ],
        true,
        false,
    ),
    (
        "Partner onboarding",
        "shares its history with members added later",
        &["carol@globex.example"],
        true,
        true,
    ),
    (
        "Vendor desk",
        "alice manages it without being a member",
        &["bob@acme.example", "dave@globex.example"],
        false,
        false,
    ),
];

const CONTACTS: [(&str, &str); 6] = [
    ("alice@acme.example", "carol@globex.example"),
    ("alice@acme.example", "dave@globex.example"),
    ("bob@acme.example", "carol@globex.example"),
    ("carol@globex.example", "alice@acme.example"),
    ("carol@globex.example", "bob@acme.example"),
    ("dave@globex.example", "alice@acme.example"),
];

pub async fn seed_and_print(started: &Started) {
    if let Err(e) = seed(started).await {
        eprintln!("demo: seeding failed: {e}");
    }
}

async fn seed(started: &Started) -> Result<(), crate::error::ApiError> {
    let hub = &started.hub;
    let store = &hub.store;
    let mut keys = Vec::new();
    let fresh = store
        .company(&CompanyId::from(COMPANIES[0].0))
        .await?
        .is_none();
    if fresh {
        for (id, name) in COMPANIES {
            let key = new_admin_key();
            let company = Company {
                id: id.into(),
                name: name.into(),
                settings: CompanySettings {
                    external_chat: true,
                    ..Default::default()
                },
                self_registered: false,
            };
            store.create_company(&company, &hash_key(&key)).await?;
            keys.push((id, key));
        }
        for (login, company, name, kind) in USERS {
            store
                .create_user(&User {
                    id: UserId(format!("{login}@{company}")),
                    company: company.into(),
                    name: name.into(),
                    email: format!("{login}@{company}"),
                    kind,
                    active: true,
                    external_granted: true,
                    tokens_valid_after: 0,
                })
                .await?;
        }
        for (owner, contact) in CONTACTS {
            store.add_contact(&owner.into(), &contact.into()).await?;
        }
        if let Some(alice) = store.user(&"alice@acme.example".into()).await? {
            for (name, description, members, add_self_as_member, share_history) in GROUPS {
                let spec = GroupSpec {
                    name: name.into(),
                    description: description.into(),
                    members: members.iter().map(|m| UserId::from(*m)).collect(),
                    masters: vec![],
                    add_self_as_member,
                    features: Features {
                        share_history,
                        ..Features::default()
                    },
                };
                let (room, _) = create_group(hub, &alice, spec).await?;
                println!("Group \"{name}\" ({description}) is room {}", room.id);
            }
        }
    }

    let http = format!("http://{}", started.addr);
    let ws = format!("ws://{}/v1/ws", started.addr);
    let now = now_secs();
    println!();
    println!("=== crossroom demo ===");
    if fresh {
        println!("Seeded companies acme.example and globex.example, five users, contacts, and the");
        println!("external groups \"Launch plan\" (alice, bob, carol, dave), \"Partner onboarding\" (shared");
        println!("history) and \"Vendor desk\" (alice manages it, not a member). Admin API keys (shown once):");
        for (id, key) in &keys {
            println!("  {id:<16} {key}");
        }
    } else {
        println!("Demo data already present (admin keys were printed on the first start).");
    }
    println!(
        "Operator key: in {} unless set by CROSSROOM_OPERATOR_KEY",
        started.data_dir.join("operator.key").display()
    );
    println!("User tokens (valid 24 h):");
    let mut pages = Vec::new();
    for (login, company, _, kind) in USERS {
        let id = UserId(format!("{login}@{company}"));
        let token = hub.tokens.sign(&id, &company.into(), now, 24 * 3600);
        println!("  {:<22} {:<5} {token}", id.as_str(), kind.as_str());
        pages.push((id, token));
    }
    println!();
    println!("Open the chat page in a browser, signed in as (one tab each, e.g. alice and carol):");
    for (id, token) in &pages {
        println!("  {:<22} {http}/#token={token}", id.as_str());
    }
    println!("Ops dashboard: {http}/dashboard#key={}", hub.operator_key);
    println!();
    println!("Try it (JSON frames; any WebSocket client works, e.g. websocat):");
    println!(
        "  websocat --protocol crossroom.v1.json -H 'Authorization: Bearer <alice token>' {ws}"
    );
    println!("  then send:  {{\"type\":\"list_rooms\",\"id\":1}}");
    println!("              {{\"type\":\"subscribe\",\"id\":2,\"room\":\"<room id>\"}}");
    println!("              {{\"type\":\"post\",\"id\":3,\"room\":\"<room id>\",\"client_msg_id\":\"m1\",\"text\":\"hello\"}}");
    println!("Health: {http}/healthz   Metrics: {http}/metrics   Protocol: protocol/PROTOCOL.md");
    println!();
    Ok(())
}
