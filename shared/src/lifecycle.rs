//! What attaching a key locks, and what a key's lifecycle does to the
//! workspaces it protects, in the operator's words: the plan `cmekctl`
//! prints before an irreversible attach, the Default Workspace's opt-in, and
//! the guardian's alerts all say it the same way, from here.
//!
//! Source: "What happens when you rotate, disable, or delete your encryption
//! key" (platform.claude.com/docs/en/manage-claude/cmek-key-lifecycle, read
//! 2026-12-07): attaching "locks the workspace's data retention setting" and
//! the key "can't be removed or replaced"; disabling or revoking "can take up
//! to 1 hour to apply, and requests in flight during that hour might still
//! succeed"; after re-enabling, "requests that failed while the key was
//! disabled are not retried; disabling the key does not pause the retention
//! period"; deleting or scheduling deletion means "Anthropic can't recover
//! the data the key protects". Organization webhooks refused while the
//! Default Workspace uses a key: Anthropic's "CMEK coverage — Claude
//! Platform" page (the search tool did not return that sentence itself; see
//! the list of facts not verified here, in docs/deploy.md).

/// What every attach locks, said before it.
pub const ATTACH_LOCKS: &str = "Attaching is permanent: the workspace's key can never be removed or replaced (to change keys, create a new workspace with the new key and move its traffic), and attaching locks the workspace's data-retention setting.";

/// What attaching a key to the organization's Default Workspace adds.
pub const DEFAULT_WORKSPACE_LOCKS: &str = "This is the organization's Default Workspace: while it uses a key, organization webhooks are refused (400).";

/// How a disable or a revocation reaches Anthropic.
pub const DISABLE_APPLIES: &str = "applies within up to an hour (requests in flight may still succeed); after that every request of the workspaces it protects fails with cmek_key_disabled";

/// The two documented limits of re-enabling a key (or restoring access).
pub const REENABLE_LIMITS: &str = "requests that failed while the key was unusable are not retried, and disabling the key did not pause the data-retention period";

/// What scheduled deletion means for the data.
pub const DELETION_IS_FINAL: &str =
    "once the key is deleted, the data it protects is unrecoverable: Anthropic keeps no copy of the key";
