//! The process's TLS: one crypto provider (ring) and one set of trusted root
//! certificates, shared by every HTTPS client of the process — reqwest, for
//! the Admin API, CloudFormation's pre-signed URLs and (through
//! [`crate::sdk_http`]) the AWS SDK.
//!
//! Left to itself, each client loads the system's CA certificates: on Linux
//! that is the bundle plus every file of the certificate directory, read and
//! parsed. Begin, which calls AWS and then builds its Admin API client, paid
//! for it twice in every cold start. Here the roots are read once, duplicates
//! and certificates rustls cannot use as a trust anchor are dropped, and
//! every client gets the same parsed store.
//!
//! ring rather than aws-lc (the SDK's and reqwest's default): the functions
//! need TLS 1.2/1.3 client handshakes and nothing else, and aws-lc costs about
//! 2 MB of each binary against the 6 MB budget.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// The connect timeout of every HTTP client this crate builds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const USER_AGENT: &str = concat!("cmek-provisioner/", env!("CARGO_PKG_VERSION"));

static ROOTS: LazyLock<Result<Vec<CertificateDer<'static>>, HttpClientError>> = LazyLock::new(load_roots);

/// The system's CA bundle file alone when there is one; everything the
/// platform offers otherwise, or when `SSL_CERT_FILE`/`SSL_CERT_DIR` say where
/// to look. On Debian and Amazon Linux the certificate directory holds the
/// bundle's certificates again, one file or hashed link each: walking it was
/// ~300 stat calls and ~150 reads per cold start for no new root.
///
/// No usable root at all, or an `SSL_CERT_FILE` that cannot be read or holds
/// nothing usable, is an error: falling back to other roots (or to none)
/// would fail every handshake later, or trust what the operator did not name.
fn load_roots() -> Result<Vec<CertificateDer<'static>>, HttpClientError> {
    let configured_file = std::env::var_os("SSL_CERT_FILE");
    let configured = configured_file.is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    let bundle = openssl_probe::probe().cert_file;
    let found = match bundle {
        Some(file) if !configured => {
            let from_bundle = rustls_native_certs::load_certs_from_paths(Some(&file), None);
            if from_bundle.certs.is_empty() {
                rustls_native_certs::load_native_certs()
            } else {
                from_bundle
            }
        }
        _ => rustls_native_certs::load_native_certs(),
    };
    for error in &found.errors {
        tracing::warn!(%error, "could not read a CA certificate");
    }
    let roots = usable(found.certs);
    if let Some(file) = configured_file
        && (roots.is_empty() || !found.errors.is_empty())
    {
        return Err(HttpClientError(format!(
            "SSL_CERT_FILE={} cannot be read or holds no usable CA certificate{}",
            file.to_string_lossy(),
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    if roots.is_empty() {
        return Err(HttpClientError(
            "no usable CA certificate was found (set SSL_CERT_FILE to a PEM bundle)".into(),
        ));
    }
    Ok(roots)
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
pub fn roots() -> Result<&'static [CertificateDer<'static>], HttpClientError> {
    ROOTS.as_deref().map_err(Clone::clone)
}

/// Fail at cold start, naming the cause, when no HTTPS connection could ever
/// be verified — rather than at the first call, or not at all.
pub fn check() -> Result<(), HttpClientError> {
    roots().map(|_| ())
}

/// Why an HTTP client could not be built (no TLS versions the provider
/// supports, or reqwest's own set-up failing): a configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the HTTPS client: {0}")]
pub struct HttpClientError(String);

/// The shared roots as rustls trust anchors, parsed once: every reqwest
/// client (the Admin API's, CloudFormation's, the AWS SDK's) trusts the same
/// store.
static ROOT_STORE: LazyLock<Result<Arc<rustls::RootCertStore>, HttpClientError>> = LazyLock::new(|| {
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots()?.iter().cloned());
    Ok(Arc::new(store))
});

/// The rustls configuration of every reqwest client: ring, the shared roots
/// (and only those), HTTP/1.1 (the only version the clients are built with;
/// every AWS and Anthropic endpoint the functions call speaks it).
fn rustls_config() -> Result<rustls::ClientConfig, HttpClientError> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpClientError(e.to_string()))?
            .with_root_certificates(ROOT_STORE.as_ref().map(Arc::clone).map_err(Clone::clone)?)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client with this crate's user agent, connect timeout and TLS.
pub fn http_client() -> Result<reqwest::Client, HttpClientError> {
    with_tls(
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT),
    )
}

/// The reqwest client behind the AWS SDK's connectors
/// ([`crate::sdk_http`]): the same TLS as [`http_client`], the SDK's connect
/// timeout, no redirects, and no user agent of ours (the SDK sends its own).
pub fn sdk_reqwest_client(connect_timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    with_tls(
        reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none()),
    )
}

/// Every reqwest client of the process is built here, on [`rustls_config`]:
/// reqwest is built without a crypto provider, so a client made any other
/// way panics when built.
fn with_tls(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, HttpClientError> {
    builder
        .tls_backend_preconfigured(rustls_config()?)
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_non_anchors_are_dropped() {
        let Some(good) = roots().unwrap().first().cloned() else {
            panic!("this machine has no CA certificates; the test needs one");
        };
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let kept = usable(vec![good.clone(), junk, good.clone()]);
        assert_eq!(kept, vec![good]);
    }

    #[test]
    fn the_reqwest_client_builds_over_the_shared_roots() {
        assert!(!roots().unwrap().is_empty(), "no CA certificates were found");
        let config = rustls_config().unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        http_client().expect("reqwest client");
    }

    /// Both stacks must offer TLS: a listener reads the reqwest client's
    /// first bytes, which must be a TLS handshake record.
    #[tokio::test]
    async fn the_reqwest_client_speaks_tls() {
        let (port, first_byte) = first_byte_listener().await;
        let result = http_client()
            .unwrap()
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await;
        assert_eq!(first_byte.await.unwrap(), 0x16, "a TLS handshake record");
        assert!(result.is_err(), "the listener closed without answering");
    }

    async fn first_byte_listener() -> (u16, tokio::task::JoinHandle<u8>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.unwrap();
            first[0]
        });
        (port, server)
    }

    /// The SDK parses the trust store only when it first connects (and panics
    /// on a certificate it cannot parse), so connect: to a listener that
    /// reads the first bytes, which must be a TLS handshake record.
    #[tokio::test]
    async fn the_sdk_client_connects_with_tls_over_the_shared_roots() {
        let (port, server) = first_byte_listener().await;
        let config = crate::aws::config_loader()
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
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
