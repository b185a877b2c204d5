//! Validated identifiers. Every id that reaches KMS, DynamoDB or the Admin API
//! passes through one of these parsers first, so a malformed or hostile value
//! is rejected with a named error before anything is created.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was rejected. The offending value is echoed only in a
/// truncated, control-character-free form so errors stay printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {shown:?}: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub shown: String,
    pub reason: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, reason: &'static str) -> Self {
        Self {
            kind,
            shown: shown(value),
            reason,
        }
    }
}

/// A value as it may appear in an error message: at most 64 characters, no control characters.
pub fn shown(value: &str) -> String {
    let mut out: String = value.chars().filter(|c| !c.is_control()).take(64).collect();
    if value.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn is_alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $kind:literal, $parse:expr) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Read as the text it was parsed from (`Option::as_deref`, `&*id`).
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), &'static str> = $parse;
                check(s).map_err(|reason| IdError::new($kind, s, reason))?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// An Anthropic workspace id, `wrkspc_` followed by 1–64 ASCII letters or digits.
    WorkspaceId,
    "workspace id",
    |s| {
        let rest = s.strip_prefix("wrkspc_").ok_or("must start with \"wrkspc_\"")?;
        if rest.is_empty() || rest.len() > 64 || !is_alnum(rest) {
            return Err("must be \"wrkspc_\" followed by 1-64 ASCII letters or digits");
        }
        Ok(())
    }
);

string_id!(
    /// What makes two requests to create a workspace the same request: the
    /// workspace is tagged with it, and its creation record is keyed by it.
    /// 1–64 ASCII letters, digits, `-` or `_` (given by the caller, or derived
    /// from the workspace's name: [`CreationToken::for_name`]).
    CreationToken,
    "creation token",
    |s| {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("must be 1-64 ASCII letters, digits, '-' or '_'");
        }
        Ok(())
    }
);

impl CreationToken {
    /// The token of "create a workspace with this name": the same name
    /// twice is the same request (a retry, a double click, a storm of
    /// identical starts), which must make one workspace. A second workspace
    /// of the same name needs a token of its own.
    pub fn for_name(name: &str) -> Self {
        Self::derived(&["name", name])
    }

    /// A token derived from stable parts (e.g. a stack id and a logical id).
    pub fn derived(parts: &[&str]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
        Self(format!("n-{hex}"))
    }
}

string_id!(
    /// An Admin API external key id: on Claude Platform `ekey_` followed by
    /// 1–64 ASCII letters or digits; on Claude Platform on AWS the key's own
    /// KMS key ARN (a registration is identified by the ARN there).
    ExternalKeyId,
    "external key id",
    |s| {
        if s.starts_with("arn:") {
            return s
                .parse::<KeyArn>()
                .map(|_| ())
                .map_err(|_| "an ARN id must be a single-Region KMS key ARN");
        }
        let rest = s
            .strip_prefix("ekey_")
            .ok_or("must start with \"ekey_\" (or be a KMS key ARN, on Claude Platform on AWS)")?;
        if rest.is_empty() || rest.len() > 64 || !is_alnum(rest) {
            return Err("must be \"ekey_\" followed by 1-64 ASCII letters or digits");
        }
        Ok(())
    }
);

impl ExternalKeyId {
    /// The id as one URL path segment: an ARN id carries `/`, which must
    /// not split the path.
    pub fn path_segment(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

string_id!(
    /// A 12-digit AWS account id.
    AccountId,
    "AWS account id",
    |s| {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err("must be exactly 12 digits")
        }
    }
);

string_id!(
    /// An AWS Region name such as `us-east-2`.
    Region,
    "AWS Region",
    |s| {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = (3..=4).contains(&parts.len())
            && s.len() <= 32
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if ok { Ok(()) } else { Err("must look like \"us-east-2\"") }
    }
);

/// A workspace's compartment id: a lowercase, hyphenated UUID. The all-zeros
/// id is valid (it is what validation sends under the newer documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompartmentId(uuid::Uuid);

impl CompartmentId {
    /// The all-zeros id the mid-2026 documentation says validation sends.
    pub const VALIDATION: CompartmentId = CompartmentId(uuid::Uuid::nil());

    pub fn is_validation(&self) -> bool {
        self.0.is_nil()
    }
}

impl FromStr for CompartmentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Only the canonical 36-character hyphenated form: braces, URNs or
        // simple hex would parse as UUIDs but never match a policy condition.
        if s.len() != 36 {
            return Err(IdError::new(
                "compartment id",
                s,
                "must be a hyphenated UUID (36 characters)",
            ));
        }
        let id = uuid::Uuid::try_parse(s)
            .map_err(|_| IdError::new("compartment id", s, "must be a hyphenated UUID"))?;
        Ok(Self(id))
    }
}

impl fmt::Display for CompartmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for CompartmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompartmentId({})", self.0.hyphenated())
    }
}

impl Serialize for CompartmentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CompartmentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An organization's id as `GET /v1/organizations/me` answers it and the key
/// policy's `kms:EncryptionContext:anthropic:org_uuid` condition needs it:
/// the bare, lowercase, hyphenated UUID. The Console's `org_`-prefixed form,
/// an uppercase or braced UUID and the all-zeros UUID are refused: the
/// condition compares strings exactly, so a near miss would make every
/// validation fail (or, worse, bind the key to nobody's organization).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgUuid(uuid::Uuid);

