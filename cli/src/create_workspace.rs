//! `cmekctl create-workspace`: a workspace created with its key, followed
//! state by state like `cmekctl provision`, after the plan and consent.

use cmek::store::{DynamoStore, WorkflowStore};
use cmek::workflow::CreationRequest;
use serde_json::{Value, json};

use crate::confirm;
use crate::deployment::StackArgs;

/// What the operator must know before the workspace is created: what it is
/// created with, and what can never be undone.
fn plan(request: &CreationRequest) -> Vec<String> {
    let ws = &request.create_workspace;
    let key = match &request.key_arn {
        Some(arn) => format!(
            "the existing key {arn} (its policy must admit the organization's, or account's, new workspaces; it is left as it is)"
        ),
        None => "a new KMS key, its policy for the organization's (or account's) new workspaces until the workspace exists, then narrowed to the new workspace".to_owned(),
    };
    vec![
        format!(
            "Plan: create workspace {:?} (geo {}) encrypted from its first byte with {key}",
            ws.name,
            ws.workspace_geo.as_deref().unwrap_or("us")
        ),
        format!("  creation token {} (the same token again makes no second workspace)", request.token()),
        format!("  {}", cmek::lifecycle::ATTACH_LOCKS),
        "  This is a new workspace, not the organization's Default Workspace: organization webhooks are refused only while the Default Workspace itself uses a key.".to_owned(),
    ]
}

pub async fn run(json_out: bool, input: Value, yes: bool, target: &StackArgs) -> anyhow::Result<i32> {
    // Bad input is refused here too, before anything exists.
    let request = CreationRequest::from_value(&input)?;
    let sdk = crate::sdk().await;
    let deployment = target.resolve(&sdk, true).await?;
    let (state_machine, table) = (deployment.state_machine_arn()?, deployment.table()?);
    let lines = plan(&request);
    if !yes {
        if json_out {
            println!(
                "{}",
                json!({"plan": {"name": request.create_workspace.name, "creationToken": request.token(), "key": request.key_arn, "stateMachine": state_machine, "locks": cmek::lifecycle::ATTACH_LOCKS}, "started": false})
            );
        } else {
            for l in &lines {
                println!("{l}");
            }
            println!("  through {state_machine}");
        }
        if !confirm::confirmed(json_out, "Create this workspace?")? {
            return Ok(confirm::NOT_STARTED);
        }
    } else if !json_out {
        println!("{}", cmek::lifecycle::ATTACH_LOCKS);
    }
    let name = format!("cmekctl-create-{}-{}", request.token(), std::process::id());
    let (d, retries, t0) = crate::start_and_follow(json_out, &sdk, state_machine, &name, &input).await?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let creation = store.load_creation(&request.token()).await?;
    let ok = d.status().as_str() == "SUCCEEDED";
    let workspace = creation.as_ref().and_then(|c| c.workspace_id.clone());
    if json_out {
        println!(
            "{}",
            json!({"execution": d.execution_arn(), "status": d.status().as_str(), "seconds": t0.elapsed().as_secs_f64(), "failedAttempts": retries, "workspaceId": workspace, "creation": creation})
        );
    } else if ok {
        println!(
            "✓ created {} in {:.1}s, encrypted from its first byte with key {} ({})",
            workspace.map(|w| w.to_string()).unwrap_or_default(),
            t0.elapsed().as_secs_f64(),
            creation
                .as_ref()
                .and_then(|c| c.kms_key_arn.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default(),
            creation
                .as_ref()
                .and_then(|c| c.external_key_id.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
    } else {
        println!(
            "✗ {} after {:.1}s",
            d.status().as_str(),
            t0.elapsed().as_secs_f64()
        );
        if let Some(error) = d.error() {
            println!("  {error}: {}", d.cause().unwrap_or_default());
        }
        if let Some(w) = workspace {
            println!("  workspace {w} exists with its key; run the same command again to finish");
        }
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_says_what_cannot_be_undone() {
        let r = CreationRequest::from_value(&json!({"createWorkspace": {"name": "prod"}})).unwrap();
        let text = plan(&r).join("\n");
        assert!(
            text.contains("\"prod\"") && text.contains("can never be removed or replaced"),
            "{text}"
        );
        assert!(
            text.contains("data-retention") && text.contains("webhooks"),
            "{text}"
        );
        assert!(text.contains(r.token().as_str()), "{text}");
    }
}
