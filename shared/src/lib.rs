//! `cmek`: everything cmek-provisioner does, behind the thin Lambda entry
//! points in `functions/`. Modules are named for what they are.

pub mod admin_api;
pub mod geo;
pub mod ids;
pub mod policy;
