//! Which generation of Anthropic's documented CMEK contract the stand-in
//! plays, and how it reads the places where the documentation is ambiguous.
//! The constants here are written from the documentation (see
//! `../shared/docs/cmek-facts.md`), not taken from the client under test.

use serde::{Deserialize, Serialize};

/// Anthropic's published principal for the `us` geo.
pub const ANTHROPIC_ROLE_US: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
/// The all-zeros compartment id validation sends for an unattached key.
pub const VALIDATION_COMPARTMENT: &str = "00000000-0000-0000-0000-000000000000";
/// The encryption-context keys Anthropic sends.
pub const ORG_CONTEXT: &str = "anthropic:org_uuid";
pub const COMPARTMENT_CONTEXT: &str = "anthropic:compartment_uuid";
/// Validation calls also carry `associatedData` = base64("cmek-validation").
pub const ASSOCIATED_DATA_CONTEXT: &str = "associatedData";
pub const ASSOCIATED_DATA_VALUE: &str = "Y21lay12YWxpZGF0aW9u";
/// What the negative checks send where a foreign organization or workspace is needed.
pub const FOREIGN_ORG: &str = "0b0e5f4a-6c1d-4e2b-9a3f-7d8c9e0f1a2b";
pub const FOREIGN_COMPARTMENT: &str = "5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716";

/// The documentation generation (see "Contract history" in the facts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Contract {
    /// Up to mid-July 2026: validation round-trips with the workspace's compartment.
    #[serde(rename = "2026-07")]
    July2026,
    /// Late July – August 2026: validation round-trips with the all-zeros id.
    #[serde(rename = "2026-08")]
    August2026,
    /// From September 2026: the organization condition is required; each
    /// validation (and each attach) also checks that four requests that must
    /// be denied are denied.
    #[default]
    #[serde(rename = "current")]
    Current,
}

/// What validation of a key attached to no workspace sends as the compartment.
/// The documentation says "an older, unattached key whose compartment
/// statement still allows Encrypt is validated with the all-zeros ID" and
/// nothing about other unattached keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnattachedValidation {
    /// The all-zeros id.
    #[default]
    Zeros,
    /// No compartment key at all: only the organization.
    OrgOnly,
}

/// The contract the stand-in plays. Settable at start and at run time
/// (`POST /_sandbox/contract`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    pub contract: Contract,
    pub unattached_validation: UnattachedValidation,
    /// The status of the answer refusing to change a workspace's
    /// `external_key_id` once set: the documentation lists both 400
    /// `invalid_request_error` and 409 `conflict_error` without saying which.
    pub write_once_status: u16,
    /// Errors carry the typed `error.details.error_code` (the current API;
    /// its SDKs expose it as `error_code`). Off: the API before the codes,
    /// where only `error.type` and the message say what happened.
    pub error_codes: bool,
    /// Whether renaming a key (`display_name`) that the organization's
    /// Workspace Policy lists counts as reconfiguring it. The SDKs say such
    /// a key "can't be deleted or reconfigured" without saying whether a
    /// display name is configuration.
    pub workspace_policy_blocks_rename: bool,
    /// How `GET …/external_keys/{id}` answers an id that is not registered:
    /// 404 `not_found_error` (the stable endpoints' documented error), or
    /// 400 with `external_key_not_found` (the code the beta endpoints
    /// document). The documentation does not say which the stable one sends.
    pub missing_key: MissingKey,
    /// Whether Create Workspace with `external_key_id` on Claude Platform
    /// validates the key against the new workspace, as the attach does. The
    /// documentation says so for Claude Platform on AWS ("the key is
    /// validated against the new workspace on this request") and nothing
    /// for Claude Platform; there the workflow validates first either way.
    pub create_validates_key: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingKey {
    #[default]
    NotFound404,
    ExternalKeyNotFound400,
}

impl Default for ContractConfig {
    fn default() -> Self {
        Self {
            contract: Contract::Current,
            unattached_validation: UnattachedValidation::Zeros,
            write_once_status: 400,
            error_codes: true,
            workspace_policy_blocks_rename: true,
            missing_key: MissingKey::NotFound404,
            create_validates_key: true,
        }
    }
}
