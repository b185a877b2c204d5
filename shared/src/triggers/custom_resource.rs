//! The CloudFormation custom resources. `Custom::AnthropicCmekWorkspace` (a
//! workspace created with its key) is in [`super::workspace_resource`].
//!
//! `Custom::AnthropicCmek`: Create starts
//! a provisioning whose Finish answers CloudFormation; Update of the same
//! workspace and every Delete answer at once. Anything that goes wrong before
//! an execution has started is answered FAILED at once, so a stack never
//! waits for CloudFormation's timeout. Delete never deletes, disables or
//! detaches anything: CMEK is permanent.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin_api::ErrorCode;
use crate::cloudformation::{
    self, Callback, Envelope, FAILED_PREFIX, PHYSICAL_PREFIX, RequestType, Response, Status,
};
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::{WorkspaceId, shown};
use crate::store::{self, AuditEvent};
use crate::workflow::{ProvisionRequest, Trigger};

crate::context::lambda_function!(
    /// `Custom::AnthropicCmek`: CloudFormation's entry point (its ServiceToken).
    CustomResource: custom_resource => Value,
    crate::context::Needs {
        admin_api: true,
        sfn: true,
        ..crate::context::Needs::NONE
    }
);

/// `ResourceProperties`, as CloudFormation sends them (every scalar may arrive as a string).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Properties {
    // CloudFormation's own properties: accepted (unknown ones are refused)
    // and not used.
    #[serde(default, rename = "ServiceToken")]
    _service_token: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "ServiceTimeout")]
    _service_timeout: Option<serde::de::IgnoredAny>,
    workspace_id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    key_arn: Option<String>,
    #[serde(default)]
    manage_key_policy: Option<Value>,
    #[serde(default)]
    accept_findings: Option<Vec<String>>,
}

fn parse_properties(v: &Value) -> Result<Properties, CmekError> {
    crate::error::parse_input(v.clone(), "ResourceProperties.")
}

impl Properties {
    /// The workflow request these properties ask for, validated like any other.
    fn request(&self, trigger: Trigger) -> Result<ProvisionRequest, CmekError> {
        let manage = super::bool_property("ManageKeyPolicy", &self.manage_key_policy)?;
        let mut req = json!({"workspaceId": self.workspace_id, "trigger": trigger});
        if let Some(n) = &self.display_name {
            req["displayName"] = json!(n);
        }
        if let Some(k) = &self.key_arn {
            req["keyArn"] = json!(k);
        }
        if let Some(m) = manage {
            req["manageKeyPolicy"] = json!(m);
        }
        if let Some(f) = &self.accept_findings {
            req["acceptFindings"] = json!(f);
        }
        ProvisionRequest::from_value(&req).map_err(|e| match e {
            // Name the property, not the workflow's field.
            CmekError::InvalidInput(m) => CmekError::InvalidInput(format!("ResourceProperties: {m}")),
            other => other,
        })
    }
}

/// The Lambda entry point. Returns what was done; the CloudFormation answer
/// itself goes to the ResponseURL (now, or from Finish).
pub async fn custom_resource(deps: &Deps, event: Value) -> Result<Value, CmekError> {
    let envelope: Envelope = serde_json::from_value(event.clone()).map_err(|e| {
        // Without these fields there is no one to answer.
        CmekError::InvalidInput(format!(
            "not a CloudFormation custom resource request: {}",
            shown(&e.to_string())
        ))
    })?;
    cloudformation::check_response_url(&envelope.response_url)?;
    // Run the work in its own task so that even a panic is answered.
    let task = {
        let (deps, envelope, event) = (deps.clone(), envelope.clone(), event.clone());
        tokio::spawn(async move { handle(&deps, &envelope, &event).await })
    };
    let response = match task.await {
        Ok(Ok(Some(response))) => response,
        Ok(Ok(None)) => return Ok(json!({"answered": false, "by": "the provisioning's Finish step"})),
        Ok(Err(e)) => {
            tracing::warn!(request_type = ?envelope.request_type, error_type = e.error_type(), "custom resource request failed: {e}");
            Response::to(
                &envelope,
                Status::Failed,
                &failure_physical_id(&envelope),
                &format!("{}: {e}", e.error_type()),
            )
        }
        Err(join) => {
            tracing::error!("custom resource handler panicked: {join}");
            Response::to(
                &envelope,
                Status::Failed,
                &failure_physical_id(&envelope),
                "Internal: the custom resource handler failed unexpectedly; see its logs",
            )
        }
    };
    cloudformation::send(deps.http.get()?, &envelope.response_url, &response).await?;
    Ok(
        json!({"answered": true, "status": response.status, "physicalResourceId": response.physical_resource_id}),
    )
}

/// The physical id to report when a request fails: a Create never made a
/// resource (its rollback Delete is recognised by the prefix); an Update or
/// Delete keeps the one CloudFormation has.
fn failure_physical_id(e: &Envelope) -> String {
    match (&e.request_type, &e.physical_resource_id) {
        (RequestType::Create, _) | (_, None) => format!("{FAILED_PREFIX}{}", e.request_id),
        (_, Some(p)) => p.clone(),
    }
}

fn workspace_of(physical: &str) -> Option<WorkspaceId> {
    physical.strip_prefix(PHYSICAL_PREFIX)?.parse().ok()
}

