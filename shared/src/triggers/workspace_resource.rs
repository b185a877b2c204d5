//! `Custom::AnthropicCmekWorkspace`: a workspace created with its key, as
//! one CloudFormation resource. Create starts a `createWorkspace`
//! provisioning whose Finish answers CloudFormation with the workspace's id,
//! compartment, key ARN and external key id; Update changes what the Admin
//! API lets change after creation (`Name`, `DisplayColor`, and the
//! registration's `DisplayName`) and refuses the rest with the reason;
//! Delete leaves the workspace and its key in place, or archives the
//! workspace if the template asks (`ArchiveOnDelete: true`, the customer's
//! choice). No path deletes, disables or detaches a key.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cloudformation::{
    self, Callback, Envelope, FAILED_PREFIX, RequestType, Response, Status, WORKSPACE_PHYSICAL_PREFIX,
};
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::{CreationToken, WorkspaceId, shown};
use crate::store::{self, AuditEvent};
use crate::workflow::{CreationRequest, Trigger};

/// The resource type CloudFormation names in its requests.
pub const RESOURCE_TYPE: &str = "Custom::AnthropicCmekWorkspace";

/// `ResourceProperties` (every scalar may arrive as a string).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Properties {
    #[serde(default, rename = "ServiceToken")]
    _service_token: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "ServiceTimeout")]
    _service_timeout: Option<serde::de::IgnoredAny>,
    name: String,
    #[serde(default)]
    display_color: Option<String>,
    #[serde(default)]
    workspace_geo: Option<String>,
    #[serde(default)]
    key_arn: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    restrict_to_workspaces: Option<Value>,
    #[serde(default)]
    archive_on_delete: Option<Value>,
}

impl Properties {
    fn parse(v: &Value) -> Result<Self, CmekError> {
        crate::error::parse_input(v.clone(), "ResourceProperties.")
    }

    /// The creation this resource asks for, validated like any other; its
    /// token is the resource's identity (stack and logical id), so a
    /// repeated delivery or a retried execution makes one workspace.
    fn request(&self, envelope: &Envelope, trigger: Trigger) -> Result<CreationRequest, CmekError> {
        let token = CreationToken::derived(&[&envelope.stack_id, &envelope.logical_resource_id]);
        let mut ws = json!({"name": self.name, "creationToken": token});
        if let Some(c) = &self.display_color {
            ws["displayColor"] = json!(c);
        }
        if let Some(g) = &self.workspace_geo {
            ws["workspaceGeo"] = json!(g);
        }
        let mut req = json!({"createWorkspace": ws, "trigger": trigger});
        if let Some(k) = &self.key_arn {
            req["keyArn"] = json!(k);
        }
        if let Some(n) = &self.display_name {
            req["displayName"] = json!(n);
        }
        if let Some(r) = super::bool_property("RestrictToWorkspaces", &self.restrict_to_workspaces)? {
            req["restrictToWorkspaces"] = json!(r);
        }
        super::bool_property("ArchiveOnDelete", &self.archive_on_delete)?;
        CreationRequest::from_value(&req).map_err(|e| match e {
            CmekError::InvalidInput(m) => CmekError::InvalidInput(format!("ResourceProperties: {m}")),
            other => other,
        })
    }
}

/// Whether CloudFormation's request is for this resource type.
pub fn is_workspace_resource(event: &Value) -> bool {
    event.get("ResourceType").and_then(Value::as_str) == Some(RESOURCE_TYPE)
}

/// Answer now (`Some`), or leave the answer to the provisioning's Finish (`None`).
pub async fn handle(deps: &Deps, envelope: &Envelope, event: &Value) -> Result<Option<Response>, CmekError> {
    let props = || Properties::parse(event.get("ResourceProperties").unwrap_or(&Value::Null));
    match envelope.request_type {
        RequestType::Create => start(deps, envelope, &props()?).await.map(|()| None),
        RequestType::Update => {
            let old = Properties::parse(event.get("OldResourceProperties").unwrap_or(&Value::Null))?;
            update(deps, envelope, &old, &props()?).await.map(Some)
        }
        RequestType::Delete => delete(deps, envelope, props().ok()).await.map(Some),
    }
}

async fn start(deps: &Deps, envelope: &Envelope, props: &Properties) -> Result<(), CmekError> {
    // The success id is known only once the workspace exists: the creation
    // step writes it into the callback it hands on.
    let failure = format!("{FAILED_PREFIX}{}", envelope.request_id);
    let trigger = Trigger::Cloudformation(Callback::new(envelope, failure.clone(), failure));
    let request = props.request(envelope, trigger)?;
    let name = crate::triggers::execution_name(
        "cfnws",
        &[
            &envelope.stack_id,
            &envelope.logical_resource_id,
            &envelope.request_id,
        ],
    );
    match crate::triggers::start_provisioning(deps, &name, &request).await? {
        Some(execution) => {
            tracing::info!(name = %shown(&props.name), execution = %execution, "workspace creation started for CloudFormation")
        }
        None => {
            tracing::info!(execution_name = %name, "duplicate delivery of a CloudFormation request: its execution already runs")
        }
    }
    Ok(())
}

