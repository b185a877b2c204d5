//! The AWS SDK's HTTP client: reqwest, the client the Admin API already uses,
//! behind the SDK's `HttpClient` trait.
//!
//! The SDK's own client (aws-smithy-http-client) brought a second HTTPS stack
//! into the one binary every function runs: its hyper client, its TLS
//! connector and HTTP/2 — size, and build time (docs/performance.md).
//!
//! What the SDK asks of a client, as its traits in aws-smithy-runtime-api
//! document them, and how each is met here:
//! - `http_connector` is called with the operation's connect and read timeouts,
//!   and the client caches connectors across requests: one connector per
//!   distinct connect timeout, built on first use (so the trusted roots are
//!   parsed when the first request needs them, not when a client is made);
//! - the connect timeout bounds the TCP and TLS set-up (reqwest's
//!   `connect_timeout`); the read timeout bounds the wait for the answer
//!   (the SDK's own client stops it at the headers; here it also covers the
//!   body, which is read whole; no configuration here sets one);
//! - failures are `ConnectorError`s whose kind drives the SDK's retries:
//!   timeouts and I/O errors are retried as transient, a request that could
//!   not be built is the caller's error and is not;
//! - redirects are not followed (the SDK's client does not; a 3xx is the
//!   service's answer to the signed request).

use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The HTTP client every SDK configuration of this workspace gets
/// (through [`crate::aws::config_loader`] and [`crate::aws::lambda_sdk_config`]).
pub fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(ReqwestHttpClient::default())
}

#[derive(Debug, Default)]
struct ReqwestHttpClient {
    /// Connectors by connect timeout; a handful at most (one per distinct
    /// timeout configuration in the process), so a list.
    connectors: Mutex<Vec<(Option<Duration>, SharedHttpConnector)>>,
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let connect = settings.connect_timeout();
        let read = settings.read_timeout();
        // A poisoned lock only means another thread panicked while pushing;
        // the list itself is still whole.
        let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        let client = match connectors.iter().find(|(timeout, _)| *timeout == connect) {
            Some((_, connector)) => connector.clone(),
            None => {
                let connector = SharedHttpConnector::new(ReqwestConnector {
                    client: crate::tls::sdk_reqwest_client(connect.unwrap_or(crate::tls::CONNECT_TIMEOUT)),
                });
                connectors.push((connect, connector.clone()));
                connector
            }
        };
        match read {
            // The read timeout is per operation, the pool per connect timeout.
            Some(read) => SharedHttpConnector::new(WithReadTimeout { inner: client, read }),
            None => client,
        }
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    /// An error here (no usable CA roots) fails every request with it; the
    /// functions have already refused to start on it (`tls::check`).
    client: Result<reqwest::Client, crate::tls::HttpClientError>,
}

#[derive(Debug)]
struct WithReadTimeout {
    inner: SharedHttpConnector,
    read: Duration,
}

impl HttpConnector for WithReadTimeout {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = self.inner.call(request);
        let read = self.read;
        HttpConnectorFuture::new(async move {
            match tokio::time::timeout(read, call).await {
                Ok(result) => result,
                Err(_) => Err(ConnectorError::timeout(
                    format!("no response within the read timeout of {read:?}").into(),
                )),
            }
        })
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let client = client.map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.execute(to_reqwest(request)?).await.map_err(classify)?;
            from_reqwest(response).await
        })
    }
}

/// The SDK's request as reqwest's. Every operation the workspace calls sends
/// an in-memory body; a streaming one is refused rather than half-sent.
fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let bytes = body
        .bytes()
        .ok_or_else(|| {
            ConnectorError::user("a streaming request body (not supported by this client)".into())
        })?
        .to_vec();
    reqwest::Request::try_from(http::Request::from_parts(parts, bytes))
        .map_err(|e| ConnectorError::user(e.into()))
}

/// reqwest's response as the SDK's, the body read whole (AWS API answers are
/// small JSON or XML documents).
async fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(classify)?;
    let mut out = http::Response::new(SdkBody::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    HttpResponse::try_from(out).map_err(|e| ConnectorError::other(e.into(), None))
}

/// reqwest's error as the kind the SDK's retry classifier reads: a timeout, an
/// I/O failure (connect, send, a body cut short: transient, retried), or a
/// request that could not be built (the caller's error).
fn classify(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_builder() {
        ConnectorError::user(error.into())
    } else {
        ConnectorError::io(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn components() -> RuntimeComponents {
        RuntimeComponentsBuilder::for_tests().build().unwrap()
    }

    fn connector(settings: HttpConnectorSettings) -> SharedHttpConnector {
        ReqwestHttpClient::default().http_connector(&settings, &components())
    }

    /// A one-shot HTTP server: answers the first request with `answer` and
    /// hands back what it received.
    async fn server(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&received);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if received.len() >= head_end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        (port, task)
    }

    fn request(port: u16, body: &str) -> HttpRequest {
        let mut request = HttpRequest::new(SdkBody::from(body.to_owned()));
        request
            .set_uri(format!("http://127.0.0.1:{port}/path?x=1"))
            .unwrap();
        request.set_method("POST").unwrap();
        request
            .headers_mut()
            .insert("x-amz-target", "TrentService.DescribeKey");
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        request
    }

    #[tokio::test]
    async fn a_request_and_its_answer_cross_unchanged() {
        let (port, received) =
            server("HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\nx-amzn-requestid: r-1\r\n\r\n{\"a\":1}")
                .await;
        let response = connector(HttpConnectorSettings::default())
            .call(request(port, "{\"KeyId\":\"k\"}"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
        assert_eq!(response.body().bytes(), Some(&b"{\"a\":1}"[..]));
        let received = received.await.unwrap();
        assert!(received.starts_with("POST /path?x=1 HTTP/1.1\r\n"), "{received}");
        assert!(
            received.contains("x-amz-target: TrentService.DescribeKey\r\n"),
            "{received}"
        );
        assert_eq!(
            received.matches("content-length").count(),
            1,
            "one length header: {received}"
        );
        assert!(received.ends_with("{\"KeyId\":\"k\"}"), "{received}");
    }

    #[tokio::test]
    async fn a_redirect_is_the_answer_not_followed() {
        let (port, _received) = server(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let response = connector(HttpConnectorSettings::default())
            .call(request(port, ""))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 307);
    }

    #[tokio::test]
    async fn no_listener_is_an_io_error_the_sdk_retries() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let error = connector(HttpConnectorSettings::default())
            .call(request(port, ""))
            .await
            .unwrap_err();
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_after_the_read_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _silent = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let settings = HttpConnectorSettings::builder()
            .read_timeout(Duration::from_millis(200))
            .build();
        let started = std::time::Instant::now();
        let error = connector(settings).call(request(port, "")).await.unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_streaming_body_is_refused_before_anything_is_sent() {
        // A body whose bytes are not in memory (here: already taken).
        let mut request = HttpRequest::new(SdkBody::taken());
        request.set_uri("http://127.0.0.1:9/").unwrap();
        let error = connector(HttpConnectorSettings::default())
            .call(request)
            .await
            .unwrap_err();
        assert!(error.is_user(), "{error:?}");
    }

    #[test]
    fn connectors_are_shared_per_connect_timeout() {
        let client = ReqwestHttpClient::default();
        let settings = |ms| {
            HttpConnectorSettings::builder()
                .connect_timeout(Duration::from_millis(ms))
                .build()
        };
        client.http_connector(&settings(3100), &components());
        client.http_connector(&settings(3100), &components());
        client.http_connector(&settings(1000), &components());
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
    }
}
