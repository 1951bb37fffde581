//! The floors of the crate (README "How it works", docs/ARCHITECTURE.md), held by a test.
//!
//! Every `.rs` file under `mover/src/` is read, `#[cfg(test)]` code included. Each `crate::` path (in `use`
//! lines, grouped uses `use crate::{a, b::{c, d}}` and inline paths), each `super::` path (resolved through
//! the inline `mod name { .. }` blocks it sits in, so a test module's `use super::*` is its own file) and each
//! `mover::` path in `main.rs` is an edge from the file it appears in to the file of the module it names.
//! Comments and string literals are not code and make no edges; the grep-level test reads them too.
//!
//! Three rules, each a test of its own so a failure names the rule:
//! - **floors**: a module imports only from a lower floor, or from its own floor where [`SAME_FLOOR`] lists it;
//! - **grep-level**: nothing under `wire/`, `proto/`, `disk/`, `net/` mentions `crate::files`,
//!   `crate::pipeline`, `crate::session` or `crate::cmd`; nothing but `main.rs` (and `cmd/` itself) mentions
//!   `cmd`;
//! - **mutual imports**: no cycle between top-level modules, and no two files that import each other (a
//!   module file and its own submodules excepted: `mod.rs` declaring and re-exporting its children is how a
//!   Rust module is built, not an import of a peer).
//!
//! A top-level module missing from [`FLOORS`] is a violation ("add it to the floor table"), so a new module
//! cannot slip past. Every violation is printed (file:line and the edge), not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors, bottom up. A module may import from any lower floor.
const FLOORS: &[&[&str]] = &[
    // Test support (TempDir, the capability-skip rule): imports nothing, and every floor's tests use it.
    &["testing"],
    &["wire", "disk", "time", "rate", "json", "random", "exit"],
    &["net", "proto"],
    &["files", "sim"],
    &["pipeline", "connect"],
    &["session"],
    &["cmd"],
    &["main"],
];

/// Imports between two modules of the same floor that are allowed: (importer, imported). None is needed
/// today; add one only with a reason, and never both directions.
const SAME_FLOOR: &[(&str, &str)] = &[];

/// The fuzz harness (`mover::fuzzing`): outside the floors, it may reach into any of them but the session
/// and command layers, and nothing in the crate imports it.
const FUZZING: &str = "fuzzing";
/// What the fuzz harness must not import.
const FUZZING_MAY_NOT: &[&str] = &["cmd", "session", "connect"];

/// The floors that must not even mention the higher modules in [`UPPER_MODULES`] (grep-level).
const LOWER_MODULES: &[&str] = &["wire", "proto", "disk", "net"];
/// See [`LOWER_MODULES`].
const UPPER_MODULES: &[&str] = &["files", "pipeline", "session", "cmd"];

#[test]
fn floors_hold() {
    report("floors", check_floors(&crate_graph()));
}

#[test]
fn grep_level_rules_hold() {
    report("grep-level", check_grep(&crate_graph()));
}

#[test]
fn no_mutual_imports() {
    report("mutual imports", check_mutual(&crate_graph()));
}

/// The integration tests are users of the library like any other: they reach it below `cmd` too (only
/// `main.rs` may call into the command layer, and it is not in the library's API contract).
#[test]
fn integration_tests_do_not_import_cmd() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = Vec::new();
    read_tree(&dir, &dir, &mut sources);
    assert!(sources.len() > 10, "found only {} files under {}", sources.len(), dir.display());
    let mut found = Vec::new();
    for s in &sources {
        if s.rel == "floors.rs" {
            continue; // This file names `cmd` in its rules and fixtures.
        }
        for (i, line) in s.text.lines().enumerate() {
            if line.contains("mover::cmd") {
                found.push(format!("  tests/{}:{}: {}", s.rel, i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "integration tests import the command layer:\n{}", found.join("\n"));
}

/// One broken rule: where (file:line) and what.
#[derive(Debug)]
struct Violation {
    /// The whole message: file:line and the edge.
    message: String,
}

fn report(rule: &str, violations: Vec<Violation>) {
    if violations.is_empty() {
        return;
    }
    let lines: Vec<String> = violations.iter().map(|v| format!("  {}", v.message)).collect();
    panic!("{} {rule} violation(s) in mover/src:\n{}\n", violations.len(), lines.join("\n"));
}

/// A source file, by its path relative to `mover/src/` (`/`-separated).
struct Source {
    rel: String,
    text: String,
}

/// One reference from a file to a module path.
#[derive(Clone, Debug)]
struct Edge {
    /// The referring file.
    from: String,
    /// 1-based line of the reference.
    line: usize,
    /// The file of the module the path names (its deepest module that is a file).
    to: String,
    /// The absolute module path as written, for messages (`crate::files::Entry`).
    path: String,
}

/// Every file and every edge between files.
struct Graph {
    sources: Vec<Source>,
    edges: Vec<Edge>,
}

fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_tree(&src, &src, &mut sources);
    assert!(sources.len() > 20, "found only {} files under {}", sources.len(), src.display());
    Graph::new(sources)
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push(Source { rel, text });
        }
    }
}

