//! The module-cycle check, run with the unit tests (`cargo xtask test`): for each crate
//! of [`CRATES`], the graph between its *top-level* modules (`src/a.rs`, `src/a/**`: all
//! module `a`) from the paths its source names — `crate::a::…`, `use crate::{a::x, b::{y, z}}`,
//! `super::…` that climbs to the crate root, `$crate::a` in macros — must have no cycle:
//! no set of two or more modules that each reach the others. A cycle means no module of it
//! can be understood, tested or moved without the rest.
//!
//! It reads source text, not the compiler's name resolution: comments, strings and char
//! literals are blanked first; `use` of a root item re-exported from another module, or a
//! glob `use crate::*`, is not seen. Test code counts like any other code. Files under
//! `src/bin/` are other crates and are skipped.
//!
//! Existing tools were considered: `cargo-modules` (`dependencies --acyclic`) and
//! `cargo-cycles` are command-line programs, not libraries (an install in CI; the former
//! builds rust-analyzer and checks item-level edges, where a type and its own method
//! already form a cycle); `cargo-ensure-no-cyclic-deps` and `cargo-ferris-wheel` check
//! cycles between crates, not modules. So this is a small self-contained checker.
//!
//! Not here: cycles between crates (cargo refuses those itself).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::paths;

/// The crates checked, by folder under the workspace root.
const CRATES: &[&str] = &["xtask", "fwctl-common", "fwctl-user", "fwctl-ebpf"];

/// Where a reference was seen: file (relative to the crate) and line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Site {
    file: PathBuf,
    line: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The graph of one crate: edges between top-level modules, each with the first site.
#[derive(Debug, Default)]
struct Graph {
    modules: BTreeSet<String>,
    edges: BTreeMap<String, BTreeMap<String, Site>>,
}

/// One strongly connected component of more than one module.
#[derive(Debug)]
struct Cycle {
    /// Every module of the component, sorted.
    members: Vec<String>,
    /// One shortest cycle through the first member, closed (`a, b, a`), with the site of
    /// each step.
    path: Vec<(String, Option<Site>)>,
}

impl Cycle {
    /// `a -> b -> c -> a`.
    fn arrow_line(&self) -> String {
        self.path.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(" -> ")
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.arrow_line())?;
        for step in self.path.windows(2) {
            let ((from, _), (to, site)) = (&step[0], &step[1]);
            if let Some(site) = site {
                write!(f, "\n    {from} -> {to} at {site}")?;
            }
        }
        write!(f, "\n    component of {} modules: {}", self.members.len(), self.members.join(", "))
    }
}

/// The graph of the crate whose source files are `files` (paths relative to `src/`).
fn graph(files: &[(PathBuf, String)]) -> Graph {
    let mut g = Graph::default();
    for (path, _) in files {
        if let Some(module) = top_module(path) {
            g.modules.insert(module);
        }
    }
    for (path, source) in files {
        let Some(from) = top_module(path) else { continue };
        for (target, line) in references(&blank_non_code(source), depth(path)) {
            if target != from && g.modules.contains(&target) {
                let site = Site { file: Path::new("src").join(path), line };
                g.edges.entry(from.clone()).or_default().entry(target).or_insert(site);
            }
        }
    }
    g
}

/// The top-level module a file belongs to: `a.rs`, `a/mod.rs`, `a/b/c.rs` → `a`; `None`
/// for the crate roots (`lib.rs`, `main.rs`) and for `bin/`.
fn top_module(path: &Path) -> Option<String> {
    let mut parts = path.components().filter_map(|c| match c {
        Component::Normal(p) => p.to_str(),
        _ => None,
    });
    let first = parts.next()?;
    let nested = parts.next().is_some();
    match first.strip_suffix(".rs") {
        _ if nested && first == "bin" => None,
        _ if nested => Some(first.to_string()),
        Some("lib" | "main") | None => None,
        Some(stem) => Some(stem.to_string()),
    }
}

