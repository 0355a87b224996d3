//! TLS on the gate and towards the upstream, with certificates made in the
//! test: HTTPS over HTTP/1.1 and HTTP/2 (ALPN), old protocol versions
//! refused, private upstream CAs, and located errors for bad files.

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A private CA and a leaf certificate for 127.0.0.1 and localhost.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = KeyPair::generate().expect("leaf key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params");
    let cert = params.signed_by(&key, &ca).expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8").to_string()
}

/// A gate in-process with `pki`'s certificate (files written to `dir`)
/// in front of a recording upstream.
async fn tls_gate(pki: &Pki, dir: &Path) -> (RecordingUpstream, GateProcess) {
    let cert = write(dir, "cert.pem", &pki.cert_pem);
    let key = write(dir, "key.pem", &pki.key_pem);
    let upstream = RecordingUpstream::start().await;
    let tls = format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n");
    let gate = GateProcess::start(&config_for(&upstream.url(), &tls)).await;
    (upstream, gate)
}

/// A client that trusts only `ca_pem` (ALPN is set by the connector).
fn tls_client(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn https_get(
    config: rustls::ClientConfig,
    url: &str,
    http2: bool,
) -> (StatusCode, Version, String) {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client
        .request(
            Request::get(url)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("https request");
    read_reply(response).await
}

#[tokio::test]
async fn https_over_http1_and_http2_reaches_the_upstream() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let (upstream, gate) = tls_gate(&pki, dir.path()).await;
    let url = format!("https://127.0.0.1:{}/public/x", gate.addr.port());

    let (status, version, body) = https_get(tls_client(&pki.ca_pem), &url, false).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11));
    assert_eq!(body, "upstream: /public/x");
    let (status, version, _) = https_get(tls_client(&pki.ca_pem), &url, true).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));

    let token = token_for("ada@example.com");
    let verified = format!(
        "https://127.0.0.1:{}/docs/?auth-token={token}",
        gate.addr.port()
    );
    let (status, _, _) = https_get(tls_client(&pki.ca_pem), &verified, true).await;
    assert_eq!(status, StatusCode::OK);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.headers["x-forwarded-proto"], "https");
    }
    assert_eq!(seen[2].headers["x-forwarded-email"], "ada@example.com");
    gate.stop().await;
}

/// A TLS 1.1 ClientHello, written out by hand: rustls cannot speak it, so
/// no client library here can make one.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version: TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]); // two TLS 1.1 suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn a_client_offering_only_tls_1_1_is_refused() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let (upstream, gate) = tls_gate(&pki, dir.path()).await;

    let mut stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    stream
        .write_all(&tls11_client_hello())
        .await
        .expect("hello");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    // The server answers with an alert record (content type 21), never a
    // ServerHello (a handshake record, content type 22).
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "expected a TLS alert, got {answer:?}"
    );
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

/// An HTTPS upstream with a certificate from `pki`'s private CA, offering
/// HTTP/2 and HTTP/1.1.
async fn https_upstream(pki: &Pki) -> std::net::SocketAddr {
    https_upstream_with(pki, &[b"h2", b"http/1.1"]).await.0
}

