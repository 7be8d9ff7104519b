CREATE TABLE IF NOT EXISTS companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    self_registered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    company TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    active INTEGER NOT NULL,
    external_granted INTEGER NOT NULL,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_company ON users(company);
CREATE TABLE IF NOT EXISTS contacts (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner_company TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    features TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    head INTEGER NOT NULL,
    -- The seq of the last entry that was not a message (appends are conditional on it).
    version INTEGER NOT NULL DEFAULT 0,
    converted_from TEXT,
    -- A deleted group keeps its row (ids are never reused) and nothing else (G16).
    deleted INTEGER NOT NULL DEFAULT 0,
    invite_token TEXT UNIQUE,
    invite_expires INTEGER,
    invite_barred TEXT NOT NULL DEFAULT '[]',
    image TEXT
);
CREATE INDEX IF NOT EXISTS rooms_owner ON rooms(owner_company, kind);
CREATE TABLE IF NOT EXISTS room_members (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    is_member INTEGER NOT NULL,
    is_master INTEGER NOT NULL,
    last_read INTEGER NOT NULL DEFAULT 0,
    -- The seq of the entry that (last) made them a member: they see the log from there.
    joined_seq INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_members_user ON room_members(user);
-- Each room's head (the seq of its last entry), apart from the wide `rooms` row: a post
-- rewrites it, and a narrow table keeps the pages a commit of posts in many rooms dirties few
-- (schema 6; `rooms.head` is no longer read or written).
-- `run`: the run that last wrote the room (schema 7): an unclean stop moves the rooms its run
-- wrote to a new epoch.
CREATE TABLE IF NOT EXISTS room_heads (
    room TEXT PRIMARY KEY,
    head INTEGER NOT NULL,
    run INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- `run`: the id of the run that has the file open, 0 once it closed cleanly (schema 7).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    client_msg_id TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency
    ON events(room, author, client_msg_id) WHERE client_msg_id IS NOT NULL;
-- Stored files (G17): their bytes count against the owner company's shared storage.
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    company TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- M1: 1 for a message attachment; `claim` is the client id of the post that took it (or
    -- the removal's mark), `settled` 1 once the sweep saw that post committed.
    attachment INTEGER NOT NULL DEFAULT 0,
    claim TEXT,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_room ON files(room);
CREATE INDEX IF NOT EXISTS files_unsettled ON files(created_at)
    WHERE attachment = 1 AND settled = 0;
CREATE INDEX IF NOT EXISTS files_company ON files(company);
-- Current state of feature items (notes, calendar events, tasks, folders, files): a projection
-- of the log kept by room::features::apply.
CREATE TABLE IF NOT EXISTS items (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
-- Bytes in use (and reserved by uploads in progress) per company.
CREATE TABLE IF NOT EXISTS storage (
    company TEXT PRIMARY KEY,
    used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    room TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_companies (
    company TEXT NOT NULL,
    audit INTEGER NOT NULL,
    PRIMARY KEY (company, audit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_companies_by_record ON audit_companies (audit);
-- Deleted user and company ids (A2): never created again. Schema 8.
CREATE TABLE IF NOT EXISTS retired_ids (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    retired_at INTEGER NOT NULL
) WITHOUT ROWID;
