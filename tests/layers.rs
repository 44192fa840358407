//! The house rules of docs/ARCHITECTURE.md, checked on the source tree: every
//! top-level module sits on a layer, non-test code imports only from its own
//! layer or below, the modules of one layer import each other without a
//! loop, and no non-test source file is over the size a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, ground floor first (docs/ARCHITECTURE.md says what each is).
const LAYERS: &[&[&str]] = &[
    &["reply", "address", "net", "message", "files"],
    &["config", "observe"],
    &["store", "dns", "tls", "spool", "cluster"],
    &[
        "recipients",
        "auth",
        "credentials",
        "rewrite",
        "chain",
        "screen",
        "scan",
        "replica",
    ],
    &["outbound", "queue"],
    &["smtp", "api", "manage", "zone", "provision"],
    &["node", "cli"],
];

/// Lines a non-test source file may have.
const MAX_LINES: usize = 700;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test-only files: `tests.rs`, `*_tests.rs`, anything under a `tests/`.
fn is_test_file(relative: &Path) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || relative.components().any(|c| c.as_os_str() == "tests")
}

/// The file's text before its `#[cfg(test)] mod tests` (test code may
/// reach anywhere), without `//` comments.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            if next.starts_with("mod tests") || next.starts_with("#[path") {
                break;
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The top-level modules `code` names as `crate::<module>`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `eas_crate::` or `some_crate::` is not ours.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        // `crate::{a::X, b}`: every first name in the group.
        if let Some(group) = rest.strip_prefix('{') {
            for part in split_group(group) {
                found.insert(part);
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
            found.insert(name);
        }
    }
    found
}

/// The first names of the top-level items of a `{…}` group.
fn split_group(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut item = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            item.push(c);
        }
    }
    names.push(item);
    names
        .iter()
        .filter_map(|item| {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && name != "self").then_some(name)
        })
        .collect()
}

struct Tree {
    /// module -> modules it imports (non-test code), with one file that does.
    imports: BTreeMap<String, BTreeMap<String, PathBuf>>,
    long_files: Vec<(PathBuf, usize)>,
}

fn tree() -> Tree {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut imports: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut long_files = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src").to_path_buf();
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if first == "lib" || first == "main" || is_test_file(&relative) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let lines = text.lines().count();
        let code = code_of(&text);
        if code.lines().count() > MAX_LINES {
            long_files.push((relative.clone(), lines));
        }
        let entry = imports.entry(first.clone()).or_default();
        for target in crate_imports(&code) {
            if target != first {
                entry.entry(target).or_insert_with(|| relative.clone());
            }
        }
    }
    Tree {
        imports,
        long_files,
    }
}

#[test]
fn every_module_has_a_layer() {
    let tree = tree();
    let unknown: Vec<&String> = tree
        .imports
        .keys()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules without a layer (add them to LAYERS here and to docs/ARCHITECTURE.md): {unknown:?}"
    );
}

#[test]
fn imports_never_reach_a_higher_layer() {
    let tree = tree();
    let mut wrong = Vec::new();
    for (module, targets) in &tree.imports {
        let Some(own) = layer_of(module) else {
            continue;
        };
        for (target, file) in targets {
            if layer_of(target).is_some_and(|layer| layer > own) {
                wrong.push(format!(
                    "{module} (layer {own}) imports {target} (layer {}) in src/{}",
                    layer_of(target).unwrap_or(0),
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the house:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn modules_import_each_other_without_a_loop() {
    let tree = tree();
    // Depth-first search for a cycle in the module graph.
    fn visit<'a>(
        module: &'a str,
        tree: &'a Tree,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[start..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module);
        if let Some(targets) = tree.imports.get(module) {
            for target in targets.keys() {
                if let Some(cycle) = visit(target, tree, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(module);
        None
    }
    let mut done = BTreeSet::new();
    for module in tree.imports.keys() {
        if let Some(cycle) = visit(module, &tree, &mut Vec::new(), &mut done) {
            panic!("import loop: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn no_source_file_is_over_the_limit() {
    let tree = tree();
    assert!(
        tree.long_files.is_empty(),
        "non-test code over {MAX_LINES} lines (split it at a seam): {:?}",
        tree.long_files
    );
}

#[test]
fn the_checks_see_a_wrong_import() {
    // The checks themselves: an upward import and a loop are found.
    let code = code_of("use crate::node::run;\n// crate::cli in a comment\n");
    assert_eq!(crate_imports(&code), BTreeSet::from(["node".to_string()]));
    let skipped =
        code_of("use crate::reply::Reply;\n#[cfg(test)]\nmod tests {\nuse crate::cli;\n}\n");
    assert_eq!(
        crate_imports(&skipped),
        BTreeSet::from(["reply".to_string()])
    );
    assert!(crate_imports("use eas_crate::x; use other_crate::y;").is_empty());
    assert_eq!(
        crate_imports("use crate::{config::Config, store::{self, Store}, self as me};"),
        BTreeSet::from(["config".to_string(), "store".to_string()])
    );
    assert!(layer_of("address") < layer_of("node"));
}