impl Graph {
    fn new(sources: Vec<Source>) -> Graph {
        let files: BTreeSet<String> = sources.iter().map(|s| s.rel.clone()).collect();
        let mut edges = Vec::new();
        for s in &sources {
            edges.extend(file_edges(s, &files));
        }
        Graph { sources, edges }
    }

    /// Edges between different top-level modules (the crate root `lib.rs` is not a module of a floor).
    fn module_edges(&self) -> impl Iterator<Item = (&Edge, &str, &str)> + '_ {
        self.edges.iter().filter_map(|e| {
            let (from, to) = (top_module(&e.from), top_module(&e.to));
            (from != to && from != "lib" && to != "lib").then_some((e, from, to))
        })
    }
}

/// The top-level module a file belongs to: `wire/seal.rs` -> `wire`, `rate.rs` -> `rate`.
fn top_module(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

fn check_floors(g: &Graph) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut unknown_reported = BTreeSet::new();
    for s in &g.sources {
        let m = top_module(&s.rel);
        if m != "lib" && m != FUZZING && floor_of(m).is_none() && unknown_reported.insert(m) {
            out.push(Violation {
                message: format!(
                    "{}: unknown top-level module `{m}`: add it to the floor table (FLOORS in mover/tests/floors.rs)",
                    s.rel
                ),
            });
        }
    }
    for (e, from, to) in g.module_edges() {
        let why = if to == FUZZING {
            Some("nothing in the crate imports the fuzz harness".to_string())
        } else if from == FUZZING {
            FUZZING_MAY_NOT.contains(&to).then(|| format!("the fuzz harness must not import `{to}`"))
        } else {
            match (floor_of(from), floor_of(to)) {
                (Some(f), Some(t)) if t > f => Some(format!(
                    "`{from}` (floor {f}: {}) imports `{to}` from a higher floor ({t}: {})",
                    FLOORS[f].join(", "),
                    FLOORS[t].join(", ")
                )),
                (Some(f), Some(t)) if t == f && !SAME_FLOOR.contains(&(from, to)) => Some(format!(
                    "`{from}` imports `{to}` on its own floor ({f}: {}), which SAME_FLOOR does not allow",
                    FLOORS[f].join(", ")
                )),
                (Some(_), None) if unknown_reported.insert(to) => {
                    Some(format!("imports unknown top-level module `{to}`: add it to the floor table (FLOORS)"))
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            out.push(Violation { message: format!("{}:{}: {} -> {} ({}): {why}", e.from, e.line, from, to, e.path) });
        }
    }
    out
}

fn check_grep(g: &Graph) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    // Textual: what `grep -rn crate::files mover/src/wire` shows, comments included.
    for s in &g.sources {
        let m = top_module(&s.rel);
        for (i, line) in s.text.lines().enumerate() {
            let mut banned: Vec<&str> = Vec::new();
            if LOWER_MODULES.contains(&m) {
                banned.extend(UPPER_MODULES.iter().copied());
            }
            for upper in banned {
                if mentions(line, &format!("crate::{upper}")) && seen.insert((s.rel.clone(), i + 1)) {
                    out.push(Violation {
                        message: format!("{}:{}: `{m}` mentions `crate::{upper}`: {}", s.rel, i + 1, line.trim()),
                    });
                }
            }
            let may_mention_cmd = m == "main" || m == "cmd";
            if !may_mention_cmd
                && ["crate::cmd", "mover::cmd", "super::cmd"].iter().any(|p| mentions(line, p))
                && seen.insert((s.rel.clone(), i + 1))
            {
                out.push(Violation {
                    message: format!("{}:{}: only main.rs may mention `cmd`: {}", s.rel, i + 1, line.trim()),
                });
            }
        }
    }
    // Parsed: grouped uses (`use crate::{files, wire}`) that no grep line shows whole.
    for (e, from, to) in g.module_edges() {
        let lower_to_upper = LOWER_MODULES.contains(&from) && UPPER_MODULES.contains(&to);
        let into_cmd = to == "cmd" && from != "main";
        if (lower_to_upper || into_cmd) && seen.insert((e.from.clone(), e.line)) {
            out.push(Violation { message: format!("{}:{}: `{from}` refers to `{to}` ({})", e.from, e.line, e.path) });
        }
    }
    out
}

/// Whether `line` contains `path` as a whole path prefix (`crate::cmd` but not `crate::cmdline`).
fn mentions(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(at, _)| {
        let before_ok = at == 0 || !is_ident_char(line[..at].chars().next_back().unwrap_or(' '));
        let after_ok = !line[at + path.len()..].chars().next().is_some_and(is_ident_char);
        before_ok && after_ok
    })
}

