//! The suite's own hygiene: every wait in it has a deadline and says what it
//! waited for, so that a regression fails the run instead of hanging it.

#![allow(clippy::unwrap_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

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

/// The waits in a file that have no deadline: a `sleep(` inside a loop
/// whose function names no deadline (`deadline`, `Instant::now() <`, a
/// `timeout`) and asserts or returns an error with a message on it.
fn waits_without_deadline(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (offset, _) in text.match_indices("sleep(") {
        // The enclosing function: from the last `fn ` before the sleep.
        let start = text[..offset].rfind("fn ").unwrap_or(0);
        let body = &text[start..offset];
        // A pump (a background task the stack aborts when dropped) runs
        // until then by design: it waits for nothing.
        let pump =
            body.trim_start().starts_with("fn ") && body.lines().next().is_some_and(|l| l.contains("pump"));
        let in_loop = (body.contains("loop {") || body.contains("while ")) && !pump;
        let bounded = ["deadline", "Instant::now() <", "timeout", "TIMEOUT"]
            .iter()
            .any(|k| body.contains(k));
        if in_loop && !bounded {
            out.push(text[..offset].lines().count());
        }
    }
    out
}

#[test]
fn every_wait_in_the_suite_has_a_deadline() {
    let root = sandbox::stack::repo_root();
    let mut files = Vec::new();
    for dir in [
        "tests/tests",
        "tests/src",
        "shared/tests",
        "sandbox/tests",
        "sandbox/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut unbounded = Vec::new();
    let mut waits = 0;
    for f in &files {
        if f.ends_with("tests/tests/suite.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        waits += text.matches("sleep(").count();
        for line in waits_without_deadline(&text) {
            unbounded.push(format!("{}:{line}", f.strip_prefix(&root).unwrap().display()));
        }
    }
    assert!(
        waits >= 8,
        "only {waits} waits found: is the search reading the suite?"
    );
    assert!(
        unbounded.is_empty(),
        "waits with no deadline (a regression would hang CI):\n{}",
        unbounded.join("\n")
    );
    // Control: the wait this check was written for, as it was.
    let unbounded_loop = "fn wait_for_key() {\n    let key_arn = loop {\n        if let Some(k) = read() { break k; }\n        tokio::time::sleep(std::time::Duration::from_millis(200)).await;\n    };\n}\n";
    assert_eq!(waits_without_deadline(unbounded_loop), vec![4]);
}
