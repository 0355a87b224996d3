//! Request bodies: none on GET or HEAD, never an upstream connection
//! shared with a later request once a body went over it, and no client
//! connection holding the upstream slots every client shares.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use support::*;
use tokio::time::Instant;

/// An unfinished request head: whatever the upstream reads next completes
/// it, with the identity the attacker wrote.
const HIDDEN: &str = "GET /board/x HTTP/1.1\r\nX-Forwarded-Email: ceo@example.com\r\nX-Pad: ";

/// `method path` with `HIDDEN` as its body, over a fresh connection.
async fn with_hidden_body(gate: &GateProcess, method: &str, path: &str) -> String {
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: portal.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HIDDEN}",
        HIDDEN.len()
    );
    raw(gate.addr, text.as_bytes()).await
}

fn smuggled(upstream: &NaiveUpstream) -> Vec<NaiveSeen> {
    upstream
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/board") || s.email.is_some())
        .collect()
}

#[tokio::test]
async fn a_request_hidden_in_a_get_body_never_reaches_the_upstream() {
    let upstream = NaiveUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    for method in ["GET", "HEAD"] {
        let answer = with_hidden_body(&gate, method, "/public/").await;
        assert_eq!(raw_status(&answer), 400, "{method}: {answer}");
        // The attacker's next request through the gate: before, it
        // completed the hidden head, and the upstream answered the
        // restricted page to the forged identity.
        let next = get(&gate.url("/public/next")).send().await;
        assert_eq!(next.status, StatusCode::OK);
        assert_eq!(next.body, "naive: /public/next as nobody", "{method}");
    }
    // A chunked body on a GET, even an empty one, is a body.
    let chunked = "GET /public/ HTTP/1.1\r\nHost: portal.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(gate.addr, chunked.as_bytes()).await), 400);
    // A declared length of zero is no body.
    let zero = "GET /public/zero HTTP/1.1\r\nHost: portal.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&raw(gate.addr, zero.as_bytes()).await), 200);
    assert!(smuggled(&upstream).is_empty(), "{:?}", smuggled(&upstream));
    assert!(upstream.seen().iter().all(|s| s.path != "/public/"));
    gate.stop().await;
}

#[tokio::test]
async fn a_get_body_over_http2_is_refused_too() {
    let upstream = NaiveUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    let mut h2 = h2_connection(gate.addr).await;
    for method in [Method::GET, Method::HEAD] {
        let request = Request::builder()
            .method(method.clone())
            .uri(gate.url("/public/"))
            .body(whole_body(HIDDEN))
            .expect("request");
        let response = h2_send(&mut h2, request).await.expect("answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{method}");
    }
    let next = get(&gate.url("/public/next")).send().await;
    assert_eq!(next.body, "naive: /public/next as nobody");
    assert!(smuggled(&upstream).is_empty(), "{:?}", smuggled(&upstream));
    gate.stop().await;
}

#[tokio::test]
async fn a_body_the_upstream_did_not_read_never_becomes_the_next_request() {
    let upstream = NaiveUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    // POST, DELETE and OPTIONS may carry a body, and go with it; the naive
    // upstream answers without reading it.
    for method in ["POST", "DELETE", "OPTIONS"] {
        let answer = with_hidden_body(&gate, method, "/public/form").await;
        assert_eq!(raw_status(&answer), 200, "{method}: {answer}");
        assert!(
            answer.ends_with("naive: /public/form as nobody"),
            "{answer}"
        );
        // Before, the connection went back to the pool with the hidden
        // head on it, and this request completed it.
        let next = get(&gate.url("/public/next")).send().await;
        assert_eq!(next.body, "naive: /public/next as nobody", "{method}");
    }
    assert!(smuggled(&upstream).is_empty(), "{:?}", smuggled(&upstream));
    gate.stop().await;
}

