//! The modules of xcs-core import each other without a circle: data flows one way (options →
//! scope → ambient → policies → drivers → batches), so each module can be read knowing only what
//! is below it. This test reads the `crate::…` and `super::…` paths of every module (outside its
//! unit tests and comments) and fails naming any circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`cache::memory`) → its file.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                if parts != ["lib"] {
                    found.insert(parts.join("::"), path);
                }
            }
        }
    }
    found
}

/// The source a module's imports are read from: without its unit tests and comments.
fn code_of(path: &Path) -> String {
    let source = std::fs::read_to_string(path).unwrap();
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => &source[..],
    };
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths named after `prefix` (`crate::` or `super::`), braces expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':').to_owned();
        let after = &rest[path.len()..];
        if after.starts_with("::{") {
            let inner = &after[3..after.find('}').unwrap_or(after.len())];
            for item in inner.split(',') {
                let item = item.split_whitespace().next().unwrap_or("");
                if item.is_empty() || item == "self" {
                    paths.push(path.clone());
                } else {
                    paths.push(format!("{path}::{item}"));
                }
            }
        } else {
            paths.push(path);
        }
    }
    paths
}

#[test]
fn no_module_imports_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&root);
    let names: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    // The longest module path that `path` starts with.
    let resolve = |path: &str| -> Option<String> {
        let segments: Vec<&str> = path.split("::").collect();
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|candidate| names.contains(candidate.as_str()))
    };
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, file) in &modules {
        let code = code_of(file);
        // `super` of module `a::b` (in `a/b.rs` or `a/b/mod.rs`) is `a`.
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p).to_owned();
        let mut targets = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            targets.extend(resolve(&path));
        }
        for path in paths_after(&code, "super::") {
            let full = if parent.is_empty() {
                path
            } else {
                format!("{parent}::{path}")
            };
            targets.extend(resolve(&full));
        }
        // A module and its own submodules are one unit here.
        targets.retain(|t| {
            t != name
                && !t.starts_with(&format!("{name}::"))
                && !name.starts_with(&format!("{t}::"))
        });
        edges.insert(name.as_str(), targets);
    }
    // A circle exists when some module reaches itself.
    let mut circles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = edges[start]
            .iter()
            .map(|t| (t.clone(), vec![start.to_string(), t.clone()]))
            .collect();
        while let Some((at, path)) = stack.pop() {
            if at == *start {
                circles.push(path.join(" → "));
                break;
            }
            if !seen.insert(at.clone()) {
                continue;
            }
            for next in edges.get(at.as_str()).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    assert!(modules.len() > 30, "found only {} modules", modules.len());
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
