//! `cmekctl preflight`: after `sam deploy`, ask the account itself whether
//! the stack will work — read-only apart from one test event (and the
//! temporary queue that watches it arrive). Each check asks AWS (or
//! Anthropic): IAM's policy simulator for every call the functions make,
//! IAM Access Analyzer for every policy, KMS for the topics' keys, a real
//! event through the result rule, CloudTrail for the guardian's trail, the
//! Admin API for the stack's credentials.

mod checks;
pub mod manifest;
pub mod stack;

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

pub use checks::{Line, Outcome};
use stack::DeployedStack;

pub struct Options {
    pub stack: Option<String>,
    pub resources: Option<std::path::PathBuf>,
    pub delivery_timeout: Duration,
}

pub async fn run(json_out: bool, opts: Options, sdk: &aws_config::SdkConfig) -> anyhow::Result<i32> {
    let stack = match (&opts.resources, &opts.stack) {
        (Some(path), _) => DeployedStack::from_file(path)?,
        (None, Some(name)) => {
            DeployedStack::from_cloudformation(&aws_sdk_cloudformation::Client::new(sdk), name).await?
        }
        (None, None) => {
            anyhow::bail!("name the deployed stack: --stack NAME (or --resources FILE for the local stack)")
        }
    };
    // Every client in the stack's own Region, whatever the default is.
    let sdk = sdk
        .to_builder()
        .region(aws_config::Region::new(stack.region.clone()))
        .build();
    let manifest = manifest::Manifest::embedded()?;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let kms = aws_sdk_kms::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);

    let mut lines = Vec::new();
    lines.extend(checks::iam_simulation(&iam, &stack, &manifest).await);
    let written = written_keys(&sdk, &stack).await.unwrap_or_default();
    lines.extend(
        checks::policy_validation(
            &iam,
            &aws_sdk_accessanalyzer::Client::new(&sdk),
            &kms,
            &stack,
            &written,
        )
        .await,
    );
    lines.push(checks::admin_api(&sdk, &stack).await);
    lines.extend(checks::topic_keys(&sns, &kms, &stack).await);
    lines.push(
        checks::result_delivery(
            &aws_sdk_eventbridge::Client::new(&sdk),
            &sns,
            &aws_sdk_sqs::Client::new(&sdk),
            &stack,
            opts.delivery_timeout,
        )
        .await,
    );
    lines.push(checks::cloudtrail(&aws_sdk_cloudtrail::Client::new(&sdk), &stack).await);

    let failed = lines.iter().filter(|l| l.outcome == Outcome::Fail).count();
    if json_out {
        println!(
            "{}",
            json!({"stack": stack.name, "region": stack.region, "account": stack.account, "checks": lines, "failed": failed})
        );
    } else {
        print_table(&stack, &lines);
        if failed == 0 {
            println!(
                "\n✓ {} checks passed: the stack {} is ready",
                lines.len(),
                stack.name
            );
        } else {
            println!("\n✗ {failed} of {} checks failed", lines.len());
        }
    }
    Ok(i32::from(failed > 0))
}

fn print_table(stack: &DeployedStack, lines: &[Line]) {
    println!(
        "preflight of {} in {} ({})\n",
        stack.name, stack.region, stack.account
    );
    let width = lines.iter().map(|l| l.check.len()).max().unwrap_or(0);
    for l in lines {
        let mark = match l.outcome {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        };
        let by = l
            .stand_in
            .as_deref()
            .map(|s| format!("  [stand-in: {s}]"))
            .unwrap_or_default();
        println!("{mark}  {:width$}  {}{by}", l.check, l.detail);
    }
    if !stack.stand_ins.is_empty() {
        println!("\nAnswered by the local stack's stand-ins instead of AWS:");
        for (api, what) in &stack.stand_ins {
            println!("  {api}: {what}");
        }
    }
}

/// The keys the stack's records name (whose policies it wrote), at most 20.
async fn written_keys(sdk: &aws_config::SdkConfig, stack: &DeployedStack) -> anyhow::Result<Vec<String>> {
    use cmek::store::WorkflowStore;
    let table = stack.resource("WorkflowTable")?;
    let store = cmek::store::DynamoStore::new(cmek::aws::dynamodb_client(sdk), table);
    let records = store.list(None).await.context("reading the workflow table")?;
    let mut keys: Vec<String> = records
        .into_iter()
        .filter(|r| !r.key_adopted)
        .filter_map(|r| r.key_arn.map(|k| k.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.truncate(20);
    Ok(keys)
}
