use serde_json::{Value, json};

use super::{Deps, StepInput, StepOutput, advance, held, recorded_compartment, recorded_org};
use crate::crash_point::crash_point;
use crate::error::CmekError;
use crate::ids::{CompartmentId, KeyArn, OrgUuid};
use crate::kms::{KeyInfo, KeyManager, TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE, TAG_WORKSPACE, alias_for};
use crate::policy::{self, Finding, Merge, MergeOutcome, Scope, on_aws};
use crate::store::{Status, WorkflowRecord};

crate::context::lambda_function!(
    /// CreateKey: create the workspace's KMS key (or adopt one) with the documented policy.
    CreateKey: create_key => StepOutput,
    crate::context::Needs {
        kms: true,
        ..crate::context::Needs::NONE
    }
);

/// The description of a key created for `ws`: how a key this function made
/// but did not get to tag is found after a crash.
pub fn key_description(ws: &crate::ids::WorkspaceId) -> String {
    format!("Anthropic CMEK for {ws} (cmek-provisioner)")
}

/// The statement of a new key's policy that lets CreateKey's own role tag
/// the key as the project's, and nothing else: its IAM policy may tag no key
/// at all, so the tag that confers rights (changing the policy, the guardian
/// undoing a deletion, the attaching role's use on Claude Platform on AWS)
/// can be put only on keys this role created.
pub const CREATOR_TAGS_SID: &str = "CmekProvisionerTagsTheKeyItCreated";
/// The statement that lets CreateKey's role maintain the key it created:
/// its policy (merging another workspace in), alias and rotation. It is the
/// key's own grant, so it holds before the tag takes effect (up to five
/// minutes, KMS Developer Guide, "ABAC for AWS KMS"), and it satisfies
/// CreateKey's policy lockout safety check, which needs the caller able to
/// put the policy again.
pub const CREATOR_MAINTAINS_SID: &str = "CmekProvisionerMaintainsTheKeyItCreated";

/// The statements of [`CREATOR_MAINTAINS_SID`] and [`CREATOR_TAGS_SID`] for `role`.
pub fn creator_statements(role: &str) -> [Value; 2] {
    [
        json!({
            "Sid": CREATOR_MAINTAINS_SID,
            "Effect": "Allow",
            "Principal": {"AWS": role},
            "Action": ["kms:PutKeyPolicy", "kms:CreateAlias", "kms:EnableKeyRotation"],
            "Resource": "*"
        }),
        json!({
            "Sid": CREATOR_TAGS_SID,
            "Effect": "Allow",
            "Principal": {"AWS": role},
            "Action": "kms:TagResource",
            "Resource": "*",
            "Condition": {
                "StringEquals": {format!("aws:RequestTag/{TAG_MANAGED_BY}"): TAG_MANAGED_BY_VALUE},
                "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_MANAGED_BY, TAG_WORKSPACE]}
            }
        }),
    ]
}

/// Create the workspace's key (documented policy, tags, alias, rotation), or
/// adopt the key named in the request, adding this compartment to its policy.
pub async fn create_key(deps: &Deps, event: Value) -> Result<StepOutput, CmekError> {
    let input = StepInput::from_value(&event)?;
    let rec = held(deps, &input).await?;
    if rec.status == Status::Attached {
        return Ok(StepOutput::from(&rec));
    }
    let compartment = recorded_compartment(&rec)?;
    let kms = deps.kms()?;

    // Already done (a retry, or a new execution resuming): make sure the key
    // is still fit and its policy still admits the compartment.
    if let Some(arn) = rec.key_arn.clone() {
        let info = usable_key(deps, kms, &arn).await?;
        let (_, rec) = ensure_policy(deps, kms, &input, &rec, &info, compartment).await?;
        if !rec.key_adopted {
            finish_setup(deps, kms, &rec, &info).await?;
        }
        return Ok(StepOutput::from(&rec));
    }

    let rec = match &input.request.key_arn {
        Some(arn) => adopt(deps, kms, &input, rec, arn, compartment).await?,
        None => create(deps, kms, &input, rec, compartment).await?,
    };
    Ok(StepOutput::from(&rec))
}

