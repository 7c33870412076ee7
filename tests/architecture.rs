//! The library's module graph, read from its own source: the top-level
//! modules have no dependency cycle, every dependency points back along the
//! data (a module uses only modules before it in [`LAYERS`]), and `top`
//! depends on nothing but the API's document. Test code (`#[cfg(test)] mod
//! tests` at the end of a file) is left out: a test may use what it likes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules in the order the data flows; docs/architecture.md
/// draws the same order.
const LAYERS: &[&str] = &[
    "memory",
    "collectd",
    "route",
    "store",
    "storage",
    "telemetry",
    "config",
    "state",
    "ingest",
    "exposition",
    "snapshot",
    "api",
    "top",
    "http",
    "server",
    "cli",
    "manual",
    "build_date",
];

/// A use of another top-level module: where, and which.
#[derive(Debug)]
struct Use {
    file: PathBuf,
    line: usize,
    target: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules `lib.rs` declares.
fn declared() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_owned())
        })
        .collect()
}

/// Every `.rs` file of a top-level module: `src/NAME.rs` and `src/NAME/**`.
fn files(module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `crate::NAME` paths in a file's non-test code, comments left out.
fn uses(file: &Path) -> Vec<Use> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let mut rest = *line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` is not used in this code base; refuse it so
            // that no dependency hides from this test.
            assert!(
                !after.starts_with('{'),
                "{}:{}: write one `use crate::module::…` per module",
                file.display(),
                i + 1
            );
            if !name.is_empty() {
                out.push(Use {
                    file: file.to_owned(),
                    line: i + 1,
                    target: name,
                });
            }
            rest = after;
        }
    }
    out
}

/// module → (module it uses → the first place it does).
fn graph() -> BTreeMap<String, BTreeMap<String, Use>> {
    let modules = declared();
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut edges = BTreeMap::new();
        for f in files(m) {
            for u in uses(&f) {
                if u.target != *m && modules.contains(&u.target) {
                    edges.entry(u.target.clone()).or_insert(u);
                }
            }
        }
        graph.insert(m.clone(), edges);
    }
    graph
}

/// A cycle through the graph, if there is one (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeMap<String, Use>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, Use>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn every_module_has_a_layer() {
    let declared: BTreeSet<String> = declared().into_iter().collect();
    let layered: BTreeSet<String> = LAYERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        declared, layered,
        "src/lib.rs and LAYERS name the same modules"
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph();
    if let Some(c) = cycle(&graph) {
        let places: Vec<String> = c
            .windows(2)
            .map(|w| {
                let u = &graph[&w[0]][&w[1]];
                format!("{} → {} ({}:{})", w[0], w[1], u.file.display(), u.line)
            })
            .collect();
        panic!("dependency cycle:\n  {}", places.join("\n  "));
    }
}

#[test]
fn dependencies_point_back_along_the_data() {
    let layer = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (m, edges) in graph() {
        for (target, u) in edges {
            if layer(&target) >= layer(&m) {
                wrong.push(format!(
                    "{m} uses {target}, which comes after it ({}:{})",
                    u.file.display(),
                    u.line
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn top_depends_only_on_the_api_document() {
    let graph = graph();
    let deps: Vec<&String> = graph["top"].keys().collect();
    assert_eq!(deps, ["api"], "top's dependencies");
    let api: Vec<&String> = graph["api"].keys().collect();
    assert_eq!(api, ["store"], "the API document's dependencies");
}

/// The check sees a dependency in a nested module and would refuse one
/// against the data's direction (a test of the test: it can fail).
#[test]
fn the_reader_finds_nested_uses() {
    let graph = graph();
    assert!(graph["http"].contains_key("snapshot"));
    assert!(graph["ingest"].contains_key("store"));
    assert!(!graph["store"].contains_key("exposition"));
}
