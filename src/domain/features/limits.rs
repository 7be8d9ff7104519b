//! What one feature item may hold, in characters and counts, and the span of calendar time.

/// N1 limits, in characters.
pub const MAX_NOTE_TITLE: usize = 200;
pub const MAX_NOTE_BODY: usize = 100_000;

/// T1 limits, in characters.
pub const MAX_TASK_TITLE: usize = 200;
pub const MAX_TASK_CONTENT: usize = 5_000;
pub const MAX_ASSIGNEES: usize = 100;

/// Comment, calendar text and folder name limits, in characters.
pub const MAX_COMMENT: usize = 10_000;
/// The most comments one note holds, and the most bytes (UTF-8) of their texts together: a note
/// with all of them and the longest body (≤ 400 KB) stays far inside a session's outbound budget
/// (4 MiB), so any member's `query notes` is answered — a note too large for it once closed the
/// session that asked.
pub const MAX_COMMENTS_PER_NOTE: usize = 1_000;
pub const MAX_NOTE_COMMENT_BYTES: usize = 1 << 20;
pub const MAX_CALENDAR_TEXT: usize = 10_000;
pub const MAX_FOLDER_NAME: usize = 255;

/// Most occurrences a calendar query returns.
pub const MAX_OCCURRENCES: usize = 2_000;

/// Most feature items (notes, calendar events, tasks, folders and files, trashed ones until
/// purged) in one room.
pub const MAX_ITEMS_PER_ROOM: u64 = 2_000;

/// Calendar times (event starts and ends, query ranges) lie in the years 1 to 9999 (UTC):
/// 0001-01-01T00:00Z ..
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;

/// .. 10000-01-01T00:00Z (exclusive).
pub const MAX_TIME_MS: i64 = 253_402_300_800_000;

/// Whether `t` is a calendar time ([`MIN_TIME_MS`] to [`MAX_TIME_MS`]).
pub fn in_calendar(t: i64) -> bool {
    (MIN_TIME_MS..MAX_TIME_MS).contains(&t)
}
