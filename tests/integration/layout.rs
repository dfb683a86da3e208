//! The top-level modules of `src/`, and the folders of `src/api/`, depend on each other
//! without cycles (docs/architecture.md, "Layout"): a reader can learn the code bottom-up, and a change low in the stack cannot
//! need one high in it. Read from the source text — every `crate::<module>` path outside
//! comments and test code — because the tools that draw Rust module graphs need an install
//! and a build of their own, while this reads the tree in milliseconds on every test run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `(file, text)` of every non-test `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>, test_only: &mut BTreeSet<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    // Files first: they name the test-only modules among their siblings.
    entries.sort_by_key(|p| p.is_dir());
    for path in entries {
        if test_only.contains(&path) {
            continue;
        }
        if path.is_dir() {
            sources(&path, out, test_only);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let children = match path.file_stem().and_then(|s| s.to_str()) {
                Some("mod" | "lib" | "main") => dir.to_path_buf(),
                Some(stem) => dir.join(stem),
                None => continue,
            };
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for pair in lines.windows(2) {
                if pair[0] == "#[cfg(test)]"
                    && let Some(name) = pair[1]
                        .strip_prefix("mod ")
                        .and_then(|m| m.strip_suffix(';'))
                {
                    test_only.insert(children.join(format!("{name}.rs")));
                    test_only.insert(children.join(name));
                }
            }
            out.push((path, text));
        }
    }
}

/// The code of a file without its comments and its trailing `mod tests { … }`.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module → the sibling modules it names, each with one file that does: the top-level
/// modules of `src/` (`within` = `""`), or the folders and files of one of them
/// (`within` = `"api"`: `api::files`, `api::edge`, …).
fn dependencies(within: &str) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let root = src.join(within);
    let (mut files, mut test_only) = (Vec::new(), BTreeSet::new());
    sources(&root, &mut files, &mut test_only);
    let prefix = if within.is_empty() {
        "crate::".to_string()
    } else {
        format!("crate::{within}::")
    };
    let single = regex::Regex::new(&format!(r"{prefix}([a-z_][a-z0-9_]*)")).unwrap();
    let grouped = regex::Regex::new(&format!(r"{prefix}\{{([^}}]*)\}}")).unwrap();
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (path, text) in files {
        let relative = path.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap();
        let module = first
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let code = code(&text);
        let mut named: Vec<String> = single
            .captures_iter(&code)
            .map(|c| c[1].to_string())
            .collect();
        for group in grouped.captures_iter(&code) {
            for item in group[1].split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if !head.is_empty() {
                    named.push(head.to_string());
                }
            }
        }
        let entry = graph.entry(module.clone()).or_default();
        for other in named {
            if other != module {
                entry
                    .entry(other)
                    .or_insert_with(|| path.strip_prefix(&src).unwrap().to_path_buf());
            }
        }
    }
    // Names that are items of the parent (`crate::api::router`), not modules.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|name, _| modules.contains(name));
    }
    graph
}

/// Panics naming the files that close the first cycle of `graph`, if it has one.
fn assert_acyclic(graph: &BTreeMap<String, BTreeMap<String, PathBuf>>) {
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(found) = cycle(graph, module, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = found
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]].display()))
                .collect();
            panic!("module cycle:\n  {}", steps.join("\n  "));
        }
    }
}

/// A cycle through `at`, if the graph has one reachable from it.
fn cycle(
    graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
    at: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut found = path[start..].to_vec();
        found.push(at.to_string());
        return Some(found);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.to_string());
    for next in graph.get(at).into_iter().flat_map(|d| d.keys()) {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(at.to_string());
    None
}

#[test]
fn the_top_level_modules_have_no_cycles() {
    let graph = dependencies("");
    assert!(
        graph.len() > 20,
        "the scan found too few modules: {:?}",
        graph.keys()
    );
    // The check can fail: the store depends on the aggregates.
    assert!(
        graph["store"].contains_key("aggregates"),
        "{:?}",
        graph["store"]
    );
    assert_acyclic(&graph);
}

/// The API's resource folders depend on `edge` (what every request passes), never the
/// other way round and never on each other in a circle; the reads they share are
/// `queries`, the changes `commands`.
#[test]
fn the_api_folders_have_no_cycles() {
    let graph = dependencies("api");
    for folder in [
        "accounts",
        "audit",
        "edge",
        "files",
        "notifications",
        "operations",
        "uploads",
    ] {
        assert!(
            graph.contains_key(folder),
            "no api::{folder}: {:?}",
            graph.keys()
        );
    }
    // The check can fail: the resources use the edge's extractors.
    assert!(graph["files"].contains_key("edge"), "{:?}", graph["files"]);
    assert!(
        graph["edge"].is_empty(),
        "the edge names a resource: {:?}",
        graph["edge"]
    );
    assert_acyclic(&graph);
}

#[test]
fn a_cycle_is_reported() {
    let graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::from([
        (
            "a".into(),
            BTreeMap::from([("b".into(), PathBuf::from("a.rs"))]),
        ),
        (
            "b".into(),
            BTreeMap::from([("c".into(), PathBuf::from("b.rs"))]),
        ),
        (
            "c".into(),
            BTreeMap::from([("a".into(), PathBuf::from("c.rs"))]),
        ),
    ]);
    let found = cycle(&graph, "a", &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(
        found,
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
