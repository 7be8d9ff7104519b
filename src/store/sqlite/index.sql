-- The search index's own file (crossroom.search.db, M6): derived from the database and rebuilt
-- from it (store/sqlite/index.rs). Contentless FTS5 tables: the text is the log's.
CREATE VIRTUAL TABLE IF NOT EXISTS message_index
    USING fts5(text, scope, content = '', contentless_delete = 1,
               tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS message_rows (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    author TEXT NOT NULL,
    files INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS message_rows_entry ON message_rows(room, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS item_index
    USING fts5(text, scope, content = '', contentless_delete = 1,
               tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS item_rows (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    item INTEGER NOT NULL,
    kind TEXT NOT NULL,
    digest INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS item_rows_item ON item_rows(room, item);
-- `clean`: 1 when the last run closed the file after applying all it was given.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
