//! Resource limits, host checks, trusted proxies and token API rate
//! limiting, through the real server.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use http::{Method, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gate_with(extra: &str) -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    (upstream, gate)
}

#[tokio::test]
async fn oversized_query_is_414_and_not_forwarded() {
    let (upstream, gate) = gate_with("[limits]\nmax_query_len = 300\n").await;
    let long = get(&gate.url(&format!("/public/x?q={}", "a".repeat(400))))
        .send()
        .await;
    assert_eq!(long.status, StatusCode::URI_TOO_LONG);
    let fine = get(&gate.url(&format!("/public/x?q={}", "a".repeat(200))))
        .send()
        .await;
    assert_eq!(fine.status, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn tokens_over_the_configured_length_are_refused_before_decoding() {
    let (upstream, gate) = gate_with("[limits]\nmax_token_len = 100\n").await;
    let token = token_for("ada@example.com");
    assert!(token.len() > 100);
    let reply = get(&gate.url("/docs/x")).bearer(&token).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let (upstream, gate) = gate_with("[limits]\nmax_headers = 20\n").await;
    let mut many = String::from("GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
    for n in 0..30 {
        many.push_str(&format!("X-H{n}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_status(&raw(gate.addr, many.as_bytes()).await), 431);

    let huge = format!(
        "GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    assert_eq!(raw_status(&raw(gate.addr, huge.as_bytes()).await), 431);
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_is_cut_off_after_the_header_read_timeout() {
    let (upstream, gate) = gate_with("[limits]\nheader_read_timeout = \"1s\"\n").await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gate kept a half-sent request open");
    assert!(started.elapsed() < Duration::from_secs(4));

    // An idle keep-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /public/y HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.expect("first answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection was never closed"
    );
    assert_eq!(upstream.seen().len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let (_upstream, gate) = gate_with("[limits]\nmax_connections = 1\n").await;
    // The first connection holds the only slot.
    let mut holder = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    holder
        .write_all(b"GET /public/a HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    holder.read_exact(&mut head).await.expect("answer");

    // A second client waits rather than being served or crashing the gate.
    let url = gate.url("/public/b");
    let second = tokio::spawn(async move { get(&url).send().await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second connection was served beyond the limit"
    );
    drop(holder);
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("served once a slot freed")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    gate.stop().await;
}

#[tokio::test]
async fn hosts_outside_public_hosts_get_421() {
    let (upstream, gate) =
        gate_with("public_hosts = [\"portal.example.com\", \"127.0.0.1\"]\n").await;
    let ok = get(&gate.url("/public/x")).send().await;
    assert_eq!(ok.status, StatusCode::OK, "127.0.0.1 on any port is served");
    let named = get(&gate.url("/public/x"))
        .header("host", "Portal.Example.com:8443")
        .send()
        .await;
    assert_eq!(named.status, StatusCode::OK);
    let other = get(&gate.url("/public/x"))
        .header("host", "evil.example.net")
        .send()
        .await;
    assert_eq!(other.status, StatusCode::MISDIRECTED_REQUEST);
    let answer = raw(gate.addr, b"GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 421, "no Host at all: {answer}");
    assert_eq!(upstream.seen().len(), 2);
    gate.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_appended_only_for_trusted_proxies() {
    let (upstream, gate) = gate_with("").await;
    get(&gate.url("/public/x"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await;
    gate.stop().await;
    let (trusted_upstream, trusted_gate) = gate_with("trusted_proxies = [\"127.0.0.0/8\"]\n").await;
    get(&trusted_gate.url("/public/x"))
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    trusted_gate.stop().await;

    assert_eq!(upstream.seen()[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream.seen()[0].headers["x-forwarded-proto"], "http");
    let trusted = &trusted_upstream.seen()[0].headers;
    assert_eq!(trusted["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
    assert_eq!(trusted["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn failed_api_attempts_are_rate_limited_and_successes_are_not() {
    let (_upstream, gate) =
        gate_with("[limits]\napi_failure_burst = 3\napi_failure_refill = \"1m\"\n").await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#);
    // Successful calls take nothing from the bucket.
    for _ in 0..10 {
        let ok = request(Method::POST, &gate.url("/auth/api/token"))
            .bearer(SECRET)
            .body(body.clone())
            .send()
            .await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    for _ in 0..3 {
        let wrong = request(Method::POST, &gate.url("/auth/api/token"))
            .bearer("guess")
            .body(body.clone())
            .send()
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let limited = request(Method::POST, &gate.url("/auth/api/token"))
        .bearer("guess")
        .body(body.clone())
        .send()
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // The attack: others' failures from the same address (every client of
    // a load balancer without `trusted_proxies` shares it) must not stop
    // the backend from minting. While the address is limited, the right
    // secret still passes, and wrong ones stay refused.
    let right = request(Method::POST, &gate.url("/auth/api/token"))
        .bearer(SECRET)
        .body(body.clone())
        .send()
        .await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    let still = request(Method::POST, &gate.url("/auth/api/token"))
        .bearer("guess")
        .body(body)
        .send()
        .await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    gate.stop().await;
}

#[test]
fn limits_out_of_range_are_config_errors() {
    for (extra, key) in [
        (
            "[limits]\nmax_header_bytes = 10\n",
            "limits.max_header_bytes",
        ),
        ("[limits]\nmax_token_len = 100000\n", "limits.max_token_len"),
        (
            "[limits]\nheader_read_timeout = \"0s\"\n",
            "limits.header_read_timeout",
        ),
        ("trusted_proxies = [\"not-an-ip\"]\n", "trusted_proxies"),
        (
            "[api]\nallowed_sources = [\"10.0.0.0/33\"]\n",
            "api.allowed_sources",
        ),
        ("[limits]\nbody_timeout = \"0s\"\n", "limits.body_timeout"),
        (
            "[limits]\nmax_inflight_per_connection = 0\n",
            "limits.max_inflight_per_connection",
        ),
        // Would overflow a clock reading plus the timeout: a panic on
        // every connection, were it accepted.
        (
            "[limits]\nidle_timeout = \"300000000000y\"\n",
            "limits.idle_timeout",
        ),
    ] {
        let text = config_for("http://127.0.0.1:9", extra);
        let err =
            portal_gate::Config::parse(&text, std::path::Path::new("g.toml")).expect_err(extra);
        assert_eq!(err.key.as_deref(), Some(key), "{err}");
        assert!(err.line.is_some(), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_and_slow_requests_are_not() {
    let upstream = RecordingUpstream::start().await;
    let text = config_for(&upstream.url(), "[limits]\nidle_timeout = \"1s\"\n")
        .replace("\ntimeout = \"1s\"", "\ntimeout = \"5s\"");
    let gate = GateProcess::start(&text).await;

    // An HTTP/2 connection (prior knowledge) that goes quiet is closed.
    let stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Full<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2 handshake");
    let closed = tokio::spawn(connection);
    let request = http::Request::get(gate.url("/public/h2"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(
        sender.send_request(request).await.expect("answer").status(),
        StatusCode::OK
    );
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), closed).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the idle timeout"
    );

    // A request that waits on a slow upstream longer than the idle timeout
    // still completes: the close is graceful.
    let slow = get(&gate.url("/public/../slow/x")).send().await;
    assert_eq!(slow.status, StatusCode::UNAUTHORIZED);
    let token = token_for("ada@example.com");
    let slow = get(&gate.url("/slow/x")).bearer(&token).send().await;
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.body);
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_after_two_idle_periods() {
    // A response far larger than the socket buffers, to a client that
    // never reads it: the gate's writes stall with the request answered.
    const SIZE: usize = 15 << 20;
    let (_site, gate) = gate_with_big_file(SIZE).await;
    // A small receive buffer that cannot grow: the stall does not depend
    // on how much the host's TCP autotuning would buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    let mut stream = socket.connect(gate.addr).await.expect("connect");
    stream
        .write_all(b"GET /public/big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    // One idle period asks the connection to close, the next one (no byte
    // moved, nothing waiting on the upstream) drops it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the connection was dropped, so reading ends");
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(
        received.len() < SIZE,
        "the stalled response was kept open and sent whole"
    );
    gate.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_api_attempts_count_per_client() {
    let (_upstream, gate) = gate_with(
        "trusted_proxies = [\"127.0.0.1/32\"]\n[limits]\napi_failure_burst = 2\napi_failure_refill = \"1m\"\n",
    )
    .await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#);
    let call = |secret: &'static str, client: &'static str| {
        request(Method::POST, &gate.url("/auth/api/token"))
            .bearer(secret)
            .header("x-forwarded-for", client)
            .body(body.clone())
            .send()
    };
    // One client behind the proxy guesses until it is limited...
    for _ in 0..2 {
        assert_eq!(
            call("guess", "203.0.113.9").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        call("guess", "203.0.113.9").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and the backend behind the same proxy is not.
    assert_eq!(call(SECRET, "203.0.113.10").await.status, StatusCode::OK);
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slowly_streaming_upstream_is_not_idle_but_client_pings_are() {
    let upstream = RecordingUpstream::start().await;
    let text = config_for(&upstream.url(), "[limits]\nidle_timeout = \"1s\"\n");
    let gate = GateProcess::start(&text).await;

    // The upstream sends half its body, then nothing for 1.5 s (over one
    // idle period): the gate waits on it rather than closing the
    // connection under the answer. (Two idle periods without a piece would
    // cut it, like a hung upstream.)
    let reply = get(&gate.url("/public/drip/report")).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "upstream: /public/drip/report");

    // An HTTP/2 client that PINGs every 200 ms but asks for nothing more is
    // idle all the same: the pings are not progress.
    let stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .expect("h2 handshake");
    let closed = tokio::spawn(connection);
    let request = http::Request::get(gate.url("/public/pinged"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(
        sender.send_request(request).await.expect("answer").status(),
        StatusCode::OK
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), closed).await;
    assert!(ended.is_ok(), "PINGs kept an idle HTTP/2 connection open");
    gate.stop().await;
}

/// A gate whose upstream is a directory holding `public/big.bin` of `size`
/// bytes, with a 1 s idle timeout.
async fn gate_with_big_file(size: usize) -> (tempfile::TempDir, GateProcess) {
    let site = tempfile::tempdir().expect("dir");
    std::fs::create_dir(site.path().join("public")).expect("mkdir");
    std::fs::write(site.path().join("public/big.bin"), vec![b'x'; size]).expect("file");
    std::fs::write(site.path().join("public/small.txt"), "small").expect("file");
    let text = config_for("http://unused.invalid", "[limits]\nidle_timeout = \"1s\"\n").replace(
        "url = \"http://unused.invalid\"",
        &format!("dir = \"{}\"", site.path().display()),
    );
    let gate = GateProcess::start(&text).await;
    (site, gate)
}

#[tokio::test(start_paused = true)]
async fn one_stalled_http2_stream_ends_the_connection_even_while_others_move() {
    let (_site, gate) = gate_with_big_file(4 << 20).await;
    let stream = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    // A small window per stream, a large one for the connection: the big
    // answer stalls once its window is full, small ones still pass.
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .expect("h2 handshake");
    let closed = tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(gate.url(path))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request")
    };
    // Never read: its window stays shut.
    let stalled = sender
        .send_request(get("/public/big.bin"))
        .await
        .expect("head");
    assert_eq!(stalled.status(), StatusCode::OK);
    let started = Instant::now();
    while !closed.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a stalled stream was kept while others moved"
        );
        // Another stream every 300 ms: progress on the connection.
        if let Ok(answer) = sender.send_request(get("/public/small.txt")).await {
            assert_eq!(answer.status(), StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "cut too early"
    );
    drop(stalled);
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_no_request_head_is_closed_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = RecordingUpstream::start().await;
    let extra = "[limits]\nheader_read_timeout = \"1s\"\nidle_timeout = \"30s\"\n";
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    // Nothing at all, or fewer bytes than hyper needs to tell HTTP/1.1
    // from HTTP/2: before, such a connection lived the idle timeout.
    for first in [&b""[..], b"GET / HTTP", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(gate.addr)
            .await
            .expect("connect");
        stream.write_all(first).await.expect("write");
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{first:?}: still open after 5 s");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{first:?}: closed after {took:?}"
        );
    }
    gate.stop().await;
}
