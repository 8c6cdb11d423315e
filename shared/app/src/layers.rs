//! The layer rule of docs/architecture.md, checked by reading the sources: a module may
//! use modules of its own layer or below, never above; a few pairs inside a layer are
//! ruled out too; and the modules of the crate form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a module (its first path segment under `crate::`).
fn layer(top: &str) -> Option<u8> {
    Some(match top {
        "runtime" | "keys" | "records" => 0,
        "feed" | "workspace" | "thread" | "access" => 1,
        "reports" => 2,
        "conversations" | "load" | "views" => 3,
        "tickets" => 4,
        "pipeline" | "mailbox" | "forms" | "chat" => 5,
        "outbound" | "verify" | "replay" => 6,
        "api" | "web" | "live" => 7,
        "layers" => 8,
        _ => return None,
    })
}

/// Pairs ruled out inside a layer: (importer prefix, imported prefix, unless this one).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("pipeline", "mailbox", ""),
    ("pipeline", "forms", ""),
    ("mailbox", "pipeline", "pipeline::ingest"),
    ("forms", "pipeline", "pipeline::ingest"),
    ("mailbox", "forms", ""),
    ("pipeline", "chat", ""),
    ("chat", "pipeline", "pipeline::ingest"),
    ("chat", "mailbox", ""),
    ("chat", "forms", ""),
    ("mailbox", "chat", ""),
    ("forms", "chat", ""),
    ("forms", "mailbox", ""),
    ("keys", "", ""),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file (`mailbox/gmail.rs` -> `mailbox::gmail`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> =
        rel.iter().map(|c| c.to_string_lossy().to_string()).filter(|c| c != "mod").collect();
    parts.join("::")
}

/// Every `crate::a::b` path a file's code (not its tests) names, as `a::b` (or `a`),
/// grouped imports (`use crate::{a::b, c}`) included.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String =
        code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut out = BTreeSet::new();
    let mut add = |path: &str| {
        let segs: Vec<&str> = path.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
        match segs.as_slice() {
            [] => {}
            [a] => {
                out.insert(a.to_string());
            }
            [a, b, ..] => {
                let b: String = b.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                out.insert(if b.is_empty() { a.to_string() } else { format!("{a}::{b}") });
            }
        }
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group up to its matching brace, split at the top level.
            let (mut depth, mut cur, mut end) = (0usize, String::new(), group.len());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = j;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        add(&cur);
                        cur.clear();
                        continue;
                    }
                    _ => {}
                }
                cur.push(c);
            }
            add(&cur);
            rest = &group[end..];
        } else {
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            add(&path);
        }
    }
    out
}

/// Which module (as named in the graph) an import belongs to: `a::b` when `a` is a folder.
fn node(import: &str, folders: &BTreeSet<String>) -> String {
    let top = import.split("::").next().unwrap_or_default().to_string();
    if folders.contains(&top) && import.contains("::") { import.to_string() } else { top }
}

pub fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let folders: BTreeSet<String> = std::fs::read_dir(src)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let module = module_of(src, f);
        if module == "lib" || module == "layers" {
            continue;
        }
        let top = module.split("::").next().unwrap_or_default().to_string();
        let Some(mine) = layer(&top) else {
            problems
                .push(format!("{module}: not in any layer (add it to layers.rs and docs/architecture.md)"));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let from = node(&module, &folders);
        for imp in imports(&text) {
            let itop = imp.split("::").next().unwrap_or_default();
            if itop.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                problems.push(format!("{module} imports crate::{imp}: import by path, not through lib.rs"));
                continue;
            }
            let Some(theirs) = layer(itop) else { continue };
            if theirs > mine {
                problems.push(format!("{module} (layer {mine}) imports crate::{imp} (layer {theirs})"));
            }
            if top == "runtime" && itop != "runtime" {
                problems.push(format!("{module}: runtime imports nothing else of the crate (crate::{imp})"));
            }
            for (a, b, unless) in FORBIDDEN {
                let hits = top == *a && (b.is_empty() && itop != top || !b.is_empty() && itop == *b);
                if hits && (unless.is_empty() || !imp.starts_with(unless)) {
                    problems.push(format!("{module} may not import crate::{imp}"));
                }
            }
            let to = node(&imp, &folders);
            if to != from {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Cycles between modules (a folder's files count one by one).
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((n, path)) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    let text = cycle.join(" -> ");
                    if !problems.iter().any(|p| p.contains("cycle") && p.contains(&text))
                        && start == cycle.iter().min().unwrap_or(start)
                    {
                        problems.push(format!("cycle: {text}"));
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    problems
}

#[test]
fn lower_layers_never_import_upper_ones_and_nothing_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(problems.is_empty(), "{} layer problems:\n{}", problems.len(), problems.join("\n"));
}

/// The check can fail: a lower module that names an upper one is caught.
#[test]
fn a_forbidden_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("pipeline")).unwrap();
    std::fs::write(src.join("keys.rs"), "pub fn k() {}\n").unwrap();
    std::fs::write(src.join("thread.rs"), "use crate::outbound::track::add_trackers;\n").unwrap();
    std::fs::write(src.join("pipeline/mod.rs"), "pub mod route;\n").unwrap();
    std::fs::write(
        src.join("pipeline/route.rs"),
        "use crate::{keys, mailbox::gmail};\nuse crate::Ingestor;\n",
    )
    .unwrap();
    let p = violations(src);
    assert!(p.iter().any(|x| x.contains("thread (layer 1) imports crate::outbound::track")), "{p:?}");
    assert!(p.iter().any(|x| x.contains("pipeline::route may not import crate::mailbox::gmail")), "{p:?}");
    assert!(p.iter().any(|x| x.contains("through lib.rs")), "{p:?}");
}