#[tokio::test]
async fn bodyless_requests_share_upstream_connections_and_requests_with_a_body_do_not() {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    for i in 0..3 {
        let reply = get(&gate.url(&format!("/public/{i}"))).send().await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(upstream.connections(), 1, "body-less requests reuse");
    let post = request(Method::POST, &gate.url("/public/form"))
        .body("name=ada")
        .send()
        .await;
    assert_eq!(post.status, StatusCode::OK);
    let seen = upstream.seen_under("/public/form");
    assert_eq!(seen[0].body, "name=ada");
    assert_eq!(seen[0].headers["connection"], "close");
    assert_eq!(seen[0].headers["content-length"], "8");
    let after = get(&gate.url("/public/after")).send().await;
    assert_eq!(after.status, StatusCode::OK);
    // The POST took the pooled connection and closed it; the GET after it
    // needed a new one, which the next body-less request reuses.
    assert_eq!(upstream.connections(), 2);
    let empty = request(Method::POST, &gate.url("/public/empty"))
        .send()
        .await;
    assert_eq!(empty.status, StatusCode::OK);
    let last = get(&gate.url("/public/last")).send().await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(upstream.connections(), 2, "an empty body is no body");
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stalled_http2_uploads_hold_nothing_upstream_and_starve_no_one() {
    let upstream = RecordingUpstream::start().await;
    let extra = "[limits]\nbody_timeout = \"2s\"\n";
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    // The attack: HTTP/2 connections, each with 100 uploads that send a
    // few bytes and stop. Before, each took an upstream slot and an
    // upstream connection until `upstream.timeout`; 42 such connections
    // held all 4096 slots.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let h2 = h2_connection(gate.addr).await;
        for i in 0..100 {
            let mut sender = h2.clone();
            let request = Request::post(gate.url(&format!("/public/upload/{i}")))
                .header("content-length", "1000")
                .body(stalled_body(Bytes::from_static(b"0123456789")))
                .expect("request");
            stalled.push(tokio::spawn(async move {
                h2_send(&mut sender, request).await.map(|r| r.status())
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let normal = get(&gate.url("/public/normal")).send().await;
    assert_eq!(normal.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        upstream.connections(),
        1,
        "only the normal request went upstream"
    );
    // Each stalled upload gets 408 once `body_timeout` is over.
    for upload in stalled {
        let status = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("answered")
            .expect("task")
            .expect("answer");
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    }
    assert!(upstream.seen_under("/public/upload").is_empty());
    gate.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_connection_holds_at_most_its_share_of_upstream_slots() {
    let upstream = RecordingUpstream::start().await;
    let extra = "[limits]\nbody_timeout = \"2s\"\nmax_inflight_per_connection = 4\n";
    let text =
        config_for(&upstream.url(), extra).replace("\ntimeout = \"1s\"", "\ntimeout = \"5s\"");
    let gate = GateProcess::start(&text).await;
    // Uploads longer than the part the gate reads first: each goes
    // upstream, then stalls.
    let h2 = h2_connection(gate.addr).await;
    let mut uploads = Vec::new();
    for i in 0..20 {
        let mut sender = h2.clone();
        let request = Request::post(gate.url(&format!("/public/upload/{i}")))
            .header("content-length", "1000000")
            .body(stalled_body(Bytes::from(vec![b'x'; 20_000])))
            .expect("request");
        uploads.push(tokio::spawn(async move {
            h2_send(&mut sender, request).await.map(|r| r.status())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.connections(), 4, "the connection's share");
    // Another client is not held up.
    let started = Instant::now();
    let normal = get(&gate.url("/public/normal")).send().await;
    assert_eq!(normal.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The stalled uploads end with 408 (or wait their turn and end so).
    let mut timed_out = 0;
    for upload in uploads {
        let status = tokio::time::timeout(Duration::from_secs(20), upload)
            .await
            .expect("answered")
            .expect("task");
        if matches!(status, Ok(StatusCode::REQUEST_TIMEOUT)) {
            timed_out += 1;
        }
    }
    assert!(timed_out >= 4, "{timed_out}");
    gate.stop().await;
}
