//! Crash points: the places where a Lambda that dies leaves the world ahead of
//! the record — right after an external effect (a key made, a registration
//! sent, an attachment written) and before the store knows about it.
//!
//! The crash-point tests make the real binaries die at each of them and check
//! that the workflow still ends with one key, one alias, one registration and
//! one attachment. The hook exists only in debug builds (what the local stack
//! runs); release builds — everything `sam build` deploys — compile it to nothing.
//!
//! `CMEK_CRASH_POINTS` lists the points (comma-separated, `*` for all) and
//! `CMEK_CRASH_MARKER_DIR` a directory where each point, once it has fired,
//! leaves a marker: every point kills the process once per directory, so the
//! retry that follows gets through, as it would after a real crash.

/// Every point in the workflow, in the order a run reaches them.
pub const ALL: &[&str] = &[
    "create-key.after-kms-create",
    "create-key.after-tag",
    "create-key.after-alias",
    "create-key.after-record",
    "register-key.after-create",
    "register-key.after-record",
    "attach-key.after-attach",
    "attach-key.after-record",
    "finish.after-answer",
    "finish.after-release",
];

/// Every point of a workspace created with its key (`createWorkspace`), in
/// the order a run reaches them; Begin and Finish of the new workspace then
/// pass the points of [`ALL`] they reach.
pub const CREATION: &[&str] = &[
    "create-workspace.after-kms-create",
    "create-workspace.after-key-record",
    "create-workspace.after-register",
    "create-workspace.after-create",
    "create-workspace.after-record",
    "create-workspace.after-narrow",
];

/// Die here if the test run asked for it (debug builds only).
#[inline]
pub fn crash_point(name: &'static str) {
    #[cfg(debug_assertions)]
    armed::fire(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod armed {
    use std::io::Write;

    pub(super) fn fire(name: &'static str) {
        debug_assert!(
            super::ALL.contains(&name) || super::CREATION.contains(&name),
            "unlisted crash point {name}"
        );
        let Ok(points) = std::env::var("CMEK_CRASH_POINTS") else {
            return;
        };
        if !points.split(',').any(|p| p.trim() == name || p.trim() == "*") {
            return;
        }
        let Some(dir) = std::env::var_os("CMEK_CRASH_MARKER_DIR") else {
            return;
        };
        let marker = std::path::Path::new(&dir).join(name);
        // create_new: of concurrent instances, exactly one fires each point.
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            // When it fired, in milliseconds since the Unix epoch (a file's
            // own modification time is kept at the kernel's coarse tick):
            // the crash-point tests check each effect happened before it.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let _ = write!(file, "{now}");
            let _ = writeln!(std::io::stderr(), "crash point {name}: aborting the process");
            std::process::abort();
        }
    }
}
