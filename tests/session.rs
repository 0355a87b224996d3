//! The token-to-session exchange, the session cookie, logout, the embed
//! script and framing policy, through the real server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use portal_gate::ManualClock;
use support::*;

/// A browser navigation to `/docs/` with a fresh token for `email` in the
/// URL: what an embed's first frame load does.
fn sign_in(gate: &GateProcess, email: &str) -> Call {
    navigate(&gate.url(&format!("/docs/?auth-token={}", token_for(email))))
}

async fn gate_with(extra: &str) -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    (upstream, gate)
}

#[tokio::test]
async fn a_token_in_a_navigation_url_becomes_a_session_cookie() {
    let (upstream, gate) = gate_with("").await;
    let token = token_for("ada@example.com");
    let reply = navigate(&gate.url(&format!("/docs/guide?lang=en&auth-token={token}&x=1")))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), Some("/docs/guide?lang=en&x=1"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    let set = reply.header("set-cookie").expect("cookie");
    for attribute in [
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Partitioned",
        "Max-Age=259200",
    ] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    assert!(
        !set.contains(&token),
        "the cookie is a session, not the token"
    );
    assert!(
        upstream.seen().is_empty(),
        "the exchange itself is not forwarded"
    );

    // The page, its assets and its links authenticate by the cookie.
    let cookie = format!("theme=dark; {}", session_cookie(&reply));
    let page = navigate(&gate.url("/docs/guide?lang=en&x=1"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let asset = get(&gate.url("/docs/style.css"))
        .header("sec-fetch-dest", "style")
        .header("sec-fetch-mode", "no-cors")
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(page
        .header("cache-control")
        .unwrap_or("")
        .contains("private"));

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.headers["x-forwarded-email"], "ada@example.com");
        // The upstream keeps its own cookies and never sees the session.
        assert_eq!(s.headers["cookie"], "theme=dark");
        assert!(!format!("{:?}", s.headers).contains("pgs1."));
    }
    gate.stop().await;
}

#[tokio::test]
async fn api_clients_are_never_redirected() {
    let (upstream, gate) = gate_with("").await;
    let token = token_for("ada@example.com");
    let url = gate.url(&format!("/docs/a?auth-token={token}"));
    // JSON, plain non-navigation fetches, and curl-like clients get the page.
    let json = navigate(&url)
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(json.status, StatusCode::OK);
    let fetch = get(&url).header("sec-fetch-mode", "cors").send().await;
    assert_eq!(fetch.status, StatusCode::OK);
    let curl = get(&url).header("accept", "*/*").send().await;
    assert_eq!(curl.status, StatusCode::OK);
    // A token in a header is an API call even from a browser.
    let header = navigate(&gate.url("/docs/a"))
        .header("x-auth-token", &token)
        .send()
        .await;
    assert_eq!(header.status, StatusCode::OK);
    assert!(header.header("set-cookie").is_none());
    assert_eq!(upstream.seen().len(), 4);

    // Their refusals are JSON.
    let refused = get(&gate.url("/docs/a")).send().await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    gate.stop().await;
}

#[tokio::test]
async fn a_fresh_token_replaces_the_session() {
    let (upstream, gate) = gate_with("").await;
    let ada = sign_in(&gate, "ada@example.com").send().await;
    let ada_cookie = session_cookie(&ada);
    let bob = sign_in(&gate, "bob@example.com")
        .header("cookie", &ada_cookie)
        .send()
        .await;
    assert_eq!(bob.status, StatusCode::SEE_OTHER);
    let bob_cookie = session_cookie(&bob);
    assert_ne!(ada_cookie, bob_cookie);
    let page = navigate(&gate.url("/docs/"))
        .header("cookie", &bob_cookie)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        upstream.seen()[0].headers["x-forwarded-email"],
        "bob@example.com"
    );
    gate.stop().await;
}

#[tokio::test]
async fn logout_clears_the_session() {
    let (_upstream, gate) = gate_with("").await;
    let reply = navigate(&gate.url("/auth/logout")).send().await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), Some("/"));
    let set = reply.header("set-cookie").expect("cookie");
    assert!(set.starts_with("__Host-portal-gate-session=;"), "{set}");
    assert!(set.contains("Max-Age=0"));
    gate.stop().await;
}

