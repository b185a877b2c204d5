//! `cmek-base`: the layers every function stands on, in a crate of their
//! own: identifiers and test hooks, the domain (the key policy, Regions,
//! platforms, metrics, the key lifecycle), and the adapters to the outside
//! world (TLS, the AWS SDK clients, the Admin API, KMS, the DynamoDB store,
//! EventBridge, CloudFormation responses). The `cmek` crate re-exports
//! every module under its own name (`cmek::kms`, `cmek::policy`, …).
//!
//! A crate of its own so that a change in the layers above (the workflow,
//! the triggers, the guardian, the runtime glue) recompiles only them
//! before the one release link (docs/performance.md).

pub mod admin_api;
pub mod aws;
pub mod cloudformation;
pub mod crash_point;
pub mod events;
pub mod geo;
pub mod ids;
pub mod kms;
pub mod lifecycle;
pub mod metrics;
pub mod platform;
pub mod policy;
pub mod sdk_http;
pub mod store;
pub mod tls;
