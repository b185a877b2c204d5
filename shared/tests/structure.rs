//! The crate's shape, checked: every `crate::` path in a module points at a
//! module of its own layer or a lower one, and every function's `main` is
//! the one line that serves its handler.
//!
//! Layers, bottom to top (a module may use its own layer and those below):
//!
//! 0. identifiers and test hooks: `ids`, `crash_point`
//! 1. domain: `geo`, `platform`, `policy`, `metrics` (pure: no I/O but stdout)
//! 2. adapters: `tls`, `aws`, `admin_api`, `kms`, `store`, `events`, `cloudformation`
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
    ("tls", 2),
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

/// The top-level module a file belongs to (`workflow/begin.rs` → `workflow`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without comments and without its unit tests (a test
/// may reach anywhere: it is not part of the layering).
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // `#[cfg(test)] mod x;` names a file of its own (skipped by
            // name); a `#[cfg(test)]` item with a body runs to the end of
            // the file, where this crate keeps its unit tests.
            if lines
                .get(i + 1)
                .is_some_and(|next| next.trim_end().ends_with(';'))
            {
                continue;
            }
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Every module a piece of code names through `crate::`, including
/// `crate::{a, b::c}` groups.
fn used_modules(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.push(name);
        }
    }
    used
}

#[test]
fn no_module_uses_a_module_of_a_higher_layer() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in &files {
        let module = module_of(path);
        if module == "lib" || path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            panic!("{} is in no layer: add `{module}` to LAYERS", path.display());
        };
        let code = production_code(&std::fs::read_to_string(path).unwrap());
        for used in used_modules(&code) {
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
                    "{} (layer {own}) uses crate::{used} (layer {theirs})",
                    path.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(checked > 100, "the check read almost nothing ({checked} paths)");
    assert!(
        violations.is_empty(),
        "imports up the layers:\n{}",
        violations.join("\n")
    );
}

/// The check sees an upward path where there is one (its positive control).
#[test]
fn the_layer_check_sees_an_upward_import() {
    let code = production_code(
        "use crate::ids::WorkspaceId;\nuse crate::{error::CmekError, workflow};\n// crate::runtime\n#[cfg(test)]\nmod tests {\n use crate::runtime;\n}\n",
    );
    assert_eq!(used_modules(&code), ["ids", "error", "workflow"]);
}

/// Each function's `main` is one call to `cmek::runtime::serve` with its
/// own handler: no two repeat a body, none can build other clients than its
/// handler declares.
#[test]
fn every_main_serves_its_own_handler_in_one_line() {
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut handlers = BTreeMap::new();
    for entry in std::fs::read_dir(&functions).unwrap() {
        let dir = entry.unwrap().path();
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        let code: Vec<&str> = main
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(code.len() <= 5, "{name}: main has {} lines of code", code.len());
        let serve: Vec<&&str> = code
            .iter()
            .filter(|l| l.starts_with("cmek::runtime::serve::<"))
            .collect();
        assert_eq!(
            serve.len(),
            1,
            "{name}: main must be cmek::runtime::serve::<Handler>()"
        );
        if let Some(other) = handlers.insert(serve[0].to_string(), name.clone()) {
            panic!("{name} and {other} serve the same handler");
        }
    }
    assert_eq!(handlers.len(), 11, "{handlers:?}");
}
