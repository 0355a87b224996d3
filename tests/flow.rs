//! The whole flow through the real server on an ephemeral port: mint
//! through the API, open pages with the token in each place, and every way
//! a token or a request can be refused.

mod support;

use http::{Method, StatusCode};
use support::*;

async fn setup() -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    (upstream, gate)
}

#[tokio::test]
async fn token_from_the_api_opens_a_verified_page_in_query_bearer_and_header() {
    let (upstream, gate) = setup().await;
    let token = mint_via_api(&gate, "Ada@Example.com").await;

    let by_query = get(&gate.url(&format!("/docs/a?x=1&auth-token={token}&y=2")))
        .send()
        .await;
    assert_eq!(by_query.status, StatusCode::OK, "{}", by_query.body);
    assert_eq!(by_query.body, "upstream: /docs/a");

    let by_underscore = get(&gate.url(&format!("/docs/b?auth_token={token}")))
        .send()
        .await;
    assert_eq!(by_underscore.status, StatusCode::OK);

    let by_bearer = get(&gate.url("/docs/c")).bearer(&token).send().await;
    assert_eq!(by_bearer.status, StatusCode::OK);

    let by_header = get(&gate.url("/docs/d"))
        .header("x-auth-token", &token)
        .send()
        .await;
    assert_eq!(by_header.status, StatusCode::OK);

    let seen = upstream.seen_under("/docs/");
    assert_eq!(seen.len(), 4);
    // Other query parameters are kept, in order; the token never arrives.
    assert_eq!(seen[0].uri, "/docs/a?x=1&y=2");
    assert_eq!(seen[1].uri, "/docs/b");
    for s in &seen {
        assert!(!s.uri.contains(&token));
        assert!(s.headers.get("authorization").is_none());
        assert!(s.headers.get("x-auth-token").is_none());
        assert_eq!(s.headers["x-forwarded-email"], "ada@example.com");
        assert_eq!(s.headers["x-forwarded-user"], "ada@example.com");
        for value in s.headers.values() {
            assert!(!value.to_str().unwrap_or("").contains(&token));
        }
    }
    gate.stop().await;
}

#[tokio::test]
async fn missing_token_is_refused_with_401_and_a_bearer_challenge() {
    let (upstream, gate) = setup().await;
    let reply = get(&gate.url("/docs/secret")).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("Bearer"));
    assert!(reply.body.contains("token is required"));

    // Paths no rule matches are restricted by default.
    let unmatched = get(&gate.url("/elsewhere")).send().await;
    assert_eq!(unmatched.status, StatusCode::UNAUTHORIZED);
    assert!(
        upstream.seen().is_empty(),
        "a refused request reached the upstream"
    );
    gate.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let (upstream, gate) = setup().await;
    let good = token_for("ada@example.com");

    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let truncated = good[..good.len() - 10].to_string();
    let BadTokens {
        expired,
        other_account,
        other_secret: wrong_secret,
        unknown_key,
    } = bad_tokens();
    let garbage = "not-a-token".to_string();
    let oversized = format!("pg1.k1.{}", "A".repeat(10_000));

    for (name, token) in [
        ("tampered", &tampered),
        ("truncated", &truncated),
        ("wrong secret", &wrong_secret),
        ("unknown key id", &unknown_key),
        ("expired", &expired),
        ("other account", &other_account),
        ("garbage", &garbage),
        ("oversized", &oversized),
    ] {
        let reply = get(&gate.url("/docs/page")).bearer(token).send().await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{name} token: {}",
            reply.body
        );
        assert!(reply.header("www-authenticate").is_some(), "{name}");
        assert!(!reply.body.contains(token.as_str()), "{name}: token echoed");
    }
    let expired_reply = get(&gate.url("/docs/page")).bearer(&expired).send().await;
    assert!(expired_reply.body.contains("expired"));
    assert!(
        upstream.seen().is_empty(),
        "a refused request reached the upstream"
    );
    gate.stop().await;
}

