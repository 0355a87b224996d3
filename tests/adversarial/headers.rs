//! Identity-header spoofing, overrides, and the host a trusted proxy relays.

use crate::cases::*;
use crate::support::*;

// ---------------------------------------------------------------------------
// 2. Identity-header spoofing
// ---------------------------------------------------------------------------

/// Headers 403-bypass tools send to make an upstream read another path,
/// host, method or client address (docs/security.md has the whole list).
const OVERRIDES: [&str; 24] = [
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Override-URL",
    "X-Forwarded-Path",
    "X-Envoy-Original-Path",
    "X-Http-Destinationurl",
    "X-Proxy-Url",
    "Destination",
    "X-Host",
    "X-Forwarded-Server",
    "X-HTTP-Host-Override",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Originating-IP",
    "X-Remote-IP",
    "X-Remote-Addr",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Custom-IP-Authorization",
    "X-ProxyUser-Ip",
    "X-Cluster-Client-IP",
    "Remote-User",
];

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_are_replaced_by_the_gates_own() {
    let (upstream, gate) = setup().await;
    let ada = token_for("ada@example.com");
    let eve = token_for(OUTSIDER);
    let spoof = "X-Forwarded-Email: ceo@example.com".to_string();
    #[rustfmt::skip]
    let cases = vec![
        case("email on a public page", "GET /public/a", vec![spoof.clone()], 200, Some("/public/a"), None),
        case("email on a verified page", "GET /docs/a", vec![bearer_line(&ada), spoof.clone()], 200, Some("/docs/a"), Some("ada@example.com")),
        case("email without a token on a restricted page", "GET /board/minutes", vec![spoof.clone()], 401, None, None),
        case("email does not admit to an email rule", "GET /board/minutes", vec![bearer_line(&eve), spoof.clone()], 403, None, None),
        case("email does not admit to a domain rule", "GET /internal/x", vec![bearer_line(&eve), spoof.clone()], 403, None, None),
        case("duplicate emails on a verified page", "GET /docs/b", vec![spoof.clone(), bearer_line(&ada), "X-Forwarded-Email: cfo@example.com".into()], 200, Some("/docs/b"), Some("ada@example.com")),
        case("duplicate emails on a public page", "GET /public/b", vec![spoof.clone(), spoof.clone()], 200, Some("/public/b"), None),
        case("mixed-case name", "GET /public/c", vec!["x-FORWARDED-email: ceo@example.com".into()], 200, Some("/public/c"), None),
        case("mixed-case name on a verified page", "GET /docs/c", vec!["x-FORWARDED-email: ceo@example.com".into(), bearer_line(&ada)], 200, Some("/docs/c"), Some("ada@example.com")),
        case("underscore spelling", "GET /public/d", vec!["X_Forwarded_Email: ceo@example.com".into()], 200, Some("/public/d"), None),
        case("underscore spelling on a verified page", "GET /docs/d", vec!["X_Forwarded_Email: ceo@example.com".into(), "X_Forwarded_User: ceo".into(), bearer_line(&ada)], 200, Some("/docs/d"), Some("ada@example.com")),
        case("half underscore spelling", "GET /public/e", vec!["X-Forwarded_Email: ceo@example.com".into(), "x_forwarded-user: ceo".into()], 200, Some("/public/e"), None),
        case("Connection names the email header (verified)", "GET /docs/f", vec!["Connection: X-Forwarded-Email".into(), spoof.clone(), bearer_line(&ada)], 200, Some("/docs/f"), Some("ada@example.com")),
        case("Connection names the email header (public)", "GET /public/f", vec!["Connection: X-Forwarded-Email, keep-alive".into(), spoof.clone()], 200, Some("/public/f"), None),
        case("Connection names X-Forwarded-For", "GET /public/g", vec!["Connection: X-Forwarded-For".into(), "X-Forwarded-For: 10.0.0.1".into()], 200, Some("/public/g"), None),
        case("Connection names X-Forwarded-For (verified)", "GET /docs/g", vec!["Connection: X-Forwarded-For".into(), "X-Forwarded-For: 10.0.0.1".into(), bearer_line(&ada)], 200, Some("/docs/g"), Some("ada@example.com")),
        case("Connection names a custom header", "GET /public/cn", vec!["Connection: X-Foo".into(), "X-Foo: 1".into(), "Accept: text/html".into()], 200, Some("/public/cn"), None),
        case("X-Forwarded-For chain", "GET /public/h", vec!["X-Forwarded-For: 10.0.0.1, 10.0.0.2".into(), "X-Forwarded-For: 10.0.0.3".into()], 200, Some("/public/h"), None),
        case("Forwarded header", "GET /public/i", vec!["Forwarded: for=10.0.0.1;proto=https;host=evil.example".into()], 200, Some("/public/i"), None),
        case("X-Real-IP", "GET /public/j", vec!["X-Real-IP: 10.0.0.1".into()], 200, Some("/public/j"), None),
        case("X-Forwarded-Host", "GET /public/k", vec!["X-Forwarded-Host: evil.example".into()], 200, Some("/public/k"), None),
        case("auth-request headers", "GET /docs/l", vec!["X-Auth-Request-Email: ceo@example.com".into(), "X-Auth-Request-User: ceo".into(), bearer_line(&ada)], 200, Some("/docs/l"), Some("ada@example.com")),
        case("absolute-form target naming another host than Host", "GET http://evil.example/public/q", vec![], 400, None, None),
        case("absolute-form target agreeing with Host", "GET http://portal.test/public/r", vec![], 200, Some("/public/r"), None),
        case("absolute-form target agreeing with Host but for the default port", "GET http://PORTAL.test:80/public/t", vec![], 200, Some("/public/t"), None),
        case("absolute-form target on another port than Host", "GET http://portal.test:8443/public/u", vec![], 400, None, None),
        case("two Host headers", "GET /public/s", vec!["Host: evil.example".into()], 400, None, None),
        refused_with_host("Host with userinfo", "eve@portal.test"),
        refused_with_host("Host with a port that is not a port", "portal.test:abc"),
        refused_with_host("Host with a port out of range", "portal.test:99999"),
        case("path overrides on a public page", "GET /public/o", vec!["X-Original-URL: /board/minutes".into(), "X-Rewrite-URL: /board/minutes".into(), "X-Original-URI: /board/minutes".into(), "X-Forwarded-Prefix: /board".into(), "X-Forwarded-Uri: /board/minutes".into()], 200, Some("/public/o"), None),
        case("the 403-bypass family on a public page", "GET /public/o2", OVERRIDES.iter().map(|name| format!("{name}: /board/minutes")).collect(), 200, Some("/public/o2"), None),
        case("the 403-bypass family in _ spelling", "GET /public/o3", OVERRIDES.iter().map(|name| format!("{}: 127.0.0.1", name.replace('-', "_"))).collect(), 200, Some("/public/o3"), None),
        case("auth-request groups and username", "GET /docs/p", vec!["X-Auth-Request-Groups: admins".into(), "X-Auth-Request-Preferred-Username: ceo".into(), bearer_line(&ada)], 200, Some("/docs/p"), Some("ada@example.com")),
        case("user header alone", "GET /docs/m", vec!["X-Forwarded-User: ceo@example.com".into(), bearer_line(&ada)], 200, Some("/docs/m"), Some("ada@example.com")),
        case("space before the colon", "GET /public/n", vec!["X-Forwarded-Email : ceo@example.com".into()], 400, None, None),
    ];
    run_cases(&gate, &upstream, &cases).await;
    // RFC 9110 section 7.6.1: a field named in Connection is for this hop
    // only; every other field arrives.
    let named = upstream.seen_under("/public/cn");
    assert!(!named[0].headers.contains_key("x-foo"));
    assert_eq!(named[0].headers["accept"], "text/html");

    // Every request the upstream saw carries the gate's values: exactly one
    // email (the token's) or none, the peer as X-Forwarded-For, our Host.
    for seen in upstream.seen() {
        assert_eq!(
            seen.headers
                .get_all("x-forwarded-for")
                .iter()
                .collect::<Vec<_>>(),
            vec!["127.0.0.1"],
            "{}",
            seen.uri
        );
        assert_eq!(
            seen.headers["x-forwarded-host"], "portal.test",
            "{}",
            seen.uri
        );
        assert_eq!(seen.headers["x-forwarded-proto"], "http", "{}", seen.uri);
        assert!(!seen.headers.contains_key("x_forwarded_email"));
        assert!(!seen.headers.contains_key("x-forwarded_email"));
        for name in OVERRIDES {
            let underscored = name.to_ascii_lowercase().replace('-', "_");
            for spelling in [name.to_ascii_lowercase(), underscored] {
                assert!(
                    !seen.headers.contains_key(spelling.as_str()),
                    "{spelling} reached {}",
                    seen.uri
                );
            }
        }
    }
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn a_host_relayed_by_a_trusted_proxy_is_held_to_public_hosts() {
    let upstream = RecordingUpstream::start().await;
    let extra = "trusted_proxies = [\"127.0.0.1\"]\npublic_hosts = [\"portal.test\"]\n";
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    #[rustfmt::skip]
    let cases = vec![
        case("relayed public host", "GET /public/a", vec!["X-Forwarded-Host: portal.test".into()], 200, Some("/public/a"), None),
        case("relayed host with a port", "GET /public/b", vec!["X-Forwarded-Host: portal.test:8443".into()], 200, Some("/public/b"), None),
        case("nothing relayed", "GET /public/c", vec![], 200, Some("/public/c"), None),
        // Before, any relayed host passed and went to the upstream.
        case("relayed host the gate does not serve", "GET /public/d", vec!["X-Forwarded-Host: evil.example".into()], 421, None, None),
        case("relayed list", "GET /public/e", vec!["X-Forwarded-Host: portal.test, evil.example".into()], 400, None, None),
        case("two relayed hosts", "GET /public/f", vec!["X-Forwarded-Host: portal.test".into(), "X-Forwarded-Host: evil.example".into()], 400, None, None),
        case("relayed host with userinfo", "GET /public/g", vec!["X-Forwarded-Host: eve@portal.test".into()], 400, None, None),
        case("relayed host with a path", "GET /public/h", vec!["X-Forwarded-Host: portal.test/x".into()], 400, None, None),
    ];
    run_cases(&gate, &upstream, &cases).await;
    let relayed = upstream.seen_under("/public/b");
    assert_eq!(relayed[0].headers["x-forwarded-host"], "portal.test:8443");
    gate.stop().await;
}