fn check_mutual(g: &Graph) -> Vec<Violation> {
    let mut out = Vec::new();
    // Module level: every cycle (a strongly connected set of top-level modules), with an edge of each step.
    let mut first_edge: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for (e, from, to) in g.module_edges() {
        first_edge.entry((from, to)).or_insert(e);
    }
    let modules: BTreeSet<&str> = first_edge.keys().flat_map(|(a, b)| [*a, *b]).collect();
    let reaches = |start: &str, goal: &str| -> bool {
        let mut todo = vec![start];
        let mut seen = BTreeSet::new();
        while let Some(m) = todo.pop() {
            if m == goal {
                return true;
            }
            if seen.insert(m) {
                todo.extend(first_edge.keys().filter(|(a, _)| *a == m).map(|(_, b)| *b));
            }
        }
        false
    };
    let mut done = BTreeSet::new();
    for m in &modules {
        if done.contains(m) {
            continue;
        }
        let cycle: BTreeSet<&str> = modules.iter().copied().filter(|o| reaches(m, o) && reaches(o, m)).collect();
        done.extend(cycle.iter().copied());
        if cycle.len() < 2 {
            continue;
        }
        let steps: Vec<&Edge> =
            first_edge.iter().filter(|((a, b), _)| cycle.contains(a) && cycle.contains(b)).map(|(_, e)| *e).collect();
        let names: Vec<&str> = cycle.iter().copied().collect();
        let mut message = format!("modules import each other (a cycle): {}", names.join(", "));
        for e in &steps {
            message.push_str(&format!(
                "\n      {}:{}: {} -> {} ({})",
                e.from,
                e.line,
                top_module(&e.from),
                top_module(&e.to),
                e.path
            ));
        }
        out.push(Violation { message });
    }
    // File level: two files that refer to each other.
    let mut file_edge: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for e in &g.edges {
        if e.from != e.to && !is_ancestor(&e.from, &e.to) && !is_ancestor(&e.to, &e.from) {
            file_edge.entry((e.from.as_str(), e.to.as_str())).or_insert(e);
        }
    }
    for ((a, b), e) in &file_edge {
        if a < b {
            if let Some(back) = file_edge.get(&(*b, *a)) {
                out.push(Violation {
                    message: format!(
                        "files import each other: {}:{} -> {} ({}) and {}:{} -> {} ({})",
                        e.from, e.line, e.to, e.path, back.from, back.line, back.to, back.path
                    ),
                });
            }
        }
    }
    out
}

/// The module path a file defines: `wire/seal.rs` -> [wire, seal], `wire/mod.rs` -> [wire], `lib.rs` -> [].
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" && last != "lib.rs" && last != "main.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// Whether file `a`'s module contains file `b`'s (a module file and its submodules).
fn is_ancestor(a: &str, b: &str) -> bool {
    let (a, b) = (module_path(a), module_path(b));
    a.len() < b.len() && b.starts_with(&a) && !a.is_empty()
}

/// The file that defines the deepest module named by `path` (absolute, from the crate root).
fn resolve(path: &[String], files: &BTreeSet<String>) -> String {
    let mut dir = String::new();
    let mut file = "lib.rs".to_string();
    for seg in path {
        let flat = format!("{dir}{seg}.rs");
        let nested = format!("{dir}{seg}/mod.rs");
        if files.contains(&flat) {
            file = flat;
        } else if files.contains(&nested) {
            file = nested;
        } else {
            break;
        }
        dir = format!("{dir}{seg}/");
    }
    file
}

