//! The workflow's state and audit trail. One `STATE` record per workspace,
//! versioned for optimistic locking and leased to one execution at a time,
//! plus append-only audit events written atomically with each state change.
//!
//! The rules (who may claim, which transitions are legal, how a dead
//! execution's lease is taken over) live here once, over a small
//! [`WorkflowStore`] trait with a DynamoDB and an in-memory implementation.

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
mod creation;
mod dynamo;
mod item;
mod memory;
mod model;
mod ops;

pub use creation::*;
pub use dynamo::DynamoStore;
pub use memory::MemoryStore;
pub use model::*;
pub use ops::*;