impl FromStr for OrgUuid {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::new("organization UUID", s, reason);
        if s.starts_with("org_") {
            return Err(err(
                "is the Console's org_-prefixed form; the key policy needs the bare UUID from GET /v1/organizations/me",
            ));
        }
        if s.len() != 36 {
            return Err(err("must be a bare hyphenated UUID (36 characters)"));
        }
        let id = uuid::Uuid::try_parse(s).map_err(|_| err("must be a bare hyphenated UUID"))?;
        if id.hyphenated().to_string() != s {
            return Err(err(
                "must be the lowercase form (the policy condition compares strings exactly)",
            ));
        }
        if id.is_nil() {
            return Err(err("is the all-zeros UUID, which names no organization"));
        }
        Ok(Self(id))
    }
}

impl fmt::Display for OrgUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for OrgUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgUuid({})", self.0.hyphenated())
    }
}

impl Serialize for OrgUuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OrgUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The ARN of a single-Region KMS key in the `aws` partition:
/// `arn:aws:kms:<region>:<account>:key/<uuid>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyArn {
    arn: String,
    region: Region,
    account: AccountId,
    key_id: String,
}

impl KeyArn {
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn region(&self) -> &Region {
        &self.region
    }
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    /// The key id (a UUID), the last part of the ARN.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Read as the ARN text (`Option::as_deref`, `&*arn`).
impl std::ops::Deref for KeyArn {
    type Target = str;
    fn deref(&self) -> &str {
        &self.arn
    }
}

impl FromStr for KeyArn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::new("KMS key ARN", s, reason);
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(err("must be arn:aws:kms:<region>:<account>:key/<key-id>"));
        };
        if *arn != "arn" {
            return Err(err("must start with \"arn:\""));
        }
        if *partition != "aws" {
            return Err(err(
                "must be in the \"aws\" partition (Anthropic's geos are there)",
            ));
        }
        if *service != "kms" {
            return Err(err("must be a KMS ARN (service \"kms\")"));
        }
        let region: Region = region.parse().map_err(|_| err("has a malformed Region"))?;
        let account: AccountId = account.parse().map_err(|_| err("has a malformed account id"))?;
        let key_id = resource
            .strip_prefix("key/")
            .ok_or(err("must name a key (\"key/<key-id>\"), not an alias"))?;
        if key_id.starts_with("mrk-") {
            return Err(err(
                "is a multi-Region key; Anthropic requires a single-Region key",
            ));
        }
        if key_id.len() != 36 || uuid::Uuid::try_parse(key_id).is_err() {
            return Err(err("must end in a key id that is a UUID"));
        }
        Ok(Self {
            arn: s.to_owned(),
            region,
            account,
            key_id: key_id.to_owned(),
        })
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl fmt::Debug for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyArn({:?})", self.arn)
    }
}

impl Serialize for KeyArn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn)
    }
}

impl<'de> Deserialize<'de> for KeyArn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids() {
        assert!("wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ".parse::<WorkspaceId>().is_ok());
        for bad in [
            "",
            "wrkspc_",
            "ws_123",
            "wrkspc_a b",
            "wrkspc_x'; DROP",
            "wrkspc_é",
            &format!("wrkspc_{}", "a".repeat(65)),
        ] {
            assert!(bad.parse::<WorkspaceId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn compartment_ids() {
        let id: CompartmentId = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f".parse().unwrap();
        assert_eq!(id.to_string(), "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f");
        assert!(
            "00000000-0000-0000-0000-000000000000"
                .parse::<CompartmentId>()
                .unwrap()
                .is_validation()
        );
        for bad in [
            "<compartment-uuid>",
            "4f6b2f5e8a4b4d3c9a1e0b7f3c2d1e0f",
            "{4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f}",
            "",
        ] {
            assert!(bad.parse::<CompartmentId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn org_uuids() {
        let id: OrgUuid = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13".parse().unwrap();
        assert_eq!(id.to_string(), "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13");
        for (bad, why) in [
            ("org_6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13", "org_-prefixed"),
            ("6F1C7A52-3B9E-4D21-8A0F-5C2E9B7D4A13", "lowercase"),
            ("6f1c7a523b9e4d218a0f5c2e9b7d4a13", "36 characters"),
            ("6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a1z", "bare hyphenated UUID"),
            ("00000000-0000-0000-0000-000000000000", "all-zeros"),
            ("<html>oops</html>", "36 characters"),
            ("", "36 characters"),
        ] {
            let e = bad.parse::<OrgUuid>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn key_arns() {
        let arn: KeyArn = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            .parse()
            .unwrap();
        assert_eq!(arn.region().as_str(), "us-east-2");
        assert_eq!(arn.account().as_str(), "111122223333");
        assert_eq!(arn.key_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        for (bad, why) in [
            (
                "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "partition",
            ),
            (
                "arn:aws:s3:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "KMS",
            ),
            ("arn:aws:kms:us-east-2:111122223333:alias/anthropic-cmek", "alias"),
            (
                "arn:aws:kms:us-east-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
                "multi-Region",
            ),
            (
                "arn:aws:kms:us-east-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "account",
            ),
            (
                "arn:aws:kms:US_EAST:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "Region",
            ),
            ("not an arn", "arn:aws:kms"),
        ] {
            let e = bad.parse::<KeyArn>().unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_truncate_and_strip_control_characters() {
        let long = format!("wrkspc_\n{}", "x".repeat(10_000));
        let e = long.parse::<WorkspaceId>().unwrap_err().to_string();
        assert!(e.len() < 200 && !e.contains('\n'), "{e}");
    }
}