/// How deep a file's module is below the crate root: `lib.rs` 0, `a.rs` and `a/mod.rs` 1,
/// `a/b.rs` 2.
fn depth(path: &Path) -> usize {
    let parts = path.components().count();
    match path.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs") if parts == 1 => 0,
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// The source with comments, string literals and char literals replaced by spaces (line
/// breaks kept, so line numbers stay right).
fn blank_non_code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && !prev_ident
            && matches!(next, Some('"' | '#'))
            && raw_string_end(&chars, i).is_some()
        {
            let end = raw_string_end(&chars, i).unwrap_or(chars.len());
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let step = if chars[i] == '\\' { 2 } else { 1 };
                for &ch in chars.iter().skip(i).take(step) {
                    blank(&mut out, ch);
                }
                i += step;
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\'', '\u{7b}'); a lifetime ('a) has no closing
            // quote there. After a backslash the escaped character is skipped.
            let from = if next == Some('\\') { i + 3 } else { i + 2 };
            let close = chars.iter().skip(from).position(|&ch| ch == '\'').map(|p| from + p);
            let end = close.map_or(chars.len(), |p| p + 1);
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where the raw string starting at `chars[i] == 'r'` ends (one past its last `#`), if
/// it is one (`r"…"`, `r#"…"#`).
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    let open = i + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let mut j = open + 1;
    while j < chars.len() {
        if chars[j] == '"' && chars[j + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// A token of blanked source.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// Identifiers, `::` and single punctuation, each with its line.
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// The crate-root names the code at module depth `file_depth` refers to (`crate::x`,
/// `super::…::x` that climbs to the root), with their lines. Inline `mod m { … }` blocks
/// deepen `super::`.
fn references(code: &str, file_depth: usize) -> Vec<(String, usize)> {
    let toks = tokens(code);
    let ident = |i: usize| match toks.get(i) {
        Some((Token::Ident(name), _)) => Some(name.as_str()),
        _ => None,
    };
    let is = |i: usize, t: &Token| toks.get(i).is_some_and(|(tok, _)| tok == t);
    let mut found = Vec::new();
    // One entry per open brace: does it open an inline module?
    let mut braces: Vec<bool> = Vec::new();
    let mut mod_brace_next = false;
    for i in 0..toks.len() {
        let line = toks[i].1;
        let after_sep = i > 0 && is(i - 1, &Token::PathSep);
        match &toks[i].0 {
            Token::Punct('{') => {
                braces.push(mod_brace_next);
                mod_brace_next = false;
            }
            Token::Punct('}') => {
                braces.pop();
            }
            Token::Punct(';') => mod_brace_next = false,
            Token::Ident(word)
                if word == "mod" && ident(i + 1).is_some() && is(i + 2, &Token::Punct('{')) =>
            {
                mod_brace_next = true;
            }
            Token::Ident(word) if word == "crate" && !after_sep && is(i + 1, &Token::PathSep) => {
                found.extend(root_names(&toks, i + 2).into_iter().map(|n| (n, line)));
            }
            Token::Ident(word) if word == "super" && !after_sep && is(i + 1, &Token::PathSep) => {
                let mut climbs = 1;
                let mut j = i + 2;
                while ident(j) == Some("super") && is(j + 1, &Token::PathSep) {
                    climbs += 1;
                    j += 2;
                }
                let here = file_depth + braces.iter().filter(|&&m| m).count();
                if here == climbs {
                    found.extend(root_names(&toks, j).into_iter().map(|n| (n, line)));
                }
            }
            _ => {}
        }
    }
    found
}

/// The first segments of the path or `{…}` group starting at `toks[i]`.
fn root_names(toks: &[(Token, usize)], i: usize) -> Vec<String> {
    match toks.get(i).map(|(t, _)| t) {
        Some(Token::Ident(name)) if name != "self" => vec![name.clone()],
        Some(Token::Punct('{')) => {
            let mut names = Vec::new();
            let mut nesting = 0;
            let mut item_start = true;
            for (tok, _) in &toks[i..] {
                match tok {
                    Token::Punct('{') => {
                        nesting += 1;
                        item_start = nesting == 1;
                    }
                    Token::Punct('}') => {
                        nesting -= 1;
                        if nesting == 0 {
                            break;
                        }
                    }
                    Token::Punct(',') if nesting == 1 => item_start = true,
                    Token::Ident(name) if item_start => {
                        if name != "self" {
                            names.push(name.clone());
                        }
                        item_start = false;
                    }
                    _ => item_start = false,
                }
            }
            names
        }
        _ => Vec::new(),
    }
}

/// Every component of more than one module, with one shortest cycle each.
fn cycles(g: &Graph) -> Vec<Cycle> {
    let next = |m: &str| -> Vec<&str> {
        g.edges.get(m).map(|targets| targets.keys().map(String::as_str).collect()).unwrap_or_default()
    };
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([from.to_string()]);
        while let Some(m) = queue.pop_front() {
            for t in next(&m) {
                if seen.insert(t.to_string()) {
                    queue.push_back(t.to_string());
                }
            }
        }
        seen
    };
    // A few dozen modules at most: reachability sets are simpler than Tarjan and as good.
    let reachable: BTreeMap<&str, BTreeSet<String>> =
        g.modules.iter().map(|m| (m.as_str(), reach(m))).collect();
    let mut placed = BTreeSet::new();
    let mut found = Vec::new();
    for m in &g.modules {
        if placed.contains(m) || !reachable[m.as_str()].contains(m) {
            continue;
        }
        let members: Vec<String> = g
            .modules
            .iter()
            .filter(|o| reachable[m.as_str()].contains(*o) && reachable[o.as_str()].contains(m))
            .cloned()
            .collect();
        if members.len() < 2 {
            continue;
        }
        placed.extend(members.iter().cloned());
        let path = shortest_cycle(g, m, &members);
        found.push(Cycle { members, path });
    }
    found
}

/// The shortest way from `start` back to itself inside `members` (breadth first).
fn shortest_cycle(g: &Graph, start: &str, members: &[String]) -> Vec<(String, Option<Site>)> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_string()]);
    'search: while let Some(m) = queue.pop_front() {
        for t in g.edges.get(&m).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if !members.contains(&t) || parent.contains_key(&t) {
                continue;
            }
            parent.insert(t.clone(), m.clone());
            if t == start {
                break 'search;
            }
            queue.push_back(t);
        }
    }
    let mut chain = vec![start.to_string()];
    let mut at = start.to_string();
    while let Some(p) = parent.get(&at) {
        chain.push(p.clone());
        if p == start {
            break;
        }
        at = p.clone();
    }
    chain.reverse();
    let mut path = vec![(chain[0].clone(), None)];
    for pair in chain.windows(2) {
        path.push((pair[1].clone(), g.edges[&pair[0]].get(&pair[1]).cloned()));
    }
    path
}