#[tokio::test]
async fn sessions_and_tokens_cannot_stand_in_for_each_other() {
    let (upstream, gate) = gate_with("").await;
    let reply = sign_in(&gate, "ada@example.com").send().await;
    let cookie = session_cookie(&reply);
    let sealed = cookie.split_once('=').expect("pair").1.to_string();
    // Used once as a cookie, the session is in the decrypt cache: that
    // must not make it count as anything else.
    let page = get(&gate.url("/docs/"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    // The session's value as a bearer token: refused.
    let as_token = get(&gate.url("/docs/")).bearer(&sealed).send().await;
    assert_eq!(as_token.status, StatusCode::UNAUTHORIZED);
    // As a URL token in a navigation: refused, not traded for a new
    // session (which would renew it forever).
    let renewed = navigate(&gate.url(&format!("/docs/?auth-token={sealed}")))
        .send()
        .await;
    assert_eq!(renewed.status, StatusCode::UNAUTHORIZED);
    assert!(renewed.header("set-cookie").is_none());
    // A token as the cookie's value: refused.
    let token = token_for("ada@example.com");
    let as_cookie = get(&gate.url("/docs/"))
        .header("cookie", &format!("__Host-portal-gate-session={token}"))
        .send()
        .await;
    assert_eq!(as_cookie.status, StatusCode::UNAUTHORIZED);
    // Two different session cookies: refused rather than guessed between.
    let other = sign_in(&gate, "bob@example.com").send().await;
    let two = get(&gate.url("/docs/"))
        .header("cookie", &format!("{cookie}; {}", session_cookie(&other)))
        .send()
        .await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    assert_eq!(upstream.seen().len(), 1, "only the page the cookie opened");
    gate.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let upstream = RecordingUpstream::start().await;
    let clock = Arc::new(ManualClock::new(std::time::SystemTime::now()));
    let text = config_for(&upstream.url(), "").replace(
        "token_ttl = \"5m\"",
        "token_ttl = \"5m\"\nsession_ttl = \"1h\"\nclock_skew = \"0s\"",
    );
    let gate = GateProcess::start_with_clock(&text, Arc::clone(&clock)).await;
    let reply = sign_in(&gate, "ada@example.com").send().await;
    let cookie = session_cookie(&reply);
    assert!(reply
        .header("set-cookie")
        .unwrap_or("")
        .contains("Max-Age=3600;"));
    clock.advance(Duration::from_secs(3599));
    let inside = get(&gate.url("/docs/"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(inside.status, StatusCode::OK, "the session's last second");
    clock.advance(Duration::from_secs(2));
    let late = get(&gate.url("/docs/"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the request inside the session"
    );
    gate.stop().await;
}

#[tokio::test]
async fn bad_tokens_in_a_navigation_url_are_refused_on_restricted_pages_only() {
    let (upstream, gate) = gate_with("").await;
    let now = unix_now();
    let expired = token_with(
        SECRET,
        "k1",
        "ada@example.com",
        ACCOUNT,
        now - 900,
        now - 600,
    );
    let restricted = navigate(&gate.url(&format!("/docs/?auth-token={expired}")))
        .send()
        .await;
    assert_eq!(restricted.status, StatusCode::UNAUTHORIZED);
    assert!(restricted.header("set-cookie").is_none());
    assert!(restricted
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
    let public = navigate(&gate.url(&format!("/public/page?auth-token={expired}&q=1")))
        .send()
        .await;
    assert_eq!(public.status, StatusCode::OK);
    assert!(public.header("set-cookie").is_none());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/public/page?q=1");
    gate.stop().await;
}

#[tokio::test]
async fn a_denied_frame_gets_the_page_that_tells_the_element() {
    let (_upstream, gate) = gate_with("").await;
    let reply = navigate(&gate.url("/docs/"))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(reply.body.contains("portal-gate:auth-required"));
    assert!(reply.header("www-authenticate").is_some());

    let outsider = navigate(&gate.url("/internal/x"))
        .header("sec-fetch-dest", "iframe")
        .header("x-ignored", "1")
        .send()
        .await;
    assert_eq!(outsider.status, StatusCode::UNAUTHORIZED);
    gate.stop().await;
}

#[tokio::test]
async fn allowed_origins_restrict_who_may_frame_the_portal() {
    let (_u1, open) = gate_with("").await;
    let reply = get(&open.url("/public/x")).send().await;
    assert!(reply.header("content-security-policy").is_none());
    open.stop().await;

    let (_u2, gate) = gate_with(
        "[embed]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:3000/\"]\n",
    )
    .await;
    let reply = get(&gate.url("/public/x")).send().await;
    assert_eq!(
        reply.header("content-security-policy"),
        Some("frame-ancestors 'self' https://app.example.com http://localhost:3000")
    );
    gate.stop().await;

    let bad = config_for(
        "http://127.0.0.1:9",
        "[embed]\nallowed_origins = [\"https://app.example.com/path\"]\n",
    );
    let err = portal_gate::Config::parse(&bad, std::path::Path::new("g.toml"))
        .expect_err("path in origin");
    assert_eq!(err.key.as_deref(), Some("embed.allowed_origins"));
}

#[tokio::test]
async fn the_embed_script_is_public_and_cacheable() {
    let (upstream, gate) = gate_with("").await;
    let reply = get(&gate.url("/embed.js")).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/javascript"));
    assert!(reply.body.contains("released-page"));
    let etag = reply.header("etag").expect("ETag").to_string();
    let again = get(&gate.url("/embed.js"))
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(upstream.seen().is_empty(), "the gate serves its own script");
    gate.stop().await;
}
