//! The key policy: build the documented one, merge a workspace (and the
//! current contract) into an existing one, and analyse any policy for a
//! workspace. Pure: no I/O.

mod analysis;
mod build;
mod document;
mod eval;
mod network;
pub mod on_aws;
#[cfg(test)]
mod tests;

pub use analysis::{
    AnalysisTarget, ContractGeneration, Finding, FindingCode, Severity, analyse, analyse_document, generation,
};
pub use build::{
    CRYPTO_SID, DESCRIBE_SID, EXISTING_DATA_SID, Merge, MergeOutcome, ROOT_ADMIN_SID, Scope,
    compartment_values, key_policy, merge, to_policy_string,
};
pub use document::{PolicyDocument, PolicyError, glob_match, statement_items, string_values};
