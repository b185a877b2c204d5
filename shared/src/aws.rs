//! AWS SDK set-up shared by every function: one `SdkConfig` per cold start
//! (the expensive part), clients built from it (cheap).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::admin_api::AdminKey;

/// The SDK's own loader, with its whole default chain (profiles, SSO, web
/// identity, IMDS…): what `cmekctl` runs with on an operator's machine.
/// Honours `AWS_ENDPOINT_URL`, which is how `cmekctl --local` reaches moto.
pub async fn sdk_config() -> SdkConfig {
    config_loader().load().await
}

/// The functions' SDK configuration: what [`sdk_config`] resolves to inside
/// Lambda, read from the only place it comes from there.
///
/// Lambda sets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` ("the access keys obtained from the function's
/// execution role") and `AWS_REGION` in every execution environment, and
/// reserves them so that no function configuration can set them
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>).
/// The default chain's first link, the environment, therefore always answers
/// there; the rest of it (profile files, STS, SSO, ECS, IMDS) never runs, yet
/// it was code in the one binary and time in its link. This reads
/// the same variables with the SDK's own providers, plus `AWS_ENDPOINT_URL`
/// (the local stack's way to moto), and sets what the loader sets without
/// them; `shared/tests/lambda_sdk_config.rs` holds the two equal in a process
/// whose environment is Lambda's.
pub async fn lambda_sdk_config() -> SdkConfig {
    use aws_config::environment::{
        EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
    };
    use aws_config::meta::region::ProvideRegion;
    let region = EnvironmentVariableRegionProvider::new().region().await;
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::sdk_http::sdk_http_client())
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .retry_config(aws_config::retry::RetryConfig::standard())
        // The loader's default: 3.1 s to connect, nothing else bounded.
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3100))
                .build(),
        )
        .time_source(aws_smithy_async::time::SharedTimeSource::default());
    config.set_region(region);
    config.set_endpoint_url(std::env::var("AWS_ENDPOINT_URL").ok());
    config.set_sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep());
    config.build()
}

/// `aws_config::defaults` with the HTTPS client of [`crate::sdk_http`]. Every
/// SDK configuration in this workspace starts here or in
/// [`lambda_sdk_config`]: the SDK crates are built without a default HTTP
/// client (see the workspace `Cargo.toml`).
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(crate::sdk_http::sdk_http_client())
}

/// Like [`sdk_config`], with an explicit endpoint (tests, the sandbox, the CLI's `--local`).
pub async fn sdk_config_with_endpoint(endpoint: &str, region: &str) -> SdkConfig {
    config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// How an AWS call failed, in the terms a caller retries on. One
/// classification for every service whose errors have no richer type of
/// their own here (EventBridge, SNS, Step Functions): a failing call is
/// `Throttled` only when AWS said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// AWS asked us to slow down.
    Throttled,
    /// A 5xx, a timeout or no answer: the call may or may not have taken
    /// effect, and trying again is safe only where the call is idempotent.
    Unavailable,
    /// The function's role lacks a permission: no retry helps.
    AccessDenied,
    /// The request itself was refused (validation, a missing resource…).
    Rejected,
}

/// A failed AWS call: which, how, and AWS's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {op} failed ({code}): {message}")]
pub struct AwsFailure {
    pub service: &'static str,
    pub op: &'static str,
    pub kind: FailureKind,
    pub code: String,
    pub message: String,
}

/// The kind of an AWS error code. Throttling and transient codes are the
/// SDK's own lists (`aws_runtime::retries::classifiers`, what its standard
/// retry strategy backs off on), plus the server errors services name for
/// themselves.
pub fn kind_of_code(code: &str) -> FailureKind {
    use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
    if THROTTLING_ERRORS.contains(&code) {
        return FailureKind::Throttled;
    }
    if TRANSIENT_ERRORS.contains(&code) {
        return FailureKind::Unavailable;
    }
    match code {
        "InternalError"
        | "InternalFailure"
        | "InternalException"
        | "InternalServerError"
        | "InternalServiceError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "KMSInternalException"
        | "DependencyTimeoutException" => FailureKind::Unavailable,
        "AccessDenied"
        | "AccessDeniedException"
        | "AuthorizationError"
        | "AuthorizationErrorException"
        | "UnauthorizedOperation"
        | "NotAuthorized" => FailureKind::AccessDenied,
        _ => FailureKind::Rejected,
    }
}

