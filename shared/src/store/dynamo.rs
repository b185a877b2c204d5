use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::CreationRecord;
use super::item::{Item, from_item, to_item};
use super::model::*;
use crate::ids::{CreationToken, WorkspaceId};

pub const STATE_SK: &str = "STATE";
pub const EVENT_PREFIX: &str = "EVENT#";
/// The sparse index of `STATE` items by their `key_arn` (items without a key
/// are not in it; audit events carry no top-level `key_arn`). DynamoDB keeps
/// it with every write of the item, so it can never disagree with a record.
pub const KEY_INDEX: &str = "by-key";

/// The workflow table in DynamoDB (`pk`/`sk` strings, see docs/architecture.md).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// A creation's record: its own partition and sort key, so neither the
/// scan of workspace records (`sk = STATE`) nor the `by-key` index (no
/// `key_arn` attribute) ever meets it.
pub const CREATION_SK: &str = "CREATION";

pub fn creation_key(token: &CreationToken) -> String {
    format!("CREATION#{token}")
}

pub fn partition_key(workspace: &WorkspaceId) -> String {
    format!("WORKSPACE#{workspace}")
}

/// `EVENT#<time>#<version>` for events written with a state change (the
/// version makes it unique); `EVENT#<time>#x<random>` for audit-only events.
fn event_sort_key(event: &AuditEvent) -> String {
    if event.version > 0 {
        format!("{EVENT_PREFIX}{}#{:010}", event.at, event.version)
    } else {
        format!(
            "{EVENT_PREFIX}{}#x{}",
            event.at,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }
}

fn sdk_error<E, R>(op: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use crate::aws::FailureKind;
    let message = format!("{op}: {}", DisplayErrorContext(&err));
    let code = err.code().unwrap_or_default().to_owned();
    match crate::aws::classify("dynamodb", "", &err).kind {
        FailureKind::Throttled | FailureKind::Unavailable => StoreError::Unavailable { message },
        FailureKind::AccessDenied => StoreError::AccessDenied { message },
        // An item taking part in another transaction: nothing was written,
        // and trying again is DynamoDB's own advice.
        FailureKind::Rejected if code == "TransactionConflictException" => {
            StoreError::Unavailable { message }
        }
        FailureKind::Rejected => StoreError::Backend { message },
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Write a state item (`pk`, `sk`) and an audit event under the same
    /// `pk` in one transaction; `condition` guards the state item. A failed
    /// condition is `VersionConflict` (its fields filled in by the caller).
    async fn put_with_event(
        &self,
        pk: String,
        sk: &str,
        state_json: &serde_json::Value,
        condition: impl FnOnce(PutBuilder) -> PutBuilder,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut state = to_item(state_json);
        state.insert("pk".into(), AttributeValue::S(pk.clone()));
        state.insert("sk".into(), AttributeValue::S(sk.into()));
        let put = condition(Put::builder().table_name(&self.table).set_item(Some(state)));
        let ejson = serde_json::to_value(event).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let mut event_item = to_item(&ejson);
        event_item.insert("pk".into(), AttributeValue::S(pk));
        event_item.insert("sk".into(), AttributeValue::S(event_sort_key(event)));
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(event_item))
            .condition_expression("attribute_not_exists(pk)");
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend {
            message: e.to_string(),
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put.build().map_err(build)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(event_put.build().map_err(build)?)
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if is_conflict(e.err()) => Err(StoreError::VersionConflict {
                workspace: String::new(),
                expected: 0,
            }),
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    /// Every audit event under `pk`, oldest first.
    async fn events_under(&self, pk: String, subject: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":prefix", AttributeValue::S(EVENT_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                let value = from_item(item).map_err(|message| StoreError::Corrupt {
                    workspace: subject.to_owned(),
                    message,
                })?;
                out.push(serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
                    workspace: subject.to_owned(),
                    message: e.to_string(),
                })?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    fn state_key(workspace: &WorkspaceId) -> Item {
        Item::from([
            ("pk".to_owned(), AttributeValue::S(partition_key(workspace))),
            ("sk".to_owned(), AttributeValue::S(STATE_SK.to_owned())),
        ])
    }

    /// One page of a Scan or Query of records: its records into `out`, and
    /// where the next page starts (`None`: this was the last).
    fn read_page(
        items: &[Item],
        last_key: Option<&Item>,
        out: &mut Vec<WorkflowRecord>,
    ) -> Result<Option<Item>, StoreError> {
        for item in items {
            out.push(Self::record_from(item)?);
        }
        Ok(last_key.filter(|k| !k.is_empty()).cloned())
    }

    fn record_from(item: &Item) -> Result<WorkflowRecord, StoreError> {
        let workspace = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.trim_start_matches("WORKSPACE#").to_owned(),
            _ => "?".to_owned(),
        };
        let value = from_item(item).map_err(|message| StoreError::Corrupt {
            workspace: workspace.clone(),
            message,
        })?;
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
            workspace,
            message: e.to_string(),
        })
    }

    /// Create the table with the same key schema as `template.yaml` (for tests;
    /// deployed stacks get it from the template).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build();
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend {
            message: e.to_string(),
        };
        let index = aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
            .index_name(KEY_INDEX)
            .key_schema(key("key_arn", KeyType::Hash).map_err(build)?)
            .projection(
                aws_sdk_dynamodb::types::Projection::builder()
                    .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build)?;
        let res = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk").map_err(build)?)
            .attribute_definitions(attr("sk").map_err(build)?)
            .attribute_definitions(attr("key_arn").map_err(build)?)
            .key_schema(key("pk", KeyType::Hash).map_err(build)?)
            .key_schema(key("sk", KeyType::Range).map_err(build)?)
            .global_secondary_indexes(index)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(sdk_error("CreateTable", e)),
        }
    }
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn load(&self, workspace: &WorkspaceId) -> Result<Option<WorkflowRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::state_key(workspace)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item().map(Self::record_from).transpose()
    }

    async fn save(
        &self,
        expected: Option<Expected>,
        next: &WorkflowRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_value(next).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let put = |put: PutBuilder| match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(e) => put
                .condition_expression("#version = :version AND #status = :status")
                .expression_attribute_names("#version", "version")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":version", AttributeValue::N(e.version.to_string()))
                .expression_attribute_values(":status", AttributeValue::S(e.status.as_str().into())),
        };
        self.put_with_event(partition_key(&next.workspace_id), STATE_SK, &json, put, event)
            .await
            .map_err(|e| match e {
                StoreError::VersionConflict { .. } => StoreError::VersionConflict {
                    workspace: next.workspace_id.to_string(),
                    expected: expected.map_or(0, |e| e.version),
                },
                other => other,
            })
    }

    async fn append(&self, workspace: &WorkspaceId, event: &AuditEvent) -> Result<(), StoreError> {
        let json = serde_json::to_value(event).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let mut item = to_item(&json);
        item.insert("pk".into(), AttributeValue::S(partition_key(workspace)));
        item.insert("sk".into(), AttributeValue::S(event_sort_key(event)));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The sort key is unique to this event (its time and a random
            // suffix), so the item already there is this very event: an
            // earlier attempt of this call was written and its answer lost
            // (a 500 or a timeout after the write), and the SDK tried again.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn events(&self, workspace: &WorkspaceId) -> Result<Vec<AuditEvent>, StoreError> {
        self.events_under(partition_key(workspace), workspace.as_str())
            .await
    }

    async fn list(&self, status: Option<Status>) -> Result<Vec<WorkflowRecord>, StoreError> {
        // A scan: the table holds one STATE item per workspace (thousands, not
        // millions), and listing is an operator action, not a hot path.
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":state", AttributeValue::S(STATE_SK.into()))
                .set_exclusive_start_key(start.take());
            req = match status {
                Some(s) => req
                    .filter_expression("sk = :state AND #status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", AttributeValue::S(s.as_str().into())),
                None => req.filter_expression("sk = :state"),
            };
            let page = req.send().await.map_err(|e| sdk_error("Scan", e))?;
            start = Self::read_page(page.items(), page.last_evaluated_key(), &mut out)?;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
        Ok(out)
    }

    async fn by_key(&self, key_arn: &str) -> Result<Vec<WorkflowRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(KEY_INDEX)
                .key_condition_expression("key_arn = :k")
                .expression_attribute_values(":k", AttributeValue::S(key_arn.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            start = Self::read_page(page.items(), page.last_evaluated_key(), &mut out)?;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
        Ok(out)
    }

    async fn load_creation(&self, token: &CreationToken) -> Result<Option<CreationRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Item::from([
                ("pk".to_owned(), AttributeValue::S(creation_key(token))),
                ("sk".to_owned(), AttributeValue::S(CREATION_SK.to_owned())),
            ])))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let corrupt = |message: String| StoreError::Corrupt {
            workspace: format!("creation {token}"),
            message,
        };
        out.item()
            .map(|item| {
                let value = from_item(item).map_err(corrupt)?;
                serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
            })
            .transpose()
    }

    async fn save_creation(
        &self,
        expected: Option<u64>,
        next: &CreationRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_value(next).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let put = |put: PutBuilder| match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", AttributeValue::N(v.to_string())),
        };
        self.put_with_event(creation_key(&next.token), CREATION_SK, &json, put, event)
            .await
            .map_err(|e| match e {
                StoreError::VersionConflict { .. } => StoreError::VersionConflict {
                    workspace: format!("creation {}", next.token),
                    expected: expected.unwrap_or(0),
                },
                other => other,
            })
    }

    async fn creation_events(&self, token: &CreationToken) -> Result<Vec<AuditEvent>, StoreError> {
        self.events_under(creation_key(token), &format!("creation {token}"))
            .await
    }
}

fn is_conflict(e: &TransactWriteItemsError) -> bool {
    match e {
        TransactWriteItemsError::TransactionCanceledException(t) => t
            .cancellation_reasons()
            .iter()
            .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))),
        other => other.code() == Some("TransactionConflictException"),
    }
}
