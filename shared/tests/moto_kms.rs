//! The KMS adapter against moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use cmek::geo::Geo;
use cmek::ids::{AccountId, CompartmentId, WorkspaceId};
use cmek::kms::{KeyManager, TAG_MANAGED_BY, TAG_WORKSPACE, alias_for};
use cmek::policy::{self, AnalysisTarget};

async fn manager() -> KeyManager {
    let conf = common::moto().await;
    KeyManager::with_backoff(
        aws_sdk_kms::Client::new(&conf),
        Duration::from_millis(10),
        Duration::from_millis(50),
        2,
    )
}

fn workspace() -> WorkspaceId {
    format!("wrkspc_{}", uuid::Uuid::new_v4().simple())
        .parse()
        .unwrap()
}

const COMPARTMENT: &str = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";

#[tokio::test]
async fn create_alias_describe_and_policy_round_trip() {
    let kms = manager().await;
    let ws = workspace();
    let compartment: CompartmentId = COMPARTMENT.parse().unwrap();
    let account: AccountId = "123456789012".parse().unwrap();
    let org: cmek::ids::OrgUuid = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13".parse().unwrap();
    let built = policy::key_policy(&account, Geo::Us, &org, policy::Scope::Workspaces(&[compartment]));
    let key = kms
        .create_key(&built.to_string(), "Anthropic CMEK")
        .await
        .unwrap();
    assert!(
        kms.tags(&key.key_id).await.unwrap().is_empty(),
        "created untagged"
    );
    kms.tag_as_ours(&key.key_id, &ws).await.unwrap();
    kms.tag_as_ours(&key.key_id, &ws).await.unwrap(); // a retry is a no-op
    assert_eq!(key.state, aws_sdk_kms::types::KeyState::Enabled);
    assert_eq!(
        (key.key_spec.as_str(), key.key_usage.as_str()),
        ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
    );
    assert!(!key.multi_region);
    assert!(key.unusable_reason().is_none(), "{:?}", key.unusable_reason());
    let arn = key.parsed_arn().unwrap();
    assert_eq!(arn.region().as_str(), "us-east-2");

    let alias = alias_for("alias/anthropic-cmek", &ws);
    kms.ensure_alias(&alias, &key.key_id).await.unwrap();
    kms.ensure_alias(&alias, &key.key_id).await.unwrap(); // a retry is a no-op
    let found = kms.describe(&alias).await.unwrap().unwrap();
    assert_eq!(found.arn, key.arn);
    assert!(
        kms.describe("alias/anthropic-cmek/wrkspc_nope")
            .await
            .unwrap()
            .is_none()
    );

    kms.enable_rotation(&key.key_id).await.unwrap();
    assert!(kms.rotation_enabled(&key.key_id).await.unwrap());

    let stored = kms.get_policy(&key.key_id).await.unwrap();
    let stored_json: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored_json, built);
    let target = AnalysisTarget {
        geo: Geo::Us,
        compartment,
        org: Some(&org),
        key_account: Some(&account),
    };
    assert!(policy::analyse(&stored, target).unwrap().is_empty());

    // Add a second workspace and put the merged policy back.
    let other: CompartmentId = "9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d".parse().unwrap();
    let merge = policy::Merge {
        geo: Geo::Us,
        org: &org,
        compartment: other,
        restrict_to_workspaces: true,
        protected: &[],
    };
    let policy::MergeOutcome::Updated { policy: merged, .. } = policy::merge(&stored, &merge).unwrap() else {
        panic!()
    };
    kms.put_policy(&key.key_id, &merged.to_string()).await.unwrap();
    let again: serde_json::Value = serde_json::from_str(&kms.get_policy(&key.key_id).await.unwrap()).unwrap();
    assert_eq!(again, merged);

    let tags = kms.tags(&key.key_id).await.unwrap();
    assert!(tags.contains(&(TAG_MANAGED_BY.into(), "cmek-provisioner".into())));
    assert!(tags.contains(&(TAG_WORKSPACE.into(), ws.to_string())));
}

#[tokio::test]
async fn alias_pointing_elsewhere_is_never_moved() {
    let kms = manager().await;
    let ws = workspace();
    let a = kms.create_key("{}", "a").await.unwrap();
    let b = kms.create_key("{}", "b").await.unwrap();
    let alias = alias_for("alias/anthropic-cmek", &ws);
    kms.ensure_alias(&alias, &a.key_id).await.unwrap();
    let err = kms.ensure_alias(&alias, &b.key_id).await.unwrap_err();
    assert!(
        matches!(err, cmek::kms::KmsError::AliasConflict { .. }),
        "{err:?}"
    );
    assert_eq!(kms.describe(&alias).await.unwrap().unwrap().key_id, a.key_id);
}

#[tokio::test]
async fn a_key_created_before_a_crash_is_found_by_its_policy_then_by_tag() {
    let kms = manager().await;
    let ws = workspace();
    let creator = "arn:aws:iam::123456789012:role/test-CreateKeyFunctionRole";
    let description = cmek::workflow::key_description(&ws);
    let ours = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": cmek::workflow::creator_statements(creator)
    })
    .to_string();
    assert!(kms.find_tagged_keys(&ws).await.unwrap().is_empty());
    // A stranger's key described the same way, and a key naming another
    // role: neither is ours.
    kms.create_key("{}", &description).await.unwrap();
    let other_role = ours.replace("test-CreateKeyFunctionRole", "someone-else");
    kms.create_key(&other_role, &description).await.unwrap();
    let key = kms.create_key(&ours, &description).await.unwrap();
    let found = kms
        .find_untagged_keys_of(&description, cmek::workflow::CREATOR_TAGS_SID, creator)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        [key.key_id.as_str()]
    );
    kms.tag_as_ours(&key.key_id, &ws).await.unwrap();
    let found = kms.find_tagged_keys(&ws).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key_id, key.key_id);
}

#[tokio::test]
async fn encryption_context_round_trip() {
    // What Anthropic does with the key: encrypt under the compartment's
    // context, and decrypt only with the same context.
    let kms = manager().await;
    let key = kms.create_key("{}", "ctx").await.unwrap();
    // Anthropic's side, with a client of its own: KeyManager has no
    // general-purpose client to lend (it offers no delete, nor a way around that).
    let client = aws_sdk_kms::Client::new(&common::moto().await);
    let ct = client
        .encrypt()
        .key_id(&key.arn)
        .plaintext(Blob::new(b"data key".to_vec()))
        .encryption_context("anthropic:compartment_uuid", COMPARTMENT)
        .send()
        .await
        .unwrap();
    let blob = ct.ciphertext_blob().unwrap().clone();
    let pt = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("anthropic:compartment_uuid", COMPARTMENT)
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"data key");
    let wrong = client
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context(
            "anthropic:compartment_uuid",
            "00000000-0000-0000-0000-000000000000",
        )
        .send()
        .await;
    assert!(
        wrong.is_err(),
        "decrypt with another compartment's context must fail"
    );
}
