//! Integration tests: the real server binary on port 0, real WebSocket and HTTP clients.
//! Each test names the rule of docs/rules.md it proves.

mod admin;
mod admin_races;
mod architecture;
mod browser;
mod cluster;
mod cluster_failover;
mod cluster_files;
mod cluster_presence;
mod delivery;
mod deploy;
mod durability;
mod features;
mod first_hour;
mod groups;
mod harness;
mod hostile;
mod identities;
mod js_client;
mod lifecycle;
mod model;
mod ops;
mod room_replies;
mod rooms;
mod search;
mod store_checks;
mod store_suite;
