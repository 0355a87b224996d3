//! The token API through the real server: the answer a backend gets, and
//! every error it can get.

mod support;

use http::{Method, StatusCode};
use support::*;

async fn gate() -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    (upstream, gate)
}

fn post(gate: &GateProcess, body: &str) -> Call {
    request(Method::POST, &gate.url("/auth/api/token"))
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn error_of(reply: &Reply) -> String {
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error body");
    json["error"].as_str().expect("error field").to_string()
}

#[tokio::test]
async fn minting_returns_token_and_expiry() {
    let (upstream, gate) = gate().await;
    let before = unix_now();
    let body = format!(
        r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com","user_id":"u:42","profile":{{"name":"Ada","avatar_url":"https://example.com/a.png"}}}}"#
    );
    let reply = post(&gate, &body).bearer(SECRET).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    let token = json["token"].as_str().expect("token");
    assert!(token.starts_with("pg1.k1."));
    assert_eq!(json["expires_in"].as_u64(), Some(300));
    let expires_at = humantime::parse_rfc3339(json["expires_at"].as_str().expect("expires_at"))
        .expect("RFC 3339");
    let expires_unix = expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    assert!((before + 300..=before + 302).contains(&expires_unix));

    // The alias answers the same way, and the user id reaches the upstream.
    let alias = request(Method::POST, &gate.url("/auth/api/impersonation/token"))
        .bearer(SECRET)
        .body(body)
        .send()
        .await;
    assert_eq!(alias.status, StatusCode::OK);
    let page = get(&gate.url("/docs/")).bearer(token).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(upstream.seen()[0].headers["x-forwarded-user"], "u:42");
    gate.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_secret_is_401() {
    let (_u, gate) = gate().await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#);
    let missing = post(&gate, &body).send().await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let wrong = post(&gate, &body).bearer(OTHER_SECRET).send().await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let prefix = post(&gate, &body).bearer(&SECRET[..10]).send().await;
    assert_eq!(prefix.status, StatusCode::UNAUTHORIZED);
    let basic = post(&gate, &body)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    // The same message for every failure: nothing tells which part was wrong.
    assert_eq!(error_of(&missing), error_of(&wrong));
    assert_eq!(error_of(&wrong), error_of(&prefix));
    gate.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_400() {
    let (_u, gate) = gate().await;
    let cases = [
        ("not json", "{"),
        (
            "missing email",
            &format!(r#"{{"account_id":"{ACCOUNT}"}}"#) as &str,
        ),
        ("missing account", r#"{"user_email":"ada@example.com"}"#),
        (
            "bad email",
            &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"not-an-email"}}"#),
        ),
        (
            "bad user id",
            &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","user_id":"has space"}}"#),
        ),
        (
            "long user id",
            &format!(
                r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","user_id":"{}"}}"#,
                "x".repeat(256)
            ),
        ),
        (
            "long name",
            &format!(
                r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","profile":{{"name":"{}"}}}}"#,
                "n".repeat(201)
            ),
        ),
        (
            "bad avatar",
            &format!(
                r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","profile":{{"avatar_url":"not a url"}}}}"#
            ),
        ),
        (
            "wrong type",
            &format!(r#"{{"account_id":"{ACCOUNT}","user_email":42}}"#),
        ),
    ];
    for (name, body) in cases {
        let reply = post(&gate, body).bearer(SECRET).send().await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.body
        );
        assert!(!error_of(&reply).is_empty(), "{name}");
    }
    // 200 characters exactly is allowed, counted in characters.
    let ok = format!(
        r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","profile":{{"name":"{}"}}}}"#,
        "é".repeat(200)
    );
    assert_eq!(
        post(&gate, &ok).bearer(SECRET).send().await.status,
        StatusCode::OK
    );
    gate.stop().await;
}

#[tokio::test]
async fn another_account_is_403() {
    let (_u, gate) = gate().await;
    let reply = post(
        &gate,
        r#"{"account_id":"acct_someone_else","user_email":"ada@example.com"}"#,
    )
    .bearer(SECRET)
    .send()
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(error_of(&reply).contains("account"));
    gate.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let (_u, gate) = gate().await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = request(method.clone(), &gate.url("/auth/api/token"))
            .bearer(SECRET)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"));
    }
    gate.stop().await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let (_u, gate) = gate().await;
    let padding = "x".repeat(70 * 1024);
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.co","pad":"{padding}"}}"#);
    let reply = post(&gate, &body).bearer(SECRET).send().await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Without a Content-Length (chunked), the limit still holds.
    let chunked = format!(
        "POST /auth/api/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len(),
        body
    );
    let answer = raw(gate.addr, chunked.as_bytes()).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
    gate.stop().await;
}

#[tokio::test]
async fn the_api_path_is_matched_after_normalization() {
    let (upstream, gate) = gate().await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#);
    let reply = request(Method::POST, &gate.url("/auth//api/./token"))
        .bearer(SECRET)
        .body(body)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn a_retired_secret_neither_mints_nor_is_told_apart_from_a_wrong_one() {
    let upstream = RecordingUpstream::start().await;
    let retired = "an-old-secret-retired-at-the-last-rotation";
    let extra = format!(
        "[[secrets]]\nid = \"old\"\nvalue = \"{retired}\"\nnot_after = \"2020-01-01T00:00:00Z\"\n"
    );
    let gate = GateProcess::start(&config_for(&upstream.url(), &extra)).await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ceo@example.com"}}"#);
    // Before, the retired secret was accepted, and the API minted under the
    // primary secret for any email.
    let old = post(&gate, &body).bearer(retired).send().await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
    let wrong = post(&gate, &body).bearer(OTHER_SECRET).send().await;
    assert_eq!(error_of(&old), error_of(&wrong));
    let live = post(&gate, &body).bearer(SECRET).send().await;
    assert_eq!(live.status, StatusCode::OK);
    gate.stop().await;
}

#[tokio::test]
async fn allowed_sources_keep_the_token_api_to_the_backends_network() {
    let upstream = RecordingUpstream::start().await;
    let body = format!(r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#);
    for (sources, want) in [
        ("[\"10.0.0.0/8\", \"192.0.2.1\"]", StatusCode::FORBIDDEN),
        ("[\"127.0.0.0/8\"]", StatusCode::OK),
    ] {
        let extra = format!("[api]\nallowed_sources = {sources}\n");
        let gate = GateProcess::start(&config_for(&upstream.url(), &extra)).await;
        let reply = post(&gate, &body).bearer(SECRET).send().await;
        assert_eq!(reply.status, want, "{sources}: {}", reply.body);
        if want == StatusCode::FORBIDDEN {
            assert_eq!(
                error_of(&reply),
                "the token API does not take calls from this address"
            );
            // Pages are not the API's business: they still pass.
            let page = get(&gate.url("/public/x")).send().await;
            assert_eq!(page.status, StatusCode::OK);
        }
        gate.stop().await;
    }
}
