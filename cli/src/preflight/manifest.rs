//! Every AWS call the functions make, as IAM authorizes it: the manifest the
//! IAM coverage test generates from the calls the whole end-to-end suite
//! recorded (`cli/preflight-manifest.json`; the test fails when it is stale),
//! with the stack's own names as `${…}` placeholders.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use super::stack::DeployedStack;

pub const MANIFEST: &str = include_str!("../../preflight-manifest.json");

/// A workspace id and key id no deployment has: simulated requests name them
/// where a real call names the workspace or key it works on.
pub const ANY_WORKSPACE: &str = "wrkspc_cmekpreflight";
pub const ANY_KEY: &str = "00000000-0000-4000-8000-000000000000";
/// A creation token no request has (a new workspace's key is tagged and
/// aliased with its request's token before the workspace exists).
pub const ANY_CREATION_TOKEN: &str = "n-00000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestCall {
    pub function: String,
    pub action: String,
    /// The resource, with placeholders.
    pub resource: String,
    /// Condition keys the request carries, values with placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Vec<String>>,
    /// The platforms whose stacks made the call.
    pub platforms: Vec<String>,
    /// `role`: the function's role allows it (IAM can simulate it);
    /// `key-policy`: the key's own policy (written when the key was created)
    /// grants it to the role directly.
    pub granted_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub about: String,
    pub calls: Vec<ManifestCall>,
}

impl Manifest {
    pub fn embedded() -> anyhow::Result<Self> {
        serde_json::from_str(MANIFEST)
            .map_err(|e| anyhow!("the embedded preflight manifest is unreadable: {e}"))
    }
}

/// The value of each placeholder in a deployment.
pub fn placeholders(stack: &DeployedStack) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let resource = |id: &str| stack.resource(id).map(str::to_owned);
    Ok(BTreeMap::from([
        ("Partition", stack.partition.clone()),
        ("Region", stack.region.clone()),
        ("Account", stack.account.clone()),
        ("WorkflowTable", resource("WorkflowTable")?),
        ("ResultBus", resource("ResultBus")?),
        ("AlertTopic", resource("AlertTopic")?),
        ("ProvisionStateMachine", resource("ProvisionStateMachine")?),
        (
            "FailedInvocationsQueue",
            stack.queue_arn("FailedInvocationsQueue")?,
        ),
        (
            "AdminKeySecretArn",
            stack.parameter("AdminKeySecretArn").to_owned(),
        ),
        ("AliasPrefix", {
            let p = stack.parameter("AliasPrefix");
            if p.is_empty() {
                "alias/anthropic-cmek".to_owned()
            } else {
                p.to_owned()
            }
        }),
        ("Workspace", ANY_WORKSPACE.to_owned()),
        ("AnyKey", ANY_KEY.to_owned()),
        ("CreationToken", ANY_CREATION_TOKEN.to_owned()),
    ]))
}

/// A template with its placeholders replaced; an unknown one is an error.
pub fn render(template: &str, values: &BTreeMap<&'static str, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| anyhow!("unclosed placeholder in {template:?}"))?
            + start;
        let name = &rest[start + 2..end];
        match values.get(name) {
            Some(v) => out.push_str(v),
            None => bail!("unknown placeholder ${{{name}}} in {template:?}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_manifest_is_readable_and_covers_every_function_on_both_platforms() {
        let m = Manifest::embedded().unwrap();
        assert!(m.calls.len() > 30, "{} calls", m.calls.len());
        for platform in ["claude-platform", "claude-platform-on-aws"] {
            let functions: std::collections::BTreeSet<&str> = m
                .calls
                .iter()
                .filter(|c| c.platforms.iter().any(|p| p == platform))
                .map(|c| c.function.as_str())
                .collect();
            assert!(functions.len() >= 8, "{platform}: {functions:?}");
        }
        for c in &m.calls {
            assert!(matches!(c.granted_by.as_str(), "role" | "key-policy"), "{c:?}");
        }
    }

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_refused() {
        let values = BTreeMap::from([("Region", "us-east-2".to_owned()), ("Account", "1".to_owned())]);
        assert_eq!(
            render("arn:aws:kms:${Region}:${Account}:key/*", &values).unwrap(),
            "arn:aws:kms:us-east-2:1:key/*"
        );
        assert!(render("${Nope}", &values).is_err());
        assert!(render("${Region", &values).is_err());
    }
}