fn workspace_of(physical: Option<&str>) -> Result<WorkspaceId, CmekError> {
    physical
        .and_then(|p| p.strip_prefix(WORKSPACE_PHYSICAL_PREFIX))
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| {
            CmekError::InvalidInput(format!(
                "PhysicalResourceId {:?} is not a workspace of {RESOURCE_TYPE}",
                shown(physical.unwrap_or_default())
            ))
        })
}

/// What the Admin API lets change after creation: the workspace's name and
/// colour, and the registration's display name. The workspace's geo is
/// immutable and its key permanent: changing either would need a new
/// workspace, which a template gets by a new logical id, never by
/// replacing this one behind CloudFormation's back.
async fn update(
    deps: &Deps,
    envelope: &Envelope,
    old: &Properties,
    new: &Properties,
) -> Result<Response, CmekError> {
    let ws = workspace_of(envelope.physical_resource_id.as_deref())?;
    let mut refused = Vec::new();
    if old.workspace_geo.as_deref().unwrap_or("us") != new.workspace_geo.as_deref().unwrap_or("us") {
        refused.push("WorkspaceGeo (a workspace's data residency geo is immutable)");
    }
    if old.key_arn != new.key_arn {
        refused.push("KeyArn (a workspace's key can never be removed or replaced)");
    }
    if super::bool_property("RestrictToWorkspaces", &old.restrict_to_workspaces)?
        != super::bool_property("RestrictToWorkspaces", &new.restrict_to_workspaces)?
    {
        refused.push("RestrictToWorkspaces (the key policy is settled when the workspace is created)");
    }
    super::bool_property("ArchiveOnDelete", &new.archive_on_delete)?;
    if !refused.is_empty() {
        return Err(CmekError::InvalidInput(format!(
            "{RESOURCE_TYPE} {ws}: cannot change {}; nothing was changed. To get a workspace with another key or geo, add a new resource (a new logical id) and move traffic to it",
            refused.join(", ")
        )));
    }
    let admin = deps.admin()?;
    let name = (old.name != new.name).then_some(new.name.as_str());
    let color = (old.display_color != new.display_color)
        .then_some(new.display_color.as_deref())
        .flatten();
    if name.is_some() || color.is_some() {
        // The same checks as at creation, before anything is sent.
        new.request(
            envelope,
            Trigger::Manual {
                detail: Default::default(),
            },
        )?;
        admin.rename_workspace(&ws, name, color).await?;
    }
    let record = deps.store.load(&ws).await?;
    if old.display_name != new.display_name
        && let (Some(display_name), Some(id)) = (
            new.display_name.as_deref(),
            record.as_ref().and_then(|r| r.external_key_id.as_ref()),
        )
    {
        admin.update_external_key_display_name(id, display_name).await?;
    }
    let event = AuditEvent::new(
        "CloudFormation",
        "workspace_updated",
        None,
        json!({"name": name.map(shown), "display_color": color, "stack_id": envelope.stack_id}),
    );
    store::append_event(&*deps.store, &ws, event, deps.now()).await?;
    let mut response = Response::to(
        envelope,
        Status::Success,
        &format!("{WORKSPACE_PHYSICAL_PREFIX}{ws}"),
        "updated what the Admin API lets change (name, colour, the registration's display name); the key is unchanged",
    );
    if let Some(rec) = &record {
        response.data = cloudformation::attributes(rec);
    }
    Ok(response)
}

/// Leave the workspace and its key in place, or archive the workspace when
/// the template asked. Never the key: archived workspaces still need it
/// (their data is kept), and a key's record is removable only when no
/// workspace, archived included, uses it.
async fn delete(deps: &Deps, envelope: &Envelope, props: Option<Properties>) -> Result<Response, CmekError> {
    let physical = envelope.physical_resource_id.clone().unwrap_or_default();
    if physical.starts_with(FAILED_PREFIX) || !physical.starts_with(WORKSPACE_PHYSICAL_PREFIX) {
        return Ok(Response::to(
            envelope,
            Status::Success,
            &physical,
            "nothing to delete: no workspace was created",
        ));
    }
    let ws = workspace_of(Some(&physical))?;
    let archive = match &props {
        Some(p) => super::bool_property("ArchiveOnDelete", &p.archive_on_delete)?.unwrap_or(false),
        None => false,
    };
    let reason = if archive {
        deps.admin()?.archive_workspace(&ws).await?;
        format!(
            "workspace {ws} archived (ArchiveOnDelete); its key and registration were left in place: archived data still needs them"
        )
    } else {
        format!(
            "workspace {ws}, its key and its registration were left in place (CMEK is permanent; set ArchiveOnDelete to archive the workspace)"
        )
    };
    let event = AuditEvent::new(
        "CloudFormation",
        if archive {
            "workspace_archived"
        } else {
            "delete_ignored"
        },
        None,
        json!({"stack_id": envelope.stack_id, "logical_resource_id": envelope.logical_resource_id}),
    );
    store::append_event(&*deps.store, &ws, event, deps.now()).await?;
    Ok(Response::to(envelope, Status::Success, &physical, &reason))
}