/// Classify an SDK error. Messages are shortened: they end up in logs,
/// Step Functions errors and CloudFormation answers.
pub fn classify<E, R>(
    service: &'static str,
    op: &'static str,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> AwsFailure
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let short = |s: String| s.chars().take(300).collect::<String>();
    let (kind, code, message) = match err {
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("Unknown").to_owned();
            let kind = kind_of_code(&code);
            (
                kind,
                code,
                short(e.err().message().unwrap_or_default().to_owned()),
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            FailureKind::Unavailable,
            "NoAnswer".to_owned(),
            short(aws_sdk_kms::error::DisplayErrorContext(err).to_string()),
        ),
        _ => (
            FailureKind::Rejected,
            "Unknown".to_owned(),
            short(aws_sdk_kms::error::DisplayErrorContext(err).to_string()),
        ),
    };
    AwsFailure {
        service,
        op,
        kind,
        code,
        message,
    }
}

/// Counts the SDK's own retries — every attempt after a request's first —
/// for the `AwsRetries` metric. The SDK absorbs throttling and 5xx answers
/// silently; this is how an operator sees AWS pushing back before it fails
/// anything. One per client, named by service.
#[derive(Debug, Clone, Copy)]
pub struct RetryCounting(pub &'static str);

impl aws_smithy_runtime_api::client::interceptors::Intercept for RetryCounting {
    fn name(&self) -> &'static str {
        "RetryCounting"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<
            '_,
        >,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        // The orchestrator numbers attempts from 1 before this hook runs.
        if cfg
            .load::<aws_smithy_runtime_api::client::retries::RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1)
        {
            crate::metrics::record_aws_retry(self.0);
        }
        Ok(())
    }
}

/// The functions' clients, each counting its retries (see [`RetryCounting`]).
pub fn dynamodb_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(RetryCounting("dynamodb"));
    aws_sdk_dynamodb::Client::from_conf(conf.build())
}

pub fn kms_client(sdk: &SdkConfig, region: Option<&str>) -> aws_sdk_kms::Client {
    let mut conf = aws_sdk_kms::config::Builder::from(sdk).interceptor(RetryCounting("kms"));
    if let Some(region) = region {
        conf = conf.region(aws_sdk_kms::config::Region::new(region.to_owned()));
    }
    aws_sdk_kms::Client::from_conf(conf.build())
}

pub fn eventbridge_client(sdk: &SdkConfig) -> aws_sdk_eventbridge::Client {
    let conf = aws_sdk_eventbridge::config::Builder::from(sdk).interceptor(RetryCounting("events"));
    aws_sdk_eventbridge::Client::from_conf(conf.build())
}

pub fn sfn_client(sdk: &SdkConfig) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::config::Builder::from(sdk).interceptor(RetryCounting("states"));
    aws_sdk_sfn::Client::from_conf(conf.build())
}

pub fn sns_client(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    let conf = aws_sdk_sns::config::Builder::from(sdk).interceptor(RetryCounting("sns"));
    aws_sdk_sns::Client::from_conf(conf.build())
}

/// A Secrets Manager client for the Region the secret lives in (its ARN says
/// which): a client of another Region cannot read it.
pub fn secrets_client_for(sdk: &SdkConfig, secret_arn: &str) -> aws_sdk_secretsmanager::Client {
    let mut conf =
        aws_sdk_secretsmanager::config::Builder::from(sdk).interceptor(RetryCounting("secretsmanager"));
    if let Some(region) = secret_arn.split(':').nth(3).filter(|r| !r.is_empty()) {
        conf = conf.region(aws_sdk_secretsmanager::config::Region::new(region.to_owned()));
    }
    aws_sdk_secretsmanager::Client::from_conf(conf.build())
}

