//! What a function's handler works with — configuration, the workflow
//! store, the clients it declared it needs, the clock — built once per cold
//! start, and the [`Handler`] contract each Lambda entry point implements.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::admin_api::{AdminApiClient, ClientOptions};
use crate::config::Config;
use crate::error::CmekError;
use crate::events::EventPublisher;
use crate::kms::KeyManager;
use crate::store::{DynamoStore, WorkflowStore};

/// A step's collaborators. Tests build it from in-process parts; Lambda
/// builds it from the environment with [`Deps::from_env`].
#[derive(Debug, Clone)]
pub struct Deps {
    pub config: Config,
    pub store: Arc<dyn WorkflowStore>,
    pub kms: Option<KeyManager>,
    pub admin: Option<AdminApiClient>,
    pub events: Option<EventPublisher>,
    /// Starts executions (triggers only).
    pub sfn: Option<aws_sdk_sfn::Client>,
    /// Sends alerts to people (the guardian only; the topic is in `config`).
    pub sns: Option<aws_sdk_sns::Client>,
    /// Answers CloudFormation's pre-signed URLs.
    pub http: LazyHttp,
    pub clock: Clock,
}

/// Which clients a function needs, so none pays for clients it never uses
/// (reading the admin key is a Secrets Manager call on every cold start).
/// Declared by each [`Handler`], so `main` cannot build fewer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub kms: bool,
    pub admin_api: bool,
    pub events: bool,
    pub sfn: bool,
    pub sns: bool,
}

impl Needs {
    /// The store and configuration only; add to it with `..Needs::NONE`.
    pub const NONE: Needs = Needs {
        kms: false,
        admin_api: false,
        events: false,
        sfn: false,
        sns: false,
    };
}

/// One Lambda function: its name (the `Function` dimension of its metrics),
/// what it needs built at cold start, and what it does with an event. Each
/// `main` is `cmek::runtime::serve::<TheHandler>()`.
pub trait Handler {
    const NAME: &'static str;
    const NEEDS: Needs;
    type Output: serde::Serialize;
    fn handle(
        deps: &Deps,
        event: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<Self::Output, CmekError>>;
}

/// Declares a Lambda function's [`Handler`]: a unit struct named as the
/// function's `Function` metric dimension, the clients it needs, and the
/// handler it runs.
macro_rules! lambda_function {
    ($(#[$doc:meta])* $name:ident: $handler:path => $output:ty, $needs:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl $crate::context::Handler for $name {
            const NAME: &'static str = stringify!($name);
            const NEEDS: $crate::context::Needs = $needs;
            type Output = $output;
            fn handle(
                deps: &$crate::context::Deps,
                event: serde_json::Value,
            ) -> impl std::future::Future<Output = Result<$output, $crate::error::CmekError>> {
                $handler(deps, event)
            }
        }
    };
}
pub(crate) use lambda_function;

/// The time source; tests move it to check lease expiry.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }

    pub fn shifted(offset: Duration) -> Self {
        Self { offset }
    }
}

impl Deps {
    pub async fn from_env(needs: Needs) -> Result<Self, CmekError> {
        let config = Config::from_env()?;
        let sdk = crate::aws::lambda_sdk_config().await;
        let store = Arc::new(DynamoStore::new(
            crate::aws::dynamodb_client(&sdk),
            config.table_name.clone(),
        ));
        let kms = needs.kms.then(|| {
            let region = config.key_region.as_ref().map(ToString::to_string);
            KeyManager::new(crate::aws::kms_client(&sdk, region.as_deref()))
        });
        let admin = if needs.admin_api && config.platform.is_on_aws() {
            // Claude Platform on AWS: no secret exists; requests are signed
            // by the function's role, for the Region of the workspaces.
            let region = config
                .require_platform_region()
                .map_err(|e| CmekError::Configuration(e.to_string()))?;
            let credentials = sdk.credentials_provider().ok_or_else(|| {
                CmekError::Configuration("no AWS credentials provider to sign Admin API requests with".into())
            })?;
            let signer = crate::admin_api::SigV4Signer::new(credentials, region.to_string());
            Some(
                AdminApiClient::new_sigv4(&config.admin_api_base_url, signer, ClientOptions::default())
                    .map_err(|e| CmekError::Configuration(e.to_string()))?,
            )
        } else if needs.admin_api {
            let arn = config
                .require_admin_key_secret()
                .map_err(|e| CmekError::Configuration(e.to_string()))?;
            let key = crate::aws::read_admin_key(&crate::aws::secrets_client_for(&sdk, arn), arn).await?;
            Some(
                AdminApiClient::new(&config.admin_api_base_url, key, ClientOptions::default())
                    .map_err(|e| CmekError::Configuration(e.to_string()))?,
            )
        } else {
            None
        };
        let events = match (&config.event_bus_name, needs.events) {
            (Some(bus), true) => Some(EventPublisher::new(
                crate::aws::eventbridge_client(&sdk),
                bus.clone(),
            )),
            _ => None,
        };
        let sfn = needs.sfn.then(|| crate::aws::sfn_client(&sdk));
        let sns = needs.sns.then(|| crate::aws::sns_client(&sdk));
        Ok(Self {
            config,
            store,
            kms,
            admin,
            events,
            sfn,
            sns,
            http: http_client(),
            clock: Clock::default(),
        })
    }

