use serde_json::{Value, json};

use super::{Deps, StepInput, StepOutput, advance, held, recorded_external_key_id, recorded_key_arn};
use crate::crash_point::crash_point;
use crate::error::CmekError;
use crate::ids::ExternalKeyId;
use crate::store::Status;

crate::context::lambda_function!(
    /// RegisterKey: register the key with Anthropic exactly once.
    RegisterKey: register_key => StepOutput,
    crate::context::Needs {
        admin_api: true,
        ..crate::context::Needs::NONE
    }
);

/// Register the key with Anthropic, exactly once: the recorded registration,
/// else one found by the key's ARN (an earlier attempt whose answer was lost),
/// else a new one.
pub async fn register_key(deps: &Deps, event: Value) -> Result<StepOutput, CmekError> {
    let input = StepInput::from_value(&event)?;
    let rec = held(deps, &input).await?;
    if matches!(rec.status, Status::Attached) {
        return Ok(StepOutput::from(&rec));
    }
    let arn = recorded_key_arn(&rec)?;
    let admin = deps.admin()?;

    if rec.external_key_id.is_some() {
        let id = recorded_external_key_id(&rec)?;
        let existing = admin.get_external_key(&id).await?;
        check_reusable(&existing, &id)?;
        if existing.kms_arn() != Some(arn.as_str()) {
            return Err(CmekError::StateConflict(format!(
                "recorded registration {id} is for {}, not {arn}",
                existing.kms_arn().unwrap_or("no key")
            )));
        }
        return Ok(StepOutput::from(&rec));
    }

    // Create has no idempotency key. Only if an earlier attempt may have
    // reached the API (the marker below) is the key looked up by ARN first;
    // on the happy path that saves listing every registration. On Claude
    // Platform on AWS the ARN is the registration's id: one GET answers,
    // every time (a key shared by workspaces is registered once).
    let found = if deps.config.platform.is_on_aws() {
        let id: ExternalKeyId = arn
            .as_str()
            .parse()
            .map_err(|e| CmekError::Internal(format!("a key ARN is a registration id there: {e}")))?;
        match admin.get_external_key(&id).await {
            Ok(k) => Some(k),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        }
    } else if rec.registration_started {
        admin.find_external_key_by_arn(&arn).await?
    } else {
        None
    };
    // The marker goes down before the first create that may reach the API.
    let rec = if found.is_none() && !rec.registration_started {
        advance(
            deps,
            &rec,
            &input.execution,
            rec.status,
            "RegisterKey",
            "registration_started",
            json!({}),
            |r| {
                r.registration_started = true;
            },
        )
        .await?
    } else {
        rec
    };
    let (key, outcome) = match found {
        Some(k) => {
            check_reusable(&k, &k.id)?;
            (k, "registration_found")
        }
        None => {
            let name = input.request.display_name_or_default();
            (
                admin.create_external_key(&name, deps.config.geo, &arn).await?,
                "registered",
            )
        }
    };
    crash_point("register-key.after-create");
    let id: ExternalKeyId = key
        .id
        .parse()
        .map_err(|e| CmekError::AdminApiRejected(format!("Admin API returned a malformed key id: {e}")))?;
    let rec = advance(
        deps,
        &rec,
        &input.execution,
        Status::Registered,
        "RegisterKey",
        outcome,
        json!({"external_key_id": id, "key_arn": arn}),
        |r| r.external_key_id = Some(id.clone()),
    )
    .await?;
    crash_point("register-key.after-record");
    tracing::info!(workspace_id = %rec.workspace_id, external_key_id = %id, outcome, "key registered");
    Ok(StepOutput::from(&rec))
}

/// A registration made elsewhere (or earlier) is reused only if it can be
/// attached to this workspace, checked before the irreversible call: an AWS
/// KMS registration, bound to no user profile (Begin refuses a workspace
/// that has one; this project never binds a registration to a profile).
fn check_reusable(key: &crate::admin_api::ExternalKey, id: &impl std::fmt::Display) -> Result<(), CmekError> {
    if key.provider() != "aws" {
        return Err(CmekError::KeyProviderMismatch(format!(
            "registration {id} is a {} key, not an AWS KMS key; nothing was attached",
            key.provider()
        )));
    }
    if let Some(profile) = &key.user_profile_id {
        return Err(CmekError::KeyProfileMismatch(format!(
            "registration {id} is bound to user profile {}, and this workspace has none; a key and its workspace must have the same user profile, or both have none",
            crate::ids::shown(profile)
        )));
    }
    Ok(())
}
