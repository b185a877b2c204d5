//! The functions' AWS endpoint in the local stack: every SDK call a function
//! makes passes through here on its way to moto, so that the stack knows
//! *which function* called *which action* (what moto, which checks no IAM,
//! cannot tell a test), and can answer a call the way AWS does on a bad day —
//! before the call takes effect, or after it.
//!
//! A function's `AWS_ENDPOINT_URL` is `<host>/_aws/<function>`; the SDK keeps
//! that path in front of its own, so the function is known from the path and
//! the action from the request itself (`X-Amz-Target` for the JSON protocols,
//! `Action=` for the query ones, the service from the SigV4 credential scope).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One AWS call a function made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCall {
    pub function: String,
    /// The SigV4 signing name: `kms`, `dynamodb`, `states`, `events`, `secretsmanager`, `sns`.
    pub service: String,
    /// As IAM names it, e.g. `kms:CreateKey`.
    pub action: String,
    /// The resource the call names where the request says it (`KeyId`, `TableName`, …).
    pub resource: Option<String>,
    pub status: u16,
    /// The injected fault, if any.
    pub fault: Option<String>,
    /// What IAM would authorize for this call (see [`crate::iam_request`]).
    #[serde(default)]
    pub authorizations: Vec<crate::iam_request::Authorization>,
    /// The key policy of the KMS key the call names, as it was just before
    /// the call: KMS authorizes on it first (it may grant the role directly,
    /// or delegate to IAM through the account's root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_policy: Option<String>,
    /// When the answer came back (milliseconds since the Unix epoch): the
    /// effect, if any, had happened by then.
    #[serde(default)]
    pub at_ms: u64,
}

/// Now, in milliseconds since the Unix epoch (the clock the crash-point
/// markers' modification times are on).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// "The next `times` calls of `action` (by `function`, if set) answer
/// `status` with error `code`" — before the call reaches moto, or after
/// (`after_effect`: the call took effect and the caller cannot know).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFault {
    pub action: String,
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub after_effect: bool,
    pub status: u16,
    /// The error code AWS sends, e.g. `KMSInternalException`, `ThrottlingException`.
    pub code: String,
}

fn one() -> u32 {
    1
}

/// Random AWS-side faults: each call a function makes fails, with
/// probability `rate`, with an answer its service really gives when busy or
/// unwell (see [`catalogue`]) — throttling before the call takes effect, and
/// server errors before or, for `after_effect_share` of them, after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFaultRate {
    pub rate: f64,
    #[serde(default)]
    pub after_effect_share: f64,
    /// The draws' seed (random when unset; [`AwsProxy::random_seed`] tells).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// What a service answers when it cannot serve a call: (HTTP status, error
/// code, may happen after the call took effect). From each service's API
/// reference ("Errors", and the common errors every AWS API may return):
/// throttling is refused before any effect; an internal error may come
/// after the effect (the caller cannot tell).
pub fn catalogue(service: &str, operation: &str) -> &'static [(u16, &'static str, bool)] {
    match (service, operation) {
        ("kms", _) => &[
            (400, "ThrottlingException", false),
            (500, "KMSInternalException", true),
            (500, "DependencyTimeoutException", false),
        ],
        ("dynamodb", "TransactWriteItems") => &[
            (400, "ThrottlingException", false),
            (400, "ProvisionedThroughputExceededException", false),
            (500, "InternalServerError", true),
            (400, "TransactionCanceledException/TransactionConflict", false),
        ],
        ("dynamodb", "PutItem" | "UpdateItem" | "DeleteItem") => &[
            (400, "ThrottlingException", false),
            (400, "ProvisionedThroughputExceededException", false),
            (500, "InternalServerError", true),
            (400, "TransactionConflictException", false),
        ],
        ("dynamodb", _) => &[
            (400, "ThrottlingException", false),
            (400, "ProvisionedThroughputExceededException", false),
            (500, "InternalServerError", false),
        ],
        ("states", _) => &[
            (400, "ThrottlingException", false),
            (500, "InternalFailure", true),
            (503, "ServiceUnavailable", false),
        ],
        ("events", _) => &[
            (400, "ThrottlingException", false),
            (500, "InternalException", true),
        ],
        ("sns", _) => &[(400, "Throttling", false), (500, "InternalError", true)],
        ("secretsmanager", _) => &[
            (400, "ThrottlingException", false),
            (500, "InternalServiceError", false),
        ],
        _ => &[],
    }
}

