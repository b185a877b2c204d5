//! Which deployment `cmekctl` works with: names given on the command line
//! (or in the environment) win; whatever is missing is read from the
//! stack's outputs in CloudFormation, the stack named by `--stack`, else by
//! `stack_name` in `./samconfig.toml` (what `sam deploy` used), else
//! `cmek-provisioner` (the committed samconfig.toml's name).

use anyhow::{Context, anyhow};

/// The stack a deployed user means when they name none.
pub const DEFAULT_STACK: &str = "cmek-provisioner";

/// The template's outputs `cmekctl` reads.
pub const STATE_MACHINE_OUTPUT: &str = "StateMachineArn";
pub const TABLE_OUTPUT: &str = "WorkflowTableName";

#[derive(clap::Args, Debug, Clone)]
pub struct StackArgs {
    /// The deployed stack to work with: the state machine and table are read
    /// from its outputs (StateMachineArn, WorkflowTableName). Default:
    /// stack_name in ./samconfig.toml, else cmek-provisioner.
    #[arg(long, env = "CMEK_STACK")]
    pub stack: Option<String>,
    /// The provisioning state machine's ARN, instead of the stack's
    /// StateMachineArn output.
    #[arg(long, env = "CMEK_STATE_MACHINE_ARN")]
    pub state_machine_arn: Option<String>,
    /// The workflow table's name, instead of the stack's WorkflowTableName output.
    #[arg(long, env = "CMEK_TABLE_NAME")]
    pub table: Option<String>,
}

/// Where the stack's name came from, for an error that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackName {
    Given(String),
    SamConfig(String),
    Default,
}

impl StackName {
    pub fn name(&self) -> &str {
        match self {
            Self::Given(n) | Self::SamConfig(n) => n,
            Self::Default => DEFAULT_STACK,
        }
    }

    fn origin(&self) -> &'static str {
        match self {
            Self::Given(_) => "--stack / CMEK_STACK",
            Self::SamConfig(_) => "stack_name in ./samconfig.toml",
            Self::Default => "the default name",
        }
    }
}

/// What a command works with, resolved.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub state_machine_arn: Option<String>,
    pub table: Option<String>,
    /// The stack's `AdminKeySecretArn` parameter, when the stack was read
    /// and it has one (Claude Platform): the admin key's secret.
    pub admin_key_secret_arn: Option<String>,
}

impl Deployment {
    pub fn table(&self) -> anyhow::Result<&str> {
        self.table.as_deref().context("no workflow table")
    }

    pub fn state_machine_arn(&self) -> anyhow::Result<&str> {
        self.state_machine_arn.as_deref().context("no state machine")
    }
}

impl StackArgs {
    /// The stack's name: given, else samconfig.toml's, else the default.
    pub fn stack_name(&self) -> StackName {
        if let Some(n) = self.stack.as_deref().filter(|n| !n.trim().is_empty()) {
            return StackName::Given(n.trim().to_owned());
        }
        std::fs::read_to_string("samconfig.toml")
            .ok()
            .and_then(|text| samconfig_stack_name(&text))
            .map_or(StackName::Default, StackName::SamConfig)
    }

    /// Resolve what the command needs: the table always, the state machine
    /// when `state_machine` is set. CloudFormation is asked only for what
    /// was not given.
    pub async fn resolve(
        &self,
        sdk: &aws_config::SdkConfig,
        state_machine: bool,
    ) -> anyhow::Result<Deployment> {
        let mut d = Deployment {
            state_machine_arn: self.state_machine_arn.clone().filter(|s| !s.is_empty()),
            table: self.table.clone().filter(|s| !s.is_empty()),
            admin_key_secret_arn: None,
        };
        if d.table.is_some() && (!state_machine || d.state_machine_arn.is_some()) {
            return Ok(d);
        }
        let name = self.stack_name();
        let outputs = read_stack(&aws_sdk_cloudformation::Client::new(sdk), &name).await?;
        let output = |key: &str| {
            outputs
                .outputs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    anyhow!(
                        "the stack {} has no output {key}: is it a cmek-provisioner stack? (give --state-machine-arn and --table instead)",
                        name.name()
                    )
                })
        };
        if d.table.is_none() {
            d.table = Some(output(TABLE_OUTPUT)?);
        }
        if state_machine && d.state_machine_arn.is_none() {
            d.state_machine_arn = Some(output(STATE_MACHINE_OUTPUT)?);
        }
        d.admin_key_secret_arn = outputs.admin_key_secret_arn;
        Ok(d)
    }
}

struct StackRead {
    outputs: Vec<(String, String)>,
    admin_key_secret_arn: Option<String>,
}

async fn read_stack(cfn: &aws_sdk_cloudformation::Client, name: &StackName) -> anyhow::Result<StackRead> {
    let described = cfn
        .describe_stacks()
        .stack_name(name.name())
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))
        .with_context(|| {
            format!(
                "reading the stack {} ({}) from CloudFormation: deploy it, name it with --stack, or give --state-machine-arn and --table",
                name.name(),
                name.origin()
            )
        })?;
    let stack = described
        .stacks()
        .first()
        .ok_or_else(|| anyhow!("no stack named {} ({})", name.name(), name.origin()))?;
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let admin_key_secret_arn = stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("AdminKeySecretArn"))
        .and_then(|p| p.parameter_value())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Ok(StackRead {
        outputs,
        admin_key_secret_arn,
    })
}

/// `stack_name` from a samconfig.toml, as `sam deploy` reads it: the
/// `default` environment's deploy parameters, else its global ones. A
/// line-level reading of the two keys SAM writes (`key = "value"`), not a
/// TOML parser: anything else in the file is ignored.
pub fn samconfig_stack_name(text: &str) -> Option<String> {
    let mut section = String::new();
    let (mut deploy, mut global) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "stack_name" {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.split_once('"'))
            .map(|(v, _)| v.to_owned())
            .or_else(|| {
                value
                    .strip_prefix('\'')
                    .and_then(|v| v.split_once('\''))
                    .map(|(v, _)| v.to_owned())
            })
            .filter(|v| !v.is_empty());
        match section.as_str() {
            "default.deploy.parameters" => deploy = value,
            "default.global.parameters" => global = value,
            _ => {}
        }
    }
    deploy.or(global)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sam_deploy_parameters_win_over_global_ones() {
        let text = "version = 0.1\n[default.global.parameters]\nstack_name = \"from-global\"\n\n[default.deploy.parameters]\n# saved by --guided\nstack_name = \"from-deploy\"\nregion = \"us-east-2\"\n";
        assert_eq!(samconfig_stack_name(text).as_deref(), Some("from-deploy"));
        let text = "[default.global.parameters]\nstack_name = 'quoted'  # comment\n";
        assert_eq!(samconfig_stack_name(text).as_deref(), Some("quoted"));
    }

    #[test]
    fn other_environments_and_keys_are_not_read() {
        let text = "[prod.deploy.parameters]\nstack_name = \"prod\"\n[default.deploy.parameters]\ns3_prefix = \"stack_name\"\n";
        assert_eq!(samconfig_stack_name(text), None);
        assert_eq!(samconfig_stack_name(""), None);
    }

    /// The committed samconfig.toml names the stack the README deploys.
    #[test]
    fn the_committed_samconfig_names_the_default_stack() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../samconfig.toml"))
            .unwrap_or_default();
        assert_eq!(samconfig_stack_name(&text).as_deref(), Some(DEFAULT_STACK));
    }
}