/// The edges of one file.
fn file_edges(s: &Source, files: &BTreeSet<String>) -> Vec<Edge> {
    let code = blank_non_code(&s.text);
    let tokens = tokenize(&code);
    let is_main = s.rel == "main.rs";
    let file_module = module_path(&s.rel);
    // Inline `mod name {` blocks open around the current token: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut edges = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (tok, line) = (&tokens[i].0, tokens[i].1);
        match tok.as_str() {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.0 == "{") => {
                inline.push((tokens[i + 1].0.clone(), depth + 1));
            }
            _ => {}
        }
        let starts_path = tokens.get(i + 1).is_some_and(|t| t.0 == "::")
            && (i == 0 || tokens[i - 1].0 != "::")
            && (tok == "crate" || tok == "super" || (tok == "mover" && is_main));
        if !starts_path {
            i += 1;
            continue;
        }
        let mut base: Vec<String> = Vec::new();
        let mut j = i;
        if tok == "super" {
            base = file_module.clone();
            base.extend(inline.iter().map(|(n, _)| n.clone()));
            while tokens.get(j).is_some_and(|t| t.0 == "super") && tokens.get(j + 1).is_some_and(|t| t.0 == "::") {
                base.pop();
                j += 2;
            }
        } else {
            j += 2;
        }
        let mut paths = Vec::new();
        let next = parse_tree(&tokens, j, base, &mut paths);
        let root = if is_main { "mover" } else { "crate" };
        for p in paths {
            edges.push(Edge {
                from: s.rel.clone(),
                line,
                to: if is_main && tok != "mover" { s.rel.clone() } else { resolve(&p, files) },
                path: format!("{root}::{}", p.join("::")),
            });
        }
        i = next.max(i + 1);
    }
    edges
}

/// Parses a path tree at `tokens[at..]` (`a::b`, `a::{b, c::{d, e}}`, `a::*`, `a as b`) below `prefix`,
/// pushing every full path; returns the index after it.
fn parse_tree(tokens: &[(String, usize)], mut at: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        let Some((tok, _)) = tokens.get(at) else {
            out.push(prefix);
            return at;
        };
        if tok == "{" {
            at += 1;
            loop {
                match tokens.get(at).map(|t| t.0.as_str()) {
                    None => return at,
                    Some("}") => return at + 1,
                    Some(",") => at += 1,
                    Some(_) => at = parse_tree(tokens, at, prefix.clone(), out),
                }
            }
        }
        if tok == "*" {
            out.push(prefix);
            return at + 1;
        }
        if !tok.starts_with(is_ident_start) {
            out.push(prefix);
            return at;
        }
        if tok != "self" {
            prefix.push(tok.clone());
        }
        at += 1;
        if tokens.get(at).is_some_and(|t| t.0 == "::") {
            at += 1;
            continue;
        }
        if tokens.get(at).is_some_and(|t| t.0 == "as") {
            at += 2;
        }
        out.push(prefix);
        return at;
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Identifiers, `::` and single punctuation characters, each with its 1-based line.
fn tokenize(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if is_ident_char(c) {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                out.push((chars[start..i].iter().collect(), n + 1));
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                out.push(("::".to_string(), n + 1));
                i += 2;
            } else {
                out.push((c.to_string(), n + 1));
                i += 1;
            }
        }
    }
    out
}

