//! The crate's shape, checked: every `crate::` path in a module points at a
//! module of its own layer or a lower one, and the functions' one `main` is
//! the one line that serves the configured handler.
//!
//! Layers, bottom to top (a module may use its own layer and those below):
//!
//! 0. identifiers and test hooks: `ids`, `crash_point`
//! 1. domain: `geo`, `platform`, `policy`, `metrics`, `lifecycle` (pure: no I/O but stdout)
//! 2. adapters: `tls`, `sdk_http`, `aws`, `admin_api`, `kms`, `store`, `events`, `cloudformation`
//! 3. the functions' error type, configuration and inbound events: `error`, `config`, `inbound`
//! 4. what a handler works with: `context`
//! 5. entry points: `workflow`, `triggers`, `guardian`
//! 6. the Lambda runtime glue: `runtime`
//!
//! Within the entry points one direction is allowed: `triggers` start the
//! workflow, so they may use its input types; nothing else crosses.

#![allow(clippy::unwrap_used, clippy::panic)] // a test: fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("ids", 0),
    ("crash_point", 0),
    ("geo", 1),
    ("platform", 1),
    ("policy", 1),
    ("metrics", 1),
    ("lifecycle", 1),
    ("tls", 2),
    ("sdk_http", 2),
    ("aws", 2),
    ("admin_api", 2),
    ("kms", 2),
    ("store", 2),
    ("events", 2),
    ("cloudformation", 2),
    ("error", 3),
    ("config", 3),
    ("inbound", 3),
    ("context", 4),
    ("workflow", 5),
    ("triggers", 5),
    ("guardian", 5),
    ("runtime", 6),
];

/// The one permitted edge between entry points.
const SIDEWAYS: &[(&str, &str)] = &[("triggers", "workflow")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file (`workflow/begin.rs` → `workflow::begin`,
/// `policy/mod.rs` → `policy`), relative to `src`.
fn module_path(src: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its unit tests (a test
/// may reach anywhere: it is not part of the layering). A `#[cfg(test)]`
/// item is skipped to its closing brace, and what follows it is read.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // `#[cfg(test)] mod x;` names a file of its own (skipped by
            // name); an item with a body is skipped to its end.
            let mut depth = 0i32;
            let mut opened = false;
            while let Some(item) = lines.next_if(|_| !opened || depth > 0) {
                let code = item.split("//").next().unwrap_or(item);
                depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                opened |= code.contains('{') || code.trim_end().ends_with(';');
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The names after a path prefix (`crate::`, `super::`): one, or each of
/// a `{a, b::c}` group.
fn names_after(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match rest.strip_prefix('{') {
        Some(group) => {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(ident)
                .filter(|n| !n.is_empty())
                .collect()
        }
        None => vec![ident(rest)],
    }
}

/// Every top-level module a piece of code names — through `crate::`
/// (including `crate::{a, b::c}` groups), and through `super::` chains that
/// climb to the crate root from `module` (the file's module path) — and,
/// for a name the crate root re-exports, the module it comes from.
fn used_modules(code: &str, module: &[String], reexports: &BTreeMap<String, String>) -> Vec<String> {
    let resolve = |name: String| reexports.get(&name).cloned().unwrap_or(name);
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        used.extend(names_after(rest).into_iter().map(resolve));
    }
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        // `super::super::x` from `a::b::c` is `a::x`: climb once per `super`.
        let mut depth = 0;
        let mut tail = &rest[i..];
        while let Some(t) = tail.strip_prefix("super::") {
            depth += 1;
            tail = t;
        }
        rest = tail;
        if depth >= module.len() {
            used.extend(names_after(tail).into_iter().map(resolve));
        }
    }
    used
}

/// What the crate root re-exports, by name: `pub use workflow::Begin;` lets
/// `crate::Begin` reach the workflow.
fn reexports(src: &Path) -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for stmt in production_code(&lib).split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path
            .trim()
            .trim_start_matches("crate::")
            .trim_start_matches("self::");
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        for item in names_after(items) {
            out.insert(item, module.to_owned());
        }
        if let Some((_, alias)) = items.rsplit_once(" as ") {
            out.insert(alias.trim().to_owned(), module.to_owned());
        }
    }
    out
}

/// Every import up the layers under `src`, and how many paths were read.
fn violations_in(src: &Path) -> (Vec<String>, usize) {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let reexports = reexports(src);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in &files {
        let module_path = module_path(src, path);
        let module = module_path[0].clone();
        if module == "lib" || path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            panic!("{} is in no layer: add `{module}` to LAYERS", path.display());
        };
        let code = production_code(&std::fs::read_to_string(path).unwrap());
        for used in used_modules(&code, &module_path, &reexports) {
            checked += 1;
            if used == module {
                continue;
            }
            // `crate::lambda_function!`-style macro paths and the like.
            let Some(&theirs) = layer.get(used.as_str()) else {
                continue;
            };
            let sideways_ok = SIDEWAYS.contains(&(module.as_str(), used.as_str()));
            if theirs > own || (theirs == own && own == 5 && !sideways_ok) {
                violations.push(format!(
                    "{} (layer {own}) uses {used} (layer {theirs})",
                    path.strip_prefix(src).unwrap().display()
                ));
            }
        }
    }
    (violations, checked)
}

