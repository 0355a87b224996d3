//! What a client gets back: verified pages kept out of shared caches and
//! revalidated by the browser, no upstream say over the gate's session,
//! sign-out that empties the browser's cache, and the framing policy on
//! every answer, the gate's own included.

mod support;

use http::{Method, StatusCode};
use support::*;

async fn gate_with(extra: &str) -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    (upstream, gate)
}

/// A GET of `path` whose answer from the upstream carries `headers`.
fn answered_with(url: &str, headers: &[&str]) -> Call {
    headers
        .iter()
        .fold(get(url), |call, h| call.header("x-test-answer-header", h))
}

const CDN_FIELDS: [&str; 6] = [
    "cdn-cache-control: public, max-age=86400",
    "cloudflare-cdn-cache-control: max-age=86400",
    "surrogate-control: max-age=86400",
    "edge-control: cache-maxage=1d",
    "x-accel-expires: 86400",
    "cache-control: public, max-age=600, s-maxage=3600, private=\"set-cookie\"",
];

#[tokio::test]
async fn a_verified_page_is_for_no_shared_cache_and_is_revalidated_by_the_browser() {
    let (_upstream, gate) = gate_with("").await;
    let token = token_for("ada@example.com");
    let mut headers = CDN_FIELDS.to_vec();
    headers.push("last-modified: Tue, 01 Dec 2026 10:00:00 GMT");
    headers.push("vary: Accept-Encoding");
    let reply = answered_with(&gate.url("/docs/x"), &headers)
        .bearer(&token)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cache_control: Vec<_> = reply.headers.get_all("cache-control").iter().collect();
    assert_eq!(cache_control, ["private, no-cache"]);
    for field in [
        "cdn-cache-control",
        "cloudflare-cdn-cache-control",
        "surrogate-control",
        "edge-control",
        "x-accel-expires",
    ] {
        assert!(reply.header(field).is_none(), "{field} reached the client");
    }
    let vary: Vec<_> = reply.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Cookie, Authorization"]);
    // The validator stays, so revalidation is cheap.
    assert!(reply.header("last-modified").is_some());
    gate.stop().await;
}

#[tokio::test]
async fn hop_by_hop_fields_of_an_upstream_answer_never_reach_the_client() {
    // hyper relays a response's fields as they are: the gate removes these
    // itself (headers::filter_response), and this pins it.
    let (_upstream, gate) = gate_with("").await;
    let reply = answered_with(
        &gate.url("/public/x"),
        &[
            "connection: x-upstream-secret",
            "x-upstream-secret: internal",
            "keep-alive: timeout=5",
            "proxy-connection: keep-alive",
            "proxy-authenticate: Basic realm=\"upstream\"",
            "te: trailers",
            "trailer: x-checksum",
            "upgrade: websocket",
            "x-kept: yes",
        ],
    )
    .send()
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    for field in [
        "connection",
        "x-upstream-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(reply.header(field).is_none(), "{field} reached the client");
    }
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert_eq!(reply.body, "upstream: /public/x");
    gate.stop().await;
}

#[tokio::test]
async fn a_public_page_keeps_the_upstreams_cache_fields() {
    let (_upstream, gate) = gate_with("").await;
    let reply = answered_with(&gate.url("/public/x"), &CDN_FIELDS)
        .send()
        .await;
    assert_eq!(
        reply.header("cdn-cache-control"),
        Some("public, max-age=86400")
    );
    assert!(reply.header("vary").is_none());
    gate.stop().await;
}

#[tokio::test]
async fn the_upstream_can_neither_set_nor_clear_the_gates_session() {
    let (_upstream, gate) = gate_with("").await;
    let token = token_for("ada@example.com");
    let cookies = [
        "set-cookie: __Host-portal-gate-session=; Max-Age=0; Path=/; Secure",
        "set-cookie: __host-Portal-Gate-Session=pgs1.forged; Path=/; Secure",
        "set-cookie: =__Host-portal-gate-session=pgs1.forged",
        "set-cookie: theme=dark; Path=/",
    ];
    for (path, bearer) in [("/public/x", None), ("/docs/x", Some(&token))] {
        let mut call = answered_with(&gate.url(path), &cookies);
        if let Some(token) = bearer {
            call = call.bearer(token);
        }
        let reply = call.send().await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let set: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
        assert_eq!(set, ["theme=dark; Path=/"], "{path}");
    }
    gate.stop().await;
}

#[tokio::test]
async fn sign_out_empties_the_browsers_cache_and_redirects_only_to_a_clean_local_path() {
    let (_upstream, gate) = gate_with("").await;
    let reply = navigate(&gate.url("/auth/logout")).send().await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("clear-site-data"), Some("\"cache\""));
    // What `next=` decoded is encoded again: no raw tab, space or bidi
    // control in a Location.
    assert_eq!(
        logout_location(&gate, "next=%2Fdocs%2F%3Fq%3Da%09b%20c")
            .await
            .as_deref(),
        Some("/docs/?q=a%09b%20c")
    );
    assert_eq!(
        logout_location(&gate, "next=%2Fdocs%2F%3Fq%3D%E2%80%AEevil")
            .await
            .as_deref(),
        Some("/docs/?q=%E2%80%AEevil")
    );
    assert_eq!(
        logout_location(&gate, "next=%2Fdocs%2F%3Fq%3Dx")
            .await
            .as_deref(),
        Some("/docs/?q=x")
    );
    gate.stop().await;
}

async fn logout_location(gate: &GateProcess, query: &str) -> Option<String> {
    navigate(&gate.url(&format!("/auth/logout?{query}")))
        .send()
        .await
        .header("location")
        .map(str::to_string)
}

#[tokio::test]
async fn the_framing_policy_is_on_the_gates_own_pages_too() {
    let (_upstream, gate) =
        gate_with("[embed]\nallowed_origins = [\"https://app.example.com\"]\n").await;
    let policy = "frame-ancestors 'self' https://app.example.com";
    let token = token_for("ada@example.com");
    let frame = |call: Call| {
        call.header("sec-fetch-dest", "iframe")
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html")
    };
    let answers = [
        (
            "the denied-frame page",
            frame(get(&gate.url("/docs/x"))).send().await,
        ),
        (
            "the exchange",
            frame(get(&gate.url(&format!("/docs/?auth-token={token}"))))
                .send()
                .await,
        ),
        ("logout", navigate(&gate.url("/auth/logout")).send().await),
        ("the embed script", get(&gate.url("/embed.js")).send().await),
        (
            "a refusal",
            request(Method::TRACE, &gate.url("/public/x")).send().await,
        ),
        ("a forwarded page", get(&gate.url("/public/x")).send().await),
    ];
    for (what, reply) in answers {
        let csp: Vec<_> = reply
            .headers
            .get_all("content-security-policy")
            .iter()
            .collect();
        assert!(
            csp.iter().any(|v| *v == policy),
            "{what}: {} {csp:?}",
            reply.status
        );
    }
    gate.stop().await;
}
