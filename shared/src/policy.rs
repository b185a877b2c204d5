//! The key policy: build the documented one, add a workspace to an existing
//! one, and analyse any policy for a workspace. Pure: no I/O.

mod analysis;
mod build;
mod document;
#[cfg(test)]
mod tests;

pub use analysis::{AnalysisTarget, Finding, FindingCode, Severity, analyse, analyse_document};
pub use build::{
    CRYPTO_SID, DESCRIBE_SID, MergeOutcome, ROOT_ADMIN_SID, add_compartment, condition_values, key_policy,
    to_policy_string,
};
pub use document::{PolicyDocument, PolicyError, glob_match};