/// A crate's `src/**.rs`, paths relative to `src/`.
fn read_crate(src: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("below src").to_path_buf();
                files.push((rel, fs::read_to_string(&path)?));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn workspace_crates_have_no_module_cycles() {
    let root = paths::workspace_root();
    let mut failures = Vec::new();
    for name in CRATES {
        let src = root.join(name).join("src");
        let files = read_crate(&src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
        assert!(!files.is_empty(), "{}: no source files", src.display());
        failures.extend(cycles(&graph(&files)).iter().map(|c| format!("{name}: {c}")));
    }
    assert!(failures.is_empty(), "module cycles:\n{}", failures.join("\n"));
}

mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter().map(|(p, s)| (PathBuf::from(p), s.to_string())).collect()
    }

    fn edges(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let g = graph(&files(list));
        g.edges.iter().flat_map(|(from, to)| to.keys().map(move |t| (from.clone(), t.clone()))).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_cycle_is_found_and_named_with_its_sites() {
        let g = graph(&files(&[
            ("lib.rs", "pub mod config; pub mod kernel; pub mod probe; pub mod leaf;"),
            ("config.rs", "use crate::kernel::HookMode;\nuse crate::leaf;"),
            ("kernel.rs", "//! Loader.\n\nuse crate::probe::error_chain;"),
            ("probe/mod.rs", "fn f() {}"),
            ("probe/report.rs", "use super::super::config::Config;"),
            ("leaf.rs", ""),
        ]));
        let found = cycles(&g);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].arrow_line(), "config -> kernel -> probe -> config");
        assert_eq!(found[0].members, ["config", "kernel", "probe"]);
        let text = found[0].to_string();
        assert!(text.contains("config -> kernel at src/config.rs:1"), "{text}");
        assert!(text.contains("kernel -> probe at src/kernel.rs:3"), "{text}");
        assert!(text.contains("probe -> config at src/probe/report.rs:1"), "{text}");
    }

    #[test]
    fn a_dag_is_accepted() {
        let g = graph(&files(&[
            ("main.rs", "mod a; mod b; mod c;\nuse crate::a::run;"),
            ("a.rs", "use crate::b::x;\nuse crate::c::y;"),
            ("b.rs", "use crate::c::z;"),
            ("c.rs", "pub fn y() {}"),
        ]));
        assert!(cycles(&g).is_empty());
        assert_eq!(g.edges.len(), 2);
    }

    #[test]
    fn two_separate_cycles_are_both_reported() {
        let g = graph(&files(&[
            ("a.rs", "use crate::b::x;"),
            ("b.rs", "use crate::a::y;"),
            ("c.rs", "use crate::d::x;"),
            ("d.rs", "use crate::c::y;"),
        ]));
        let lines: Vec<String> = cycles(&g).iter().map(Cycle::arrow_line).collect();
        assert_eq!(lines, ["a -> b -> a", "c -> d -> c"]);
    }

    #[test]
    fn use_groups_are_parsed() {
        let found = edges(&[
            ("a.rs", "use crate::{b::x, c::{y, z}, self as _};\nuse crate::{\n    d,\n};"),
            ("b.rs", ""),
            ("c.rs", ""),
            ("d.rs", ""),
            ("e.rs", "pub(crate) use crate::{f::{g::h, i}};"),
            ("f.rs", ""),
        ]);
        assert_eq!(found, pairs(&[("a", "b"), ("a", "c"), ("a", "d"), ("e", "f")]));
    }

    #[test]
    fn paths_in_expressions_and_macros_count() {
        let found = edges(&[
            ("a.rs", "fn f() { let x = crate::b::make(); }"),
            ("b.rs", "macro_rules! m { () => { $crate::c::X }; }"),
            ("c.rs", ""),
        ]);
        assert_eq!(found, pairs(&[("a", "b"), ("b", "c")]));
    }

    #[test]
    fn comments_strings_and_chars_are_ignored() {
        let found = edges(&[
            (
                "a.rs",
                r####"
//! See [`crate::b`].
// use crate::b;
/* crate::b /* nested: crate::b */ still a comment: crate::b */
/// Doc: `crate::b::X`
const S: &str = "crate::b::x \" crate::b";
const R: &str = r#"crate::b "quoted" crate::b"#;
const B: &[u8] = b"crate::b";
const C: char = '"';
const D: char = '{';
mod quoted { const Q: [char; 2] = ['\'','{']; }
const U: char = '\u{7b}';
fn f<'a>(x: &'a str) -> &'a str { x }
mod inner { const E: char = '}'; }
use super::c::Y;
"####,
            ),
            ("b.rs", ""),
            ("c.rs", ""),
        ]);
        // Only the last line counts; the braces in char literals do not upset the
        // module nesting that `super::` depends on.
        assert_eq!(found, pairs(&[("a", "c")]));
    }

    #[test]
    fn super_climbs_by_file_and_inline_module() {
        let found = edges(&[
            // a.rs is at depth 1: super:: is the root.
            ("a.rs", "use super::b::X;\n#[cfg(test)]\nmod tests { use super::*; use super::super::c::Y; }"),
            // a/x.rs is at depth 2: super:: is `a`, super::super:: the root.
            ("a/x.rs", "use super::y;\nuse super::super::d::Z;\npub(super) fn f() {}"),
            ("a/y.rs", ""),
            ("b.rs", ""),
            ("c.rs", ""),
            ("d.rs", ""),
            ("e/mod.rs", "use super::a;"),
        ]);
        assert_eq!(found, pairs(&[("a", "b"), ("a", "c"), ("a", "d"), ("e", "a")]));
    }

    #[test]
    fn root_items_and_self_edges_are_no_edges() {
        let found = edges(&[
            ("lib.rs", "pub struct Error; mod pod { }"),
            ("a.rs", "use crate::Error;\nuse crate::pod::X;\nuse crate::a::inner;\npub(crate) fn f() {}"),
            ("a/inner.rs", "use crate::a::f;"),
            ("bin/tool.rs", "use crate::a;"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn files_map_to_top_level_modules() {
        let top = |p: &str| top_module(Path::new(p));
        assert_eq!(top("lib.rs"), None);
        assert_eq!(top("main.rs"), None);
        assert_eq!(top("config.rs").as_deref(), Some("config"));
        assert_eq!(top("policy/mod.rs").as_deref(), Some("policy"));
        assert_eq!(top("policy/check/deep.rs").as_deref(), Some("policy"));
        assert_eq!(top("bin/bench.rs"), None);
        let d = |p: &str| depth(Path::new(p));
        assert_eq!((d("lib.rs"), d("a.rs"), d("a/mod.rs"), d("a/b.rs"), d("a/b/mod.rs")), (0, 1, 1, 2, 2));
    }
}
