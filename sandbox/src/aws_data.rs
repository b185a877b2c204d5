//! AWS's own service authorization data, as cfn-lint ships it offline
//! (`cfnlint/data/AdditionalSpecs/Policies.json`, generated from the AWS
//! Service Authorization Reference; the version is pinned in
//! `tools/requirements-lint.txt`). The one source of IAM action names and
//! resource types in this project that the project did not write itself:
//! the template, the stand-in's recorder and the README are all checked
//! against it, never against each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde_json::Value;

/// One action as AWS describes it.
#[derive(Debug, Clone)]
pub struct ActionData {
    /// `service:Action` as AWS spells it in its data (lower case).
    pub name: String,
    /// The resource types the action can be scoped to. Empty: the action is
    /// account-scoped, and only a statement whose `Resource` is `*` grants it.
    pub resource_types: Vec<String>,
}

impl ActionData {
    pub fn account_scoped(&self) -> bool {
        self.resource_types.is_empty()
    }
}

/// Every service's actions, keyed by prefix, then by lower-case action name.
#[derive(Debug)]
pub struct ServiceData {
    services: BTreeMap<String, BTreeMap<String, ActionData>>,
    pub source: PathBuf,
}

/// Where the test command's lint virtualenv keeps cfn-lint's data.
pub fn policies_json() -> anyhow::Result<PathBuf> {
    let lib = crate::stack::repo_root().join(".local/venv-lint/lib");
    for entry in std::fs::read_dir(&lib)
        .with_context(|| format!("{}: ./scripts/test installs cfn-lint there", lib.display()))?
    {
        let path = entry?
            .path()
            .join("site-packages/cfnlint/data/AdditionalSpecs/Policies.json");
        if path.exists() {
            return Ok(path);
        }
    }
    Err(anyhow!(
        "no cfnlint/data/AdditionalSpecs/Policies.json under {}: ./scripts/test installs cfn-lint",
        lib.display()
    ))
}

impl ServiceData {
    pub fn load() -> anyhow::Result<Self> {
        let source = policies_json()?;
        let doc: Value = serde_json::from_slice(&std::fs::read(&source)?)?;
        let mut services = BTreeMap::new();
        for (prefix, service) in doc.as_object().ok_or_else(|| anyhow!("not an object"))? {
            let mut actions = BTreeMap::new();
            for (name, action) in service["Actions"].as_object().into_iter().flatten() {
                let resource_types = action["Resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                actions.insert(
                    name.to_lowercase(),
                    ActionData {
                        name: format!("{prefix}:{name}"),
                        resource_types,
                    },
                );
            }
            services.insert(prefix.to_lowercase(), actions);
        }
        Ok(Self { services, source })
    }

    /// The action `service:Action` (IAM matches names case-insensitively).
    pub fn action(&self, action: &str) -> Option<&ActionData> {
        let (service, name) = action.split_once(':')?;
        self.services
            .get(&service.to_lowercase())?
            .get(&name.to_lowercase())
    }

    pub fn has_service(&self, prefix: &str) -> bool {
        self.services.contains_key(&prefix.to_lowercase())
    }

    /// Every action a policy's action pattern (`kms:*`, `logs:Create*`)
    /// names. Empty: the pattern names nothing AWS knows.
    pub fn expand(&self, pattern: &str) -> Vec<&ActionData> {
        let Some((service, name)) = pattern.split_once(':') else {
            return Vec::new();
        };
        let Some(actions) = self.services.get(&service.to_lowercase()) else {
            return Vec::new();
        };
        let name = name.to_lowercase();
        actions
            .iter()
            .filter(|(a, _)| crate::iam_eval::wildcard(&name, a))
            .map(|(_, d)| d)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.services.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
