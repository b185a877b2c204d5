//! One set of trusted root certificates per process, shared by the AWS SDK
//! and by the HTTP client for the Admin API and CloudFormation.
//!
//! Left to themselves, both HTTPS stacks load the system's CA certificates:
//! on Linux that is the bundle plus every file of the certificate directory,
//! read and parsed. Begin, which calls AWS and then builds its Admin API
//! client, paid for it twice in every cold start. Here the roots are read
//! once, duplicates and certificates rustls cannot use as a trust anchor are
//! dropped (the SDK panics on one), and both stacks get the same list.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use rustls_pki_types::CertificateDer;

/// The connect timeout of every HTTP client this crate builds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const USER_AGENT: &str = concat!("cmek-provisioner/", env!("CARGO_PKG_VERSION"));

static ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(load_roots);

fn load_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not read a CA certificate");
    }
    let roots = usable(found.certs);
    if roots.is_empty() {
        tracing::warn!("no CA certificates found: every HTTPS connection will fail");
    }
    roots
}

/// Distinct certificates that rustls accepts as trust anchors, in their order.
fn usable(certs: Vec<CertificateDer<'static>>) -> Vec<CertificateDer<'static>> {
    let mut seen = HashSet::new();
    certs
        .into_iter()
        .filter(|c| seen.insert(c.as_ref().to_vec()))
        .filter(|c| webpki::anchor_from_trusted_cert(c).is_ok())
        .collect()
}

/// The process's trusted roots, loaded on first use.
pub fn roots() -> &'static [CertificateDer<'static>] {
    &ROOTS
}

/// A reqwest builder with this crate's user agent, connect timeout and the
/// shared roots (and only those).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let certs = roots()
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c).ok());
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_certs_only(certs)
}

/// The AWS SDK's default HTTPS client (rustls with aws-lc, proxy settings from
/// the environment), trusting the shared roots instead of loading its own.
pub fn sdk_http_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let trust = roots()
            .iter()
            .fold(TrustStore::empty().with_native_roots(false), |store, cert| {
                store.with_pem_certificate(pem(cert))
            });
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .unwrap_or_default();
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(context);
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

fn pem(cert: &CertificateDer<'_>) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn pem_round_trips_to_the_same_der() {
        for cert in roots().iter().take(20) {
            let back = CertificateDer::from_pem_slice(pem(cert).as_bytes()).expect("PEM parses");
            assert_eq!(back.as_ref(), cert.as_ref());
        }
    }

    #[test]
    fn duplicates_and_non_anchors_are_dropped() {
        let Some(good) = roots().first().cloned() else {
            panic!("this machine has no CA certificates; the test needs one");
        };
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let kept = usable(vec![good.clone(), junk, good.clone()]);
        assert_eq!(kept, vec![good]);
    }

    #[test]
    fn reqwest_accepts_every_shared_root() {
        assert!(!roots().is_empty(), "no CA certificates were found");
        http_client_builder().build().expect("reqwest client");
    }

    /// The SDK parses the trust store only when it first connects (and panics
    /// on a certificate it cannot parse), so connect: to a listener that
    /// reads the first bytes, which must be a TLS handshake record.
    #[tokio::test]
    async fn the_sdk_client_connects_with_tls_over_the_shared_roots() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.unwrap();
            first[0]
        });
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(sdk_http_client())
            .credentials_provider(aws_sdk_sns::config::Credentials::new("a", "b", None, None, "test"))
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("https://127.0.0.1:{port}"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let call = aws_sdk_sns::Client::new(&config).list_topics().send();
        let (first_byte, result) = tokio::join!(server, call);
        assert_eq!(first_byte.unwrap(), 0x16, "a TLS handshake record");
        assert!(result.is_err(), "the listener closed without answering");
    }
}