pub(super) async fn usable_key(deps: &Deps, kms: &KeyManager, arn: &str) -> Result<KeyInfo, CmekError> {
    let info = kms.describe(arn).await?.ok_or_else(|| CmekError::KeyNotUsable {
        key: arn.to_owned(),
        reason: "the key does not exist (or this role cannot see it)".into(),
    })?;
    if let Some(reason) = info.unusable_reason() {
        return Err(CmekError::KeyNotUsable {
            key: arn.to_owned(),
            reason,
        });
    }
    let parsed: KeyArn = info.arn.parse().map_err(|e| CmekError::KeyNotUsable {
        key: arn.to_owned(),
        reason: format!("{e}"),
    })?;
    let geo = deps.config.geo;
    if let Some(region) = &deps.config.platform_region
        && parsed.region() != region
    {
        return Err(CmekError::KeyNotUsable {
            key: arn.to_owned(),
            reason: format!(
                "the key is in {}; on Claude Platform on AWS a key must be in the Region of its workspace ({region})",
                parsed.region()
            ),
        });
    }
    if !geo.accepts_region(parsed.region()) {
        return Err(CmekError::KeyRegionMismatch {
            key: arn.to_owned(),
            region: parsed.region().to_string(),
            geo: geo.to_string(),
            recommended: geo.recommended_region().to_string(),
        });
    }
    Ok(info)
}

/// Whether this execution's key lists the workspaces that may use it.
fn restrict_to_workspaces(deps: &Deps, input: &StepInput) -> bool {
    input
        .request
        .restrict_to_workspaces
        .unwrap_or(deps.config.restrict_to_workspaces)
}

/// A policy rewrite: the text to write and what changed.
type Rewrite = Option<(String, Vec<String>)>;

/// Check (and, where allowed, bring to the current contract) the key policy
/// for this compartment. The merge never removes anything and refuses a
/// rewrite that would cut off a workspace the key already protects. The
/// policy is judged as it would be written, by the platform's rules, before
/// writing it: a key that will be refused is left exactly as it was.
async fn ensure_policy(
    deps: &Deps,
    kms: &KeyManager,
    input: &StepInput,
    rec: &WorkflowRecord,
    info: &KeyInfo,
    compartment: CompartmentId,
) -> Result<(Vec<Finding>, WorkflowRecord), CmekError> {
    let current = kms.get_policy(&info.arn).await?;
    let rejected = |summary: String| CmekError::KeyPolicyRejected {
        key: info.arn.clone(),
        summary,
    };
    // Claude Platform binds the key to the organization; Claude Platform on
    // AWS to the account's workspaces (no organization).
    let org: Option<OrgUuid> = if deps.config.platform.is_on_aws() {
        None
    } else {
        Some(recorded_org(rec)?)
    };
    // Keys created here are always ours to manage; adopted keys only if asked.
    let manage = !rec.key_adopted || input.request.manage_key_policy;
    let update: Rewrite = match (manage, &org) {
        (false, _) => None,
        (true, Some(org)) => merge_for_anthropics_role(deps, input, rec, org, &current, compartment)
            .map_err(|e| rejected(e.to_string()))?,
        (true, None) => merge_for_the_service_principal(deps, input, rec, &info.arn, &current, compartment)?,
    };
    let judged = update.as_ref().map(|(text, _)| text.as_str()).unwrap_or(&current);
    let account = info.parsed_arn().ok().map(|a| a.account().clone());
    let findings = crate::context::analyse_for_workspace(
        &deps.config,
        judged,
        &rec.workspace_id,
        compartment,
        org.as_ref(),
        account.as_ref(),
    )
    .map_err(|e| rejected(e.to_string()))?;
    check_findings(&info.arn, &findings, &input.request.accept_findings)?;
    let mut rec = rec.clone();
    if let Some((text, changes)) = update {
        kms.put_policy(&info.arn, &text)
            .await
            .map_err(|e| rejected(format!("could not write the merged key policy: {e}")))?;
        let detail = json!({"compartment_id": compartment, "key_arn": info.arn, "changes": changes, "protects": rec.key_protects});
        rec = advance(
            deps,
            &rec,
            &input.execution,
            rec.status,
            "CreateKey",
            "policy_updated",
            detail,
            |_| {},
        )
        .await?;
    }
    Ok((findings, rec))
}

/// Claude Platform: Anthropic's role, bound to the organization (an older
/// contract's key upgraded, every protected workspace kept readable).
fn merge_for_anthropics_role(
    deps: &Deps,
    input: &StepInput,
    rec: &WorkflowRecord,
    org: &OrgUuid,
    current: &str,
    compartment: CompartmentId,
) -> Result<Rewrite, policy::PolicyError> {
    let merge = Merge {
        geo: deps.config.geo,
        org,
        compartment,
        restrict_to_workspaces: restrict_to_workspaces(deps, input),
        protected: &rec.key_protects,
    };
    Ok(match policy::merge(current, &merge)? {
        MergeOutcome::Updated {
            policy: next,
            changes,
        } => Some((policy::to_policy_string(&next), changes)),
        MergeOutcome::Unchanged => None,
    })
}

