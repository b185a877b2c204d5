//! Helpers shared by the end-to-end tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use std::time::Duration;

use cmek::ids::WorkspaceId;
use cmek::store::{AuditEvent, WorkflowRecord, WorkflowStore};
use sandbox::stack::{LocalStack, StackOptions};
use serde_json::Value;

pub const TIMEOUT: Duration = Duration::from_secs(180);

/// A stack with short retry schedules, labelled for its log folder.
pub async fn stack(label: &str, tune: impl FnOnce(&mut StackOptions)) -> LocalStack {
    let mut options = StackOptions {
        label: label.into(),
        ..StackOptions::default()
    }
    .fast_retries();
    tune(&mut options);
    LocalStack::start(options).await.expect("local stack")
}

/// The first `n` unattached workspaces of the demo organization.
pub fn workspaces(stack: &LocalStack) -> Vec<Value> {
    stack.admin.state()["orgs"]["demo-org"]["workspaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn workspace_id(w: &Value) -> WorkspaceId {
    w["id"].as_str().unwrap().parse().unwrap()
}

pub async fn record(stack: &LocalStack, ws: &WorkspaceId) -> WorkflowRecord {
    stack.store().load(ws).await.unwrap().expect("workflow record")
}

pub async fn events(stack: &LocalStack, ws: &WorkspaceId) -> Vec<AuditEvent> {
    stack.store().events(ws).await.unwrap()
}

/// The Admin API requests the stand-in received for a path, by method.
pub fn calls(stack: &LocalStack, method: &str, path_suffix: &str) -> usize {
    stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix) && r.status < 400)
        .count()
}

pub fn external_keys(stack: &LocalStack) -> Vec<Value> {
    stack.admin.state()["orgs"]["demo-org"]["external_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Keys in moto tagged for the workspace.
pub async fn keys_for(stack: &LocalStack, ws: &WorkspaceId) -> Vec<String> {
    let kms = cmek::kms::KeyManager::new(stack.kms());
    kms.find_tagged_keys(ws)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.arn)
        .collect()
}

pub fn dump_on_failure(stack: &LocalStack) -> String {
    format!("function logs in {}", stack.log_dir.display())
}

pub use cmek::store::WorkflowStore as _;
