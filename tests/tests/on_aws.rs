//! Claude Platform on AWS end to end: the same state machine, switched by
//! the `Platform` parameter, against the stand-in in its
//! `claude-platform-on-aws` mode, which verifies every request's SigV4
//! signature, knows registrations by their KMS key ARN, refuses keys of
//! another account or Region, and validates at attach time as the service
//! principal (`aws-external-anthropic.amazonaws.com`) with its own evaluator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use sandbox::admin_api::Faults;
use sandbox::stack::{ACCOUNT, LocalStack, REGION, StackOptions};
use serde_json::{Value, json};

async fn stack_on_aws(label: &str, tune: impl FnOnce(&mut StackOptions)) -> LocalStack {
    stack(label, |o| {
        *o = std::mem::take(o).on_aws();
        tune(o);
    })
    .await
}

async fn key_policy(stack: &LocalStack, arn: &str) -> Value {
    let p = stack
        .kms()
        .get_key_policy()
        .key_id(arn)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    serde_json::from_str(p.policy().unwrap()).unwrap()
}

async fn put_policy(stack: &LocalStack, arn: &str, policy: &Value) {
    stack
        .kms()
        .put_key_policy()
        .key_id(arn)
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
}

/// Every request the stand-in saw was signed and its signature verified.
fn assert_all_signed(stack: &LocalStack) {
    let refused: Vec<_> = stack
        .admin
        .requests()
        .into_iter()
        .filter(|r| {
            r.fault
                .as_deref()
                .is_some_and(|f| f.starts_with("signature refused"))
        })
        .collect();
    assert!(refused.is_empty(), "signatures refused: {refused:?}");
}

