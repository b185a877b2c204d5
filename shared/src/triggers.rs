//! The ways a provisioning starts besides a manual execution.

pub mod custom_resource;
mod execution_name;

pub use execution_name::execution_name;