    pub fn kms(&self) -> Result<&KeyManager, CmekError> {
        self.kms
            .as_ref()
            .ok_or_else(|| CmekError::Configuration("this function was built without a KMS client".into()))
    }

    pub fn admin(&self) -> Result<&AdminApiClient, CmekError> {
        self.admin.as_ref().ok_or_else(|| {
            CmekError::Configuration("this function was built without an Admin API client".into())
        })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The organization's UUID (`GET /v1/organizations/me`), or
    /// `InvalidOrganization` when the Admin API answers something that is
    /// not one: nothing is created on the strength of a garbled id.
    pub async fn organization(&self) -> Result<crate::ids::OrgUuid, CmekError> {
        self.admin()?.organization_uuid().await.map_err(|e| match e {
            crate::admin_api::AdminApiError::Decode(message) => CmekError::InvalidOrganization(message),
            other => other.into(),
        })
    }

    pub fn state_machine(&self) -> Result<(&aws_sdk_sfn::Client, &str), CmekError> {
        match (&self.sfn, self.config.state_machine_arn.as_deref()) {
            (Some(c), Some(arn)) => Ok((c, arn)),
            _ => Err(CmekError::Configuration(format!(
                "{} is not set",
                crate::config::STATE_MACHINE_ARN
            ))),
        }
    }
}

/// A key policy judged for one workspace, by the rules of the stack's
/// platform: the one judgement CreateKey, AttachKey, the guardian and its
/// sweep all make. On Claude Platform on AWS the workspace's ARN (the
/// service's `aws:SourceArn`) is built from the stack's account and Region;
/// never judged by the other platform's rules for want of them.
pub fn analyse_for_workspace(
    config: &Config,
    policy_text: &str,
    ws: &crate::ids::WorkspaceId,
    compartment: crate::ids::CompartmentId,
    org: Option<&crate::ids::OrgUuid>,
    key_account: Option<&crate::ids::AccountId>,
) -> Result<Vec<crate::policy::Finding>, crate::policy::PolicyError> {
    if !config.platform.is_on_aws() {
        return crate::policy::analyse(
            policy_text,
            crate::policy::AnalysisTarget {
                geo: config.geo,
                compartment,
                org,
                key_account,
            },
        );
    }
    let (Some(region), Some(account)) = (
        &config.platform_region,
        config.account_id.as_ref().or(key_account),
    ) else {
        return Err(crate::policy::PolicyError::Malformed(
            "the workspace's ARN is unknown (no account or Region configured): a policy for Claude Platform on AWS cannot be judged".into(),
        ));
    };
    let ws_arn = crate::platform::workspace_arn(region, account, ws);
    crate::policy::on_aws::analyse(
        policy_text,
        crate::policy::on_aws::OnAwsTarget {
            compartment,
            workspace_arn: &ws_arn,
            key_account,
        },
    )
}

/// The client for CloudFormation responses.
pub fn http_client() -> LazyHttp {
    LazyHttp::default()
}

/// The HTTP client for CloudFormation's pre-signed URLs, built on first use:
/// building one parses the CA roots into a rustls store, and only the
/// functions that answer CloudFormation use it.
#[derive(Debug, Clone, Default)]
pub struct LazyHttp(Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>);

impl LazyHttp {
    pub fn get(&self) -> Result<&reqwest::Client, CmekError> {
        self.0
            .get_or_init(|| crate::tls::http_client().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| CmekError::Configuration(e.clone()))
    }
}
