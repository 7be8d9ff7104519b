//! Message search (M6), the pure part: the one analyzer that indexing and querying share, the
//! query language, and the snippet with its matches marked.
//!
//! **The analyzer.** Text is lowercased and cut into runs of letters and digits. A run of
//! Chinese, Japanese or Korean characters — written without spaces — becomes its overlapping
//! character pairs ("회의록" → "회의", "의록"; a lone character stays itself), as Lucene's CJK
//! analyzer does, so that any two or more consecutive characters are found; any other run is one
//! word. A store indexes these tokens; a query is analyzed the same way, and the words of one
//! query term must stand together, in order.
//!
//! **The query.** Words separated by spaces must all match. `"a phrase"` matches its words
//! together; `-word` (or `-"a phrase"`) excludes; `prefix*` matches words that start so;
//! `from:<user id>`, `in:<room id>`, `before:`/`after:`/`on:<YYYY-MM-DD>` (in the asker's time zone,
//! UTC by default) and `has:file` narrow the search.

use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{Item, RoomId, SnippetPart, UserId};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most terms (words, phrases, exclusions) in one query.
pub const MAX_TERMS: usize = 16;
/// About how many characters of the message a snippet shows.
const SNIPPET_CHARS: usize = 160;

/// One token of analyzed text, with where it stands in the text (bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Whether `c` belongs to a script written without spaces between words: CJK ideographs,
/// Hiragana, Katakana, Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9D    // halfwidth Katakana
        | 0x20000..=0x2FA1F) // CJK extensions B–F, compatibility supplement
}

/// The tokens of `text` (see the module's documentation).
pub fn analyze(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut run: Vec<(usize, char)> = Vec::new();
    let mut run_cjk = false;
    let flush = |run: &mut Vec<(usize, char)>, cjk: bool, out: &mut Vec<Token>, end: usize| {
        if run.is_empty() {
            return;
        }
        if cjk && run.len() > 1 {
            for pair in run.windows(2) {
                let stop = pair[1].0 + pair[1].1.len_utf8();
                out.push(Token {
                    text: pair.iter().flat_map(|(_, c)| c.to_lowercase()).collect(),
                    start: pair[0].0,
                    end: stop,
                });
            }
        } else {
            out.push(Token {
                text: run.iter().flat_map(|(_, c)| c.to_lowercase()).collect(),
                start: run[0].0,
                end,
            });
        }
        run.clear();
    };
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let cjk = is_cjk(c);
            if !run.is_empty() && cjk != run_cjk {
                flush(&mut run, run_cjk, &mut out, i);
            }
            run_cjk = cjk;
            run.push((i, c));
        } else {
            flush(&mut run, run_cjk, &mut out, i);
        }
    }
    flush(&mut run, run_cjk, &mut out, text.len());
    out
}

/// The text a store indexes for `text`: its tokens, separated by spaces.
pub fn index_text(text: &str) -> String {
    let tokens = analyze(text);
    let mut s = String::with_capacity(text.len() + tokens.len());
    for t in tokens {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&t.text);
    }
    s
}

/// One term of a query: tokens that must stand together, in order; the last one may be a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub tokens: Vec<String>,
    pub prefix: bool,
}

/// A parsed query: what must match, what must not, and the filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageQuery {
    pub must: Vec<Term>,
    pub must_not: Vec<Term>,
    pub from: Option<UserId>,
    pub room: Option<RoomId>,
    /// Posted at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Posted before this time (ms).
    pub until_ms: Option<i64>,
    pub has_file: bool,
}

impl MessageQuery {
    /// Whether the query can only be answered by scanning (no word to look up).
    pub fn is_filter_only(&self) -> bool {
        self.must.is_empty()
    }
}