#[test]
fn no_module_uses_a_module_of_a_higher_layer() {
    let (violations, checked) = violations_in(&src());
    assert!(checked > 100, "the check read almost nothing ({checked} paths)");
    assert!(
        violations.is_empty(),
        "imports up the layers:\n{}",
        violations.join("\n")
    );
}

/// The whole check, on a crate made for it, sees each way up the layers:
/// `crate::`, a group, `super::` climbing to the root, a name the root
/// re-exports, and code after a unit-test module; and a test module's own
/// reach is not counted.
#[test]
fn the_layer_check_sees_every_way_up() {
    let dir = std::env::temp_dir().join(format!("cmek-structure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "lib.rs",
        "pub mod ids;\npub mod policy;\npub mod runtime;\npub use workflow::Begin;\n",
    );
    write("ids.rs", "use crate::ids::WorkspaceId;\n");
    write("runtime.rs", "");
    write("workflow.rs", "pub struct Begin;\n");
    write(
        "policy/mod.rs",
        "use super::runtime;\n#[cfg(test)]\nmod tests {\n    use crate::workflow;\n}\nfn later() { crate::error::CmekError::Internal; }\n",
    );
    write(
        "policy/build.rs",
        "use super::super::runtime::serve;\nuse crate::{ids::X, config};\nfn f() -> crate::Begin { todo!() }\n",
    );
    let (violations, _) = violations_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let found = |what: &str| violations.iter().any(|v| v.contains(what));
    assert!(
        found("policy/mod.rs (layer 1) uses runtime"),
        "use super::runtime: {violations:?}"
    );
    assert!(
        found("policy/mod.rs (layer 1) uses error"),
        "after the test module: {violations:?}"
    );
    assert!(
        !found("policy/mod.rs (layer 1) uses workflow"),
        "inside the test module: {violations:?}"
    );
    assert!(
        found("policy/build.rs (layer 1) uses runtime"),
        "super::super: {violations:?}"
    );
    assert!(
        found("policy/build.rs (layer 1) uses config"),
        "a group: {violations:?}"
    );
    assert!(
        found("policy/build.rs (layer 1) uses workflow"),
        "a re-export: {violations:?}"
    );
    assert!(
        !violations.iter().any(|v| v.starts_with("ids.rs")),
        "{violations:?}"
    );
}

/// The one binary's `main` is one call: it serves the handler Lambda
/// configured, from the table in `cmek::runtime`; no handler appears twice
/// there, so no two functions run the same code under different names.
#[test]
fn the_binary_serves_the_configured_handler_in_one_line() {
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&functions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one binary for every function: {dirs:?}");
    let main = std::fs::read_to_string(dirs[0].join("src/main.rs")).unwrap();
    let code: Vec<&str> = main
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    assert!(code.len() <= 5, "main has {} lines of code", code.len());
    assert_eq!(
        code.iter()
            .filter(|l| l.starts_with("cmek::runtime::serve_configured()"))
            .count(),
        1,
        "main must be cmek::runtime::serve_configured()"
    );
    let runtime = std::fs::read_to_string(src().join("runtime.rs")).unwrap();
    let table = &runtime[runtime.find("handlers! {").unwrap()..];
    let table = &table[..table.find('}').unwrap()];
    let mut handlers = BTreeMap::new();
    for line in table.lines().filter(|l| l.contains("=>")) {
        let (name, handler) = line.split_once("=>").unwrap();
        if let Some(other) = handlers.insert(handler.trim().trim_end_matches(','), name.trim()) {
            panic!("{} and {other} serve the same handler", name.trim());
        }
    }
    assert_eq!(handlers.len(), cmek::runtime::HANDLERS.len(), "{handlers:?}");
    assert_eq!(handlers.len(), 12, "{handlers:?}");
}
