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

#[derive(Debug, Default)]
pub struct AwsProxy {
    calls: Mutex<Vec<AwsCall>>,
    faults: Mutex<Vec<AwsFault>>,
}

/// What the proxy read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    pub service: String,
    pub action: String,
    pub resource: Option<String>,
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
    let (operation, resource) = match header("x-amz-target") {
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
            (op, resource)
        }
        None => {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            (get("Action")?, get("TopicArn").or_else(|| get("QueueUrl")))
        }
    };
    // The signing name is the IAM prefix for every service the functions use.
    Some(Identified {
        action: format!("{service}:{operation}"),
        service,
        resource,
    })
}

/// The error body AWS answers, in the request's protocol.
pub fn error_response(id: &Identified, fault: &AwsFault) -> (u16, Vec<(String, String)>, String) {
    let message = format!("{} (injected by the local stack)", fault.code);
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