/// The documented policy for Claude Platform on AWS, written out here (not
/// built by the code under test).
fn documented_policy(compartment: &str) -> Value {
    let service = "aws-external-anthropic.amazonaws.com";
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowClaudePlatformOnAWSCrypto", "Effect": "Allow", "Principal": {"Service": service},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": [compartment]},
                       "ArnLike": {"aws:SourceArn": [format!("arn:aws:aws-external-anthropic:*:{ACCOUNT}:workspace/*")]}}},
        {"Sid": "AllowClaudePlatformOnAWSDescribe", "Effect": "Allow", "Principal": {"Service": service}, "Action": "kms:DescribeKey", "Resource": "*"}
    ]})
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_with_no_secret_anywhere() {
    let stack = stack_on_aws("aws-happy", |_| {}).await;
    let w = &workspaces(&stack)[0];
    let ws = workspace_id(w);
    let result = stack
        .run(&json!({"workspaceId": ws, "displayName": "prod"}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    let key_arn = rec.key_arn.clone().unwrap().to_string();

    // The policy Anthropic documents for this platform: the service
    // principal, GenerateDataKey, the source ARN, no organization.
    let compartment = w["compartment_id"].as_str().unwrap();
    assert_eq!(
        documented_part(&stack, &key_policy(&stack, &key_arn).await),
        documented_policy(compartment)
    );
    assert_eq!(rec.org_uuid, None);

    // Registered by ARN, once; attached once, to the ARN.
    let keys = external_keys(&stack);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], key_arn.as_str());
    assert_eq!(rec.external_key_id.as_deref(), Some(key_arn.as_str()));
    let ws_now = stack.admin_client().get_workspace(&ws).await.unwrap();
    assert_eq!(ws_now.external_key_id.as_deref(), Some(key_arn.as_str()));
    assert_eq!(effects(&stack, "attached").len(), 1);

    // No separate validation: the state machine went from RegisterKey to the
    // attach, which validated (the stand-in's round trip as the service principal).
    let states = stack.states_entered(&result.arn).await.unwrap();
    assert!(states.iter().any(|s| s == "AttachKeyValidating"), "{states:?}");
    assert!(!states.iter().any(|s| s == "ValidateKey"), "{states:?}");
    assert_eq!(calls(&stack, "POST", "/validate"), 0);
    assert_eq!(stack.admin.state()["unvalidated_attachments"], json!([]));
    let outcomes: Vec<String> = events(&stack, &ws)
        .await
        .iter()
        .map(|e| format!("{}:{}", e.step, e.outcome))
        .collect();
    for expected in [
        "CreateKey:key_created",
        "RegisterKey:registered",
        "AttachKey:attached",
        "Finish:succeeded",
    ] {
        assert!(
            outcomes.iter().any(|o| o == expected),
            "missing {expected} in {outcomes:?}"
        );
    }
    assert!(
        !outcomes.iter().any(|o| o.starts_with("ValidateKey")),
        "{outcomes:?}"
    );

    // No secret exists anywhere: none in Secrets Manager, no function read
    // one, and every Admin API request was SigV4-signed and verified.
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .list_secrets()
        .send()
        .await
        .unwrap();
    assert!(secrets.secret_list().is_empty(), "{:?}", secrets.secret_list());
    assert!(
        !stack
            .host
            .aws_calls()
            .iter()
            .any(|c| c.service == "secretsmanager"),
        "a function called Secrets Manager"
    );
    assert_all_signed(&stack);
    let signed = stack.admin.aws_calls();
    for (function, action) in [
        ("BeginFunction", "aws-external-anthropic:ListWorkspaces"),
        ("RegisterKeyFunction", "aws-external-anthropic:RegisterKey"),
        ("AttachKeyFunction", "aws-external-anthropic:UpdateWorkspace"),
        ("AttachKeyFunction", "kms:Encrypt"),
    ] {
        assert!(
            signed
                .iter()
                .any(|c| c.function == function && c.action == action),
            "{function} {action} not seen among {signed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_in_another_region_is_refused_before_anything_is_created() {
    let stack = stack_on_aws("aws-region", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let foreign = format!("arn:aws:kms:us-west-2:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    let keys_before = all_keys(&stack).await;
    let result = stack
        .run(&json!({"workspaceId": ws, "keyArn": foreign}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(result.status, "FAILED", "{result:?}");
    let out = result.cause.clone().unwrap_or_default();
    assert!(
        out.contains("KeyNotUsable") && out.contains("us-west-2"),
        "{result:?}"
    );
    assert_eq!(all_keys(&stack).await, keys_before, "no key was created");
    assert!(external_keys(&stack).is_empty(), "nothing was registered");
    assert!(effects(&stack, "").is_empty());
    // The stack's own KeyRegion cannot point elsewhere either: the
    // configuration refuses it before a function takes any event.
    let err = cmek::config::Config::from_lookup(|k| match k {
        "CMEK_TABLE_NAME" => Some("t".into()),
        "CMEK_PLATFORM" => Some("claude-platform-on-aws".into()),
        "AWS_REGION" => Some(REGION.into()),
        "CMEK_KEY_REGION" => Some("us-west-2".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("Region of its workspaces"), "{err}");
}

/// Break the key's policy while the attach waits for propagation: the next
/// attempt must be refused, diagnosed, and nothing attached.
async fn broken_policy_is_diagnosed(label: &str, break_it: fn(&mut Value), cause: &str) {
    let stack = stack_on_aws(label, |o| {
        o.sandbox.faults = Faults {
            propagation_delay_secs: 4.0,
            ..Faults::default()
        };
    })
    .await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let arn = stack
        .start_execution(&json!({"workspaceId": ws}), None)
        .await
        .unwrap();
    // Wait for the registration, then change the policy under the workflow.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let key_arn = loop {
        let rec = stack.store().load(&ws).await.unwrap();
        if let Some(r) = rec.as_ref().filter(|r| r.external_key_id.is_some())
            && let Some(k) = &r.key_arn
        {
            break k.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never registered: {rec:?} — {}",
            dump_on_failure(&stack)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut policy = key_policy(&stack, &key_arn).await;
    break_it(&mut policy);
    put_policy(&stack, &key_arn, &policy).await;
    let result = stack.wait(&arn, TIMEOUT).await.unwrap();
    assert_eq!(
        result.status,
        "FAILED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Failed);
    let diagnosis = rec.diagnosis.clone().unwrap_or_default();
    assert_eq!(diagnosis["cause"], cause, "{diagnosis}");
    assert!(effects(&stack, "attached").is_empty(), "nothing may be attached");
    let ws_now = stack.admin_client().get_workspace(&ws).await.unwrap();
    assert_eq!(ws_now.external_key_id, None);
    // The stand-in, judging the broken policy itself, refuses it too.
    let refused = stack
        .admin_client()
        .attach_key(&ws, &key_arn.parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("failed validation and was not attached"),
        "{refused}"
    );
    assert!(effects(&stack, "attached").is_empty());
    assert_all_signed(&stack);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_without_generate_data_key_is_refused_and_diagnosed() {
    broken_policy_is_diagnosed(
        "aws-no-gdk",
        |p| p["Statement"][1]["Action"] = json!(["kms:Encrypt", "kms:Decrypt"]),
        "MISSING_SERVICE_ACTION",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_with_another_accounts_source_arn_is_refused_and_diagnosed() {
    broken_policy_is_diagnosed(
        "aws-source-arn",
        |p| {
            p["Statement"][1]["Condition"]["ArnLike"]["aws:SourceArn"] =
                json!(["arn:aws:aws-external-anthropic:*:999999999999:workspace/*"])
        },
        "SOURCE_ARN_MISMATCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn propagation_delay_is_waited_out_and_the_key_attached_once() {
    let stack = stack_on_aws("aws-propagation", |o| {
        o.sandbox.faults = Faults {
            propagation_delay_secs: 3.0,
            ..Faults::default()
        };
    })
    .await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    assert!(
        rec.validation_attempts >= 2,
        "attach was retried: {}",
        rec.validation_attempts
    );
    let outcomes: Vec<String> = events(&stack, &ws)
        .await
        .iter()
        .map(|e| e.outcome.clone())
        .collect();
    assert!(
        outcomes.iter().any(|o| o == "attach_not_yet_accepted"),
        "{outcomes:?}"
    );
    let refused = stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/workspaces/") && r.status == 400)
        .count();
    assert!(refused >= 1, "the first attach was refused while KMS propagated");
    assert_eq!(effects(&stack, "attached").len(), 1, "attached exactly once");
    assert_eq!(effects(&stack, "registered").len(), 1, "registered exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_signature_is_refused_and_named() {
    let stack = stack_on_aws("aws-tamper", |o| {
        o.sandbox.faults = Faults {
            tamper_in_transit: 1,
            ..Faults::default()
        };
    })
    .await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(result.status, "FAILED", "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("RequestSignatureRejected"),
        "{result:?}"
    );
    let cause = result.cause.clone().unwrap_or_default();
    assert!(cause.contains("signature"), "{cause}");
    let refused: Vec<_> = stack
        .admin
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one request refused, never retried: {refused:?}"
    );
    assert_eq!(
        refused[0].fault.as_deref(),
        Some("signature refused: InvalidSignatureException")
    );
    assert!(all_keys(&stack).await.is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_shared_by_two_workspaces_is_registered_once_and_admits_both() {
    let stack = stack_on_aws("aws-shared", |_| {}).await;
    let all = workspaces(&stack);
    let (ws1, ws2) = (workspace_id(&all[0]), workspace_id(&all[1]));
    let first = stack.run(&json!({"workspaceId": ws1}), TIMEOUT).await.unwrap();
    assert_eq!(
        first.status,
        "SUCCEEDED",
        "{first:?} — {}",
        dump_on_failure(&stack)
    );
    let key_arn = record(&stack, &ws1).await.key_arn.unwrap().to_string();

    // The second workspace adopts the first one's key: Begin finds what it
    // protects (its registration, the workspaces naming it), CreateKey adds
    // the second compartment without dropping the first.
    let second = stack
        .run(
            &json!({"workspaceId": ws2, "keyArn": key_arn, "manageKeyPolicy": true}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        second.status,
        "SUCCEEDED",
        "{second:?} — {}",
        dump_on_failure(&stack)
    );
    assert_eq!(
        external_keys(&stack).len(),
        1,
        "one registration for the shared key"
    );
    let attached = effects(&stack, "attached");
    assert_eq!(attached.len(), 2, "{attached:?}");
    for ws in [&ws1, &ws2] {
        let now = stack.admin_client().get_workspace(ws).await.unwrap();
        assert_eq!(now.external_key_id.as_deref(), Some(key_arn.as_str()));
    }
    let policy = key_policy(&stack, &key_arn).await;
    let listed = &policy["Statement"][1]["Condition"]["StringEquals"]["kms:EncryptionContext:anthropic:compartment_uuid"];
    assert_eq!(
        listed,
        &json!([all[0]["compartment_id"], all[1]["compartment_id"]]),
        "{policy}"
    );
    assert_all_signed(&stack);

    // A key without the project's tag cannot be adopted here: the attaching
    // role may use no other key, and the service checks that at attach.
    let untagged = key_made_by_hand(&stack, None).await;
    let ws3 = workspace_id(&all[2]);
    let refused = stack
        .run(&json!({"workspaceId": ws3, "keyArn": untagged}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(refused.status, "FAILED");
    let cause = refused.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("KeyNotUsable") && cause.contains("cmek:managed-by"),
        "{cause}"
    );
    assert_eq!(external_keys(&stack).len(), 1, "nothing more registered");
}

/// Sign a request by hand, as a client would (or would get wrong).
fn signed(
    method: &str,
    url: &str,
    body: &[u8],
    service: &str,
    region: &str,
    secret: &str,
    at: std::time::SystemTime,
) -> reqwest::Request {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new("LocalTest", secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let client = cmek::tls::http_client().unwrap();
    let mut req = client
        .request(method.parse().unwrap(), url)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_vec())
        .build()
        .unwrap();
    for (k, v) in instructions.headers() {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    req
}

/// The stand-in refuses every request whose signature does not verify, with
/// 403, the API's error body and AWS's error type; the client names it.
#[tokio::test(flavor = "multi_thread")]
async fn the_stand_in_refuses_every_signature_that_does_not_verify() {
    use sandbox::admin_api::{OrgSeed, SandboxApi, SandboxConfig, on_aws::AwsPlatform};
    use std::time::{Duration, SystemTime};
    let api = SandboxApi::start(
        SandboxConfig {
            orgs: vec![OrgSeed {
                name: "demo-org".into(),
                admin_key: "unused-on-aws".into(),
                workspaces: 1,
                ..OrgSeed::default()
            }],
            aws_platform: Some(AwsPlatform {
                account_id: ACCOUNT.into(),
                region: REGION.into(),
                ..AwsPlatform::default()
            }),
            ..SandboxConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let url = format!("{}/v1/organizations/workspaces", api.url);
    let now = SystemTime::now();
    let http = cmek::tls::http_client().unwrap();
    let send = |req: reqwest::Request| {
        let http = http.clone();
        async move {
            let r = http.execute(req).await.unwrap();
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body: Value = r.json().await.unwrap();
            (status, kind, body)
        }
    };

    // Correctly signed: answered.
    let (status, _, body) = send(signed(
        "GET",
        &url,
        b"",
        "aws-external-anthropic",
        REGION,
        "testing",
        now,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));

    let unsigned = http
        .get(&url)
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "unused-on-aws")
        .build()
        .unwrap();
    let mut tampered = signed(
        "POST",
        &format!("{}/v1/organizations/external_keys", api.url),
        br#"{"a":1}"#,
        "aws-external-anthropic",
        REGION,
        "testing",
        now,
    );
    *tampered.body_mut() = Some(br#"{"a":2}"#.to_vec().into());
    let cases = [
        (
            "unsigned (an API key is no credential here)",
            unsigned,
            "MissingAuthenticationTokenException",
        ),
        (
            "wrong service",
            signed("GET", &url, b"", "bedrock", REGION, "testing", now),
            "InvalidSignatureException",
        ),
        (
            "wrong Region",
            signed(
                "GET",
                &url,
                b"",
                "aws-external-anthropic",
                "us-west-2",
                "testing",
                now,
            ),
            "InvalidSignatureException",
        ),
        (
            "expired",
            signed(
                "GET",
                &url,
                b"",
                "aws-external-anthropic",
                REGION,
                "testing",
                now - Duration::from_secs(600),
            ),
            "InvalidSignatureException",
        ),
        (
            "wrong secret",
            signed(
                "GET",
                &url,
                b"",
                "aws-external-anthropic",
                REGION,
                "not-the-secret",
                now,
            ),
            "InvalidSignatureException",
        ),
        (
            "body changed after signing",
            tampered,
            "InvalidSignatureException",
        ),
    ];
    for (what, req, kind) in cases {
        let (status, aws_type, body) = send(req).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(aws_type, kind, "{what}");
        assert_eq!(body["type"], "error", "{what}: {body}");
        assert_eq!(body["error"]["type"], "permission_error", "{what}: {body}");
        assert!(body["request_id"].is_string(), "{what}: {body}");
    }
    assert!(
        api.requests().iter().all(|r| r.effect.is_none()),
        "no refused request changed anything"
    );

    // The client surfaces a refused signature as its own error, not retried.
    let credentials = aws_credential_types::Credentials::new("LocalTest", "testing", None, None, "test");
    let wrong_region = cmek::admin_api::AdminApiClient::new_sigv4(
        &api.url,
        cmek::admin_api::SigV4Signer::new(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            "us-west-2",
        ),
        cmek::admin_api::ClientOptions::default(),
    )
    .unwrap();
    let before = api.requests().len();
    let err = wrong_region.list_workspaces(false, true).await.unwrap_err();
    assert!(
        matches!(err, cmek::admin_api::AdminApiError::SignatureRejected(_)),
        "{err:?}"
    );
    assert_eq!(
        api.requests().len(),
        before + 1,
        "a refused signature is not retried"
    );
    let named = cmek::error::CmekError::from(err);
    assert_eq!(named.error_type(), "RequestSignatureRejected");
}

/// `cmekctl policy` prints this platform's policy, and `cmekctl doctor`
/// signs its reads with SigV4 and judges a key by the service principal's rules.
#[tokio::test(flavor = "multi_thread")]
async fn cmekctl_speaks_claude_platform_on_aws() {
    let stack = stack_on_aws("aws-cmekctl", |_| {}).await;
    let w = &workspaces(&stack)[0];
    let ws = workspace_id(w);
    let compartment = w["compartment_id"].as_str().unwrap();
    let out = run_cmekctl(
        &stack,
        &[
            "policy",
            "--platform",
            "claude-platform-on-aws",
            "--account",
            ACCOUNT,
            "--compartment",
            compartment,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, documented_policy(compartment));

    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(result.status, "SUCCEEDED", "{result:?}");
    let key_arn = record(&stack, &ws).await.key_arn.unwrap().to_string();
    let ws_text = ws.to_string();
    let doctor = [
        "--json",
        "doctor",
        "--key-arn",
        key_arn.as_str(),
        "--workspace",
        ws_text.as_str(),
    ];
    let out = run_cmekctl(&stack, &doctor);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(out.status.code(), Some(0));

    // Take GenerateDataKey away: doctor names it.
    let mut policy = key_policy(&stack, &key_arn).await;
    policy["Statement"][1]["Action"] = json!(["kms:Encrypt", "kms:Decrypt"]);
    put_policy(&stack, &key_arn, &policy).await;
    let out = run_cmekctl(&stack, &doctor);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnosis"]["cause"], "MISSING_SERVICE_ACTION", "{report}");
    assert_eq!(out.status.code(), Some(1));
    assert_all_signed(&stack);
    assert!(
        stack.admin.aws_calls().iter().any(|c| c.function == "testing"),
        "cmekctl's reads were signed (as the CLI's credentials)"
    );
}

/// Discovery lists the workspaces SigV4-signed, and a new opted-in one is
/// provisioned through the bus rule by the same state machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_workspace_is_discovered_and_provisioned_on_claude_platform_on_aws() {
    let stack = stack_on_aws("aws-discovery", |o| {
        o.parameters.insert("AutoProvision".into(), "true".into());
        o.parameters
            .insert("AutoProvisionNamePattern".into(), "new-*".into());
    })
    .await;
    let added = stack.admin.seed(&sandbox::admin_api::OrgSeed {
        name: "demo-org".into(),
        admin_key: stack.admin_key.clone(),
        workspaces: 1,
        name_prefix: Some("new".into()),
        ..sandbox::admin_api::OrgSeed::default()
    });
    let ws: cmek::ids::WorkspaceId = added[0].id.parse().unwrap();
    let event = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
                       "account": ACCOUNT, "time": "2026-11-30T00:00:00Z", "region": REGION, "resources": [], "detail": {}});
    let (err, report) = invoke(&stack, "DiscoverWorkspacesFunction", &event).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(report["discovered"], json!([ws.to_string()]), "{report}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let rec = stack.store().load(&ws).await.unwrap();
        if rec
            .as_ref()
            .is_some_and(|r| r.status == Status::Attached && r.lease.is_none())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not provisioned: {rec:?} — {}",
            dump_on_failure(&stack)
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_all_signed(&stack);
    assert!(
        stack
            .admin
            .aws_calls()
            .iter()
            .any(|c| c.function == "DiscoverWorkspacesFunction"
                && c.action == "aws-external-anthropic:ListWorkspaces")
    );
}

/// The guardian's sweep reads each attached workspace SigV4-signed and judges
/// each key by the service principal's rules: only the broken one is reported.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_judges_keys_by_the_service_principals_rules() {
    let stack = stack_on_aws("aws-sweep", |o| o.bus_rules = false).await;
    let all = workspaces(&stack);
    let mut keys = Vec::new();
    for w in &all[..2] {
        let ws = workspace_id(w);
        let r = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
        assert_eq!(r.status, "SUCCEEDED", "{r:?}");
        keys.push((
            ws.to_string(),
            record(&stack, &ws).await.key_arn.unwrap().to_string(),
        ));
    }
    let (broken_ws, broken_key) = &keys[1];
    let mut policy = key_policy(&stack, broken_key).await;
    policy["Statement"][1]["Action"] = json!(["kms:Encrypt", "kms:Decrypt"]);
    put_policy(&stack, broken_key, &policy).await;
    let sweep: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox::stack::repo_root().join("events/scheduled-event.json")).unwrap(),
    )
    .unwrap();
    let (err, report) = invoke(&stack, "KeyGuardianFunction", &sweep).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(report["checked"], 2, "{report}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["workspaceId"], broken_ws.as_str());
    assert_eq!(findings[0]["codes"], json!(["POLICY_BROKEN"]), "{report}");
    assert!(
        findings[0]["messages"][0]
            .as_str()
            .unwrap()
            .contains("kms:GenerateDataKey"),
        "{report}"
    );
    assert_all_signed(&stack);
    // The weekly validation sweep has nothing to ask on this platform (no
    // validate call): it checks what the daily one does.
    let (err, weekly) = invoke(
        &stack,
        "KeyGuardianFunction",
        &json!({"sweep": cmek::guardian::VALIDATION_SWEEP_INPUT}),
    )
    .await;
    assert_eq!(err, None, "{weekly}");
    assert_eq!(weekly["validated"], 0, "{weekly}");
    assert_eq!(calls(&stack, "POST", "/validate"), 0);
}
