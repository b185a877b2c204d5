//! Real TLS, end to end: a local HTTPS server with a certificate from a test
//! CA, and both of the process's HTTPS stacks — the Admin API client
//! (reqwest) and the AWS SDK — connecting to it. Trusting the CA, the
//! handshake completes; trusting another, it fails; an unreadable or empty
//! CA bundle is a named configuration error before any connection.
//!
//! The roots are read once per process, so each case runs in a child
//! process (this test binary again) with its own `SSL_CERT_FILE`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const CHILD: &str = "CMEK_TLS_CHILD_URL";

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// A TLS server on 127.0.0.1 answering every request with a small JSON
/// body; counts the handshakes that completed.
fn serve(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> (u16, Arc<AtomicUsize>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let completed = Arc::new(AtomicUsize::new(0));
    let counter = completed.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let config = config.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                if conn.complete_io(&mut tcp).is_err() || conn.is_handshaking() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut reader = std::io::BufReader::new(&mut tls);
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let answer = if first.starts_with("GET /v1/") {
                    r#"{"id": "wrkspc_01TLS", "name": "tls"}"#
                } else {
                    r#"{"Keys": [], "Truncated": false}"#
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.flush();
            });
        }
    });
    (port, completed)
}

/// What the child saw: `ready` (the roots loaded), then one line per stack.
fn run_child(url: &str, cert_file: &std::path::Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "handshakes_need_the_trusted_ca_and_a_bad_bundle_is_named",
            "--nocapture",
        ])
        .env(CHILD, url)
        .env("SSL_CERT_FILE", cert_file)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The child: both stacks against the server, results on stdout.
fn child(url: &str) {
    match cmek::tls::check() {
        Ok(()) => println!("CHILD roots: ok"),
        Err(e) => {
            println!("CHILD roots: error: {e}");
            match cmek::tls::http_client() {
                Ok(_) => println!("CHILD reqwest: built despite no roots"),
                Err(e) => println!("CHILD reqwest: refused: {e}"),
            }
            return;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin = cmek::admin_api::AdminApiClient::new(
            url,
            cmek::admin_api::AdminKey::new("sk-ant-admin01-tls-test"),
            cmek::admin_api::ClientOptions {
                retry: cmek::admin_api::RetryPolicy {
                    max_retries: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        match admin.get_workspace(&"wrkspc_01TLS".parse().unwrap()).await {
            Ok(w) => println!("CHILD reqwest: ok {}", w.id),
            Err(e) => println!("CHILD reqwest: failed: {e}"),
        }
        let config = cmek::aws::config_loader()
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .region(aws_config::Region::new("us-east-2"))
            .endpoint_url(url)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        match aws_sdk_kms::Client::new(&config).list_keys().send().await {
            Ok(_) => println!("CHILD sdk: ok"),
            Err(e) => println!(
                "CHILD sdk: failed: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            ),
        }
    });
}

#[test]
fn handshakes_need_the_trusted_ca_and_a_bad_bundle_is_named() {
    if let Ok(url) = std::env::var(CHILD) {
        return child(&url);
    }
    let dir = std::env::temp_dir().join(format!("cmek-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_cert, ca_key) = ca("cmek test CA");
    let (other, _) = ca("someone else's CA");
    let trusted = dir.join("trusted.pem");
    std::fs::write(&trusted, ca_cert.pem()).unwrap();
    let untrusted = dir.join("untrusted.pem");
    std::fs::write(&untrusted, other.pem()).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (port, completed) = serve(&ca_cert, &ca_key);
    let url = format!("https://127.0.0.1:{port}");

    let out = run_child(&url, &trusted);
    assert!(out.contains("CHILD reqwest: ok wrkspc_01TLS"), "{out}");
    assert!(out.contains("CHILD sdk: ok"), "{out}");
    assert_eq!(
        completed.load(Ordering::SeqCst),
        2,
        "two handshakes completed: {out}"
    );

    // Another CA: both stacks refuse the server's certificate.
    let out = run_child(&url, &untrusted);
    assert!(out.contains("CHILD reqwest: failed"), "{out}");
    assert!(out.contains("CHILD sdk: failed"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("unknownissuer") || out.contains("UnknownIssuer"),
        "{out}"
    );
    assert_eq!(
        completed.load(Ordering::SeqCst),
        2,
        "no handshake completed: {out}"
    );

    // No usable root: named, before any connection, and no client is built.
    for bad in [empty.clone(), dir.join("missing.pem")] {
        let out = run_child(&url, &bad);
        assert!(
            out.contains("CHILD roots: error") && out.contains("SSL_CERT_FILE"),
            "{bad:?}: {out}"
        );
        assert!(out.contains("CHILD reqwest: refused"), "{bad:?}: {out}");
    }
    assert_eq!(completed.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
