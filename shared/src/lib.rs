//! `cmek`: everything cmek-provisioner does, behind the thin Lambda entry
//! points in `functions/`. Modules are named for what they are.

pub mod admin_api;
pub mod aws;
pub mod cloudformation;
pub mod config;
pub mod context;
pub mod crash_point;
pub mod error;
pub mod events;
pub mod geo;
pub mod guardian;
pub mod ids;
pub mod inbound;
pub mod kms;
pub mod lifecycle;
pub mod metrics;
pub mod platform;
pub mod policy;
pub mod runtime;
pub mod sdk_http;
pub mod store;
pub mod tls;
pub mod triggers;
pub mod workflow;