#[tokio::test]
async fn domain_and_email_rules_give_403_to_other_users() {
    let (upstream, gate) = setup().await;
    let staff = token_for("dev@example.com");
    let outsider = token_for("eve@example.org");
    let lookalike = token_for("eve@example.com.evil.io");
    let ceo = token_for("ceo@example.com");

    assert_eq!(
        get(&gate.url("/internal/notes"))
            .bearer(&staff)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&gate.url("/internal/notes"))
            .bearer(&outsider)
            .send()
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&gate.url("/internal/notes"))
            .bearer(&lookalike)
            .send()
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&gate.url("/board/minutes"))
            .bearer(&ceo)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let refused = get(&gate.url("/board/minutes")).bearer(&staff).send().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.header("www-authenticate").is_none());

    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(seen, vec!["/internal/notes", "/board/minutes"]);
    gate.stop().await;
}

#[tokio::test]
async fn public_pages_need_no_token_and_never_carry_an_identity() {
    let (upstream, gate) = setup().await;
    let reply = get(&gate.url("/public/page?q=1")).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert_eq!(get(&gate.url("/")).send().await.status, StatusCode::OK);

    // A token sent to a public page is still stripped.
    let token = token_for("ada@example.com");
    let with_token = get(&gate.url(&format!("/public/x?auth-token={token}")))
        .send()
        .await;
    assert_eq!(with_token.status, StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(seen[0].uri, "/public/page?q=1");
    assert_eq!(seen[2].uri, "/public/x");
    assert!(seen
        .iter()
        .all(|s| s.headers.get("x-forwarded-email").is_none()));
    gate.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (upstream, gate) = setup().await;
    let token = token_for("ada@example.com");
    let reply = get(&gate.url("/docs/x"))
        .bearer(&token)
        .header("x-forwarded-email", "ceo@example.com")
        .header("x-forwarded-user", "ceo")
        .header("x_forwarded_email", "ceo@example.com")
        .header("x-forwarded-for", "10.0.0.1")
        .header("connection", "x-forwarded-email")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let public = get(&gate.url("/public/y"))
        .header("x-forwarded-email", "ceo@example.com")
        .send()
        .await;
    assert_eq!(public.status, StatusCode::OK);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    let verified = &seen[0].headers;
    let emails: Vec<_> = verified.get_all("x-forwarded-email").iter().collect();
    assert_eq!(emails, vec!["ada@example.com"]);
    assert_eq!(verified["x-forwarded-user"], "ada@example.com");
    assert!(verified.get("x_forwarded_email").is_none());
    assert_eq!(verified["x-forwarded-for"], "127.0.0.1");
    assert_eq!(verified["x-forwarded-proto"], "http");
    assert!(verified["x-forwarded-host"]
        .to_str()
        .expect("host")
        .starts_with("127.0.0.1:"));
    assert!(seen[1].headers.get("x-forwarded-email").is_none());
    gate.stop().await;
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let (upstream, gate) = setup().await;
    let token = token_for("ada@example.com");
    let reply = request(Method::POST, &gate.url("/docs/form"))
        .bearer(&token)
        .header("content-type", "text/plain")
        .body("hello upstream")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(&seen[0].body[..], b"hello upstream");
    gate.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_gives_502_and_slow_upstream_504() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let gate = GateProcess::start(&config_for(&dead_url, "")).await;
    let reply = get(&gate.url("/public/x")).send().await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    gate.stop().await;

    let (upstream, gate) = setup().await;
    let slow = get(&gate.url("/public/../slow/x")).send().await;
    assert_eq!(
        slow.status,
        StatusCode::UNAUTHORIZED,
        "normalized /slow/x is restricted"
    );
    let token = token_for("ada@example.com");
    let slow = get(&gate.url("/slow/x")).bearer(&token).send().await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(upstream.seen_under("/slow/").len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn json_clients_get_json_errors() {
    let (_upstream, gate) = setup().await;
    let reply = get(&gate.url("/docs/x"))
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json body");
    assert!(json["error"].as_str().is_some());
    gate.stop().await;
}

#[tokio::test]
async fn different_tokens_in_one_request_are_refused() {
    let (upstream, gate) = setup().await;
    let ada = token_for("ada@example.com");
    let bob = token_for("bob@example.com");
    let reply = get(&gate.url(&format!("/docs/x?auth-token={ada}")))
        .bearer(&bob)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // The same token twice is fine.
    let same = get(&gate.url(&format!("/docs/x?auth-token={ada}")))
        .bearer(&ada)
        .send()
        .await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (upstream, gate) = setup().await;
    // Each call is a new client connection to the gate; the gate's own
    // connection to the upstream is reused, after a body read to its end
    // and after a body-less HEAD answer alike.
    for path in ["/public/a", "/public/b", "/public/c"] {
        let reply = get(&gate.url(path)).send().await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("upstream: {path}"));
    }
    let head = request(Method::HEAD, &gate.url("/public/d")).send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
    let reply = get(&gate.url("/public/e")).send().await;
    assert_eq!(reply.body, "upstream: /public/e");
    assert_eq!(upstream.seen_under("/public/").len(), 5);
    assert_eq!(upstream.connections(), 1, "one upstream connection for all");
    gate.stop().await;
}

/// An upstream that answers one request per connection and then closes
/// it, saying so (`connection: close`) or not.
async fn one_shot_upstream(announce_close: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let close = if announce_close {
                    "connection: close\r\n"
                } else {
                    ""
                };
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Requests with the upstream at once (docs/security.md, "Limits").
const UPSTREAM_SLOTS: usize = 4096;

#[tokio::test]
async fn an_upstream_that_closes_every_connection_still_answers_every_request() {
    for announce_close in [true, false] {
        let addr = one_shot_upstream(announce_close).await;
        let gate = GateProcess::start(&config_for(&format!("http://{addr}"), "")).await;
        for i in 0..5 {
            let reply = get(&gate.url(&format!("/public/{i}"))).send().await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "request {i}, connection: close announced: {announce_close}"
            );
            assert_eq!(reply.body, "ok");
        }
        gate.stop().await;
    }
}

#[tokio::test]
async fn an_upload_the_upstream_answered_early_does_not_hold_up_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    // An upload that stalls after 20 000 of its 1 000 000 bytes (past the
    // part the gate reads before it goes upstream), which the upstream
    // answers without reading: its connection is still busy sending the
    // body when the answer's end would put it back.
    let mut uploader = tokio::net::TcpStream::connect(gate.addr)
        .await
        .expect("connect");
    let head = "POST /public/early/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n";
    uploader.write_all(head.as_bytes()).await.expect("head");
    uploader
        .write_all(&[b'x'; 20_000])
        .await
        .expect("some body");
    let mut answer = [0u8; 12];
    uploader.read_exact(&mut answer).await.expect("answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    // The next request must not wait on that connection: were it taken
    // from the pool, it would get a 504 after the 1 s upstream timeout.
    let next = get(&gate.url("/public/after")).send().await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    drop(uploader);
    gate.stop().await;
}

#[tokio::test]
async fn upstream_slots_come_back_with_every_kind_of_answer() {
    // More requests than there are slots, one after another: were a
    // permit kept by a finished response (a GET's body, a HEAD's none),
    // the requests past the limit would wait out the 1 s upstream timeout.
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    let started = std::time::Instant::now();
    for n in 0..UPSTREAM_SLOTS + 100 {
        let method = if n % 2 == 0 {
            Method::GET
        } else {
            Method::HEAD
        };
        let reply = request(method, &gate.url(&format!("/public/{n}")))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {n} after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(upstream.seen().len(), UPSTREAM_SLOTS + 100);
    gate.stop().await;
}