/// Claude Platform on AWS: the service principal, bound to the workspaces'
/// compartments and source ARNs (the workspaces the key protects kept).
fn merge_for_the_service_principal(
    deps: &Deps,
    input: &StepInput,
    rec: &WorkflowRecord,
    key: &str,
    current: &str,
    compartment: CompartmentId,
) -> Result<Rewrite, CmekError> {
    let account = deps
        .config
        .require_account_id()
        .map_err(|e| CmekError::Configuration(e.to_string()))?;
    let ws_arn = super::workspace_arn(deps, &rec.workspace_id)?;
    let sources = super::source_arns(deps, &rec.workspace_id)?;
    let mut listed = vec![compartment];
    listed.extend(rec.key_protects.iter().copied().filter(|c| *c != compartment));
    let grant = on_aws::OnAwsGrant {
        account,
        compartments: restrict_to_workspaces(deps, input).then_some(listed.as_slice()),
        source_arns: &sources,
    };
    let merged =
        on_aws::merge(current, &grant, compartment, &ws_arn).map_err(|e| CmekError::KeyPolicyRejected {
            key: key.to_owned(),
            summary: e.to_string(),
        })?;
    Ok(merged.map(|(next, changes)| (policy::to_policy_string(&next), changes)))
}

/// The policy a new key is created with, for this platform: Anthropic's
/// documented policy, and the statements that let this function's own role
/// tag and maintain that key (and, its IAM policy allowing neither on
/// untagged keys, no other).
fn new_key_policy(
    deps: &Deps,
    input: &StepInput,
    rec: &WorkflowRecord,
    compartment: CompartmentId,
) -> Result<Value, CmekError> {
    let creator = deps
        .config
        .require_key_creator_role()
        .map_err(|e| CmekError::Configuration(e.to_string()))?;
    let mut policy = documented_key_policy(deps, input, rec, compartment)?;
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.extend(creator_statements(creator));
    }
    Ok(policy)
}

/// The key policy Anthropic documents for this platform.
fn documented_key_policy(
    deps: &Deps,
    input: &StepInput,
    rec: &WorkflowRecord,
    compartment: CompartmentId,
) -> Result<Value, CmekError> {
    let account = deps
        .config
        .require_account_id()
        .map_err(|e| CmekError::Configuration(e.to_string()))?;
    let only = [compartment];
    if deps.config.platform.is_on_aws() {
        let sources = super::source_arns(deps, &rec.workspace_id)?;
        return Ok(on_aws::key_policy(&on_aws::OnAwsGrant {
            account,
            compartments: restrict_to_workspaces(deps, input).then_some(&only[..]),
            source_arns: &sources,
        }));
    }
    let org = recorded_org(rec)?;
    let scope = if restrict_to_workspaces(deps, input) {
        Scope::Workspaces(&only)
    } else {
        Scope::Organization
    };
    Ok(policy::key_policy(account, deps.config.geo, &org, scope))
}

/// Errors always stop; over-permissive grants stop unless the operator accepted them.
pub(super) fn check_findings(
    key: &str,
    findings: &[Finding],
    accepted: &[policy::FindingCode],
) -> Result<(), CmekError> {
    let blocking: Vec<&Finding> = findings.iter().filter(|f| f.blocks(accepted)).collect();
    if blocking.is_empty() {
        return Ok(());
    }
    let summary = blocking
        .iter()
        .map(|f| {
            let hint = if f.code.acceptable() {
                format!(
                    " (to proceed anyway, pass acceptFindings [\"{}\"])",
                    f.code.name()
                )
            } else {
                String::new()
            };
            format!("{}: {} Fix: {}{hint}", f.code.name(), f.message, f.fix)
        })
        .collect::<Vec<_>>()
        .join(" | ");
    Err(CmekError::KeyPolicyRejected {
        key: key.to_owned(),
        summary,
    })
}

async fn adopt(
    deps: &Deps,
    kms: &KeyManager,
    input: &StepInput,
    rec: WorkflowRecord,
    arn: &KeyArn,
    compartment: CompartmentId,
) -> Result<WorkflowRecord, CmekError> {
    let info = usable_key(deps, kms, arn.as_str()).await?;
    let key_arn = info
        .parsed_arn()
        .map_err(|e| CmekError::Internal(e.to_string()))?;
    let mut adopted = rec;
    adopted.key_adopted = true;
    let (findings, rec) = ensure_policy(deps, kms, input, &adopted, &info, compartment).await?;
    let accepted: Vec<&Finding> = findings
        .iter()
        .filter(|f| input.request.accept_findings.contains(&f.code))
        .collect();
    advance(
        deps,
        &rec,
        &input.execution,
        Status::KeyCreated,
        "CreateKey",
        "key_adopted",
        json!({"key_arn": info.arn, "accepted_findings": accepted, "policy_managed": input.request.manage_key_policy}),
        |r| {
            r.key_arn = Some(key_arn);
            r.key_region = Some(arn.region().to_string());
            r.key_adopted = true;
            r.accepted_findings = accepted.iter().map(|f| f.code.name()).collect();
        },
    )
    .await
}

