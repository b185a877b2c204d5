//! `template.yaml` as CloudFormation receives it from `sam deploy`: the AWS
//! SAM translator's output (`tools/sam_translate.py`, run in the virtualenv
//! the test command installs for `sam validate`), with the roles, policies,
//! permissions and rules SAM generates.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::stack::repo_root;

/// The virtualenv with the SAM translator, if it is installed.
pub fn translator_python() -> std::path::PathBuf {
    repo_root().join(".local/venv-sam/bin/python")
}

/// The translation of a template's text (the real one, or a deliberately
/// broken copy).
pub fn translate(template_text: &str) -> anyhow::Result<Value> {
    let root = repo_root();
    let python = translator_python();
    if !python.exists() {
        bail!(
            "{} is missing: ./scripts/test installs the SAM translator",
            python.display()
        );
    }
    // One file per translation: callers run in parallel.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("cmek-sam-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("template.yaml");
    std::fs::write(&path, template_text)?;
    let out = std::process::Command::new(python)
        .arg(root.join("tools/sam_translate.py"))
        .arg(&path)
        // The translator wants a Region for its pseudo parameters.
        .env("AWS_DEFAULT_REGION", "us-east-2")
        .output()
        .context("running the SAM translator");
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        bail!(
            "SAM translation failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("the translator's JSON")
}