#[derive(Debug, Default)]
pub struct AwsProxy {
    calls: Mutex<Vec<AwsCall>>,
    faults: Mutex<Vec<AwsFault>>,
    random: Mutex<Option<(AwsFaultRate, u64, rand::rngs::StdRng)>>,
    /// The seed of the last random faults started (kept after they stop, for failure reports).
    last_seed: Mutex<Option<u64>>,
    /// DynamoDB's `ClientRequestToken`s of transactions that succeeded, with
    /// their answer: DynamoDB answers a repeat of the same token with the
    /// first success "without making any changes" (API reference,
    /// TransactWriteItems) — which moto does not do.
    tokens: Mutex<std::collections::HashMap<String, (u16, Vec<u8>)>>,
}

/// What the proxy read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    pub service: String,
    pub action: String,
    pub resource: Option<String>,
    /// The request's parameters: its JSON body, or its form fields as an object.
    pub params: serde_json::Value,
}

impl Identified {
    /// The operation, as the API names it (`CreateKey`).
    pub fn operation(&self) -> &str {
        self.action.split_once(':').map_or("", |(_, op)| op)
    }
}

impl AwsProxy {
    pub fn calls(&self) -> Vec<AwsCall> {
        lock(&self.calls).clone()
    }

    pub fn add_faults(&self, faults: impl IntoIterator<Item = AwsFault>) {
        lock(&self.faults).extend(faults);
    }

    /// Faults not used up yet.
    pub fn pending_faults(&self) -> Vec<AwsFault> {
        lock(&self.faults)
            .iter()
            .filter(|f| f.times > 0)
            .cloned()
            .collect()
    }

    /// Take one use of the first fault matching the call.
    pub fn take_fault(&self, function: &str, action: &str) -> Option<AwsFault> {
        let mut faults = lock(&self.faults);
        let f = faults.iter_mut().find(|f| {
            f.times > 0 && f.action == action && f.function.as_deref().is_none_or(|want| want == function)
        })?;
        f.times -= 1;
        Some(f.clone())
    }

    /// Start (or, with `None`, stop) random faults.
    pub fn set_random_faults(&self, rate: Option<AwsFaultRate>) {
        use rand::{Rng, SeedableRng};
        *lock(&self.random) = rate.map(|r| {
            let seed = r.seed.unwrap_or_else(|| rand::rng().random());
            *lock(&self.last_seed) = Some(seed);
            (r, seed, rand::rngs::StdRng::seed_from_u64(seed))
        });
    }

    /// The seed of the last random faults, to replay a failing run.
    pub fn random_seed(&self) -> Option<u64> {
        *lock(&self.last_seed)
    }

    /// A scripted fault for the call if one is pending; else, at the random
    /// rate, one its service really answers.
    pub fn fault_for(&self, function: &str, service: &str, action: &str) -> Option<AwsFault> {
        use rand::Rng;
        if let Some(f) = self.take_fault(function, action) {
            return Some(f);
        }
        let mut random = lock(&self.random);
        let (rate, _, rng) = random.as_mut()?;
        let operation = action.split_once(':').map_or(action, |(_, op)| op);
        let kinds = catalogue(service, operation);
        if kinds.is_empty() || !rng.random_bool(rate.rate.clamp(0.0, 1.0)) {
            return None;
        }
        let (status, code, may_be_after) = kinds[rng.random_range(0..kinds.len())];
        let after_effect = may_be_after && rng.random_bool(rate.after_effect_share.clamp(0.0, 1.0));
        Some(AwsFault {
            action: action.to_owned(),
            function: Some(function.to_owned()),
            times: 0,
            after_effect,
            status,
            code: code.to_owned(),
        })
    }

    /// The answer to a transaction token that already succeeded.
    pub fn token_answer(&self, token: &str) -> Option<(u16, Vec<u8>)> {
        lock(&self.tokens).get(token).cloned()
    }

    pub fn remember_token(&self, token: &str, status: u16, body: Vec<u8>) {
        lock(&self.tokens).insert(token.to_owned(), (status, body));
    }

