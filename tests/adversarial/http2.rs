//! HTTP/2: the same gate over h2c.

use http::StatusCode;

use crate::cases::*;
use crate::support::*;

// ---------------------------------------------------------------------------
// 5. HTTP/2
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http2_requests_pass_the_same_gate() {
    let (upstream, gate) = setup().await;
    let ada = token_for("ada@example.com");
    let eve = token_for(OUTSIDER);
    let ada_bearer = format!("Bearer {ada}");
    let eve_bearer = format!("Bearer {eve}");
    let spoofs: [(&str, &str); 6] = [
        ("x-forwarded-email", "ceo@example.com"),
        ("x-forwarded-user", "ceo"),
        ("x_forwarded_email", "ceo@example.com"),
        ("x-forwarded-for", "10.0.0.1"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
    ];

    let (status, version, _) = h2_get(&gate, "/docs/x", &[]).await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "restricted path without token"
    );
    let (status, ..) = h2_get(&gate, "/public/%2e%2e/docs/x", &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "encoded traversal into docs"
    );
    let (status, ..) = h2_get(
        &gate,
        "/public/../internal/x",
        &[("authorization", &eve_bearer)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "traversal into internal, outsider"
    );
    let (status, ..) = h2_get(&gate, "/public/..%2fdocs/x", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "encoded slash");
    let (status, ..) = h2_get(
        &gate,
        "/board/minutes",
        &[("authorization", &eve_bearer), spoofs[0]],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "spoofed email does not admit"
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());

    let mut headers = vec![("authorization", ada_bearer.as_str())];
    headers.extend(spoofs);
    let (status, _, body) = h2_get(&gate, "/docs/./h2", &headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "upstream: /docs/h2");
    let (status, _, body) = h2_get(&gate, "/public//h2?auth-token=x&q=1", &spoofs).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].uri, "/docs/h2");
    let emails: Vec<_> = seen[0]
        .headers
        .get_all("x-forwarded-email")
        .iter()
        .collect();
    assert_eq!(emails, vec!["ada@example.com"]);
    assert_eq!(seen[0].headers["x-forwarded-user"], "ada@example.com");
    assert!(seen[0].headers.get("authorization").is_none());
    assert_eq!(seen[1].uri, "/public/h2?q=1");
    assert!(seen[1].headers.get("x-forwarded-email").is_none());
    for s in &seen {
        assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
        assert!(s.headers.get("forwarded").is_none());
        assert!(s.headers.get("x-real-ip").is_none());
        assert!(s.headers.get("x_forwarded_email").is_none());
    }
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn http2_cookie_fields_reach_an_http1_upstream_as_one_header() {
    let (upstream, gate) = setup().await;
    let (status, ..) = h2_get(
        &gate,
        "/public/cookies",
        &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.seen_under("/public/cookies");
    let cookies: Vec<_> = seen[0].headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
    gate.stop().await;
}
