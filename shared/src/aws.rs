//! AWS SDK set-up shared by every function: one `SdkConfig` per cold start
//! (the expensive part), clients built from it (cheap).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::admin_api::AdminKey;
use crate::error::CmekError;

/// Load credentials, Region and endpoint from the environment. Honours
/// `AWS_ENDPOINT_URL`, which is how the local stack points the functions at moto.
pub async fn sdk_config() -> SdkConfig {
    config_loader().load().await
}

/// `aws_config::defaults` with the HTTPS client of [`crate::tls`]. Every SDK
/// configuration in this workspace starts here: the SDK crates are built
/// without a default HTTP client (see the workspace `Cargo.toml`).
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(crate::tls::sdk_http_client())
}

/// Like [`sdk_config`], with an explicit endpoint (tests, the sandbox, the CLI's `--local`).
pub async fn sdk_config_with_endpoint(endpoint: &str, region: &str) -> SdkConfig {
    config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// Read the Admin API key from Secrets Manager. The secret may hold the key
/// itself or a JSON object with an `admin_api_key` field. The key's value never
/// appears in an error.
pub async fn read_admin_key(
    client: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
) -> Result<AdminKey, CmekError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| {
            CmekError::Configuration(format!(
                "cannot read the Admin API key secret {secret_arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let raw = out
        .secret_string()
        .ok_or_else(|| CmekError::Configuration(format!("secret {secret_arn} has no string value")))?;
    parse_admin_key_secret(raw).ok_or_else(|| {
        CmekError::Configuration(format!(
            "secret {secret_arn} holds no Admin API key (a plain string or {{\"admin_api_key\": \"...\"}})"
        ))
    })
}

fn parse_admin_key_secret(raw: &str) -> Option<AdminKey> {
    let raw = raw.trim();
    let key = if raw.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()?
            .get("admin_api_key")?
            .as_str()?
            .to_owned()
    } else {
        raw.to_owned()
    };
    let key = AdminKey::new(key);
    (!key.is_empty()).then_some(key)
}

/// Every event of an execution's history, oldest first, across all pages
/// (a provision with retries runs past one page).
pub async fn execution_history(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>, aws_sdk_sfn::Error> {
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .set_next_token(token)
            .send()
            .await?;
        events.extend(page.events().iter().cloned());
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shapes() {
        assert_eq!(
            parse_admin_key_secret("sk-ant-admin01-abc\n"),
            Some(AdminKey::new("sk-ant-admin01-abc"))
        );
        assert_eq!(
            parse_admin_key_secret(r#"{"admin_api_key": "sk-x"}"#),
            Some(AdminKey::new("sk-x"))
        );
        assert_eq!(parse_admin_key_secret(r#"{"other": "sk-x"}"#), None);
        assert_eq!(parse_admin_key_secret("  "), None);
    }
}
