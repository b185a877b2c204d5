//! CreateWorkspace: a new workspace with its key, encrypted from its first
//! byte — key → registration → validation (Claude Platform) → the workspace
//! created with `external_key_id` → read back → the key policy narrowed to
//! it. Every effect is recorded before the next one starts, in the creation
//! record keyed by the request's creation token, so a retry or a new
//! execution resumes instead of repeating; the two effects the APIs cannot
//! make idempotent (KMS CreateKey, the Admin API's creates) are preceded by
//! a marker, and after a lost answer the thing is found (the key by its
//! tag, the registration by its ARN, the workspace by its tag) before
//! anything is created again.
//!
//! The key policy before the workspace exists: its compartment is unknown,
//! so the key is created for the organization (Claude Platform:
//! `org_uuid`, no compartment list) or for the account's workspaces
//! (Claude Platform on AWS: `aws:SourceArn` `…:workspace/*`, no compartment
//! list) — the documented policy with its optional narrowing left out —
//! and after the workspace exists it is narrowed to that workspace's
//! compartment (and ARN), the new policy judged for that workspace before
//! it is written. At every moment the workspace can use its key.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::create_key::{check_findings, creator_statements, usable_key};
use super::{CreationInput, CreationRequest, Deps, ProvisionRequest};
use crate::admin_api::{self, AdminApiError, DataResidency, ErrorCode, Route, Workspace};
use crate::crash_point::crash_point;
use crate::error::CmekError;
use crate::ids::{CompartmentId, ExternalKeyId, KeyArn, OrgUuid, WorkspaceId};
use crate::kms::{KeyManager, TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE, alias_for};
use crate::metrics::{Metric, Unit, emit};
use crate::policy::{self, Scope, on_aws};
use crate::store::{self, AuditEvent, CreationRecord, Status};

crate::context::lambda_function!(
    /// CreateWorkspace: create a workspace with its key, so it never holds a byte without it.
    CreateWorkspace: create_workspace => CreationOutput,
    crate::context::Needs {
        admin_api: true,
        kms: true,
        ..crate::context::Needs::NONE
    }
);

/// The Admin API tag a workspace created here carries: its creation token.
/// ("Keys may not begin with anthropic", the Workspace reference.)
pub const TAG_CREATION: &str = "cmek:creation-token";

/// How long after a create whose answer was lost the workspace list is
/// given to show it before another create may be sent.
pub const CREATE_SETTLE_SECS: i64 = 30;

/// Create the workspace with its key, or find the one an earlier attempt
/// created; answer the provisioning request the rest of the state machine
/// runs for it.
pub async fn create_workspace(deps: &Deps, event: Value) -> Result<CreationOutput, CmekError> {
    let input = CreationInput::from_value(&event)?;
    let req = &input.request;
    let token = req.token();
    let trigger = req.trigger.as_ref().and_then(|t| serde_json::to_value(t).ok());
    let rec = store::claim_creation(
        &*deps.store,
        &token,
        &req.create_workspace.name,
        &input.execution,
        trigger,
        deps.now(),
        deps.config.lease_ttl,
    )
    .await?;
    let mut step = Step {
        deps,
        input: &input,
        rec,
    };
    if step.rec.workspace_id.is_none() {
        step.find_created_workspace().await?;
    }
    if step.rec.workspace_id.is_none() {
        step.organization().await?;
        step.key().await?;
        step.registration().await?;
        step.validation().await?;
        step.create().await?;
    }
    let (workspace, key) = step.read_back().await?;
    step.narrow_policy(&workspace).await?;
    step.release().await?;
    tracing::info!(workspace_id = %workspace.id, creation_token = %token, "workspace created with its key");
    let id: WorkspaceId = parse(&workspace.id, "workspace id")?;
    Ok(CreationOutput {
        request: req.hand_off(&id, &key),
        workspace_id: id,
        compartment_id: step.rec.compartment_id,
        key_arn: key,
        external_key_id: step.rec.external_key_id.clone(),
    })
}

