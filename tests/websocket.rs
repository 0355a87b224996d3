//! WebSockets through the real server: a tokio-tungstenite echo upstream,
//! the handshake judged like any request, the tunnel and its bounds
//! (`max_tunnels`, `tunnel_idle_timeout`, credential expiry, a reload that
//! removes the secret), and upstreams that lie about switching.
#![allow(clippy::result_large_err)] // tungstenite's handshake callback type

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use portal_gate::Clock;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server; remembers the path and headers of every
/// handshake it accepted.
struct EchoUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
}

impl EchoUpstream {
    async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>> = Arc::default();
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let callback =
                        |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                         response| {
                            record
                                .lock()
                                .unwrap()
                                .push((request.uri().to_string(), request.headers().clone()));
                            Ok(response)
                        };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
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
        EchoUpstream { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<(String, http::HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

const RULES: &str = r#"
[[pages]]
path = "/live/**"
access = "verified"

[[pages]]
path = "/open/**"
access = "public"

[[pages]]
path = "/static-only/**"
access = "public"
websocket = false
"#;

async fn start(upstream: &str, extra: &str) -> Running {
    Running::start(&config_for(upstream, &format!("{extra}\n{RULES}"))).await
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket handshake through the gate to `path`, with extra headers.
async fn connect(
    gate: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{gate}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(gate).await.expect("connect");
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(ws, _)| ws)
}

fn refused_status(error: tokio_tungstenite::tungstenite::Error) -> u16 {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("not an HTTP refusal: {other}"),
    }
}

async fn echo(ws: &mut Socket, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer in time")
        .expect("open")
        .expect("a message");
    assert_eq!(answer, Message::text(text));
}

/// Whether the tunnel closes within `within` (the next read ends).
async fn closes_within(ws: &mut Socket, within: Duration) -> bool {
    match tokio::time::timeout(within, ws.next()).await {
        Err(_elapsed) => false,
        Ok(None | Some(Err(_))) => true,
        Ok(Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(other))) => panic!("unexpected message {other:?}"),
    }
}

#[tokio::test]
async fn the_echo_works_with_a_token_or_a_session_and_not_without() {
    let upstream = EchoUpstream::start().await;
    let gate = start(&upstream.url(), "").await;
    let token = token_for("ada@example.org");

    let mut ws = connect(
        gate.addr,
        &format!("/live/feed?auth-token={token}&x=1"),
        &[],
    )
    .await
    .expect("handshake with a URL token");
    echo(&mut ws, "hello").await;
    let bearer = format!("Bearer {token}");
    let mut ws2 = connect(gate.addr, "/live/feed", &[("authorization", &bearer)])
        .await
        .expect("handshake with a bearer");
    echo(&mut ws2, "again").await;

    // A session cookie, from the exchange of a navigation.
    let exchange = navigate(&format!("http://{}/live/?auth-token={token}", gate.addr))
        .send()
        .await;
    let cookie = session_cookie(&exchange);
    let mut ws3 = connect(gate.addr, "/live/feed", &[("cookie", &cookie)])
        .await
        .expect("handshake with a session");
    echo(&mut ws3, "session").await;

    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    let (uri, headers) = &seen[0];
    assert_eq!(
        uri, "/live/feed?x=1",
        "the token never reaches the upstream"
    );
    assert_eq!(headers["x-forwarded-email"], "ada@example.org");
    assert!(headers.get("authorization").is_none());
    assert!(seen[2].1.get("cookie").is_none());

    // Refused handshakes never reach the upstream.
    for (path, headers, status) in [
        ("/live/feed", vec![], 401),
        (
            "/live/feed",
            vec![("authorization", "Bearer pg1.k1.nope")],
            401,
        ),
        ("/static-only/x", vec![], 403),
        ("/live/a%2Fb", vec![], 400),
    ] {
        let error = connect(gate.addr, path, &headers).await.expect_err(path);
        assert_eq!(refused_status(error), status, "{path}");
    }
    // A public page takes an anonymous tunnel.
    let mut open = connect(gate.addr, "/open/chat", &[]).await.expect("public");
    echo(&mut open, "anyone").await;
    assert_eq!(upstream.seen().len(), 4);
}

#[tokio::test]
async fn a_tunnel_closes_when_its_credential_expires() {
    let upstream = EchoUpstream::start().await;
    let gate = start(&upstream.url(), "[limits]\ntunnel_idle_timeout = \"2s\"").await;
    let now = gate.clock.unix_now();
    let short = token_with(SECRET, "k1", "ada@example.org", ACCOUNT, now, now + 30);
    let bearer = format!("Bearer {short}");
    let mut ws = connect(gate.addr, "/live/feed", &[("authorization", &bearer)])
        .await
        .expect("handshake");
    echo(&mut ws, "before").await;
    // Past exp but within clock_skew (60 s): still open.
    gate.clock.advance(Duration::from_secs(80));
    assert!(!closes_within(&mut ws, Duration::from_millis(800)).await);
    echo(&mut ws, "within the skew").await;
    gate.clock.advance(Duration::from_secs(20));
    assert!(closes_within(&mut ws, Duration::from_secs(2)).await);
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("portal_gate_tunnels_closed_total{reason=\"expiry\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tunnel_closes_when_a_reload_removes_its_secret() {
    let upstream = EchoUpstream::start().await;
    let gate = start(&upstream.url(), "").await;
    let bearer = format!("Bearer {}", token_for("ada@example.org"));
    let mut ws = connect(gate.addr, "/live/feed", &[("authorization", &bearer)])
        .await
        .expect("handshake");
    let mut public = connect(gate.addr, "/open/chat", &[]).await.expect("public");
    echo(&mut ws, "before").await;
    gate.reload(&config_for(&upstream.url(), RULES).replace(SECRET, OTHER_SECRET));
    assert!(closes_within(&mut ws, Duration::from_secs(3)).await);
    // A tunnel opened without a credential has none to lose.
    echo(&mut public, "still here").await;
}

#[tokio::test]
async fn max_tunnels_and_the_idle_timeout_hold() {
    let upstream = EchoUpstream::start().await;
    let gate = start(
        &upstream.url(),
        "[limits]\nmax_tunnels = 1\ntunnel_idle_timeout = \"1s\"",
    )
    .await;
    let mut first = connect(gate.addr, "/open/a", &[]).await.expect("first");
    let error = connect(gate.addr, "/open/b", &[])
        .await
        .expect_err("second");
    assert_eq!(refused_status(error), 503);
    // Traffic keeps it open past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        echo(&mut first, "tick").await;
    }
    // ...silence closes it, and frees its place.
    assert!(closes_within(&mut first, Duration::from_secs(3)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect(gate.addr, "/open/c", &[])
        .await
        .expect("a place again");
    echo(&mut again, "hi").await;
    // The client goes away (no close handshake, so the upstream cannot
    // close first): the gate reads the client's end first.
    drop(again);
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = gate.metrics().await;
        if metrics.contains("reason=\"client\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("portal_gate_tunnels_closed_total{reason=\"client\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portal_gate_tunnels_closed_total{reason=\"idle\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portal_gate_tunnels_refused_total{reason=\"limit\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portal_gate_tunnels_open 0"), "{metrics}");
}

/// An upstream that answers every request on a connection with `answer`
/// and records every byte it receives.
async fn lying_upstream(answer: &'static str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            record.lock().unwrap().extend_from_slice(&buf[..n]);
                            if !answered {
                                answered = true;
                                let _ = stream.write_all(answer.as_bytes()).await;
                            }
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

const HANDSHAKE: &str = "GET /open/ws HTTP/1.1\r\nHost: gate\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const SMUGGLED: &str = "GET /live/secret HTTP/1.1\r\nHost: gate\r\n\r\n";

#[tokio::test]
async fn an_upstream_that_does_not_switch_leaves_no_tunnel() {
    for (answer, status) in [
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
        ("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n", 426),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            502,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            502,
        ),
    ] {
        let (url, received) = lying_upstream(answer).await;
        let gate = start(&url, "").await;
        let mut client = TcpStream::connect(gate.addr).await.expect("connect");
        client.write_all(HANDSHAKE.as_bytes()).await.unwrap();
        let first = read_head(&mut client).await;
        assert_eq!(raw_status(&first), status, "{answer}: {first}");
        // The connection is still HTTP: raw bytes are a request the gate
        // judges (no credential: 401), never bytes for the upstream.
        client.write_all(SMUGGLED.as_bytes()).await.unwrap();
        let second = read_head(&mut client).await;
        if !second.is_empty() {
            assert_eq!(raw_status(&second), 401, "{answer}: {second}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
        assert!(seen.contains("GET /open/ws"), "{seen}");
        assert!(!seen.contains("/live/secret"), "smuggled through: {seen}");
    }
}

/// What arrives on `client` within a second: at least a response head.
async fn read_head(client: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    // Give a body a moment to arrive with its head.
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await
    {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn upgrades_that_are_not_websocket_handshakes_never_tunnel() {
    let upstream = RecordingUpstream::start().await;
    let gate = start(&upstream.url(), "").await;
    // h2c: not a WebSocket; the upgrade fields are dropped and the GET goes on.
    let reply = get(&format!("http://{}/open/h2c", gate.addr))
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &upstream.seen_under("/open/h2c")[0].headers;
    assert!(seen.get("upgrade").is_none() && seen.get("http2-settings").is_none());
    // A WebSocket upgrade on a POST, or without its key: 400, never sent.
    for (method, key) in [("POST", true), ("GET", false)] {
        let mut call = request(
            http::Method::from_bytes(method.as_bytes()).unwrap(),
            &format!("http://{}/open/ws", gate.addr),
        )
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13");
        if key {
            call = call.header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        assert_eq!(
            call.send().await.status,
            StatusCode::BAD_REQUEST,
            "{method}"
        );
    }
    assert!(upstream.seen_under("/open/ws").is_empty());
}

#[tokio::test]
async fn on_shutdown_a_tunnel_gets_the_grace_period_then_closes() {
    let upstream = EchoUpstream::start().await;
    let mut gate = start(&upstream.url(), "[limits]\nshutdown_grace = \"1s\"").await;
    let mut ws = connect(gate.addr, "/open/chat", &[])
        .await
        .expect("handshake");
    echo(&mut ws, "before").await;
    let asked = tokio::time::Instant::now();
    drop(gate.stop.take());
    tokio::time::sleep(Duration::from_millis(300)).await;
    echo(&mut ws, "during the grace").await;
    assert!(closes_within(&mut ws, Duration::from_secs(3)).await);
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(
        TcpStream::connect(gate.addr).await.is_err(),
        "no new connection"
    );
}

// The echo upstream runs in this process: the log waits block a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_records_a_tunnel_at_open_and_at_close() {
    let upstream = EchoUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), RULES);
    let gate = BinaryProcess::start(&path);
    let addr: SocketAddr = gate
        .url("")
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let token = token_for("ada@example.org");
    let bearer = format!("Bearer {token}");
    let mut ws = connect(addr, "/live/feed", &[("authorization", &bearer)])
        .await
        .expect("handshake");
    echo(&mut ws, "0123456789").await;
    let opened = gate.wait_for_log("status=101");
    assert!(
        opened.contains("decision=\"tunnel\"") || opened.contains("decision=tunnel"),
        "{opened}"
    );
    drop(ws);
    let closed = gate.wait_for_log("tunnel-closed");
    assert!(
        closed.contains("reason=\"client\"") || closed.contains("reason=client"),
        "{closed}"
    );
    assert!(closed.contains("bytes_to_upstream="), "{closed}");
    assert!(closed.contains("duration_ms="), "{closed}");
    assert!(!gate.log_text().contains(&token), "a token in the log");
}

#[tokio::test]
async fn a_tunnel_closes_when_its_user_is_revoked() {
    let upstream = EchoUpstream::start().await;
    let gate = start(&upstream.url(), "").await;
    let now = gate.clock.unix_now();
    let eve = format!("Bearer {}", gate.token_for("eve@example.org"));
    let ada = format!("Bearer {}", gate.token_for("ada@example.org"));
    let mut eve_ws = connect(gate.addr, "/live/feed", &[("authorization", &eve)])
        .await
        .expect("eve");
    let mut ada_ws = connect(gate.addr, "/live/feed", &[("authorization", &ada)])
        .await
        .expect("ada");
    let before = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now + 1));
    let revoked = format!("[[revocations]]\nemail = \"eve@example.org\"\nbefore = \"{before}\"\n");
    gate.reload(&config_for(&upstream.url(), &format!("{RULES}\n{revoked}")));
    assert!(closes_within(&mut eve_ws, Duration::from_secs(3)).await);
    echo(&mut ada_ws, "still here").await;
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("portal_gate_tunnels_closed_total{reason=\"revocation\"} 1"),
        "{metrics}"
    );
}
