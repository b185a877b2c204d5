//! The ways a provisioning starts besides a manual execution.

pub mod custom_resource;
pub mod discovery;
mod execution_name;
mod from_event;

pub use execution_name::execution_name;
pub use from_event::start_from_event;