/// Parse `q` for a user in time zone `tz` (IANA name; UTC when `None`).
pub fn parse(q: &str, tz: Option<&str>) -> ApiResult<MessageQuery> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(format!(
            "a search is at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let zone = match tz {
        None => jiff::tz::TimeZone::UTC,
        Some(name) => jiff::tz::TimeZone::get(name)
            .map_err(|_| ApiError::invalid(format!("unknown time zone {name:?}")))?,
    };
    let mut out = MessageQuery::default();
    let mut terms = 0;
    for raw in split_query(q)? {
        let (negated, body) = match raw.strip_prefix('-') {
            Some(rest) if !rest.is_empty() => (true, rest.to_owned()),
            _ => (false, raw),
        };
        if !negated && filter(&body, &zone, &mut out)? {
            continue;
        }
        let (phrase, text) = match body.strip_prefix('"') {
            Some(rest) => (true, rest.strip_suffix('"').unwrap_or(rest).to_owned()),
            None => (false, body),
        };
        let prefix = !phrase && text.ends_with('*');
        let tokens: Vec<String> = analyze(text.trim_end_matches('*'))
            .into_iter()
            .map(|t| t.text)
            .collect();
        if tokens.is_empty() {
            continue;
        }
        terms += 1;
        let term = Term { tokens, prefix };
        if negated {
            out.must_not.push(term);
        } else {
            out.must.push(term);
        }
    }
    if terms > MAX_TERMS {
        return Err(ApiError::invalid(format!(
            "a search has at most {MAX_TERMS} words and phrases"
        )));
    }
    let narrowed = out.from.is_some()
        || out.room.is_some()
        || out.since_ms.is_some()
        || out.until_ms.is_some()
        || out.has_file;
    if out.must.is_empty() && !narrowed {
        return Err(ApiError::invalid(
            "a search needs a word, a phrase or a filter (from:, in:, before:, after:, on:, has:file)",
        ));
    }
    Ok(out)
}