/// Read the Admin API key from Secrets Manager. The secret may hold the key
/// itself or a JSON object with an `admin_api_key` field. The key's value never
/// appears in an error. A secret encrypted with a customer-managed key also
/// needs `kms:Decrypt` on it through Secrets Manager (the template grants it).
pub async fn read_admin_key(
    client: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
) -> Result<AdminKey, SecretError> {
    // Read at cold start, where a failure fails the invocation with an
    // error the state machine cannot retry: so a throttled or unavailable
    // Secrets Manager is retried here, beyond the SDK's own three attempts.
    let mut pause = std::time::Duration::from_millis(250);
    let mut tries = 1;
    let out = loop {
        match client.get_secret_value().secret_id(secret_arn).send().await {
            Ok(out) => break out,
            Err(e) if tries < SECRET_READ_TRIES && secret_error_is_transient(&e) => {
                tracing::warn!(tries, "Secrets Manager unavailable; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            Err(e) => {
                return Err(SecretError(format!(
                    "cannot read the Admin API key secret {secret_arn} (tried {tries} time(s)): {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )));
            }
        }
    };
    let raw = out
        .secret_string()
        .ok_or_else(|| SecretError(format!("secret {secret_arn} has no string value")))?;
    parse_admin_key_secret(raw).ok_or_else(|| {
        SecretError(format!(
            "secret {secret_arn} holds no Admin API key (a plain string or {{\"admin_api_key\": \"...\"}})"
        ))
    })
}

/// The Admin API key could not be read: a configuration problem (the
/// message names the secret, never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(String);

/// Reads of the secret before giving up (each with the SDK's own retries).
const SECRET_READ_TRIES: u32 = 4;

fn secret_error_is_transient<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    use aws_sdk_secretsmanager::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some("ThrottlingException" | "InternalServiceError" | "InternalFailure" | "ServiceUnavailable")
        ),
        _ => false,
    }
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
mod region_tests {
    use super::*;

    #[tokio::test]
    async fn the_secrets_client_follows_the_secret_region() {
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-2"))
            .behavior_version(BehaviorVersion::latest())
            .build();
        let c = secrets_client_for(
            &sdk,
            "arn:aws:secretsmanager:us-west-2:111122223333:secret:k-AbCdEf",
        );
        assert_eq!(c.config().region().map(|r| r.as_ref()), Some("us-west-2"));
        let c = secrets_client_for(&sdk, "not-an-arn");
        assert_eq!(c.config().region().map(|r| r.as_ref()), Some("us-east-2"));
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

#[cfg(test)]
mod failure_tests {
    use super::*;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::StatusCode;

    fn service_error(code: &str) -> SdkError<aws_sdk_sns::operation::publish::PublishError, HttpResponse> {
        let meta = aws_sdk_sns::error::ErrorMetadata::builder()
            .code(code)
            .message("said AWS")
            .build();
        SdkError::service_error(
            aws_sdk_sns::operation::publish::PublishError::generic(meta),
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            ),
        )
    }

    /// Only what AWS called throttling is `Throttled`; a denied call is
    /// named as such (it used to read as `Throttled` or `Internal`).
    #[test]
    fn failures_are_what_aws_said_they_were() {
        for (code, kind) in [
            ("ThrottlingException", FailureKind::Throttled),
            ("Throttling", FailureKind::Throttled),
            ("TooManyRequestsException", FailureKind::Throttled),
            ("InternalFailure", FailureKind::Unavailable),
            ("KMSInternalException", FailureKind::Unavailable),
            ("RequestTimeout", FailureKind::Unavailable),
            ("AuthorizationError", FailureKind::AccessDenied),
            ("AccessDeniedException", FailureKind::AccessDenied),
            ("InvalidParameter", FailureKind::Rejected),
        ] {
            let f = classify("sns", "Publish", &service_error(code));
            assert_eq!((f.kind, f.code.as_str()), (kind, code));
            assert_eq!(f.message, "said AWS");
        }
        let no_answer: SdkError<aws_sdk_sns::operation::publish::PublishError, HttpResponse> =
            SdkError::timeout_error("took too long");
        assert_eq!(
            classify("sns", "Publish", &no_answer).kind,
            FailureKind::Unavailable
        );
    }
}
