//! The README's first command, as a newcomer runs it: `./scripts/demo`
//! builds the binaries and runs `cmek-local demo`, which brings the local
//! stack up, runs the real state machine and prints each step. Run here as
//! the binary itself (the build is the test command's), both paths: the
//! demo organization's workspace encrypted, and a new workspace created
//! with its key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;
use std::time::{Duration, Instant};

fn demo(args: &[&str]) -> (bool, String) {
    let started = Instant::now();
    let out = Command::new(sandbox::stack::target_dir().join("debug/cmek-local"))
        .arg("demo")
        .args(args)
        .current_dir(sandbox::stack::repo_root())
        .output()
        .expect("cmek-local (cargo build --workspace --bins)");
    // The demo bounds its own wait (an hour on the production schedule);
    // with the demo's short schedule it takes well under a minute.
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "the demo took {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_demo_encrypts_a_workspace_step_by_step() {
    let (ok, out) = demo(&["--propagation-delay", "2"]);
    assert!(ok, "{out}");
    for step in [
        "Begin",
        "CreateKey",
        "RegisterKey",
        "ValidateKey",
        "AttachKey",
        "Finish",
    ] {
        assert!(
            out.contains(&format!("▶ \u{1b}[1m{step}")),
            "no {step} step shown: {out}"
        );
    }
    assert!(out.contains("is encrypted with its own key"), "{out}");
    assert!(out.contains("  attached         true"), "{out}");
    assert!(out.contains("Audit trail (DynamoDB)"), "{out}");
}

#[test]
fn the_demo_creates_a_workspace_born_encrypted() {
    let (ok, out) = demo(&["--propagation-delay", "2", "--create-workspace", "payments-prod"]);
    assert!(ok, "{out}");
    for step in ["CreateWorkspace", "Begin", "Finish"] {
        assert!(
            out.contains(&format!("▶ \u{1b}[1m{step}")),
            "no {step} step shown: {out}"
        );
    }
    // The created workspace needs no key of its own made, registered or attached afterwards.
    for step in ["CreateKey", "RegisterKey", "AttachKey"] {
        assert!(!out.contains(&format!("▶ \u{1b}[1m{step}")), "{step} ran: {out}");
    }
    assert!(out.contains("is encrypted with its own key"), "{out}");
    assert!(out.contains("  attached         true"), "{out}");
}
