//! The shape of the server's code, checked on every run: the modules of `src/` form no import
//! cycle, every module has a layer ([`LAYERS`]) and imports nothing from a layer above its own
//! (arrows only point down), no function is longer than [`MAX_FN_LINES`], and every module opens
//! with a `//!` line saying what it owns.
//!
//! A module is a file (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`). Module `m` depends on
//! `n` when `m` names a path into `n` outside its `#[cfg(test)]` module: `crate::n::…`,
//! `super::…`, `self::…`, or a child module by its bare name. Comments and string literals are
//! not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest function allowed in `src/`, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 120;

struct Module {
    name: String,
    file: PathBuf,
    /// The code with comments and literals blanked (newlines kept), test module cut off.
    code: String,
    /// The same, test module included (function lengths count tests too).
    whole: String,
    raw: String,
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let rel = file.strip_prefix(&src).ok()?.with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            // main.rs is the binary: it reaches the library as `crossroom::`, from outside.
            if parts == ["main"] {
                return None;
            }
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let raw = std::fs::read_to_string(&file).ok()?;
            let whole = blank_comments_and_literals(&raw);
            let code = match whole.find("#[cfg(test)]\nmod ") {
                Some(i) => whole[..i].to_owned(),
                None => whole.clone(),
            };
            Some(Module {
                name: parts.join("::"),
                file,
                code,
                whole,
                raw,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Replace comments, string and char literals by spaces, keeping newlines, so that neither a
/// path in a doc comment nor a Lua script's text counts as code.
fn blank_comments_and_literals(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(b[i..j.min(b.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = (j + 1).min(b.len());
            out.extend(b[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a), left as it is.
            let end = if next == Some('\\') {
                (i + 2..b.len()).find(|&k| b[k] == '\'').map(|k| k + 1)
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(b[i..end].iter().map(|&c| blank(c)));
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// The code as identifiers and `::`, `{`, `}`, `,` and other punctuation.
fn tokens(code: &str) -> Vec<String> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[start..i].iter().collect());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Every path a module names, as absolute segment lists (use-trees expanded).
fn paths(module: &str, code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let t = tokens(code);
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let mut out = Vec::new();
    for i in 0..t.len() {
        if i > 0 && t[i - 1] == "::" {
            continue;
        }
        let start: Option<Vec<String>> = match t[i].as_str() {
            "crate" => Some(Vec::new()),
            "self" => Some(here.clone()),
            "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
            name if children.contains(name) && t.get(i + 1).is_some_and(|n| n == "::") => {
                let mut p = here.clone();
                p.push(name.to_owned());
                out.push(p);
                continue;
            }
            _ => None,
        };
        if let Some(prefix) = start {
            if t.get(i + 1).is_some_and(|n| n == "::") {
                use_tree(&t, i + 2, prefix, &mut out);
            }
        }
    }
    out
}

/// Read the path (or `{…}` group of paths) that starts at token `i`, under `prefix`; returns the
/// index after it.
fn use_tree(
    t: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match t.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    if t.get(i).is_some_and(|s| s == "}") {
                        return i + 1;
                    }
                    i = use_tree(t, i, prefix.clone(), out);
                    match t.get(i).map(String::as_str) {
                        Some(",") => i += 1,
                        Some("}") => return i + 1,
                        _ => return i,
                    }
                }
            }
            Some("super") => {
                prefix.pop();
                i += 1;
            }
            Some(id) if id.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                prefix.push(id.to_owned());
                i += 1;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
        if t.get(i).is_some_and(|s| s == "::") {
            i += 1;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

/// Which module a path lands in: the longest prefix that is one.
fn resolve(path: &[String], names: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|p| names.contains(p))
}

fn graph(mods: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> = mods.iter().map(|m| m.name.clone()).collect();
    let mut edges = BTreeMap::new();
    for m in mods {
        let prefix = if m.name.is_empty() {
            String::new()
        } else {
            format!("{}::", m.name)
        };
        let children: BTreeSet<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains("::"))
            .map(str::to_owned)
            .collect();
        let deps: BTreeSet<String> = paths(&m.name, &m.code, &children)
            .iter()
            .filter_map(|p| resolve(p, &names))
            .filter(|d| *d != m.name && !d.is_empty())
            .collect();
        edges.insert(m.name.clone(), deps);
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_server_modules_form_no_import_cycle() {
    let mods = modules();
    assert!(mods.len() > 20, "found the sources");
    let edges = graph(&mods);
    let found = cycles(&edges);
    let detail: Vec<String> = found
        .iter()
        .map(|c| {
            let inner: Vec<String> = c
                .iter()
                .map(|m| {
                    let deps: Vec<&String> = edges[m].iter().filter(|d| c.contains(d)).collect();
                    format!("  {m} -> {deps:?}")
                })
                .collect();
            format!("cycle of {}:\n{}", c.len(), inner.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "{}", detail.join("\n"));
}

/// Every module's layer, from the composition root (7) down to the leaves (0): a module may use
/// its own layer and those below, never one above. A module takes the rank of the longest
/// prefix listed here; docs/architecture.md ("Layers") shows the same table.
const LAYERS: &[(&str, u8, &str)] = &[
    ("server", 7, "composition"),
    ("demo", 7, "composition"),
    ("backup", 7, "composition"),
    ("session", 6, "edges"),
    ("http", 6, "edges"),
    ("ops", 6, "edges"),
    ("web", 6, "edges"),
    ("directory", 5, "services"),
    ("service", 5, "services"),
    ("hub", 4, "the node"),
    ("room", 3, "room actors"),
    ("sessions", 2, "infrastructure"),
    ("presence", 2, "infrastructure"),
    ("bus", 2, "infrastructure"),
    ("store", 2, "infrastructure"),
    ("outbound", 2, "infrastructure"),
    ("ops::feed", 2, "infrastructure"),
    ("blob", 2, "infrastructure"),
    ("mail", 2, "infrastructure"),
    ("slots", 2, "infrastructure"),
    ("directory::token", 2, "infrastructure"),
    ("domain", 1, "domain"),
    ("error", 0, "leaves"),
    ("metrics", 0, "leaves"),
    ("config", 0, "leaves"),
    ("data_dir", 0, "leaves"),
    ("clock", 0, "leaves"),
    ("random", 0, "leaves"),
    ("shutdown", 0, "leaves"),
];

/// The layer of `module` (the crate root, `lib.rs`, declares modules and is above them all).
fn layer(module: &str) -> Option<(u8, &'static str)> {
    LAYERS
        .iter()
        .filter(|(p, _, _)| module == *p || module.starts_with(&format!("{p}::")))
        .max_by_key(|(p, _, _)| p.len())
        .map(|(_, rank, name)| (*rank, *name))
}

/// Imports that run up the layers: `(from, to)` where `to`'s layer is above `from`'s.
fn upward(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, deps) in edges {
        let Some((rf, lf)) = layer(from) else {
            continue;
        };
        for to in deps {
            if let Some((rt, lt)) = layer(to) {
                if rt > rf {
                    out.push(format!("{from} ({lf}) imports {to} ({lt})"));
                }
            }
        }
    }
    out
}

#[test]
fn every_server_module_has_a_layer_and_imports_only_its_own_or_lower() {
    let mods = modules();
    let unranked: Vec<&str> = mods
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !n.is_empty() && layer(n).is_none())
        .collect();
    assert!(
        unranked.is_empty(),
        "modules without a layer (add them to LAYERS): {unranked:?}"
    );
    let up = upward(&graph(&mods));
    assert!(
        up.is_empty(),
        "imports that run up the layers:\n{}",
        up.join("\n")
    );
}

#[test]
fn the_layer_check_sees_an_import_that_runs_up() {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.insert("domain::rules".into(), ["store".to_owned()].into());
    e.insert("store::sqlite".into(), ["domain::rules".to_owned()].into());
    e.insert("room::actor::items".into(), ["hub".to_owned()].into());
    assert_eq!(
        upward(&e),
        vec![
            "domain::rules (domain) imports store (infrastructure)".to_owned(),
            "room::actor::items (room actors) imports hub (the node)".to_owned(),
        ]
    );
}

#[test]
fn the_cycle_check_sees_use_trees_super_and_child_paths() {
    let names: BTreeSet<String> = ["a", "a::x", "b", "b::y", "c"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let code = blank_comments_and_literals(
        "use crate::{b::{y::Y, Z}, c};\n// crate::zzz\nfn f() { super::x::g(); let s = \"crate::nope\"; }",
    );
    let found: BTreeSet<String> = paths("a::x", &code, &BTreeSet::new())
        .iter()
        .filter_map(|p| resolve(p, &names))
        .collect();
    let want: BTreeSet<String> = ["b::y", "b", "c", "a::x"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, want);
    let child = paths(
        "a",
        "fn f() { x::go() }",
        &["x".to_owned()].into_iter().collect(),
    );
    assert_eq!(child, vec![vec!["a".to_owned(), "x".to_owned()]]);
    // A cycle is found, and only a cycle.
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.insert("a".into(), ["b".to_owned()].into());
    e.insert("b".into(), ["c".to_owned()].into());
    e.insert("c".into(), ["a".to_owned()].into());
    e.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(
        cycles(&e),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
    e.insert("c".into(), BTreeSet::new());
    assert!(cycles(&e).is_empty());
}

/// Every `fn … { … }` of a module: its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let b: Vec<char> = code.chars().collect();
    let line_at = |i: usize| b[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let t: Vec<(usize, String)> = {
        let mut v = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_alphanumeric() || b[i] == '_' {
                let s = i;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
                v.push((s, b[s..i].iter().collect()));
            } else {
                if !b[i].is_whitespace() {
                    v.push((i, b[i].to_string()));
                }
                i += 1;
            }
        }
        v
    };
    for (k, (pos, tok)) in t.iter().enumerate() {
        if tok != "fn" {
            continue;
        }
        let Some((_, name)) = t.get(k + 1) else {
            continue;
        };
        // The body starts at the first `{` outside parentheses and angle brackets; a `;`
        // first means a declaration without a body.
        let mut depth = 0i32;
        let mut body = None;
        for (p, s) in &t[k + 2..] {
            match s.as_str() {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                ";" if depth == 0 => break,
                "{" if depth == 0 => {
                    body = Some(*p);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = body else { continue };
        let mut d = 0;
        let mut close = open;
        for (j, &c) in b.iter().enumerate().skip(open) {
            match c {
                '{' => d += 1,
                '}' => {
                    d -= 1;
                    if d == 0 {
                        close = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let (first, last) = (line_at(*pos), line_at(close));
        out.push((name.clone(), first, last - first + 1));
    }
    out
}

#[test]
fn no_function_in_the_server_is_over_120_lines() {
    let mut long = Vec::new();
    for m in modules() {
        for (name, line, len) in functions(&m.whole) {
            if len > MAX_FN_LINES {
                long.push(format!(
                    "{}:{line} fn {name}: {len} lines",
                    m.file.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_length_check_measures_bodies() {
    let code = "fn a() {\n    x();\n}\nfn b(f: impl Fn() -> u8) -> u8 where u8: Copy {\n{\n}\n}\ntrait T { fn c(&self); }";
    let f = functions(code);
    assert_eq!(
        f,
        vec![("a".to_owned(), 1, 3), ("b".to_owned(), 4, 4)],
        "a trait method without a body is no function to measure"
    );
}

#[test]
fn every_server_module_says_what_it_owns() {
    let missing: Vec<String> = modules()
        .iter()
        .filter(|m| !m.raw.trim_start().starts_with("//!"))
        .map(|m| m.file.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a //! line: {missing:?}"
    );
}
