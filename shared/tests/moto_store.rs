//! The DynamoDB store against moto: the same contract as the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;

use cmek::store::{DynamoStore, contract};

#[tokio::test]
async fn dynamo_store_passes_the_contract() {
    let conf = common::moto().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = format!("cmek-test-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    contract::run_all(Arc::new(DynamoStore::new(client, table))).await;
}

#[tokio::test]
async fn audit_items_are_written_in_the_same_transaction() {
    use cmek::store::{AuditEvent, Expected, Status, WorkflowRecord, WorkflowStore};
    let conf = common::moto().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = format!("cmek-test-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    let store = DynamoStore::new(client.clone(), &table);
    let ws = contract::fresh_workspace();
    let now = time::OffsetDateTime::now_utc();
    let mut rec = WorkflowRecord::new(ws.clone(), now);
    rec.version = 1;
    let mut ev = AuditEvent::new("Test", "first", None, serde_json::json!({}));
    ev.at = "2026-01-01T00:00:00.000Z".into();
    ev.version = 1;
    store.save(None, &rec, &ev).await.unwrap();
    // A second write whose *event* collides with an existing event item must
    // fail as a whole: the state item stays at version 1.
    let mut next = rec.clone();
    next.version = 2;
    next.status = Status::KeyCreated;
    let err = store
        .save(
            Some(Expected {
                version: 1,
                status: Status::Pending,
            }),
            &next,
            &ev,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, cmek::store::StoreError::VersionConflict { .. }),
        "{err:?}"
    );
    let stored = store.load(&ws).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.status), (1, Status::Pending));
    assert_eq!(store.events(&ws).await.unwrap().len(), 1);
    // The items are where the README says: pk WORKSPACE#<id>, sk STATE / EVENT#<time>#<version>.
    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("WORKSPACE#{ws}")),
        )
        .send()
        .await
        .unwrap();
    let sks: Vec<String> = items
        .items()
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect();
    assert_eq!(sks, ["EVENT#2026-01-01T00:00:00.000Z#0000000001", "STATE"]);
}