    pub fn record(&self, call: AwsCall) {
        lock(&self.calls).push(call);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The service, action and named resource of an SDK request.
pub fn identify(headers: &axum::http::HeaderMap, body: &[u8]) -> Option<Identified> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // `Credential=AKID/20261130/us-east-2/kms/aws4_request`
    let service = header("authorization")?
        .split("Credential=")
        .nth(1)?
        .split(['/', ','])
        .nth(3)?
        .to_owned();
    let (operation, resource, params) = match header("x-amz-target") {
        Some(target) => {
            let op = target.rsplit('.').next()?.to_owned();
            let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let resource = [
                "KeyId",
                "TableName",
                "stateMachineArn",
                "SecretId",
                "EventBusName",
                "TargetKeyId",
            ]
            .iter()
            .find_map(|k| json.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .or_else(|| {
                // PutEvents names its bus in each entry; TransactWriteItems its table in each item.
                json.pointer("/Entries/0/EventBusName")
                    .or_else(|| json.pointer("/TransactItems/0/Put/TableName"))
                    .or_else(|| json.pointer("/TransactItems/0/Update/TableName"))
                    .or_else(|| json.pointer("/TransactItems/0/ConditionCheck/TableName"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            });
            (op, resource, json)
        }
        None => {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let params = serde_json::Value::Object(
                form.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            );
            (
                get("Action")?,
                get("TopicArn").or_else(|| get("QueueUrl")),
                params,
            )
        }
    };
    // The signing name is the IAM prefix for every service the functions use.
    Some(Identified {
        action: format!("{service}:{operation}"),
        service,
        resource,
        params,
    })
}

/// The error body AWS answers, in the request's protocol.
pub fn error_response(id: &Identified, fault: &AwsFault) -> (u16, Vec<(String, String)>, String) {
    let message = format!("{} (injected by the local stack)", fault.code);
    // A transaction cancelled by a conflict says so in its reasons, one per item.
    if let Some(("TransactionCanceledException", reason)) = fault.code.split_once('/') {
        let items = id
            .params
            .get("TransactItems")
            .and_then(serde_json::Value::as_array)
            .map_or(1, Vec::len);
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{reason}]"),
            "CancellationReasons": vec![serde_json::json!({"Code": reason, "Message": message}); items],
        })
        .to_string();
        return (
            fault.status,
            vec![
                ("content-type".into(), "application/x-amz-json-1.0".into()),
                ("x-amzn-errortype".into(), "TransactionCanceledException".into()),
            ],
            body,
        );
    }
    if matches!(id.service.as_str(), "sns" | "sqs") {
        let body = format!(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>{}</Code><Message>{message}</Message></Error><RequestId>local</RequestId></ErrorResponse>",
            fault.code
        );
        (
            fault.status,
            vec![("content-type".into(), "text/xml".into())],
            body,
        )
    } else {
        let body = serde_json::json!({"__type": fault.code, "message": message}).to_string();
        (
            fault.status,
            vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype".into(), fault.code.clone()),
            ],
            body,
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(service: &str, target: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261130/us-east-2/{service}/aws4_request, SignedHeaders=host, Signature=x"
            ))
            .unwrap(),
        );
        if let Some(t) = target {
            h.insert("x-amz-target", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn json_and_query_protocols_are_identified() {
        let id = identify(
            &headers("kms", Some("TrentService.CreateKey")),
            br#"{"Policy": "{}", "Tags": []}"#,
        )
        .unwrap();
        assert_eq!(
            (id.service.as_str(), id.action.as_str()),
            ("kms", "kms:CreateKey")
        );
        let id = identify(
            &headers("dynamodb", Some("DynamoDB_20120810.TransactWriteItems")),
            br#"{"TransactItems": [{"Put": {"TableName": "t"}}]}"#,
        )
        .unwrap();
        assert_eq!(id.action, "dynamodb:TransactWriteItems");
        assert_eq!(id.resource.as_deref(), Some("t"));
        let id = identify(
            &headers("sns", None),
            b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-2%3A1%3At&Message=x",
        )
        .unwrap();
        assert_eq!(id.action, "sns:Publish");
        assert_eq!(id.resource.as_deref(), Some("arn:aws:sns:us-east-2:1:t"));
        assert!(identify(&HeaderMap::new(), b"").is_none());
    }

    #[test]
    fn faults_are_used_up_in_order_and_by_function() {
        let p = AwsProxy::default();
        p.add_faults([AwsFault {
            action: "kms:CreateKey".into(),
            function: Some("CreateKeyFunction".into()),
            times: 1,
            after_effect: true,
            status: 500,
            code: "KMSInternalException".into(),
        }]);
        assert!(p.take_fault("BeginFunction", "kms:CreateKey").is_none());
        assert!(p.take_fault("CreateKeyFunction", "kms:CreateKey").is_some());
        assert!(p.take_fault("CreateKeyFunction", "kms:CreateKey").is_none());
        assert!(p.pending_faults().is_empty());
    }
}
