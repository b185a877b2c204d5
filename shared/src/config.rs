//! Configuration from environment variables, parsed once at cold start. A
//! missing or malformed variable stops the function before it takes any
//! event, with a message naming the variable.

use std::collections::HashSet;
use std::time::Duration;

use crate::admin_api::{DEFAULT_BASE_URL, client::parse_base_url};
use crate::geo::Geo;
use crate::ids::{AccountId, Region, WorkspaceId};
use crate::platform::{Platform, SourceArnScope};

pub const TABLE_NAME: &str = "CMEK_TABLE_NAME";
pub const ADMIN_KEY_SECRET_ARN: &str = "CMEK_ADMIN_KEY_SECRET_ARN";
pub const ADMIN_API_BASE_URL: &str = "CMEK_ADMIN_API_BASE_URL";
pub const GEO: &str = "CMEK_GEO";
pub const KEY_REGION: &str = "CMEK_KEY_REGION";
pub const ALIAS_PREFIX: &str = "CMEK_ALIAS_PREFIX";
pub const LEASE_SECONDS: &str = "CMEK_LEASE_SECONDS";
pub const EVENT_BUS_NAME: &str = "CMEK_EVENT_BUS_NAME";
pub const ACCOUNT_ID: &str = "CMEK_ACCOUNT_ID";
pub const STATE_MACHINE_ARN: &str = "CMEK_STATE_MACHINE_ARN";
pub const RESTRICT_TO_WORKSPACES: &str = "CMEK_RESTRICT_TO_WORKSPACES";
/// The guardian: cancel a scheduled deletion of a key of ours (default true).
pub const GUARDIAN_CANCEL_DELETION: &str = "CMEK_GUARDIAN_CANCEL_DELETION";
/// The guardian: the SNS topic for alerts to people.
pub const ALERT_TOPIC_ARN: &str = "CMEK_ALERT_TOPIC_ARN";
/// `claude-platform` (the default) or `claude-platform-on-aws`.
pub const PLATFORM: &str = "CMEK_PLATFORM";
/// CreateKey: its own role's ARN. The key policies it writes name it, so that
/// it may tag and maintain the keys it created and no others.
pub const KEY_CREATOR_ROLE_ARN: &str = "CMEK_KEY_CREATOR_ROLE_ARN";
/// Claude Platform on AWS: how tightly `aws:SourceArn` binds the service
/// principal (`account`, the default, or `workspaces`).
pub const SOURCE_ARN_SCOPE: &str = "CMEK_SOURCE_ARN_SCOPE";
/// The Region the function runs in (set by Lambda): on Claude Platform on AWS
/// the Region of the endpoint, of the workspaces and of their keys.
pub const AWS_REGION: &str = "AWS_REGION";

