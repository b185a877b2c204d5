//! Connects integration tests to the moto server the test command starts.

use aws_config::SdkConfig;

pub const ENDPOINT_VAR: &str = "CMEK_TEST_AWS_ENDPOINT";

#[allow(clippy::panic)] // a test helper: fail loudly with the fix
pub async fn moto() -> SdkConfig {
    let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: run these tests through ./scripts/test, which starts moto and sets it"
        )
    });
    // moto accepts any credentials; static ones keep the default chain from
    // looking for a real profile.
    let creds = aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "moto");
    cmek::aws::config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-2"))
        .credentials_provider(creds)
        .load()
        .await
}