/// A TLS acceptor for an upstream with `pki`'s certificate, offering the
/// `alpn` protocols.
fn upstream_acceptor(pki: &Pki, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS upstream offering the `alpn` protocols, and a count of the TCP
/// connections it accepted.
async fn https_upstream_with(
    pki: &Pki,
    alpn: &[&[u8]],
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let acceptor = upstream_acceptor(pki, alpn);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let text = format!(
                        "secure upstream {:?}: {} ({} bytes)",
                        parts.version,
                        parts.uri.path(),
                        body.len()
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_needs_ca_file() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let addr = https_upstream(&pki).await;
    let url = format!("https://127.0.0.1:{}", addr.port());

    let trusting = GateProcess::start(&config_for(&url, "").replace(
        "\ntimeout = \"1s\"",
        &format!("\ntimeout = \"1s\"\nca_file = \"{ca}\""),
    ))
    .await;
    let reply = get(&trusting.url("/public/x")).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The gate speaks HTTP/2 to an upstream that offers it.
    assert_eq!(reply.body, "secure upstream HTTP/2.0: /public/x (0 bytes)");
    // A body goes over HTTP/2 as well (the `Connection: close` that keeps
    // an HTTP/1.1 connection from the pool has no place there).
    let post = request(http::Method::POST, &trusting.url("/public/form"))
        .body("name=ada")
        .send()
        .await;
    assert_eq!(
        post.body,
        "secure upstream HTTP/2.0: /public/form (8 bytes)"
    );
    trusting.stop().await;

    let untrusting = GateProcess::start(&config_for(&url, "")).await;
    let reply = get(&untrusting.url("/public/x")).send().await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    untrusting.stop().await;
}

#[tokio::test]
async fn over_https_a_request_with_a_body_never_shares_its_upstream_connection() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (addr, connections) = https_upstream_with(&pki, &[b"http/1.1"]).await;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let gate = GateProcess::start(&config_for(&url, "").replace(
        "\ntimeout = \"1s\"",
        &format!("\ntimeout = \"1s\"\nca_file = \"{ca}\""),
    ))
    .await;
    let count = || connections.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..3 {
        let reply = get(&gate.url(&format!("/public/{i}"))).send().await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(count(), 1, "body-less requests share one connection");
    let post = request(http::Method::POST, &gate.url("/public/form"))
        .body("name=ada")
        .send()
        .await;
    assert_eq!(
        post.body,
        "secure upstream HTTP/1.1: /public/form (8 bytes)"
    );
    let after = get(&gate.url("/public/after")).send().await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(count(), 2, "the POST's connection was not reused");
    gate.stop().await;
}

#[test]
fn bad_certificate_files_are_errors_that_name_the_file() {
    let a = pki();
    let b = pki();
    let dir = tempfile::tempdir().expect("dir");
    let cert = write(dir.path(), "cert.pem", &a.cert_pem);
    let other_key = write(dir.path(), "other-key.pem", &b.key_pem);
    let garbage = write(dir.path(), "garbage.pem", "not pem at all");
    let missing = dir
        .path()
        .join("missing.pem")
        .to_str()
        .expect("utf-8")
        .to_string();
    for (cert, key, key_name, file) in [
        (&missing, &other_key, "tls.cert", "missing.pem"),
        (&cert, &garbage, "tls.key", "garbage.pem"),
        (&cert, &other_key, "tls.key", "other-key.pem"),
    ] {
        let text = config_for(
            "http://127.0.0.1:9",
            &format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
        );
        let err =
            portal_gate::Config::parse(&text, Path::new("gate.toml")).expect_err("bad tls files");
        assert_eq!(err.key.as_deref(), Some(key_name), "{err}");
        assert!(err.to_string().contains(file), "{err}");
        assert!(err.line.is_some());
    }
}

/// A TLS connection to `addr` trusting `ca_pems`; the server's leaf
/// certificate and an HTTP/1.1 sender on that one connection.
async fn connect(
    addr: std::net::SocketAddr,
    ca_pems: &[&str],
) -> (
    CertificateDer<'static>,
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0]
        .clone()
        .into_owned();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1");
    tokio::spawn(conn);
    (leaf, sender)
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> StatusCode {
    let request = Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("answer on the same connection");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections() {
    let (first, second) = (pki(), pki());
    let dir = tempfile::tempdir().expect("dir");
    let cert = write(dir.path(), "cert.pem", &first.cert_pem);
    let key = write(dir.path(), "key.pem", &first.key_pem);
    let upstream = RecordingUpstream::start().await;
    let config = write(
        dir.path(),
        "gate.toml",
        &config_for(
            &upstream.url(),
            &format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
        ),
    );
    let gate = BinaryProcess::start_with(Path::new(&config), &["--watch"]);
    let cas = [first.ca_pem.as_str(), second.ca_pem.as_str()];

    let (leaf, mut kept) = connect(gate.addr, &cas).await;
    assert_eq!(
        leaf.as_ref(),
        CertificateDer::from_pem_slice(first.cert_pem.as_bytes())
            .expect("pem")
            .as_ref()
    );
    assert_eq!(send(&mut kept, "/public/a").await, StatusCode::OK);

    // Key first, then certificate, each replaced whole: the watcher may
    // see the pair half-written once (refused, logged) and then whole.
    write(dir.path(), "key.pem", &second.key_pem);
    write(dir.path(), "cert.pem", &second.cert_pem);
    gate.wait_for_log("configuration reloaded");

    // The open connection goes on; a new one gets the new certificate.
    assert_eq!(send(&mut kept, "/public/b").await, StatusCode::OK);
    let (leaf, mut fresh) = connect(gate.addr, &cas).await;
    assert_eq!(
        leaf.as_ref(),
        CertificateDer::from_pem_slice(second.cert_pem.as_bytes())
            .expect("pem")
            .as_ref()
    );
    assert_eq!(send(&mut fresh, "/public/c").await, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 3);
}

/// A WebSocket to an `https://` upstream: the handshake goes over TLS with
/// ALPN `http/1.1` only (the upstream offers h2 too), and the tunnel
/// carries the frames.
#[tokio::test]
async fn a_websocket_reaches_an_https_upstream_over_http1() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let acceptor = upstream_acceptor(&pki, &[b"h2", b"http/1.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let alpn_seen: Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let record = Arc::clone(&alpn_seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(stream).await else {
                continue;
            };
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            record.lock().unwrap().push(alpn);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let data = message.is_text() || message.is_binary();
                    if data && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let url = format!("https://127.0.0.1:{}", addr.port());
    let gate = GateProcess::start(&config_for(&url, "").replace(
        "\ntimeout = \"1s\"",
        &format!("\ntimeout = \"1s\"\nca_file = \"{ca}\""),
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/public/ws", gate.addr), stream)
            .await
            .expect("handshake through the gate");
    ws.send(Message::text("over tls")).await.expect("send");
    let echoed = ws.next().await.expect("open").expect("message");
    assert_eq!(echoed, Message::text("over tls"));
    assert_eq!(*alpn_seen.lock().unwrap(), [Some(b"http/1.1".to_vec())]);
    gate.stop().await;
}