/// The query's pieces: words, `"phrases"` (with their quotes), each possibly led by `-`.
fn split_query(q: &str) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => {
                cur.push(c);
                quoted = !quoted;
                if !quoted {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(ApiError::invalid("a phrase is not closed (\")"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Apply `piece` to `out` if it is a filter (`key:value`); false if it is a word.
fn filter(piece: &str, zone: &jiff::tz::TimeZone, out: &mut MessageQuery) -> ApiResult<bool> {
    let Some((key, value)) = piece.split_once(':') else {
        return Ok(false);
    };
    let day = |v: &str| -> ApiResult<(i64, i64)> {
        let date: jiff::civil::Date = v.parse().map_err(|_| {
            ApiError::invalid(format!("{key}: wants a date as YYYY-MM-DD, not {v:?}"))
        })?;
        let start = date
            .to_zoned(zone.clone())
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let next = date
            .tomorrow()
            .and_then(|d| d.to_zoned(zone.clone()))
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok((
            start.timestamp().as_millisecond(),
            next.timestamp().as_millisecond(),
        ))
    };
    match key {
        "from" if !value.is_empty() => out.from = Some(UserId(value.to_owned())),
        "in" if !value.is_empty() => out.room = Some(RoomId(value.to_owned())),
        "has" if value == "file" => out.has_file = true,
        "before" => {
            let (start, _) = day(value)?;
            out.until_ms = Some(out.until_ms.map_or(start, |u| u.min(start)));
        }
        "after" => {
            let (_, next) = day(value)?;
            out.since_ms = Some(out.since_ms.map_or(next, |s| s.max(next)));
        }
        "on" => {
            let (start, next) = day(value)?;
            out.since_ms = Some(out.since_ms.map_or(start, |s| s.max(start)));
            out.until_ms = Some(out.until_ms.map_or(next, |u| u.min(next)));
        }
        "from" | "in" | "has" => {
            return Err(ApiError::invalid(format!(
                "{key}: needs a value ({})",
                match key {
                    "from" => "a user id",
                    "in" => "a room id",
                    _ => "file",
                }
            )))
        }
        // Not a filter: a word with a colon in it (a time, a URL).
        _ => return Ok(false),
    }
    Ok(true)
}

/// What a group's shared thing is found by (M6): its kind, its title, and all its searchable
/// text — a note's title, body and comments; an event's title, location and memo; a task's
/// title, content and category; a folder's or file's name. `None` for a trashed folder or file
/// (the trash is not searched).
pub fn item_text(item: &Item) -> Option<(&'static str, String, String)> {
    let join = |parts: &[&str]| {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(match item {
        Item::Note(n) => {
            let mut parts = vec![n.fields.title.as_str(), n.fields.body.as_str()];
            parts.extend(n.comments.iter().map(|c| c.text.as_str()));
            ("note", n.fields.title.clone(), join(&parts))
        }
        Item::CalendarEvent(e) => (
            "event",
            e.fields.title.clone(),
            join(&[&e.fields.title, &e.fields.location, &e.fields.memo]),
        ),
        Item::Task(t) => (
            "task",
            t.fields.title.clone(),
            join(&[&t.fields.title, &t.fields.content, &t.fields.category]),
        ),
        Item::Folder(f) if f.trashed.is_none() => ("folder", f.name.clone(), f.name.clone()),
        Item::File(f) if f.trashed.is_none() => ("file", f.name.clone(), f.name.clone()),
        Item::Folder(_) | Item::File(_) => return None,
    })
}

/// Whether the token `t` is matched by one of the query's wanted terms.
fn hit(t: &str, must: &[Term]) -> bool {
    must.iter().any(|term| {
        term.tokens.iter().enumerate().any(|(i, q)| {
            let last = i + 1 == term.tokens.len();
            t == q || (last && term.prefix && t.starts_with(q.as_str()))
        })
    })
}

/// A part of `text` around its first match, cut into plain and matched pieces.
pub fn snippet(text: &str, q: &MessageQuery) -> Vec<SnippetPart> {
    let spans: Vec<(usize, usize)> = analyze(text)
        .into_iter()
        .filter(|t| hit(&t.text, &q.must))
        .map(|t| (t.start, t.end))
        .collect();
    // The window: from a little before the first match, about SNIPPET_CHARS long.
    let first = spans.first().map(|s| s.0).unwrap_or(0);
    let lead = text[..first]
        .char_indices()
        .rev()
        .nth(SNIPPET_CHARS / 4)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let end = text[lead..]
        .char_indices()
        .nth(SNIPPET_CHARS)
        .map(|(i, _)| lead + i)
        .unwrap_or(text.len());
    let mut parts: Vec<SnippetPart> = Vec::new();
    let mut push = |s: &str, hit: bool| {
        if s.is_empty() {
            return;
        }
        match parts.last_mut() {
            Some(p) if p.hit == hit => p.text.push_str(s),
            _ => parts.push(SnippetPart {
                text: s.to_owned(),
                hit,
            }),
        }
    };
    if lead > 0 {
        push("…", false);
    }
    let mut at = lead;
    for (s, e) in spans {
        // Overlapping pairs (CJK) merge into one marked stretch.
        let (s, e) = (s.max(at), e.min(end));
        if s >= e {
            continue;
        }
        push(&text[at..s], false);
        push(&text[s..e], true);
        at = e;
    }
    push(&text[at..end], false);
    if end < text.len() {
        push("…", false);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        analyze(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn words_are_lowercased_and_cut_at_punctuation() {
        assert_eq!(
            texts("Hello, World! it's 3pm"),
            ["hello", "world", "it", "s", "3pm"]
        );
        assert_eq!(texts("Ünïcode café"), ["ünïcode", "café"]);
    }

    #[test]
    fn cjk_runs_become_overlapping_pairs() {
        assert_eq!(texts("회의록"), ["회의", "의록"]);
        assert_eq!(
            texts("会議の議事録"),
            ["会議", "議の", "の議", "議事", "事録"]
        );
        assert_eq!(texts("明"), ["明"]);
        // Mixed: a run of Latin letters is a word beside the pairs.
        assert_eq!(
            texts("내일 meeting회의 10시"),
            ["내일", "meeting", "회의", "10", "시"]
        );
    }

    #[test]
    fn tokens_know_where_they_stand() {
        let t = analyze("ab 회의록");
        assert_eq!((t[1].start, t[1].end), (3, 9));
        assert_eq!(&"ab 회의록"[t[2].start..t[2].end], "의록");
    }

    #[test]
    fn the_index_and_the_query_share_the_analyzer() {
        assert_eq!(index_text("일정 회의"), "일정 회의");
        let q = parse("회의록", None).expect("test");
        assert_eq!(q.must[0].tokens, ["회의", "의록"]);
    }

    #[test]
    fn the_operators_parse() {
        let q = parse(
            r#"budget "next quarter" -draft plan* from:bob@acme.example in:r_1 has:file"#,
            None,
        )
        .expect("test");
        assert_eq!(q.must.len(), 3);
        assert_eq!(q.must[1].tokens, ["next", "quarter"]);
        assert!(q.must[2].prefix);
        assert_eq!(q.must_not[0].tokens, ["draft"]);
        assert_eq!(q.from, Some(UserId::from("bob@acme.example")));
        assert_eq!(q.room, Some(RoomId::from("r_1")));
        assert!(q.has_file);
    }

    #[test]
    fn dates_are_days_in_the_askers_zone() {
        let q = parse("on:2026-03-01", None).expect("test");
        assert_eq!(q.since_ms, Some(1_772_323_200_000));
        assert_eq!(q.until_ms, Some(1_772_323_200_000 + 86_400_000));
        let seoul = parse("on:2026-03-01", Some("Asia/Seoul")).expect("test");
        assert_eq!(seoul.since_ms, Some(1_772_323_200_000 - 9 * 3_600_000));
        let q = parse("x after:2026-03-01 before:2026-03-05", None).expect("test");
        assert_eq!(q.since_ms, Some(1_772_323_200_000 + 86_400_000));
        assert_eq!(q.until_ms, Some(1_772_323_200_000 + 4 * 86_400_000));
    }

    #[test]
    fn bad_queries_are_refused() {
        for q in ["", "   ", "-alone", "\"open", "on:yesterday", "from:"] {
            assert!(parse(q, None).is_err(), "{q:?}");
        }
        assert!(parse("x", Some("Mars/Olympus")).is_err());
        assert!(parse(&"a ".repeat(17), None).is_err());
        assert!(parse(&"a".repeat(201), None).is_err());
        // A colon that is no filter is part of a word.
        assert_eq!(
            parse("10:30", None).expect("test").must[0].tokens,
            ["10", "30"]
        );
    }

    #[test]
    fn snippets_mark_the_matches() {
        let q = parse("plan*", None).expect("test");
        let parts = snippet("The Planning meeting", &q);
        let marked: Vec<(&str, bool)> = parts.iter().map(|p| (p.text.as_str(), p.hit)).collect();
        assert_eq!(
            marked,
            [("The ", false), ("Planning", true), (" meeting", false)]
        );
        let q = parse("회의록", None).expect("test");
        let parts = snippet("오늘 회의록 공유", &q);
        assert!(
            parts.iter().any(|p| p.hit && p.text == "회의록"),
            "{parts:?}"
        );
        // A long text is cut around its first match.
        let long = format!("{} needle {}", "a ".repeat(400), "b ".repeat(400));
        let parts = snippet(&long, &parse("needle", None).expect("test"));
        assert!(parts.first().expect("test").text.starts_with('…'));
        assert!(parts.iter().any(|p| p.hit && p.text == "needle"));
        let shown: usize = parts.iter().map(|p| p.text.chars().count()).sum();
        assert!(shown <= SNIPPET_CHARS + 2, "{shown}");
    }
}