/// CloudFormation's request, as `aws_lambda_events` types it.
type Request = CloudFormationCustomResourceRequest<Value, Value>;

async fn handle(deps: &Deps, envelope: &Envelope, event: &Value) -> Result<Option<Response>, CmekError> {
    // The envelope (enough to answer) is already read; the rest of the
    // request is checked here, so a malformed one is answered FAILED.
    let request: Request =
        crate::error::parse_input(event.clone(), "not a CloudFormation custom resource request: ")?;
    if super::workspace_resource::is_workspace_resource(event) {
        return super::workspace_resource::handle(deps, envelope, event).await;
    }
    match request {
        Request::Delete(_) => delete(deps, envelope).await.map(Some),
        Request::Create(create) => {
            let props = parse_properties(&create.resource_properties)?;
            start(deps, envelope, &props).await
        }
        Request::Update(update) => {
            let props = parse_properties(&update.resource_properties)?;
            let old_name = update
                .old_resource_properties
                .get("DisplayName")
                .and_then(Value::as_str);
            match workspace_of(&update.physical_resource_id) {
                Some(ws) if ws.as_str() == props.workspace_id => {
                    update_in_place(deps, envelope, old_name, &props, &ws)
                        .await
                        .map(Some)
                }
                // Another workspace: a new provisioning with a new physical
                // id; CloudFormation then deletes the old one (a no-op).
                _ => start(deps, envelope, &props).await,
            }
        }
        other => Err(CmekError::InvalidInput(format!(
            "unsupported custom resource request: {:?}",
            shown(&format!("{other:?}"))
        ))),
    }
}

async fn start(deps: &Deps, envelope: &Envelope, props: &Properties) -> Result<Option<Response>, CmekError> {
    let physical = format!("{PHYSICAL_PREFIX}{}", props.workspace_id);
    let trigger = Trigger::Cloudformation(Callback::new(envelope, physical, failure_physical_id(envelope)));
    let request = props.request(trigger)?;
    let name = crate::triggers::execution_name(
        "cfn",
        &[
            &envelope.stack_id,
            &envelope.logical_resource_id,
            &envelope.request_id,
        ],
    );
    match crate::triggers::start_provisioning(deps, &name, &request).await? {
        Some(execution) => {
            tracing::info!(workspace_id = %request.workspace_id, execution = %execution, "provisioning started for CloudFormation");
        }
        None => {
            tracing::info!(execution_name = %name, "duplicate delivery of a CloudFormation request: its execution already runs")
        }
    }
    Ok(None)
}

async fn update_in_place(
    deps: &Deps,
    envelope: &Envelope,
    old_name: Option<&str>,
    props: &Properties,
    ws: &WorkspaceId,
) -> Result<Response, CmekError> {
    let record = deps.store.load(ws).await?;
    let mut reason = "no change: the workspace keeps its key (CMEK is permanent)".to_owned();
    if let (Some(new_name), Some(rec)) = (props.display_name.as_deref(), &record)
        && old_name != Some(new_name)
        && let Some(id) = &rec.external_key_id
    {
        match deps.admin()?.update_external_key_display_name(id, new_name).await {
            Ok(_) => reason = format!("display name of {id} updated"),
            // A display name is not worth failing a stack update over: a key
            // the organization's Workspace Policy lists cannot be
            // reconfigured, so the old name stays, and the response, the
            // audit trail and the logs say why.
            Err(e) if matches!(e.error_code(), Some(ErrorCode::InWorkspacePolicy)) => {
                reason = format!(
                    "display name of {id} kept: the organization's Workspace Policy lists the key as allowed, and such a key cannot be reconfigured (external_key_in_workspace_policy); change the Workspace Policy to rename it"
                );
                tracing::warn!(workspace_id = %ws, external_key_id = %id, error_code = "external_key_in_workspace_policy", "rename refused, old name kept");
                let event = AuditEvent::new(
                    "CloudFormation",
                    "rename_refused",
                    None,
                    json!({
                        "external_key_id": id,
                        "display_name": shown(new_name),
                        "error_code": "external_key_in_workspace_policy",
                        "stack_id": envelope.stack_id,
                    }),
                );
                store::append_event(&*deps.store, ws, event, deps.now()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut response = Response::to(
        envelope,
        Status::Success,
        &format!("{PHYSICAL_PREFIX}{ws}"),
        &reason,
    );
    if let Some(rec) = &record {
        response.data = cloudformation::attributes(rec);
    }
    Ok(response)
}

async fn delete(deps: &Deps, envelope: &Envelope) -> Result<Response, CmekError> {
    let physical = envelope.physical_resource_id.clone().unwrap_or_default();
    let reason = if physical.starts_with(FAILED_PREFIX) {
        "nothing to delete: the Create had failed".to_owned()
    } else if let Some(ws) = workspace_of(&physical) {
        let event = AuditEvent::new(
            "CloudFormation",
            "delete_ignored",
            None,
            json!({"stack_id": envelope.stack_id, "logical_resource_id": envelope.logical_resource_id}),
        );
        store::append_event(&*deps.store, &ws, event, deps.now()).await?;
        "CMEK is permanent: the key, its registration and the attachment were left in place".to_owned()
    } else {
        "not a resource of cmek-provisioner: nothing done".to_owned()
    };
    Ok(Response::to(envelope, Status::Success, &physical, &reason))
}
