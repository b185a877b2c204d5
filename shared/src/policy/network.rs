//! Network conditions on Anthropic's access to the key: cause 4 of
//! `cmek_key_disabled`, and `cmek_key_network_blocked` ("The request to your
//! key management service was blocked by its network access controls (for
//! example, a KMS firewall or IP allowlist)", platform.claude.com/docs/en/
//! manage-claude/cmek-troubleshooting).
//!
//! Anthropic calls KMS from its own network, never through a VPC endpoint of
//! the customer's. AWS: `aws:SourceVpc`/`aws:SourceVpce` (and
//! `aws:VpcSourceIp`) are in the request context only when the requester uses
//! a VPC endpoint (IAM User Guide, "AWS global condition context keys"; AWS
//! re:Post "restrict access policy"), so an Allow that requires one never
//! holds for Anthropic, and a Deny that applies when it is absent or
//! different always does. `aws:SourceIp` is the caller's public address: an
//! allow-list holds only if it lists Anthropic's published egress addresses,
//! which this project cannot check (the KMS Developer Guide, "AWS global
//! condition keys", warns against `aws:SourceIp` in key policies for the
//! same reason: requests made for you come from other addresses).

use super::Finding;
use super::analysis::{FindingCode, finding};
use super::document::{Effect, PolicyDocument, Statement};

/// Keys present only for requests through a VPC endpoint.
const VPC_KEYS: [&str; 3] = ["aws:SourceVpce", "aws:SourceVpc", "aws:VpcSourceIp"];
const IP_KEY: &str = "aws:SourceIp";

/// Whether a condition key is one of the network ones this module judges.
pub(super) fn is_network_key(key: &str) -> bool {
    key.eq_ignore_ascii_case(IP_KEY) || VPC_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Findings for network conditions on the statements that apply to
/// Anthropic (`reaches`) for any of `actions`, with `who` naming Anthropic's
/// principal in the messages.
pub(super) fn check(
    doc: &PolicyDocument,
    reaches: impl Fn(&Statement) -> bool,
    actions: &[&str],
    who: &str,
    out: &mut Vec<Finding>,
) {
    for s in doc
        .statements
        .iter()
        .filter(|s| reaches(s) && actions.iter().any(|a| s.covers_action(a)))
    {
        for c in s.conditions.iter().filter(|c| is_network_key(&c.key)) {
            let op = c
                .operator
                .trim_start_matches("ForAnyValue:")
                .trim_start_matches("ForAllValues:");
            let if_exists = op.ends_with("IfExists");
            let negated = op.contains("Not");
            let vpc = !c.key.eq_ignore_ascii_case(IP_KEY);
            // When does the condition stop Anthropic? An Allow whose
            // condition fails for Anthropic's request, or a Deny whose
            // condition holds for it.
            let stops = match (s.effect, vpc) {
                // The key is absent from Anthropic's requests: a plain
                // operator fails (the Allow does not apply), `IfExists` holds.
                (Effect::Allow, true) => !if_exists && !negated,
                // Absent key: a negated operator holds (the Deny applies).
                (Effect::Deny, true) => negated,
                // An IP allow-list on the grant, or a Deny for every address
                // not listed: holds only for the addresses listed.
                (Effect::Allow, false) => !negated,
                (Effect::Deny, false) => negated,
            };
            if !stops {
                continue;
            }
            let what = match s.effect {
                Effect::Allow => format!("{} allows {who} only under {} {:?}", s.label(), c.operator, c.key),
                Effect::Deny => format!("{} denies {who} under {} {:?}", s.label(), c.operator, c.key),
            };
            if vpc {
                out.push(finding(
                    FindingCode::NetworkConditionBlocksAnthropic,
                    format!("{what}: Anthropic never calls KMS through your VPC endpoints, so this blocks it (Anthropic answers cmek_key_disabled or cmek_key_network_blocked)"),
                    "Remove the VPC condition from the statement that applies to Anthropic (keep it on your own principals' statements).",
                ));
            } else {
                out.push(finding(
                    FindingCode::IpConditionOnAnthropic,
                    format!("{what}: it holds only if the list includes Anthropic's published egress IP addresses, which this project cannot check (otherwise Anthropic answers cmek_key_network_blocked)"),
                    "Allow Anthropic's published IP addresses in the condition, or remove the IP condition from the statement that applies to Anthropic.",
                ));
            }
        }
    }
}