pub const DEFAULT_ALIAS_PREFIX: &str = "alias/anthropic-cmek";
pub const DEFAULT_LEASE: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    /// Where the Admin API key lives; read once per cold start.
    pub admin_key_secret_arn: Option<String>,
    pub admin_api_base_url: String,
    pub geo: Geo,
    /// Region new keys are created in (the Lambda's own Region by default).
    pub key_region: Option<Region>,
    pub alias_prefix: String,
    pub lease_ttl: Duration,
    pub event_bus_name: Option<String>,
    /// The account keys are created in (the root admin statement names it).
    pub account_id: Option<AccountId>,
    /// The provisioning state machine (for triggers that start executions).
    pub state_machine_arn: Option<String>,
    /// Whether keys created here list the workspaces that may use them
    /// (`StringEqualsIfExists` on the compartment) or are bound to the
    /// organization only. A request's `restrictToWorkspaces` overrides it.
    pub restrict_to_workspaces: bool,
    /// Discovery: which new workspaces are provisioned without a person.
    pub auto_provision: OptIn,
    /// The guardian: whether it cancels a scheduled deletion of a key this
    /// project created.
    pub guardian_cancels_deletion: bool,
    /// The guardian: where alerts for people go (SNS).
    pub alert_topic_arn: Option<String>,
    /// Which Anthropic platform the workspaces are on.
    pub platform: Platform,
    /// Claude Platform on AWS: the Region of the endpoint and the workspaces
    /// (keys must be in it); `None` on Claude Platform.
    pub platform_region: Option<Region>,
    /// Claude Platform on AWS: the `aws:SourceArn` condition's reach.
    pub source_arn_scope: SourceArnScope,
    /// CreateKey: the role the key policies it writes let tag and maintain
    /// the key (see [`KEY_CREATOR_ROLE_ARN`]).
    pub key_creator_role_arn: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let invalid = |var, reason: String| ConfigError::Invalid { var, reason };

        let table_name = get(TABLE_NAME).ok_or(ConfigError::Missing(TABLE_NAME))?;
        let admin_key_secret_arn = get(ADMIN_KEY_SECRET_ARN);
        if let Some(arn) = &admin_key_secret_arn
            && !arn.starts_with("arn:")
        {
            return Err(invalid(
                ADMIN_KEY_SECRET_ARN,
                "must be a Secrets Manager secret ARN".into(),
            ));
        }
        let platform: Platform = match get(PLATFORM) {
            None => Platform::ClaudePlatform,
            Some(p) => p.parse().map_err(|e: String| invalid(PLATFORM, e))?,
        };
        // On Claude Platform on AWS the workspaces are bound to the Region of
        // the endpoint the stack calls: the stack's own Region.
        let platform_region: Option<Region> = if platform.is_on_aws() {
            let r = get(AWS_REGION).ok_or(ConfigError::Missing(AWS_REGION))?;
            Some(
                r.parse()
                    .map_err(|e: crate::ids::IdError| invalid(AWS_REGION, e.to_string()))?,
            )
        } else {
            None
        };
        let source_arn_scope: SourceArnScope = match get(SOURCE_ARN_SCOPE) {
            None => SourceArnScope::default(),
            Some(s) => s.parse().map_err(|e: String| invalid(SOURCE_ARN_SCOPE, e))?,
        };
        let admin_api_base_url = get(ADMIN_API_BASE_URL).unwrap_or_else(|| match &platform_region {
            Some(region) => platform.endpoint(region),
            None => DEFAULT_BASE_URL.to_owned(),
        });
        parse_base_url(&admin_api_base_url).map_err(|e| invalid(ADMIN_API_BASE_URL, e.to_string()))?;
        let geo: Geo = match get(GEO) {
            None => Geo::Us,
            Some(g) => g.parse().map_err(|e: String| invalid(GEO, e))?,
        };
        let key_region = match get(KEY_REGION) {
            None => None,
            Some(r) => {
                let region: Region = r
                    .parse()
                    .map_err(|e: crate::ids::IdError| invalid(KEY_REGION, e.to_string()))?;
                if !geo.accepts_region(&region) {
                    return Err(invalid(
                        KEY_REGION,
                        format!(
                            "{region} does not serve geo {geo} (recommended: {})",
                            geo.recommended_region()
                        ),
                    ));
                }
                // Claude Platform on AWS refuses a key outside the workspace's
                // Region: say so before any key is created there.
                if let Some(platform_region) = &platform_region
                    && &region != platform_region
                {
                    return Err(invalid(
                        KEY_REGION,
                        format!(
                            "{region} is not {platform_region}: on Claude Platform on AWS a key must be in the Region of its workspaces"
                        ),
                    ));
                }
                Some(region)
            }
        };
        let alias_prefix = get(ALIAS_PREFIX).unwrap_or_else(|| DEFAULT_ALIAS_PREFIX.to_owned());
        crate::kms::validate_alias_prefix(&alias_prefix).map_err(|e| invalid(ALIAS_PREFIX, e))?;
        let lease_ttl = match get(LEASE_SECONDS) {
            None => DEFAULT_LEASE,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if (60..=86_400).contains(&n) => Duration::from_secs(n),
                _ => {
                    return Err(invalid(
                        LEASE_SECONDS,
                        "must be whole seconds between 60 and 86400".into(),
                    ));
                }
            },
        };
        let account_id = match get(ACCOUNT_ID) {
            None => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|e: crate::ids::IdError| invalid(ACCOUNT_ID, e.to_string()))?,
            ),
        };
        let state_machine_arn = get(STATE_MACHINE_ARN);
        if let Some(arn) = &state_machine_arn
            && !arn.starts_with("arn:")
        {
            return Err(invalid(STATE_MACHINE_ARN, "must be a state machine ARN".into()));
        }
        let restrict_to_workspaces = match get(RESTRICT_TO_WORKSPACES).as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(invalid(
                    RESTRICT_TO_WORKSPACES,
                    format!("must be true or false, got {:?}", crate::ids::shown(other)),
                ));
            }
        };
        let bool_var = |var: &'static str, default: bool| match get(var).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(invalid(
                var,
                format!("must be true or false, got {:?}", crate::ids::shown(other)),
            )),
        };
        let guardian_cancels_deletion = bool_var(GUARDIAN_CANCEL_DELETION, true)?;
        let alert_topic_arn = get(ALERT_TOPIC_ARN);
        if let Some(arn) = &alert_topic_arn
            && !is_sns_topic_arn(arn)
        {
            return Err(invalid(
                ALERT_TOPIC_ARN,
                format!(
                    "must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>), got {:?}",
                    crate::ids::shown(arn)
                ),
            ));
        }
        let key_creator_role_arn = get(KEY_CREATOR_ROLE_ARN);
        if let Some(arn) = &key_creator_role_arn
            && !is_role_arn(arn)
        {
            return Err(invalid(
                KEY_CREATOR_ROLE_ARN,
                format!(
                    "must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {:?}",
                    crate::ids::shown(arn)
                ),
            ));
        }
        Ok(Self {
            key_creator_role_arn,
            platform,
            platform_region,
            source_arn_scope,
            auto_provision: OptIn::from_lookup(get)?,
            guardian_cancels_deletion,
            alert_topic_arn,
            restrict_to_workspaces,
            state_machine_arn,
            account_id,
            table_name,
            admin_key_secret_arn,
            admin_api_base_url,
            geo,
            key_region,
            alias_prefix,
            lease_ttl,
            event_bus_name: get(EVENT_BUS_NAME),
        })
    }

    pub fn require_account_id(&self) -> Result<&AccountId, ConfigError> {
        self.account_id.as_ref().ok_or(ConfigError::Missing(ACCOUNT_ID))
    }

    /// The Region of the workspaces on Claude Platform on AWS.
    pub fn require_platform_region(&self) -> Result<&Region, ConfigError> {
        self.platform_region
            .as_ref()
            .ok_or(ConfigError::Missing(AWS_REGION))
    }

    /// CreateKey's own role, which the key policies it writes name.
    pub fn require_key_creator_role(&self) -> Result<&str, ConfigError> {
        self.key_creator_role_arn
            .as_deref()
            .ok_or(ConfigError::Missing(KEY_CREATOR_ROLE_ARN))
    }

    /// The secret ARN, for functions that call the Admin API.
    pub fn require_admin_key_secret(&self) -> Result<&str, ConfigError> {
        self.admin_key_secret_arn
            .as_deref()
            .ok_or(ConfigError::Missing(ADMIN_KEY_SECRET_ARN))
    }
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty() && !name.contains(char::is_whitespace)))
}

fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

/// Who may be provisioned without a person starting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptIn {
    pub enabled: bool,
    pub workspace_ids: HashSet<String>,
    /// `*` and `?` wildcards, matched against the workspace name.
    pub name_pattern: Option<String>,
}

impl OptIn {
    pub const ENABLED: &'static str = "CMEK_AUTO_PROVISION";
    pub const IDS: &'static str = "CMEK_AUTO_PROVISION_WORKSPACE_IDS";
    pub const PATTERN: &'static str = "CMEK_AUTO_PROVISION_NAME_PATTERN";

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let enabled = match get(Self::ENABLED).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: Self::ENABLED,
                    reason: format!("must be true or false, got {:?}", crate::ids::shown(other)),
                });
            }
        };
        let mut workspace_ids = HashSet::new();
        for id in get(Self::IDS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let ws: WorkspaceId = id
                .parse()
                .map_err(|e: crate::ids::IdError| ConfigError::Invalid {
                    var: Self::IDS,
                    reason: e.to_string(),
                })?;
            workspace_ids.insert(ws.to_string());
        }
        Ok(Self {
            enabled,
            workspace_ids,
            name_pattern: get(Self::PATTERN),
        })
    }

    pub fn admits(&self, w: &crate::admin_api::Workspace) -> bool {
        self.enabled
            && (self.workspace_ids.contains(&w.id)
                || self
                    .name_pattern
                    .as_deref()
                    .is_some_and(|p| crate::policy::glob_match(p, &w.name, false)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[(TABLE_NAME, "t")]).unwrap();
        assert_eq!(c.admin_api_base_url, "https://api.anthropic.com");
        assert_eq!(c.geo, Geo::Us);
        assert_eq!(c.alias_prefix, "alias/anthropic-cmek");
        assert_eq!(c.lease_ttl, DEFAULT_LEASE);
        assert_eq!(c.key_region, None);
        assert!(c.restrict_to_workspaces);
        assert!(
            !with(&[(TABLE_NAME, "t"), (RESTRICT_TO_WORKSPACES, "false")])
                .unwrap()
                .restrict_to_workspaces
        );
    }

    #[test]
    fn the_key_creator_role_must_be_a_role_arn() {
        let ok = with(&[
            (TABLE_NAME, "t"),
            (
                KEY_CREATOR_ROLE_ARN,
                "arn:aws:iam::123456789012:role/stack-CreateKeyFunctionRole-1AB",
            ),
        ])
        .unwrap();
        assert_eq!(
            ok.require_key_creator_role().unwrap(),
            "arn:aws:iam::123456789012:role/stack-CreateKeyFunctionRole-1AB"
        );
        assert!(matches!(
            with(&[(TABLE_NAME, "t")]).unwrap().require_key_creator_role(),
            Err(ConfigError::Missing(KEY_CREATOR_ROLE_ARN))
        ));
        for bad in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::12345:role/x",
            "arn:aws:sts::123456789012:assumed-role/x/y",
            "arn:aws:iam::123456789012:role/",
            "role/x",
        ] {
            assert!(
                matches!(
                    with(&[(TABLE_NAME, "t"), (KEY_CREATOR_ROLE_ARN, bad)]),
                    Err(ConfigError::Invalid {
                        var: KEY_CREATOR_ROLE_ARN,
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn claude_platform_on_aws_needs_no_secret_and_keeps_keys_in_its_region() {
        let aws = [
            (TABLE_NAME, "t"),
            (PLATFORM, "claude-platform-on-aws"),
            (AWS_REGION, "us-west-2"),
        ];
        let c = with(&aws).unwrap();
        assert_eq!(c.platform, Platform::ClaudePlatformOnAws);
        assert_eq!(
            c.platform_region.as_ref().map(ToString::to_string).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            c.admin_api_base_url,
            "https://aws-external-anthropic.us-west-2.api.aws"
        );
        assert_eq!(c.admin_key_secret_arn, None);
        assert_eq!(c.source_arn_scope, SourceArnScope::Account);
        // The template passes an empty secret ARN on this platform.
        assert_eq!(
            with(&[aws.as_slice(), &[(ADMIN_KEY_SECRET_ARN, "")]].concat())
                .unwrap()
                .admin_key_secret_arn,
            None
        );
        let scoped = with(&[aws.as_slice(), &[(SOURCE_ARN_SCOPE, "workspaces")]].concat()).unwrap();
        assert_eq!(scoped.source_arn_scope, SourceArnScope::Workspaces);
        // A key Region other than the workspaces' is refused before any key exists.
        let err = with(&[aws.as_slice(), &[(KEY_REGION, "us-east-2")]].concat()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { var: KEY_REGION, .. }),
            "{err}"
        );
        assert!(with(&[aws.as_slice(), &[(KEY_REGION, "us-west-2")]].concat()).is_ok());
        // Without the Region there is no endpoint to call: named, not guessed.
        assert_eq!(
            with(&[(TABLE_NAME, "t"), (PLATFORM, "claude-platform-on-aws")]).unwrap_err(),
            ConfigError::Missing(AWS_REGION)
        );
        for (var, value) in [(PLATFORM, "bedrock"), (SOURCE_ARN_SCOPE, "org")] {
            let err = with(&[aws.as_slice(), &[(var, value)]].concat()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { var: v, .. } if v == var),
                "{err}"
            );
        }
        // Claude Platform is untouched: its endpoint, no Region needed.
        let c = with(&[(TABLE_NAME, "t"), (KEY_REGION, "us-east-2")]).unwrap();
        assert_eq!(c.platform, Platform::ClaudePlatform);
        assert_eq!(c.platform_region, None);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], TABLE_NAME),
            (&[(TABLE_NAME, "t"), (GEO, "eu")], GEO),
            (&[(TABLE_NAME, "t"), (KEY_REGION, "eu-west-1")], KEY_REGION),
            (&[(TABLE_NAME, "t"), (KEY_REGION, "nowhere")], KEY_REGION),
            (
                &[(TABLE_NAME, "t"), (ADMIN_API_BASE_URL, "http://api.example.com")],
                ADMIN_API_BASE_URL,
            ),
            (&[(TABLE_NAME, "t"), (ALIAS_PREFIX, "alias/aws/x")], ALIAS_PREFIX),
            (&[(TABLE_NAME, "t"), (ALIAS_PREFIX, "anthropic")], ALIAS_PREFIX),
            (&[(TABLE_NAME, "t"), (LEASE_SECONDS, "5")], LEASE_SECONDS),
            (
                &[(TABLE_NAME, "t"), (RESTRICT_TO_WORKSPACES, "yes")],
                RESTRICT_TO_WORKSPACES,
            ),
            (
                &[(TABLE_NAME, "t"), (ADMIN_KEY_SECRET_ARN, "my-secret")],
                ADMIN_KEY_SECRET_ARN,
            ),
        ];
        for (vars, var) in cases {
            let err = with(vars).unwrap_err().to_string();
            assert!(err.contains(var), "{vars:?}: {err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed_for_the_sandbox() {
        assert!(with(&[(TABLE_NAME, "t"), (ADMIN_API_BASE_URL, "http://127.0.0.1:4010")]).is_ok());
    }

    #[test]
    fn opt_in_is_explicit() {
        let w = |id: &str, name: &str| crate::admin_api::Workspace {
            id: id.into(),
            name: name.into(),
            created_at: None,
            archived_at: None,
            compartment_id: None,
            external_key_id: None,
            user_profile_id: None,
            tags: Default::default(),
            display_color: None,
        };
        let off = OptIn::from_lookup(|_| None).unwrap();
        assert!(!off.admits(&w("wrkspc_1", "prod")));
        let vars = |k: &str| match k {
            OptIn::ENABLED => Some("true".into()),
            OptIn::IDS => Some("wrkspc_1, wrkspc_2".into()),
            OptIn::PATTERN => Some("prod-*".into()),
            _ => None,
        };
        let on = OptIn::from_lookup(vars).unwrap();
        assert!(on.admits(&w("wrkspc_1", "x")));
        assert!(on.admits(&w("wrkspc_9", "prod-eu")));
        assert!(!on.admits(&w("wrkspc_9", "staging")));
        let enabled_only = OptIn::from_lookup(|k| (k == OptIn::ENABLED).then(|| "true".into())).unwrap();
        assert!(
            !enabled_only.admits(&w("wrkspc_1", "prod")),
            "enabled without a list or pattern admits nothing"
        );
        assert!(OptIn::from_lookup(|k| (k == OptIn::ENABLED).then(|| "yes".into())).is_err());
        assert!(OptIn::from_lookup(|k| (k == OptIn::IDS).then(|| "ws-1".into())).is_err());
    }

    #[test]
    fn guardian_settings_are_checked_not_ignored() {
        let c = with(&[(TABLE_NAME, "t")]).unwrap();
        assert!(c.guardian_cancels_deletion);
        assert_eq!(c.alert_topic_arn, None);
        let c = with(&[
            (TABLE_NAME, "t"),
            (GUARDIAN_CANCEL_DELETION, "false"),
            (ALERT_TOPIC_ARN, "arn:aws:sns:us-east-2:123456789012:cmek-alerts"),
        ])
        .unwrap();
        assert!(!c.guardian_cancels_deletion);
        assert_eq!(
            c.alert_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-2:123456789012:cmek-alerts")
        );
        for (var, value) in [
            (GUARDIAN_CANCEL_DELETION, "no"),
            (ALERT_TOPIC_ARN, "cmek-alerts"),
            (ALERT_TOPIC_ARN, "arn:aws:sqs:us-east-2:123456789012:q"),
            (OptIn::ENABLED, "yes"),
        ] {
            let err = with(&[(TABLE_NAME, "t"), (var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }
}
