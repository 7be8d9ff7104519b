//! Hostile tenants and input, one file per front: bad frames, connections and their limits,
//! uploads and files, and bounded work and answers. Each ends with an error or a documented close
//! code, and a neighbour that got every message.

mod bounds;
mod connections;
mod frames;
mod uploads;

use crate::harness::*;
use crossroom_protocol::client::{Client, WsMessage};
use crossroom_protocol::{close, ClientFrame, Encoding, ErrorCode, ServerFrame, UserId};
use std::time::Duration;
