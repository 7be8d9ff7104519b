//! crossroom: a real-time messaging server for external groups — group message rooms shared by
//! people of different companies, whose admins can cut access off in real time.
//!
//! The README's architecture table maps each concept to its module.

pub mod backup;
pub mod blob;
pub mod bus;
pub mod clock;
pub mod config;
pub mod data_dir;

pub mod demo;
pub mod directory;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod presence;
pub mod random;
pub mod room;
pub mod server;
pub mod service;
pub mod session;
pub mod sessions;
pub mod shutdown;
pub mod slots;
pub mod store;
pub mod web;