/// `text` with comments and the insides of string and character literals replaced by spaces (newlines
/// kept, so line numbers stay), so that neither prose nor braces in strings look like code.
fn blank_non_code(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut nest = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    nest += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    nest -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nest == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#'))
            && (i == 0 || !is_ident_char(c[i - 1]))
        {
            // Raw string r"..." / r#"..."#: ends at a quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push('"');
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (0..hashes).all(|h| c.get(i + 1 + h) == Some(&'#')) {
                    out.push('"');
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is blanked.
            let close = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&k| c[k] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    out.push('\'');
                    out.extend(std::iter::repeat_n(' ', k - i - 1));
                    out.push('\'');
                    i = k + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The checker itself, on small in-memory crates: each rule catches what it is for, so the tests above
/// cannot pass by finding nothing.
mod checker {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        Graph::new(files.iter().map(|(rel, text)| Source { rel: rel.to_string(), text: text.to_string() }).collect())
    }

    fn messages(v: &[Violation]) -> String {
        v.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("\n")
    }

    const CLEAN: &[(&str, &str)] = &[
        ("lib.rs", "pub mod wire;\npub mod proto;\npub mod files;\n"),
        ("wire/mod.rs", "pub mod seal;\npub mod keys;\npub use seal::Sealer;\npub struct Drop;\n"),
        ("wire/seal.rs", "use super::keys::Keys;\nuse super::Drop;\npub struct Sealer;\n"),
        ("wire/keys.rs", "pub struct Keys;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Drop;\n}\n"),
        ("proto/mod.rs", "use crate::wire::{seal::Sealer, Drop};\n// crate::sim in a comment is no import\n"),
        ("files/mod.rs", "use crate::{proto, wire::keys::Keys};\nfn f() -> crate::wire::Drop { let _ = \"crate::pipeline\"; todo!() }\n"),
    ];

    #[test]
    fn a_clean_crate_passes_every_rule() {
        let g = graph(CLEAN);
        assert!(check_floors(&g).is_empty(), "{}", messages(&check_floors(&g)));
        assert!(check_grep(&g).is_empty(), "{}", messages(&check_grep(&g)));
        assert!(check_mutual(&g).is_empty(), "{}", messages(&check_mutual(&g)));
        // The parser saw the grouped, nested and inline paths, and resolved `super` inside `mod tests`.
        let to: BTreeSet<(&str, &str)> = g.edges.iter().map(|e| (e.from.as_str(), e.to.as_str())).collect();
        for edge in [
            ("files/mod.rs", "proto/mod.rs"),
            ("files/mod.rs", "wire/keys.rs"),
            ("files/mod.rs", "wire/mod.rs"),
            ("proto/mod.rs", "wire/seal.rs"),
            ("wire/seal.rs", "wire/keys.rs"),
            ("wire/keys.rs", "wire/mod.rs"),
        ] {
            assert!(to.contains(&edge), "edge {edge:?} not found in {to:?}");
        }
        assert!(!to.contains(&("wire/keys.rs", "lib.rs")), "`super` in `mod tests` is the file's own module");
    }

    #[test]
    fn an_upward_import_is_caught_in_every_form() {
        let mut files = CLEAN.to_vec();
        files.push(("wire/control.rs", "use crate::files::Entry;\nuse crate::{proto::policy::Policy, time};\n"));
        files.push(("disk/mod.rs", "fn t() { let d = crate::files::testutil::TempDir::new(\"x\"); }\n"));
        files.push(("time.rs", ""));
        let g = graph(&files);
        let floors = messages(&check_floors(&g));
        assert!(floors.contains("wire/control.rs:1: wire -> files (crate::files::Entry)"), "{floors}");
        assert!(floors.contains("wire/control.rs:2: wire -> proto (crate::proto::policy::Policy)"), "{floors}");
        assert!(floors.contains("wire/control.rs:2: wire -> time"), "same floor, not listed: {floors}");
        assert!(floors.contains("disk/mod.rs:1: disk -> files"), "{floors}");
        let grep = messages(&check_grep(&g));
        assert!(grep.contains("wire/control.rs:1: `wire` mentions `crate::files`"), "{grep}");
        assert!(grep.contains("disk/mod.rs:1: `disk` mentions `crate::files`"), "{grep}");
    }

    #[test]
    fn mutual_imports_are_caught_between_files_and_between_modules() {
        let mut files = CLEAN.to_vec();
        files[2] = ("wire/seal.rs", "use super::keys::Keys;\npub struct Sealer;\n");
        files[3] = ("wire/keys.rs", "use super::seal::Sealer;\npub struct Keys;\n");
        files.push(("sim/mod.rs", "use crate::files::Scan;\n"));
        files[5] = ("files/mod.rs", "use crate::sim::Link;\n");
        let g = graph(&files);
        let mutual = messages(&check_mutual(&g));
        assert!(mutual.contains("wire/keys.rs:1 -> wire/seal.rs"), "{mutual}");
        assert!(mutual.contains("modules import each other (a cycle): files, sim"), "{mutual}");
    }

    #[test]
    fn unknown_modules_and_cmd_outside_main_are_caught() {
        let mut files = CLEAN.to_vec();
        files.push(("relay/mod.rs", "use crate::wire::Drop;\n"));
        files.push(("cmd/mod.rs", "pub fn run() {}\n"));
        files.push(("sim/mod.rs", "fn f() { crate::cmd::run() }\n"));
        files.push(("main.rs", "fn main() { mover::cmd::run() }\n"));
        let g = graph(&files);
        let floors = messages(&check_floors(&g));
        assert!(floors.contains("unknown top-level module `relay`: add it to the floor table"), "{floors}");
        assert!(floors.contains("sim/mod.rs:1: sim -> cmd"), "{floors}");
        assert!(!floors.contains("main.rs"), "main may import cmd: {floors}");
        let grep = messages(&check_grep(&g));
        assert!(grep.contains("sim/mod.rs:1: only main.rs may mention `cmd`"), "{grep}");
        assert!(!grep.contains("main.rs:"), "{grep}");
    }
}