/// What CreateWorkspace answers: the new workspace, and the provisioning
/// request the rest of the state machine runs for it (the state machine
/// makes it the execution's `request`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationOutput {
    pub request: ProvisionRequest,
    pub workspace_id: WorkspaceId,
    pub compartment_id: Option<CompartmentId>,
    pub key_arn: KeyArn,
    pub external_key_id: Option<ExternalKeyId>,
}

/// One execution's hold on one creation, and what it has recorded so far.
struct Step<'a> {
    deps: &'a Deps,
    input: &'a CreationInput,
    rec: CreationRecord,
}

impl Step<'_> {
    fn req(&self) -> &CreationRequest {
        &self.input.request
    }

    fn subject(&self) -> String {
        format!("new workspace {:?}", self.req().create_workspace.name)
    }

    async fn advance(
        &mut self,
        to: Status,
        outcome: &str,
        detail: Value,
        patch: impl FnOnce(&mut CreationRecord),
    ) -> Result<(), CmekError> {
        let now = self.deps.now();
        let expires_at = now.unix_timestamp() + self.deps.config.lease_ttl.as_secs() as i64;
        let event = AuditEvent::new("CreateWorkspace", outcome, None, detail);
        self.rec = store::advance_creation(
            &*self.deps.store,
            &self.rec,
            &self.input.execution,
            to,
            event,
            now,
            false,
            |r| {
                patch(r);
                if let Some(l) = r.lease.as_mut() {
                    l.expires_at = expires_at;
                }
            },
        )
        .await?;
        Ok(())
    }

    /// A workspace already carrying this creation's tag: made by an earlier
    /// attempt whose answer (or record) was lost. It is this creation's
    /// only if it has this creation's key; anything else stops here.
    async fn find_created_workspace(&mut self) -> Result<(), CmekError> {
        let token = self.rec.token.clone();
        // Archived ones included, the Default Workspace never (this project
        // does not create it); one walk of the list serves both lookups.
        let all = self.deps.admin()?.list_workspaces(true, false).await?;
        let mut found: Vec<Workspace> = all
            .iter()
            .filter(|w| w.tags.get(TAG_CREATION).is_some_and(|v| v == token.as_str()))
            .cloned()
            .collect();
        if found.is_empty() && self.rec.creation_started && !self.rec.key_adopted {
            // The tag is the user's to edit (Update Workspace takes `tags`):
            // a workspace created here whose tag was removed is still found
            // by its key — one this creation made, registered for it, and
            // attached to no other workspace.
            if let Some(key_id) = &self.rec.external_key_id {
                found = all
                    .into_iter()
                    .filter(|w| w.external_key_id.as_deref() == Some(key_id.as_str()))
                    .collect();
            }
        }
        if found.is_empty() {
            return self.settled_since_last_create();
        }
        let workspace = match found.len() {
            1 => found.remove(0),
            n => {
                return Err(CmekError::StateConflict(format!(
                    "{n} workspaces carry creation token {token} ({}); refusing to pick one",
                    found.iter().map(|w| w.id.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        let ours = match (&workspace.external_key_id, &self.rec.external_key_id) {
            (Some(attached), Some(recorded)) => attached == recorded.as_str(),
            // A registration recorded nowhere: ours only if it is of the key we recorded.
            (Some(attached), None) => match &self.rec.kms_key_arn {
                Some(arn) if self.deps.config.platform.is_on_aws() => attached == arn.as_str(),
                Some(arn) => {
                    let id: ExternalKeyId = parse(attached, "external key id")?;
                    self.deps.admin()?.get_external_key(&id).await?.kms_arn() == Some(arn.as_str())
                }
                None => false,
            },
            (None, _) => false,
        };
        if !ours {
            return Err(CmekError::StateConflict(format!(
                "workspace {} carries creation token {token} but not this creation's key (it has {:?}); nothing was changed",
                workspace.id, workspace.external_key_id
            )));
        }
        self.record_created(&workspace, "workspace_found").await
    }

    /// Nothing found after a create whose answer was lost (a 5xx, a
    /// timeout, a crash): the workspace list may not show a workspace created
    /// moments ago (README, Unverified facts), so nothing is created again
    /// until [`CREATE_SETTLE_SECS`] have passed since that create was sent;
    /// until then `CreationOutcomeUnknown`, which the state machine retries.
    fn settled_since_last_create(&self) -> Result<(), CmekError> {
        let Some(sent_at) = self.rec.creation_started_at.filter(|_| self.rec.creation_started) else {
            return Ok(());
        };
        let waited = self.deps.now().unix_timestamp() - sent_at;
        if waited < CREATE_SETTLE_SECS {
            return Err(CmekError::CreationOutcomeUnknown(format!(
                "creation {}: a create sent {waited} s ago got no answer and no workspace carries its tag or key yet; looking again before creating anything (after {CREATE_SETTLE_SECS} s)",
                self.rec.token
            )));
        }
        Ok(())
    }

    async fn record_created(&mut self, workspace: &Workspace, outcome: &str) -> Result<(), CmekError> {
        let id: WorkspaceId = parse(&workspace.id, "workspace id")?;
        let compartment: CompartmentId = parse(
            workspace.compartment_id.as_deref().unwrap_or_default(),
            "compartment_id",
        )?;
        let key_id: Option<ExternalKeyId> = workspace
            .external_key_id
            .as_deref()
            .map(|k| parse(k, "external key id"))
            .transpose()?;
        self.advance(
            Status::Attached,
            outcome,
            json!({"workspace_id": id, "compartment_id": compartment, "external_key_id": key_id}),
            |r| {
                r.workspace_id = Some(id.clone());
                r.compartment_id = Some(compartment);
                if r.external_key_id.is_none() {
                    r.external_key_id = key_id.clone();
                }
            },
        )
        .await?;
        crash_point("create-workspace.after-record");
        Ok(())
    }

    /// Claude Platform binds the key to the organization (read once per cold
    /// start; recorded, and a different answer later stops the creation).
    async fn organization(&mut self) -> Result<(), CmekError> {
        if self.deps.config.platform.is_on_aws() {
            return Ok(());
        }
        let org = self.deps.organization().await?;
        match self.rec.org_uuid {
            Some(recorded) if recorded != org => Err(CmekError::StateConflict(format!(
                "the admin key now belongs to organization {org}, but {recorded} was recorded for {}; refusing to continue",
                self.subject()
            ))),
            Some(_) => Ok(()),
            None => {
                self.advance(
                    self.rec.status,
                    "organization_read",
                    json!({"org_uuid": org}),
                    |r| {
                        r.org_uuid = Some(org);
                    },
                )
                .await
            }
        }
    }

    fn org(&self) -> Result<Option<OrgUuid>, CmekError> {
        if self.deps.config.platform.is_on_aws() {
            return Ok(None);
        }
        self.rec
            .org_uuid
            .map(Some)
            .ok_or_else(|| CmekError::StateConflict("no organization recorded".into()))
    }

    fn key_arn(&self) -> Result<KeyArn, CmekError> {
        self.rec
            .kms_key_arn
            .clone()
            .ok_or_else(|| CmekError::StateConflict("no key recorded for this creation".into()))
    }

    fn restrict(&self) -> bool {
        self.req()
            .restrict_to_workspaces
            .unwrap_or(self.deps.config.restrict_to_workspaces)
    }

    /// The key: the recorded one; the adopted one (checked, its policy
    /// judged for a workspace that does not exist yet); one an earlier
    /// attempt created (by tag, or untagged by description and creator);
    /// else a new one, for the organization or the account's workspaces.
    async fn key(&mut self) -> Result<(), CmekError> {
        let kms = self.deps.kms()?;
        if let Some(arn) = self.rec.kms_key_arn.clone() {
            usable_key(self.deps, kms, arn.as_str()).await?;
            return Ok(());
        }
        if let Some(arn) = self.req().key_arn.clone() {
            return self.adopt(kms, &arn).await;
        }
        let token = self.rec.token.clone();
        let description = new_key_description(&self.rec);
        let mut found = None;
        let mut tagged = false;
        if self.rec.key_creation_started {
            let mut keys = kms.find_tagged_keys(token.as_str()).await?;
            tagged = !keys.is_empty();
            if keys.is_empty() {
                let creator = self.creator()?;
                keys = kms
                    .find_untagged_keys_of(&description, super::CREATOR_TAGS_SID, creator)
                    .await?;
            }
            if keys.len() > 1 {
                return Err(CmekError::KeyConflict(format!(
                    "{} keys were made for creation {token} ({}); refusing to guess which one to use — keep one, schedule none for deletion without checking",
                    keys.len(),
                    keys.iter().map(|k| k.arn.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            found = keys.pop();
        }
        let info = match found {
            Some(info) => info,
            None => {
                let key_policy = self.policy_for(None)?;
                self.advance(self.rec.status, "key_creation_started", json!({}), |r| {
                    r.key_creation_started = true;
                })
                .await?;
                let info = kms
                    .create_key(&policy::to_policy_string(&key_policy), &description)
                    .await?;
                crash_point("create-workspace.after-kms-create");
                info
            }
        };
        if !tagged {
            kms.tag_as_ours(&info.key_id, token.as_str()).await?;
        }
        let info = usable_key(self.deps, kms, &info.arn).await?;
        let alias = alias_for(&self.deps.config.alias_prefix, &token);
        kms.ensure_alias(&alias, &info.key_id).await?;
        kms.enable_rotation(&info.key_id).await?;
        let arn = info
            .parsed_arn()
            .map_err(|e| CmekError::Internal(e.to_string()))?;
        self.advance(
            Status::KeyCreated,
            "key_created",
            json!({"key_arn": arn, "alias": alias, "rotation": true}),
            |r| r.kms_key_arn = Some(arn.clone()),
        )
        .await?;
        crash_point("create-workspace.after-key-record");
        Ok(())
    }

    async fn adopt(&mut self, kms: &KeyManager, arn: &KeyArn) -> Result<(), CmekError> {
        if let Some(account) = &self.deps.config.account_id
            && arn.account() != account
        {
            return Err(CmekError::KeyNotUsable {
                key: arn.to_string(),
                reason: format!(
                    "the key belongs to account {}; this stack uses keys of its own account {} only",
                    arn.account().as_str(),
                    account.as_str()
                ),
            });
        }
        usable_key(self.deps, kms, arn.as_str()).await?;
        let tags = kms.tags(arn.as_str()).await?;
        if !tags
            .iter()
            .any(|(t, v)| t == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE)
        {
            return Err(CmekError::KeyNotUsable {
                key: arn.to_string(),
                reason: format!(
                    "tag the key {TAG_MANAGED_BY}={TAG_MANAGED_BY_VALUE} to use it for a new workspace"
                ),
            });
        }
        self.judge_for_new_workspace(arn).await?;
        self.advance(Status::KeyCreated, "key_adopted", json!({"key_arn": arn}), |r| {
            r.kms_key_arn = Some(arn.clone());
            r.key_adopted = true;
        })
        .await
    }

    fn creator(&self) -> Result<&str, CmekError> {
        self.deps
            .config
            .require_key_creator_role()
            .map_err(|e| CmekError::Configuration(e.to_string()))
    }

    /// The documented policy for this platform and the statements that let
    /// the creator's role tag and maintain the key: for every workspace of
    /// the organization (or account) while `workspace` is unknown, for that
    /// workspace alone (if the creation restricts keys) once it exists.
    fn policy_for(&self, workspace: Option<(&WorkspaceId, CompartmentId)>) -> Result<Value, CmekError> {
        let account = self
            .deps
            .config
            .require_account_id()
            .map_err(|e| CmekError::Configuration(e.to_string()))?;
        let only: Vec<CompartmentId> = workspace.iter().map(|(_, c)| *c).collect();
        let narrow = workspace.is_some() && self.restrict();
        let mut doc = if self.deps.config.platform.is_on_aws() {
            let sources = match workspace {
                Some((ws, _)) if narrow => super::source_arns(self.deps, ws)?,
                _ => vec![crate::platform::account_workspaces_pattern(account)],
            };
            on_aws::key_policy(&on_aws::OnAwsGrant {
                account,
                compartments: narrow.then_some(only.as_slice()),
                source_arns: &sources,
            })
        } else {
            let org = self
                .org()?
                .ok_or_else(|| CmekError::StateConflict("no organization recorded".into()))?;
            let scope = if narrow {
                Scope::Workspaces(&only)
            } else {
                Scope::Organization
            };
            policy::key_policy(account, self.deps.config.geo, &org, scope)
        };
        if let Some(statements) = doc["Statement"].as_array_mut() {
            statements.extend(creator_statements(self.creator()?));
        }
        Ok(doc)
    }

    /// Would a workspace that does not exist yet be able to use this key?
    /// Judged as for a workspace with a compartment no policy can have
    /// listed (derived from the creation token) — what a policy restricted
    /// to other workspaces' compartments refuses — before anything is
    /// registered or created.
    async fn judge_for_new_workspace(&self, arn: &KeyArn) -> Result<(), CmekError> {
        let text = self.deps.kms()?.get_policy(arn.as_str()).await?;
        let (probe_ws, probe_compartment) = probe(&self.rec)?;
        let findings = crate::context::analyse_for_workspace(
            &self.deps.config,
            &text,
            &probe_ws,
            probe_compartment,
            self.org()?.as_ref(),
            Some(arn.account()),
        )
        .map_err(|e| CmekError::KeyPolicyRejected {
            key: arn.to_string(),
            summary: e.to_string(),
        })?;
        check_findings(arn.as_str(), &findings, &[]).map_err(|e| match e {
            CmekError::KeyPolicyRejected { key, summary } => CmekError::KeyPolicyRejected {
                key,
                // The probe is no workspace: the operator reads what it stands for.
                summary: format!(
                    "a workspace that does not exist yet cannot be listed in a key policy, so the policy must admit the organization's (or account's) new workspaces until the workspace exists: {}",
                    summary
                        .replace(&probe_compartment.to_string(), "<the new workspace's compartment>")
                        .replace(probe_ws.as_str(), "<the new workspace>")
                ),
            },
            other => other,
        })
    }

    /// Register the key exactly once: the recorded registration, else (on
    /// Claude Platform on AWS, or after a possible earlier attempt) one
    /// found by the key's ARN, else a new one.
    async fn registration(&mut self) -> Result<(), CmekError> {
        if self.rec.external_key_id.is_some() {
            return Ok(());
        }
        let arn = self.key_arn()?;
        let admin = self.deps.admin()?;
        let found = if self.deps.config.platform.is_on_aws() {
            let id: ExternalKeyId = parse(arn.as_str(), "external key id")?;
            match admin.get_external_key(&id).await {
                Ok(k) => Some(k),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            }
        } else if self.rec.registration_started {
            admin.find_external_key_by_arn(&arn).await?
        } else {
            None
        };
        if found.is_none() && !self.rec.registration_started {
            self.advance(self.rec.status, "registration_started", json!({}), |r| {
                r.registration_started = true;
            })
            .await?;
        }
        let (key, outcome) = match found {
            Some(k) => (k, "registration_found"),
            None => (
                admin
                    .create_external_key(&self.req().display_name_or_default(), self.deps.config.geo, &arn)
                    .await?,
                "registered",
            ),
        };
        crash_point("create-workspace.after-register");
        if key.provider() != "aws" || key.user_profile_id.is_some() {
            return Err(CmekError::KeyProfileMismatch(format!(
                "registration {} of {arn} is bound to a user profile or is not an AWS key; a new workspace without a profile cannot take it",
                key.id
            )));
        }
        let id: ExternalKeyId = parse(&key.id, "external key id")?;
        self.advance(
            Status::Registered,
            outcome,
            json!({"external_key_id": id, "key_arn": arn}),
            |r| r.external_key_id = Some(id.clone()),
        )
        .await
    }

    /// Claude Platform: validate before creating (Anthropic validates again
    /// on the create). A `failure` is `ValidationFailed`, retried by the
    /// state machine on its propagation schedule. Claude Platform on AWS
    /// has no separate validation: the create is it.
    async fn validation(&mut self) -> Result<(), CmekError> {
        if self.deps.config.platform.attach_validates()
            || self.rec.validated_by.as_deref() == Some(self.input.execution.as_str())
        {
            return Ok(());
        }
        let id = self.external_key_id()?;
        let verdict = self.deps.admin()?.validate_external_key(&id).await?;
        let attempt = self.rec.validation_attempts + 1;
        emit(&[], &[(Metric::ValidationAttempts, Unit::Count, 1.0)]);
        if verdict.succeeded() {
            let execution = self.input.execution.clone();
            return self
                .advance(
                    Status::Validated,
                    "validated",
                    json!({"external_key_id": id, "attempt": attempt}),
                    |r| {
                        r.validated_by = Some(execution);
                        r.validation_attempts = attempt;
                        r.last_error = None;
                    },
                )
                .await;
        }
        let reason = verdict
            .error_text()
            .unwrap_or_else(|| "validation failed without a reason".into());
        self.advance(
            self.rec.status,
            "validation_failed",
            json!({"external_key_id": id, "attempt": attempt, "error": reason}),
            |r| {
                r.validation_attempts = attempt;
                r.last_error = Some(reason.clone());
            },
        )
        .await?;
        Err(CmekError::ValidationFailed {
            external_key_id: id.to_string(),
            attempt,
            reason,
        })
    }

    fn external_key_id(&self) -> Result<ExternalKeyId, CmekError> {
        self.rec
            .external_key_id
            .clone()
            .ok_or_else(|| CmekError::StateConflict("no registration recorded for this creation".into()))
    }

    /// The irreversible call: the workspace, created with its key. Only a
    /// key validated by this execution (Claude Platform) or one whose
    /// policy analyses clean for a new workspace (both) is given; the
    /// create validates it again against the new workspace.
    async fn create(&mut self) -> Result<(), CmekError> {
        let on_aws = self.deps.config.platform.attach_validates();
        if !on_aws && self.rec.validated_by.as_deref() != Some(self.input.execution.as_str()) {
            return Err(CmekError::NotValidated(format!(
                "{} is {} and its key was not validated by this execution; creating a workspace with an unvalidated key is never done",
                self.subject(),
                self.rec.status
            )));
        }
        let arn = self.key_arn()?;
        self.judge_for_new_workspace(&arn).await?;
        let id = self.external_key_id()?;
        // Before every attempt (not only the first): the settle window
        // after a lost answer runs from the latest create sent.
        let sent_at = self.deps.now().unix_timestamp();
        self.advance(
            self.rec.status,
            "creation_started",
            json!({"external_key_id": id}),
            |r| {
                r.creation_started = true;
                r.creation_started_at = Some(sent_at);
            },
        )
        .await?;
        let req = self.req();
        let tags = BTreeMap::from([
            (TAG_CREATION.to_owned(), self.rec.token.to_string()),
            (TAG_MANAGED_BY.to_owned(), TAG_MANAGED_BY_VALUE.to_owned()),
        ]);
        let body = admin_api::CreateWorkspace {
            name: &req.create_workspace.name,
            external_key_id: id.as_str(),
            tags: &tags,
            display_color: req.create_workspace.display_color.as_deref(),
            data_residency: Some(DataResidency {
                workspace_geo: self.deps.config.geo,
            }),
        };
        let attempt = self.rec.validation_attempts + 1;
        if on_aws {
            emit(&[], &[(Metric::ValidationAttempts, Unit::Count, 1.0)]);
        }
        let created = match self.deps.admin()?.create_workspace(&body).await {
            Ok(w) => w,
            Err(e) => {
                // Any 4xx (a 429 included) is a refusal: nothing was created,
                // so the next attempt has no lost answer to wait out.
                if let Some(status) = e.status().filter(|s| (400..500).contains(s))
                    && !matches!(e, AdminApiError::InvalidRequest(_) | AdminApiError::Conflict(_))
                {
                    self.advance(
                        self.rec.status,
                        "create_refused",
                        json!({"status": status, "error": e.to_string()}),
                        |r| {
                            r.creation_started = false;
                            r.creation_started_at = None;
                        },
                    )
                    .await?;
                }
                return Err(self.refused(e, &arn, attempt).await);
            }
        };
        crash_point("create-workspace.after-create");
        if created.external_key_id.as_deref() != Some(id.as_str()) {
            return Err(CmekError::AttachmentMismatch(format!(
                "workspace {} was created answering external_key_id {:?}, expected {id}",
                created.id, created.external_key_id
            )));
        }
        self.record_created(&created, "workspace_created").await
    }

    /// Why the create was refused, and whether it is worth another try:
    /// transient codes are retried; on Claude Platform on AWS a validation
    /// refusal while the policy still analyses clean is KMS propagating
    /// (`AttachNotYetAccepted`, retried on the validation schedule); every
    /// other refusal is recorded and named.
    async fn refused(&mut self, e: AdminApiError, arn: &KeyArn, attempt: u32) -> CmekError {
        if !matches!(e, AdminApiError::InvalidRequest(_) | AdminApiError::Conflict(_)) {
            return e.into();
        }
        let code = e.error_code().cloned();
        let route = code.as_ref().and_then(ErrorCode::route);
        if route == Some(Route::Retry) {
            return e.into();
        }
        let reason = e
            .failure()
            .map(ToString::to_string)
            .unwrap_or_else(|| e.to_string());
        let validation_refusal = matches!(code, None | Some(ErrorCode::ValidationFailed));
        let policy_clean = self.judge_for_new_workspace(arn).await.is_ok();
        let not_yet = self.deps.config.platform.attach_validates() && validation_refusal && policy_clean;
        let outcome = if not_yet {
            "create_not_yet_accepted"
        } else {
            "create_refused"
        };
        let mut detail = json!({"error": reason, "attempt": attempt});
        if let Some(c) = &code {
            detail["error_code"] = json!(c.to_string());
        }
        let recorded = self
            .advance(self.rec.status, outcome, detail, |r| {
                r.validation_attempts = attempt;
                r.last_error = Some(reason.clone());
                // A 400 or 409 refusal: the workspace was not created.
                r.creation_started = false;
                r.creation_started_at = None;
            })
            .await;
        if let Err(record_error) = recorded {
            return record_error;
        }
        let subject = self.subject();
        let id = self.rec.external_key_id.as_deref().unwrap_or_default().to_owned();
        if route == Some(Route::Refuse) {
            e.into()
        } else if not_yet {
            CmekError::AttachNotYetAccepted {
                workspace: subject,
                external_key_id: id,
                attempt,
                reason,
            }
        } else if !policy_clean {
            match self.judge_for_new_workspace(arn).await {
                Err(named) => named,
                Ok(()) => CmekError::AttachRefused {
                    workspace: subject,
                    external_key_id: id,
                    reason,
                },
            }
        } else {
            CmekError::AttachRefused {
                workspace: subject,
                external_key_id: id,
                reason,
            }
        }
    }

    /// Read the workspace back: it must exist, unarchived or not, with this
    /// creation's key.
    async fn read_back(&mut self) -> Result<(Workspace, KeyArn), CmekError> {
        let id = self
            .rec
            .workspace_id
            .clone()
            .ok_or_else(|| CmekError::StateConflict("no workspace recorded for this creation".into()))?;
        let workspace = self.deps.admin()?.get_workspace(&id).await?;
        let expected = self.external_key_id()?;
        if workspace.external_key_id.as_deref() != Some(expected.as_str()) {
            return Err(CmekError::AttachmentMismatch(format!(
                "workspace {id} reads back external_key_id {:?}, expected {expected}",
                workspace.external_key_id
            )));
        }
        Ok((workspace, self.key_arn()?))
    }

    /// Once the workspace exists: a key created here is tagged and aliased
    /// for it and, if keys are restricted to their workspaces, its policy
    /// narrowed to this workspace's compartment (and ARN) — the new policy
    /// judged for this workspace before it is written, so its access never
    /// lapses. An adopted key's policy is its owner's.
    async fn narrow_policy(&mut self, workspace: &Workspace) -> Result<(), CmekError> {
        if self.rec.key_adopted || self.rec.policy_narrowed {
            return Ok(());
        }
        let kms = self.deps.kms()?;
        let arn = self.key_arn()?;
        let ws: WorkspaceId = parse(&workspace.id, "workspace id")?;
        let compartment = self
            .rec
            .compartment_id
            .ok_or_else(|| CmekError::StateConflict("no compartment recorded for this creation".into()))?;
        kms.tag_as_ours(arn.key_id(), ws.as_str()).await?;
        kms.ensure_alias(&alias_for(&self.deps.config.alias_prefix, &ws), arn.key_id())
            .await?;
        let narrowed = self.policy_for(Some((&ws, compartment)))?;
        let text = policy::to_policy_string(&narrowed);
        let findings = crate::context::analyse_for_workspace(
            &self.deps.config,
            &text,
            &ws,
            compartment,
            self.org()?.as_ref(),
            Some(arn.account()),
        )
        .map_err(|e| CmekError::KeyPolicyRejected {
            key: arn.to_string(),
            summary: e.to_string(),
        })?;
        check_findings(arn.as_str(), &findings, &[])?;
        if self.restrict() {
            kms.put_policy(arn.as_str(), &text).await?;
        }
        let restricted = self.restrict();
        self.advance(
            self.rec.status,
            if restricted {
                "policy_narrowed"
            } else {
                "policy_kept"
            },
            json!({"workspace_id": ws, "compartment_id": compartment, "restricted": restricted}),
            |r| r.policy_narrowed = true,
        )
        .await?;
        crash_point("create-workspace.after-narrow");
        Ok(())
    }

    async fn release(&mut self) -> Result<(), CmekError> {
        let now = self.deps.now();
        let event = AuditEvent::new(
            "CreateWorkspace",
            "created",
            None,
            json!({"workspace_id": self.rec.workspace_id, "key_arn": self.rec.kms_key_arn}),
        );
        self.rec = store::advance_creation(
            &*self.deps.store,
            &self.rec,
            &self.input.execution,
            Status::Attached,
            event,
            now,
            true,
            |_| {},
        )
        .await?;
        Ok(())
    }
}

/// The description of a key created for a new workspace: how a key this
/// function made but did not get to tag is found after a crash.
fn new_key_description(rec: &CreationRecord) -> String {
    format!(
        "Anthropic CMEK for new workspace creation {} (cmek-provisioner)",
        rec.token
    )
}

/// A workspace that does not exist yet, for the policy analysis: an id and
/// a compartment no policy can list (derived from the creation token; never
/// sent anywhere).
fn probe(rec: &CreationRecord) -> Result<(WorkspaceId, CompartmentId), CmekError> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(rec.token.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let compartment = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string();
    let hex: String = digest[16..28].iter().map(|b| format!("{b:02x}")).collect();
    let internal = |e: crate::ids::IdError| CmekError::Internal(format!("the probe workspace: {e}"));
    Ok((
        format!("wrkspc_probe{hex}").parse().map_err(internal)?,
        compartment.parse().map_err(internal)?,
    ))
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, CmekError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| CmekError::AdminApiRejected(format!("the Admin API answered a malformed {what}: {e}")))
}
