//! `cmekctl report`: the evidence an auditor asks for — which workspaces are
//! encrypted under which key, since when, whether the key is healthy and
//! rotating, and what happened on the way.
//!
//! Read-only. It reads the workflow table (records and audit trails), KMS
//! (each key's state, rotation and policy, analysed for its workspace) and
//! the Admin API (the organization, its workspaces, its registered keys: GETs
//! only, never a validation or any other write). Rendered as JSON, CSV or
//! one self-contained HTML page (`render`).

mod gather;
pub mod render;

use std::collections::BTreeMap;

use cmek::store::AuditEvent;
use serde::Serialize;

pub use gather::{Sources, gather};

/// A report, as rendered in every format.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub inputs: Inputs,
    pub summary: Summary,
    /// Every workspace of the organization (archived ones included), and any
    /// workspace the table knows that the organization no longer lists.
    pub workspaces: Vec<WorkspaceRow>,
    /// Keys of cmek-provisioner (the table's) that no workspace uses.
    pub keys_attached_to_nothing: Vec<UnusedKey>,
}

/// What the report read, so a reader can tell what it covers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    pub workflow_table: String,
    pub aws_region: String,
    pub admin_api: String,
    pub organization: String,
    /// The Regions whose KMS was read.
    pub kms_regions: Vec<String>,
    pub geo: String,
    /// Every read the report made, by source: what an auditor can replay.
    pub reads: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub workspaces: usize,
    pub encrypted: usize,
    pub not_encrypted: usize,
    pub archived: usize,
    /// Rows by [`WorkspaceRow::state`].
    pub by_state: BTreeMap<String, usize>,
    pub needing_attention: usize,
    pub open_guardian_findings: usize,
    pub keys_attached_to_nothing: usize,
}

/// One workspace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRow {
    pub workspace_id: String,
    pub name: String,
    pub archived: bool,
    /// `ENCRYPTED` (a key attached, per the Admin API), `FAILED`,
    /// `IN_PROGRESS`, `NOT_ENCRYPTED`, or `NOT_LISTED` (the table knows it,
    /// the organization does not list it).
    pub state: String,
    pub compartment_id: Option<String>,
    /// The workflow record's status, if any.
    pub workflow_status: Option<String>,
    /// The key attached, per the Admin API.
    pub external_key_id: Option<String>,
    pub key_arn: Option<String>,
    pub alias: Option<String>,
    pub key_region: Option<String>,
    /// When the attach was recorded (the audit trail's `AttachKey attached`).
    pub attached_since: Option<String>,
    /// The record's trigger: manual, EventBridge, CloudFormation.
    pub provisioned_by: Option<serde_json::Value>,
    /// The execution that attached the key.
    pub execution: Option<String>,
    pub validations: Vec<Validation>,
    pub key: Option<KeyHealth>,
    pub guardian: Vec<GuardianFinding>,
    pub last_error: Option<String>,
    /// Why this row needs a look, if it does (empty when all is well).
    pub attention: Vec<String>,
    pub audit_trail: Vec<AuditEvent>,
}

/// One validation of the workspace's key: the workflow's, or the guardian's
/// weekly sweep.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub at: String,
    pub by: String,
    pub outcome: String,
}

/// The key as KMS shows it now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyHealth {
    pub state: Option<String>,
    pub rotation_enabled: Option<bool>,
    pub multi_region: Option<bool>,
    /// The policy's analysis for this workspace: `healthy` when the key is
    /// usable and its policy is exactly as documented.
    pub policy_healthy: bool,
    pub policy_cause: String,
    pub policy_summary: String,
    pub policy_findings: Vec<PolicyFinding>,
    /// Which generation of Anthropic's documented policy it follows.
    pub contract: Option<String>,
    /// A read that failed (access denied, the key gone…), named.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyFinding {
    pub code: String,
    pub severity: String,
    pub message: String,
}

/// A guardian finding from the audit trail, and whether what it found still
/// holds: judged from KMS now, not from the trail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardianFinding {
    pub at: String,
    pub finding: String,
    pub actor: Option<String>,
    /// `Some(true)` when the condition is gone now, `Some(false)` when it
    /// holds, `None` when there is nothing to resolve (a failed attempt).
    pub resolved: Option<bool>,
}

/// A key of ours that no workspace uses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnusedKey {
    pub key_arn: String,
    pub external_key_id: Option<String>,
    /// The workspace it was made for, and that workspace's workflow status.
    pub made_for: String,
    pub workflow_status: String,
}

impl Report {
    /// Counts over the rows.
    pub fn summarize(&mut self) {
        let mut s = Summary {
            workspaces: self.workspaces.len(),
            keys_attached_to_nothing: self.keys_attached_to_nothing.len(),
            ..Summary::default()
        };
        for w in &self.workspaces {
            if w.state == "ENCRYPTED" {
                s.encrypted += 1;
            } else {
                s.not_encrypted += 1;
            }
            s.archived += usize::from(w.archived);
            *s.by_state.entry(w.state.clone()).or_default() += 1;
            s.needing_attention += usize::from(!w.attention.is_empty());
            s.open_guardian_findings += w.guardian.iter().filter(|g| g.resolved == Some(false)).count();
        }
        self.summary = s;
    }
}
