//! `cmek`: everything cmek-provisioner does, behind the thin Lambda entry
//! points in `functions/`. Modules are named for what they are; the lower
//! layers live in `cmek-base` (shared/base) and are re-exported here.

pub mod config;
pub mod context;
pub mod error;
pub mod guardian;
pub mod inbound;
pub mod runtime;
pub mod triggers;
pub mod workflow;

pub use cmek_base::{
    admin_api, aws, cloudformation, crash_point, events, geo, ids, kms, lifecycle, metrics, platform, policy,
    sdk_http, store, tls,
};
