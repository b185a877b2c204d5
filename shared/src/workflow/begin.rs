use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Deps, ProvisionRequest, StepInput, advance};
use crate::admin_api::AdminApiError;
use crate::error::CmekError;
use crate::ids::{CompartmentId, ExternalKeyId, KeyArn};
use crate::store::{self, Status};

crate::context::lambda_function!(
    /// Begin: validate the input, read the workspace (and an adopted key), claim it.
    Begin: begin => BeginOutput,
    crate::context::Needs {
        admin_api: true,
        kms: true,
        ..crate::context::Needs::NONE
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BeginOutput {
    pub workspace_id: String,
    pub compartment_id: String,
    /// Already attached to this workflow's key: nothing left to do.
    pub already_attached: bool,
    pub status: Status,
    /// Claude Platform on AWS: attaching performs the validation, so the
    /// state machine goes from RegisterKey straight to attaching.
    #[serde(default)]
    pub attach_validates: bool,
}

/// Validate the request, read the workspace (and an adopted key), then claim
/// it: stop early if it is attached to our key already, refuse if it is
/// attached to another.
pub async fn begin(deps: &Deps, event: Value) -> Result<BeginOutput, CmekError> {
    let input = StepInput::from_value(&event)?;
    let req: &ProvisionRequest = &input.request;
    let ws = &req.workspace_id;
    let admin = deps.admin()?;

    // Read-only checks first: a workspace id that does not exist (a typo, a
    // placeholder) or an adopted key that does not exist is refused before
    // anything is written, not even a workflow record.
    // Read through the list without the Default Workspace: a workspace it
    // lacks but a GET finds is the Default Workspace, which takes a key only
    // on an explicit opt-in (`defaultWorkspace`) that says what it locks.
    let (workspace, is_default) = match admin.workspace_unless_default(ws).await? {
        Some(w) => (w, false),
        None => {
            let w = admin.get_workspace(ws).await.map_err(|e| match e {
                AdminApiError::NotFound(_) => CmekError::WorkspaceNotFound(ws.to_string()),
                other => other.into(),
            })?;
            (w, true)
        }
    };
    if is_default && !req.default_workspace && workspace.external_key_id.is_none() {
        return Err(CmekError::DefaultWorkspaceNotOptedIn(format!(
            "workspace {ws} is the organization's Default Workspace. {} {} Nothing was created; to go ahead, start again with \"defaultWorkspace\": true (cmekctl provision {ws} --default-workspace)",
            crate::lifecycle::DEFAULT_WORKSPACE_LOCKS,
            crate::lifecycle::ATTACH_LOCKS
        )));
    }
    if workspace.is_archived() {
        return Err(CmekError::WorkspaceArchived(ws.to_string()));
    }
    // A workspace of a user profile takes only a key bound to that profile,
    // which this project does not make: refused before anything is created.
    if let (Some(profile), None) = (&workspace.user_profile_id, &workspace.external_key_id) {
        return Err(CmekError::KeyProfileMismatch(format!(
            "workspace {ws} belongs to user profile {}, and a key and its workspace must have the same user profile; this project registers keys without one, so nothing was created",
            crate::ids::shown(profile)
        )));
    }
    // A key of another account: its policy is not this account's to write,
    // and this function's role may not even describe it (an AccessDenied
    // would say less than this).
    if let (Some(arn), Some(account)) = (&req.key_arn, &deps.config.account_id)
        && arn.account() != account
    {
        return Err(CmekError::KeyNotUsable {
            key: arn.to_string(),
            reason: format!(
                "the key belongs to account {}; this stack adopts keys of its own account {} only",
                arn.account().as_str(),
                account.as_str()
            ),
        });
    }
    // Claude Platform on AWS refuses a key outside the workspaces' Region at
    // registration: refused here, before anything is created or written.
    if let (Some(arn), Some(region)) = (&req.key_arn, &deps.config.platform_region)
        && arn.region() != region
    {
        return Err(CmekError::KeyNotUsable {
            key: arn.to_string(),
            reason: format!(
                "the key is in {}; on Claude Platform on AWS a key must be in the Region of its workspace ({region})",
                arn.region()
            ),
        });
    }
    if let Some(arn) = &req.key_arn
        && deps.kms()?.describe(arn.as_str()).await?.is_none()
    {
        return Err(CmekError::KeyNotUsable {
            key: arn.to_string(),
            reason: "the key does not exist (or this role cannot see it)".into(),
        });
    }
    // An adopted key is opted in by its owner with the project's tag. The
    // tag is what lets the provisioner's roles rewrite its policy (CreateKey
    // may change the policy only of keys it created or that carry the tag)
    // and, on Claude Platform on AWS, use it (the service checks the
    // attaching role's own access, and that role may use only tagged keys):
    // an untagged key would be refused there, after everything else. A key
    // whose policy is managed elsewhere (manageKeyPolicy: false) is only read
    // on Claude Platform, and needs no tag there.
    if let Some(arn) = &req.key_arn
        && (deps.config.platform.is_on_aws() || req.manage_key_policy)
    {
        let tags = deps.kms()?.tags(arn.as_str()).await?;
        let tagged = tags
            .iter()
            .any(|(t, v)| t == crate::kms::TAG_MANAGED_BY && v == crate::kms::TAG_MANAGED_BY_VALUE);
        if !tagged {
            let why = if deps.config.platform.is_on_aws() {
                "on Claude Platform on AWS the attaching role may use only keys the provisioner manages (the service checks the caller's own access to the key)"
            } else {
                "the provisioner rewrites the policy only of keys it created or that their owner tagged (or pass manageKeyPolicy: false to keep managing the policy yourself)"
            };
            return Err(CmekError::KeyNotUsable {
                key: arn.to_string(),
                reason: format!(
                    "{why}: tag the key {}={} to adopt it",
                    crate::kms::TAG_MANAGED_BY,
                    crate::kms::TAG_MANAGED_BY_VALUE
                ),
            });
        }
    }
    // The organization the key policy binds to. Read once per cold start;
    // an answer that is not a bare UUID stops here, before anything exists.
    // Claude Platform on AWS binds the key to the account's workspaces
    // instead (aws:SourceArn): no organization condition, nothing to read.
    let org = if deps.config.platform.is_on_aws() {
        None
    } else {
        Some(deps.organization().await?)
    };
    let key_protects = match &req.key_arn {
        Some(arn) => protected_compartments(deps, arn).await?,
        None => Vec::new(),
    };

    let compartment: CompartmentId = workspace
        .compartment_id
        .as_deref()
        .ok_or_else(|| {
            CmekError::AdminApiRejected(format!(
                "workspace {ws} has no compartment_id: is CMEK enabled for this organization?"
            ))
        })?
        .parse()
        .map_err(|e| {
            CmekError::AdminApiRejected(format!("workspace {ws} has a malformed compartment_id: {e}"))
        })?;

    let trigger = req.trigger.as_ref().and_then(|t| serde_json::to_value(t).ok());
    let rec = store::claim(
        &*deps.store,
        ws,
        &input.execution,
        trigger,
        deps.now(),
        deps.config.lease_ttl,
    )
    .await?;

    if let Some(rc) = rec.compartment_id
        && rc != compartment
    {
        return Err(CmekError::StateConflict(format!(
            "workspace {ws} now reports compartment {compartment}, but {rc} was recorded; refusing to continue"
        )));
    }
    if let (Some(ro), Some(org)) = (rec.org_uuid, org)
        && ro != org
    {
        return Err(CmekError::StateConflict(format!(
            "the admin key now belongs to organization {org}, but {ro} was recorded for workspace {ws}; refusing to continue"
        )));
    }

    let mut already_attached = false;
    if let Some(attached) = workspace.external_key_id.as_deref() {
        // Ours if it is the registration we recorded, or a registration of
        // the key we created or were asked to adopt (a crash after attaching).
        // On Claude Platform on AWS a registration's id is the key's ARN.
        let by_arn = deps.config.platform.is_on_aws()
            && rec
                .key_arn
                .iter()
                .chain(req.key_arn.iter())
                .any(|a| a.as_str() == attached);
        let ours = rec.external_key_id.as_deref() == Some(attached)
            || by_arn
            || !deps.config.platform.is_on_aws() && {
                let candidates: Vec<String> = rec
                    .key_arn
                    .iter()
                    .chain(req.key_arn.iter())
                    .map(ToString::to_string)
                    .collect();
                if candidates.is_empty() {
                    false
                } else {
                    let id = attached
                        .parse()
                        .map_err(|e| CmekError::AdminApiRejected(format!("{e}")))?;
                    let key = admin.get_external_key(&id).await?;
                    key.kms_arn()
                        .is_some_and(|arn| candidates.iter().any(|c| c == arn))
                }
            };
        if !ours {
            return Err(CmekError::WorkspaceAlreadyAttached {
                workspace: ws.to_string(),
                external_key_id: attached.to_owned(),
            });
        }
        already_attached = true;
    }

    let to = if already_attached {
        Status::Attached
    } else {
        rec.status
    };
    // Recorded only when the workspace is attached to a registration of ours.
    let attached_id: Option<ExternalKeyId> = match workspace.external_key_id.as_deref() {
        Some(id) if already_attached => Some(id.parse().map_err(|e| {
            CmekError::AdminApiRejected(format!("the Admin API named a malformed external key id: {e}"))
        })?),
        _ => None,
    };
    let rec = advance(
        deps,
        &rec,
        &input.execution,
        to,
        "Begin",
        if already_attached {
            "already_attached"
        } else {
            "workspace_checked"
        },
        json!({"compartment_id": compartment, "org_uuid": org, "external_key_id": attached_id, "key_protects": key_protects}),
        |r| {
            r.compartment_id = Some(compartment);
            r.org_uuid = org;
            r.key_protects = key_protects.clone();
            if already_attached {
                r.external_key_id = attached_id;
                // Attached to the key the request names (a workspace created
                // with its key, or a crash after attaching an adopted key):
                // the record knows the key too.
                if r.key_arn.is_none()
                    && let Some(arn) = &req.key_arn
                {
                    r.key_arn = Some(arn.clone());
                    r.key_region = Some(arn.region().to_string());
                }
            }
        },
    )
    .await?;
    tracing::info!(workspace_id = %ws, execution = %input.execution, already_attached, "workspace claimed and checked");
    Ok(BeginOutput {
        workspace_id: ws.to_string(),
        compartment_id: compartment.to_string(),
        already_attached,
        status: rec.status,
        attach_validates: deps.config.platform.attach_validates(),
    })
}

/// The compartments of every workspace an existing key is attached to: per
/// the Admin API (every registration of the ARN, every workspace naming one,
/// archived and Default Workspace included) and per the workflow table. When
/// CreateKey rewrites the key's policy, these workspaces must keep reading
/// the data they wrote.
async fn protected_compartments(deps: &Deps, arn: &KeyArn) -> Result<Vec<CompartmentId>, CmekError> {
    let admin = deps.admin()?;
    let registrations: Vec<String> = admin
        .list_external_keys()
        .await?
        .into_iter()
        .filter(|k| k.kms_arn() == Some(arn.as_str()))
        .map(|k| k.id)
        .collect();
    let mut out: Vec<CompartmentId> = Vec::new();
    let mut add = |c: CompartmentId| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    if !registrations.is_empty() {
        for w in admin.list_workspaces(true, true).await? {
            if w.external_key_id
                .as_ref()
                .is_some_and(|id| registrations.contains(id))
                && let Some(c) = w.compartment_id.as_deref().and_then(|c| c.parse().ok())
            {
                add(c);
            }
        }
    }
    for r in deps.store.by_key(arn.as_str()).await? {
        if r.status == Status::Attached
            && let Some(c) = r.compartment_id
        {
            add(c);
        }
    }
    Ok(out)
}
