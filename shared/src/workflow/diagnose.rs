//! After validation never succeeded: name the documented cause, with the fix.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Deps, StepInput, advance, held, recorded_compartment, recorded_key_arn};
use crate::error::CmekError;
use crate::geo::Geo;
use crate::ids::{CompartmentId, KeyArn, OrgUuid};
use crate::kms::KeyManager;
use crate::policy::{
    self, AnalysisTarget, ContractGeneration, Finding, FindingCode, PolicyDocument, Severity,
};

crate::context::lambda_function!(
    /// Diagnose: name the documented cause when validation never succeeded.
    DiagnoseKey: diagnose => Diagnosis,
    crate::context::Needs {
        kms: true,
        ..crate::context::Needs::NONE
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// One of the documented causes: `MISSING_ORG_CONDITION`,
    /// `ENCRYPTION_CONTEXT_MISMATCH`, `IAM_INSTEAD_OF_KEY_POLICY`,
    /// `REGION_MISMATCH`, `KEY_NOT_ENABLED`, `DENY_STATEMENT`,
    /// `OVER_PERMISSIVE_POLICY`, `NETWORK_CONDITION`,
    /// `LIKELY_RCP_OR_PROPAGATION`; on Claude
    /// Platform on AWS also `SERVICE_PRINCIPAL_NOT_GRANTED`,
    /// `MISSING_SERVICE_ACTION`, `SOURCE_ARN_MISMATCH`.
    pub cause: String,
    pub summary: String,
    pub fix: String,
    pub findings: Vec<Finding>,
    /// Which generation of Anthropic's documented policy the key follows
    /// (`2026-07`, `2026-08`, `current`), when its policy could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractGeneration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_error: Option<String>,
}

impl Diagnosis {
    fn new(cause: &str, summary: String, fix: String, findings: Vec<Finding>, last: Option<String>) -> Self {
        Self {
            cause: cause.into(),
            summary,
            fix,
            findings,
            contract: None,
            last_validation_error: last,
        }
    }
}

/// `KEY_NOT_ENABLED` when the key is missing or not usable: its summary and fix.
fn unusable(arn: &KeyArn, info: Option<&crate::kms::KeyInfo>) -> Option<(String, String)> {
    match info {
        None => Some((
            format!("the key {arn} does not exist or cannot be described"),
            "Check the key ARN and that it was not deleted.".into(),
        )),
        Some(info) => info.unusable_reason().map(|reason| {
            (
                reason,
                "Enable the key (kms:EnableKey) or cancel its deletion.".into(),
            )
        }),
    }
}

/// The Diagnose state: read the key and its policy, name the cause, record it.
pub async fn diagnose(deps: &Deps, event: Value) -> Result<Diagnosis, CmekError> {
    let input = StepInput::from_value(&event)?;
    let rec = held(deps, &input).await?;
    let arn = recorded_key_arn(&rec)?;
    let compartment = recorded_compartment(&rec)?;
    let d = if deps.config.platform.is_on_aws() {
        let kms = deps.kms()?;
        let info = kms.describe(arn.as_str()).await?;
        let region = deps
            .config
            .require_platform_region()
            .map_err(|e| CmekError::Configuration(e.to_string()))?;
        diagnose_on_aws(
            kms,
            &arn,
            info.as_ref(),
            compartment,
            &super::workspace_arn(deps, &rec.workspace_id)?,
            region,
            rec.last_error.clone(),
        )
        .await?
    } else {
        diagnose_key(
            deps.kms()?,
            deps.config.geo,
            &arn,
            compartment,
            rec.org_uuid.as_ref(),
            rec.last_error.clone(),
        )
        .await?
    };
    let d = with_anthropics_code(d, rec.last_error_code.as_deref());
    advance(
        deps,
        &rec,
        &input.execution,
        rec.status,
        "Diagnose",
        "diagnosed",
        json!({"cause": d.cause, "summary": d.summary, "fix": d.fix}),
        |r| r.diagnosis = serde_json::to_value(&d).ok(),
    )
    .await?;
    tracing::warn!(workspace_id = %rec.workspace_id, cause = %d.cause, "validation diagnosis: {}", d.summary);
    Ok(d)
}

/// What Anthropic's typed code adds when the key and its policy explain
/// nothing: `cmek_key_network_blocked` with no network condition in the
/// policy is a network control outside it ("The key itself may be healthy",
/// Troubleshoot CMEK).
fn with_anthropics_code(d: Diagnosis, code: Option<&str>) -> Diagnosis {
    if d.cause != "LIKELY_RCP_OR_PROPAGATION" || code != Some("cmek_key_network_blocked") {
        return d;
    }
    Diagnosis {
        cause: "NETWORK_CONDITION".into(),
        summary: "Anthropic answered cmek_key_network_blocked: a network control blocked its call to KMS, and the key policy has no network condition on Anthropic's access, so the block is outside it".into(),
        fix: "Check what else filters requests to this key by network: an AWS Organizations resource control policy with aws:SourceIp or VPC conditions, or a KMS firewall; allow Anthropic's published IP addresses there.".into(),
        ..d
    }
}

/// The same reasoning, for any key (the CLI's `doctor` uses it too).
pub async fn diagnose_key(
    kms: &KeyManager,
    geo: Geo,
    arn: &KeyArn,
    compartment: CompartmentId,
    org: Option<&OrgUuid>,
    last_validation_error: Option<String>,
) -> Result<Diagnosis, CmekError> {
    // A key in a Region Anthropic does not serve is diagnosed without a call.
    let info = if geo.accepts_region(arn.region()) {
        kms.describe(arn.as_str()).await?
    } else {
        None
    };
    diagnose_described(
        kms,
        geo,
        arn,
        info.as_ref(),
        compartment,
        org,
        last_validation_error,
    )
    .await
}

/// [`diagnose_key`] for a caller that has described the key already
/// (`info`: what `DescribeKey` answered, `None` when the key is not there):
/// the policy is read only if the key is usable in a served Region.
pub async fn diagnose_described(
    kms: &KeyManager,
    geo: Geo,
    arn: &KeyArn,
    info: Option<&crate::kms::KeyInfo>,
    compartment: CompartmentId,
    org: Option<&OrgUuid>,
    last_validation_error: Option<String>,
) -> Result<Diagnosis, CmekError> {
    let make = |cause: &str, summary: String, fix: String, findings: Vec<Finding>| {
        Diagnosis::new(cause, summary, fix, findings, last_validation_error.clone())
    };
    if !geo.accepts_region(arn.region()) {
        return Ok(make(
            "REGION_MISMATCH",
            format!(
                "the key is in {}, which Anthropic does not operate in for geo {geo}",
                arn.region()
            ),
            format!(
                "Create the key in {} (or another Region of the geo).",
                geo.recommended_region()
            ),
            vec![],
        ));
    }
    if let Some((summary, fix)) = unusable(arn, info) {
        return Ok(make("KEY_NOT_ENABLED", summary, fix, vec![]));
    }
    let policy_text = kms.get_policy(arn.as_str()).await?;
    let target = AnalysisTarget {
        geo,
        compartment,
        org,
        key_account: Some(arn.account()),
    };
    let (findings, contract) = match PolicyDocument::parse(&policy_text) {
        Ok(doc) => (
            policy::analyse_document(&doc, target),
            policy::generation(&doc, geo),
        ),
        Err(e) => {
            return Ok(make(
                "IAM_INSTEAD_OF_KEY_POLICY",
                format!("the key policy cannot be read as an IAM policy: {e}"),
                "Replace it with the documented policy (cmekctl policy prints it).".into(),
                vec![],
            ));
        }
    };
    let has = |codes: &[FindingCode]| findings.iter().find(|f| codes.contains(&f.code)).cloned();
    use FindingCode::*;
    // The documented causes, most specific first.
    let (cause, first) = if let Some(f) = has(&[NoCryptoGrant, NoDescribeGrant, DescribeUnderCondition]) {
        ("IAM_INSTEAD_OF_KEY_POLICY", f)
    } else if let Some(f) = has(&[NoOrgCondition, OrgConditionMismatch]) {
        ("MISSING_ORG_CONDITION", f)
    } else if let Some(f) = has(&[ConditionMissesCompartment, PlaceholderInCondition]) {
        ("ENCRYPTION_CONTEXT_MISMATCH", f)
    } else if let Some(f) = has(&[NetworkConditionBlocksAnthropic]) {
        ("NETWORK_CONDITION", f)
    } else if let Some(f) = has(&[AccountWidePrincipal, ExtraActions]) {
        ("OVER_PERMISSIVE_POLICY", f)
    } else if let Some(f) = has(&[DenyBlocksAnthropic]) {
        ("DENY_STATEMENT", f)
    } else if let Some(f) = has(&[ConditionMissesValidationId]) {
        ("ENCRYPTION_CONTEXT_MISMATCH", f)
    } else if let Some(f) = has(&[DenyMayBlockAnthropic]) {
        ("DENY_STATEMENT", f)
    } else if let Some(f) = has(&[IpConditionOnAnthropic]) {
        ("NETWORK_CONDITION", f)
    } else if let Some(f) = findings
        .iter()
        .find(|f| f.severity == Severity::OverPermissive)
        .cloned()
    {
        ("OVER_PERMISSIVE_POLICY", f)
    } else {
        return Ok(Diagnosis {
            contract: Some(contract),
            ..make(
                "LIKELY_RCP_OR_PROPAGATION",
                "the key is enabled, in a served Region, and its policy grants Anthropic's role as documented; the denial comes from outside the key policy".into(),
                "Check AWS Organizations resource control policies (RCPs) for a Deny on KMS when aws:PrincipalOrgID is not yours, and add an exception for this key or Anthropic's role; if the key or policy changed minutes ago, re-run to let KMS propagate.".into(),
                findings,
            )
        });
    };
    Ok(Diagnosis {
        contract: Some(contract),
        ..make(cause, first.message.clone(), first.fix.clone(), findings)
    })
}

/// The diagnosis on Claude Platform on AWS, where attaching validates: the
/// key must be in the workspace's Region, enabled, and its policy must let
/// the service principal do the round trip for this workspace.
pub async fn diagnose_on_aws(
    kms: &KeyManager,
    arn: &KeyArn,
    info: Option<&crate::kms::KeyInfo>,
    compartment: CompartmentId,
    workspace_arn: &str,
    platform_region: &crate::ids::Region,
    last_error: Option<String>,
) -> Result<Diagnosis, CmekError> {
    let make = |cause: &str, summary: String, fix: String, findings: Vec<Finding>| {
        Diagnosis::new(cause, summary, fix, findings, last_error.clone())
    };
    if arn.region() != platform_region {
        return Ok(make(
            "REGION_MISMATCH",
            format!(
                "the key is in {}, but its workspace is bound to {platform_region}",
                arn.region()
            ),
            format!("Create the key in {platform_region}, in the workspace's own account."),
            vec![],
        ));
    }
    if let Some((summary, fix)) = unusable(arn, info) {
        return Ok(make("KEY_NOT_ENABLED", summary, fix, vec![]));
    }
    let text = kms.get_policy(arn.as_str()).await?;
    let target = policy::on_aws::OnAwsTarget {
        compartment,
        workspace_arn,
        key_account: Some(arn.account()),
    };
    let findings = match policy::on_aws::analyse(&text, target) {
        Ok(f) => f,
        Err(e) => {
            return Ok(make(
                "IAM_INSTEAD_OF_KEY_POLICY",
                format!("the key policy cannot be read as an IAM policy: {e}"),
                "Replace it with the documented policy (cmekctl policy --platform claude-platform-on-aws prints it).".into(),
                vec![],
            ));
        }
    };
    let has = |codes: &[FindingCode]| findings.iter().find(|f| codes.contains(&f.code)).cloned();
    use FindingCode::*;
    let (cause, first) = if let Some(f) = has(&[NoServiceGrant, NoDescribeGrant]) {
        ("SERVICE_PRINCIPAL_NOT_GRANTED", f)
    } else if let Some(f) = has(&[MissingServiceAction]) {
        ("MISSING_SERVICE_ACTION", f)
    } else if let Some(f) = has(&[SourceArnExcludesWorkspace]) {
        ("SOURCE_ARN_MISMATCH", f)
    } else if let Some(f) = has(&[ConditionMissesCompartment]) {
        ("ENCRYPTION_CONTEXT_MISMATCH", f)
    } else if let Some(f) = has(&[NetworkConditionBlocksAnthropic, IpConditionOnAnthropic]) {
        ("NETWORK_CONDITION", f)
    } else {
        return Ok(make(
            "LIKELY_RCP_OR_PROPAGATION",
            "the key is enabled, in the workspace's Region, and its policy grants the service principal as documented; the refusal comes from outside the key policy".into(),
            "Check that the role attaching the key may kms:DescribeKey, kms:Encrypt and kms:Decrypt it (the service checks the caller's own access), and AWS Organizations resource control policies; if the key or policy changed minutes ago, re-run to let KMS propagate.".into(),
            findings,
        ));
    };
    Ok(make(cause, first.message.clone(), first.fix.clone(), findings))
}
