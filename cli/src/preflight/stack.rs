//! The deployed stack preflight checks: its Region, account, parameters and
//! the physical ids of its resources, read from CloudFormation (`--stack`),
//! or from the file the local stack writes (`--resources`).

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use cmek::platform::Platform;
use serde::{Deserialize, Serialize};

/// What preflight knows of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployedStack {
    pub name: String,
    pub region: String,
    pub account: String,
    #[serde(default = "aws")]
    pub partition: String,
    /// The stack's parameters as deployed (`Platform`, `AdminKeySecretArn`, …).
    pub parameters: BTreeMap<String, String>,
    /// Logical id → physical id: role names, topic ARNs, the bus's name,
    /// the table's name, the topics' key id, the queue's URL.
    pub resources: BTreeMap<String, String>,
    /// The checks a stand-in answered instead of AWS (the local stack only):
    /// the API, and what answered it.
    #[serde(default)]
    pub stand_ins: BTreeMap<String, String>,
}

fn aws() -> String {
    "aws".into()
}

impl DeployedStack {
    pub fn platform(&self) -> anyhow::Result<Platform> {
        match self.parameters.get("Platform").map(String::as_str) {
            None | Some("") => Ok(Platform::ClaudePlatform),
            Some(p) => p.parse().map_err(anyhow::Error::msg),
        }
    }

    pub fn resource(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.resources
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the stack {} has no resource {logical_id}", self.name))
    }

    /// The ARN of the role SAM made for a function (`<Function>Role`).
    pub fn role_arn(&self, function: &str) -> anyhow::Result<String> {
        let name = self.resource(&format!("{function}Role"))?;
        Ok(if name.starts_with("arn:") {
            name.to_owned()
        } else {
            format!("arn:{}:iam::{}:role/{name}", self.partition, self.account)
        })
    }

    /// The functions of the stack (each has a `<Function>Role`).
    pub fn functions(&self) -> Vec<String> {
        self.resources
            .keys()
            .filter_map(|id| id.strip_suffix("FunctionRole").map(|f| format!("{f}Function")))
            .filter(|f| self.resources.contains_key(f))
            .collect()
    }

    pub fn parameter(&self, name: &str) -> &str {
        self.parameters.get(name).map(String::as_str).unwrap_or_default()
    }

    /// A queue's ARN from its URL (a queue's physical id).
    pub fn queue_arn(&self, logical_id: &str) -> anyhow::Result<String> {
        let url = self.resource(logical_id)?;
        self.queue_arn_from_url(url)
            .with_context(|| logical_id.to_owned())
    }

    /// A queue's ARN from its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    pub fn queue_arn_from_url(&self, url: &str) -> anyhow::Result<String> {
        let name = url
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("{url:?} is not a queue URL"))?;
        Ok(format!(
            "arn:{}:sqs:{}:{}:{name}",
            self.partition, self.region, self.account
        ))
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a stack description", path.display()))
    }

    /// Read a deployed stack from CloudFormation.
    pub async fn from_cloudformation(
        cfn: &aws_sdk_cloudformation::Client,
        name: &str,
    ) -> anyhow::Result<Self> {
        let described = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))
            .with_context(|| format!("reading the stack {name} from CloudFormation"))?;
        let stack = described
            .stacks()
            .first()
            .ok_or_else(|| anyhow!("no stack named {name}"))?;
        // arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>
        let id = stack.stack_id().unwrap_or_default();
        let parts: Vec<&str> = id.split(':').collect();
        let [_, partition, _, region, account, ..] = parts.as_slice() else {
            bail!("unexpected stack id {id:?}");
        };
        let parameters = stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let mut resources = BTreeMap::new();
        let mut pages = cfn
            .list_stack_resources()
            .stack_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))?;
            for r in page.stack_resource_summaries() {
                if let (Some(logical), Some(physical)) = (r.logical_resource_id(), r.physical_resource_id()) {
                    resources.insert(logical.to_owned(), physical.to_owned());
                }
            }
        }
        Ok(Self {
            name: name.to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            partition: (*partition).to_owned(),
            parameters,
            resources,
            stand_ins: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> DeployedStack {
        DeployedStack {
            name: "cmek-provisioner".into(),
            region: "us-east-2".into(),
            account: "123456789012".into(),
            partition: "aws".into(),
            parameters: [("Platform".to_owned(), "claude-platform-on-aws".to_owned())].into(),
            resources: [
                ("BeginFunction", "cmek-provisioner-BeginFunction-AB12"),
                ("BeginFunctionRole", "cmek-provisioner-BeginFunctionRole-CD34"),
                ("ResultBus", "cmek-provisioner-cmek-provisioner"),
                (
                    "FailedInvocationsQueue",
                    "https://sqs.us-east-2.amazonaws.com/123456789012/q-EF56",
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
            stand_ins: BTreeMap::new(),
        }
    }

    #[test]
    fn physical_ids_become_arns() {
        let s = stack();
        assert_eq!(s.platform().unwrap(), Platform::ClaudePlatformOnAws);
        assert_eq!(s.functions(), ["BeginFunction"]);
        assert_eq!(
            s.role_arn("BeginFunction").unwrap(),
            "arn:aws:iam::123456789012:role/cmek-provisioner-BeginFunctionRole-CD34"
        );
        assert_eq!(
            s.queue_arn("FailedInvocationsQueue").unwrap(),
            "arn:aws:sqs:us-east-2:123456789012:q-EF56"
        );
        assert!(s.role_arn("NoSuchFunction").is_err());
    }
}
