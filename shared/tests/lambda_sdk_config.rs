//! The functions' SDK configuration (`cmek::aws::lambda_sdk_config`, which
//! reads only the variables Lambda sets) agrees with the SDK's own loader
//! (`aws_config::defaults`, what `cmekctl` and the functions used before) in
//! the environment Lambda gives a function.
//!
//! The environment has to be exactly Lambda's — no profile file, no other
//! `AWS_*` variable — and this process's is not (nor may a test change it:
//! the workspace forbids `unsafe`). So the comparison runs in a child: this
//! test binary again, with a cleared environment holding Lambda's reserved
//! variables (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>)
//! and an empty `HOME`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: fail loudly

use std::process::Command;

use aws_credential_types::provider::ProvideCredentials;

const CHILD: &str = "CMEK_LAMBDA_SDK_CONFIG_CHILD";

/// What Lambda sets in a function's environment that the SDK reads
/// (values made up; the names are the documented reserved ones).
const LAMBDA_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE01"),
    ("AWS_SECRET_ACCESS_KEY", "secret/EXAMPLE+key"),
    ("AWS_SESSION_TOKEN", "session-token-EXAMPLE"),
    ("AWS_REGION", "eu-west-1"),
    ("AWS_DEFAULT_REGION", "eu-west-1"),
    ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
    ("AWS_LAMBDA_FUNCTION_NAME", "cmek-provisioner-BeginFunction"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ("_HANDLER", "begin"),
    ("TZ", ":UTC"),
];

fn run_child(endpoint: Option<&str>) {
    let home = std::env::temp_dir().join(format!("cmek-lambda-sdk-config-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "child_compares_the_two_configurations",
            "--ignored",
            "--nocapture",
        ])
        .env_clear()
        .envs(LAMBDA_ENV.iter().copied())
        .env("HOME", &home)
        .env(CHILD, "1");
    if let Some(endpoint) = endpoint {
        child.env("AWS_ENDPOINT_URL", endpoint);
    }
    let output = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child ran (and compared), rather than being filtered out.
    assert!(
        stdout.contains("1 passed"),
        "the comparison did not run:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("configurations agree"), "{stdout}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn agrees_with_the_sdk_loader_in_lambdas_environment() {
    run_child(None);
}

#[test]
fn agrees_with_the_sdk_loader_when_the_local_stack_names_an_endpoint() {
    run_child(Some("http://127.0.0.1:4566"));
}

/// The comparison itself; run only as the child above (it needs Lambda's
/// environment, which this process does not have).
#[test]
#[ignore = "run by the tests above in a child process with Lambda's environment"]
fn child_compares_the_two_configurations() {
    if std::env::var_os(CHILD).is_none() {
        panic!("run by the other tests of this file, in a child process with Lambda's environment");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ours = cmek::aws::lambda_sdk_config().await;
        let sdks = cmek::aws::config_loader().load().await;

        assert!(ours.region().is_some(), "the region is read");
        assert_eq!(ours.region(), sdks.region(), "region");
        assert_eq!(ours.endpoint_url(), sdks.endpoint_url(), "endpoint URL");
        assert_eq!(
            ours.endpoint_url(),
            std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
            "AWS_ENDPOINT_URL"
        );
        assert_eq!(ours.retry_config(), sdks.retry_config(), "retry configuration");
        assert_eq!(
            ours.timeout_config(),
            sdks.timeout_config(),
            "timeout configuration"
        );
        assert_eq!(
            format!("{:?}", ours.behavior_version()),
            format!("{:?}", sdks.behavior_version()),
            "behavior version"
        );
        assert_eq!(ours.use_fips(), sdks.use_fips(), "FIPS endpoints");
        assert_eq!(
            ours.use_dual_stack(),
            sdks.use_dual_stack(),
            "dual-stack endpoints"
        );
        assert_eq!(ours.app_name(), sdks.app_name(), "app name");
        assert_eq!(
            format!("{:?}", ours.stalled_stream_protection()),
            format!("{:?}", sdks.stalled_stream_protection()),
            "stalled stream protection"
        );
        assert_eq!(
            ours.identity_cache().is_some(),
            sdks.identity_cache().is_some(),
            "identity cache"
        );
        assert_eq!(ours.sleep_impl().is_some(), sdks.sleep_impl().is_some(), "sleep");
        assert_eq!(
            ours.time_source().is_some(),
            sdks.time_source().is_some(),
            "clock"
        );
        assert!(ours.http_client().is_some(), "our HTTP client");

        let creds = |config: aws_config::SdkConfig| async move {
            let c = config
                .credentials_provider()
                .expect("a credentials provider")
                .provide_credentials()
                .await
                .expect("credentials");
            (
                c.access_key_id().to_owned(),
                c.secret_access_key().to_owned(),
                c.session_token().map(str::to_owned),
            )
        };
        let ours = creds(ours).await;
        assert_eq!(ours.0, "ASIAEXAMPLEEXAMPLE01");
        assert_eq!(ours.2.as_deref(), Some("session-token-EXAMPLE"));
        assert!(ours == creds(sdks).await, "the same credentials");
    });
    println!("configurations agree");
}