async fn create(
    deps: &Deps,
    kms: &KeyManager,
    input: &StepInput,
    rec: WorkflowRecord,
    compartment: CompartmentId,
) -> Result<WorkflowRecord, CmekError> {
    let ws_owned = rec.workspace_id.clone();
    let ws = &ws_owned;
    let alias = alias_for(&deps.config.alias_prefix, ws);

    // A key made by an earlier attempt whose answer was lost: first by alias,
    // then (if CreateKey was started) by tag. Never a second key.
    let mut found = match kms.describe(&alias).await? {
        Some(k) => {
            let tags = kms.tags(&k.key_id).await?;
            let ours = tags
                .iter()
                .any(|(t, v)| t == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE)
                && tags.iter().any(|(t, v)| t == TAG_WORKSPACE && v == ws.as_str());
            if !ours {
                return Err(CmekError::KeyConflict(format!(
                    "alias {alias} already exists and points to {}, which this project did not create for {ws}; pass it as keyArn to adopt it, or remove the alias",
                    k.arn
                )));
            }
            Some(k)
        }
        None => None,
    };
    // A key found by alias or by tag carries the project's tags already.
    let mut tagged_already = found.is_some();
    if found.is_none() && rec.key_creation_started {
        let mut tagged = kms.find_tagged_keys(ws.as_str()).await?;
        tagged_already = !tagged.is_empty();
        if tagged.is_empty() {
            // Made, but not yet tagged when the earlier attempt died.
            let creator = deps
                .config
                .require_key_creator_role()
                .map_err(|e| CmekError::Configuration(e.to_string()))?;
            tagged = kms
                .find_untagged_keys_of(&key_description(ws), CREATOR_TAGS_SID, creator)
                .await?;
        }
        match tagged.len() {
            0 => {}
            1 => found = tagged.pop(),
            _ => {
                return Err(CmekError::KeyConflict(format!(
                    "{} keys were made for {ws} ({}); refusing to guess which one to use — keep one, schedule none for deletion without checking which is attached",
                    tagged.len(),
                    tagged
                        .iter()
                        .map(|k| k.arn.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }

    let (rec, info) = match found {
        Some(info) => {
            tracing::info!(workspace_id = %ws, key_arn = %info.arn, "found the key an earlier attempt created");
            (rec, info)
        }
        None => {
            let key_policy = new_key_policy(deps, input, &rec, compartment)?;
            // Record the intent first: if this function dies after KMS made
            // the key, the next attempt knows to look for it.
            let rec = advance(
                deps,
                &rec,
                &input.execution,
                rec.status,
                "CreateKey",
                "key_creation_started",
                json!({}),
                |r| {
                    r.key_creation_started = true;
                },
            )
            .await?;
            let info = kms
                .create_key(&policy::to_policy_string(&key_policy), &key_description(ws))
                .await?;
            crash_point("create-key.after-kms-create");
            (rec, info)
        }
    };
    // Tagged as the project's: a key made here, or found untagged after a
    // crash. The key's own policy is what allows it.
    if !tagged_already {
        kms.tag_as_ours(&info.key_id, ws.as_str()).await?;
        crash_point("create-key.after-tag");
    }
    let info = usable_key(deps, kms, &info.arn).await?;
    kms.ensure_alias(&alias, &info.key_id).await?;
    crash_point("create-key.after-alias");
    kms.enable_rotation(&info.key_id).await?;
    // usable_key parsed it already: a key this function cannot name is refused there.
    let key_arn = info
        .parsed_arn()
        .map_err(|e| CmekError::Internal(e.to_string()))?;
    let region = Some(key_arn.region().to_string());
    let rec = advance(
        deps,
        &rec,
        &input.execution,
        Status::KeyCreated,
        "CreateKey",
        "key_created",
        json!({"key_arn": info.arn, "alias": alias, "rotation": true}),
        |r| {
            r.key_arn = Some(key_arn);
            r.key_region = region;
            r.alias = Some(alias.clone());
        },
    )
    .await?;
    crash_point("create-key.after-record");
    // Belt and braces: the policy we just wrote must analyse clean.
    let (_, rec) = ensure_policy(deps, kms, input, &rec, &info, compartment).await?;
    Ok(rec)
}

/// Alias and rotation for a key we created (idempotent).
async fn finish_setup(
    deps: &Deps,
    kms: &KeyManager,
    rec: &WorkflowRecord,
    info: &KeyInfo,
) -> Result<(), CmekError> {
    let alias = rec
        .alias
        .clone()
        .unwrap_or_else(|| alias_for(&deps.config.alias_prefix, &rec.workspace_id));
    kms.ensure_alias(&alias, &info.key_id).await?;
    kms.enable_rotation(&info.key_id).await?;
    Ok(())
}
