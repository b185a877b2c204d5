//! Anthropic's published identifiers per geo. These are constants on purpose:
//! the role Anthropic uses must never come from input (an email, a chat
//! message, an event field) — a wrong principal would hand a key to someone else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::Region;

/// Anthropic's AWS account.
pub const ANTHROPIC_ACCOUNT_ID: &str = "915198916910";

/// The encryption-context key naming the workspace's compartment.
pub const COMPARTMENT_CONTEXT_KEY: &str = "anthropic:compartment_uuid";

/// The condition key that matches [`COMPARTMENT_CONTEXT_KEY`] in a key policy.
pub const COMPARTMENT_CONDITION_KEY: &str = "kms:EncryptionContext:anthropic:compartment_uuid";

/// The encryption-context key naming the organization (Anthropic's
/// documentation since September 2026: validation refuses a key policy whose
/// crypto grant does not require it).
pub const ORG_CONTEXT_KEY: &str = "anthropic:org_uuid";

/// The condition key that matches [`ORG_CONTEXT_KEY`] in a key policy.
pub const ORG_CONDITION_KEY: &str = "kms:EncryptionContext:anthropic:org_uuid";

/// The `associatedData` encryption-context value Anthropic's validation calls
/// carry (base64 of `cmek-validation`). With Anthropic's account id and the
/// key's ARN it identifies validation traffic in CloudTrail; alone it can be
/// forged by anyone who may call the key.
pub const VALIDATION_ASSOCIATED_DATA: &str = "Y21lay12YWxpZGF0aW9u";

/// A data-residency geo Anthropic offers CMEK in. Only `us` exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Geo {
    Us,
}

impl Geo {
    /// The published role Anthropic's service assumes to use customer keys.
    pub const fn anthropic_role_arn(self) -> &'static str {
        match self {
            Geo::Us => "arn:aws:iam::915198916910:role/anthropic-cmek-client-us",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Geo::Us => "us",
        }
    }

    /// The Region Anthropic recommends for keys of this geo.
    pub fn recommended_region(self) -> Region {
        match self {
            Geo::Us => Region::from_str("us-east-2").unwrap_or_else(|_| unreachable!("constant is valid")),
        }
    }

    /// Whether a key in `region` can serve this geo. Anthropic does not publish
    /// an exhaustive list; we accept the geo's own commercial Regions (for `us`,
    /// the four `us-*` Regions, not GovCloud) and name the recommended one in errors.
    pub fn accepts_region(self, region: &Region) -> bool {
        match self {
            Geo::Us => matches!(
                region.as_str(),
                "us-east-1" | "us-east-2" | "us-west-1" | "us-west-2"
            ),
        }
    }
}

impl fmt::Display for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Geo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "us" => Ok(Geo::Us),
            other => Err(format!(
                "unknown geo {:?}: the only CMEK geo is \"us\"",
                crate::ids::shown(other)
            )),
        }
    }
}
