//! Configuration from environment variables, parsed once at cold start. A
//! missing or malformed variable stops the function before it takes any
//! event, with a message naming the variable.

use std::time::Duration;

use crate::admin_api::{DEFAULT_BASE_URL, client::parse_base_url};
use crate::geo::Geo;
use crate::ids::{AccountId, Region};

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
        let admin_api_base_url = get(ADMIN_API_BASE_URL).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
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
        Ok(Self {
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

    /// The secret ARN, for functions that call the Admin API.
    pub fn require_admin_key_secret(&self) -> Result<&str, ConfigError> {
        self.admin_key_secret_arn
            .as_deref()
            .ok_or(ConfigError::Missing(ADMIN_KEY_SECRET_ARN))
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
}
