//! Path confusion: one reading of the path, whatever its spelling.

use crate::cases::*;
use crate::support::*;

// ---------------------------------------------------------------------------
// 1. Path confusion
// ---------------------------------------------------------------------------

/// A request line sent twice: without a token, and with a valid token for
/// `eve@example.org` (admitted by `/docs/**` and the default rule, not by
/// `/internal/**` or `/board/**`).
struct PathCase {
    name: &'static str,
    line: &'static str,
    anonymous: u16,
    outsider: u16,
    /// What the upstream receives whenever either is forwarded.
    reaches: Option<&'static str>,
}

#[rustfmt::skip]
const PATH_CASES: &[PathCase] = &[
    // Merged slashes and dot segments resolve before the rules look.
    PathCase { name: "merged leading slash into docs", line: "GET //docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "merged leading slash into internal", line: "GET //internal/x", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "dot-dot out of public into docs", line: "GET /public/../docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "dot-dot out of public into internal", line: "GET /public/../internal/x", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "encoded dot-dot into docs", line: "GET /public/%2e%2e/docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "encoded dot-dot into internal", line: "GET /public/%2e%2e/internal/x", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "mixed-case encoded dot-dot into docs", line: "GET /public/%2E%2e/docs", anonymous: 401, outsider: 200, reaches: Some("/docs") },
    PathCase { name: "mixed-case encoded dot-dot into internal", line: "GET /public/%2E%2e/internal", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "half-encoded dot-dot into board", line: "GET /public/.%2e/board/minutes", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "dot segment then docs", line: "GET /./docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "dot then dot-dot into docs", line: "GET /public/./../docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "dot then dot-dot into internal", line: "GET /public/./../internal/x", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "prefix without trailing slash", line: "GET /internal", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "prefix with trailing slash", line: "GET /internal/", anonymous: 401, outsider: 403, reaches: None },
    // Encoded unreserved characters are decoded once, before the rules.
    PathCase { name: "encoded letter spells docs", line: "GET /%64ocs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "encoded letter spells internal", line: "GET /%69nternal/x", anonymous: 401, outsider: 403, reaches: None },
    // Escaped slashes and backslashes have two readings: refused.
    PathCase { name: "dot-dot with encoded slash", line: "GET /public/..%2fdocs/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded slashes around dot-dot", line: "GET /public%2f..%2fdocs", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded dot-dot and slash", line: "GET /public/%2e%2e%2finternal", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded slash inside docs", line: "GET /docs%2fx", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded slash inside board", line: "GET /board%2fminutes", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "raw backslash dot-dot", line: "GET /public/..\\docs", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "raw backslash dot-dot into internal", line: "GET /public/..\\internal/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded backslash dot-dot", line: "GET /public/%5c../docs", anonymous: 400, outsider: 400, reaches: None },
    // Path parameters (Tomcat/Jetty strip them).
    PathCase { name: "path parameter on docs", line: "GET /docs;x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "path parameter on public then dot-dot", line: "GET /public;/../docs", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "path parameter on internal", line: "GET /internal;x/", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded path parameter", line: "GET /internal%3bx/", anonymous: 400, outsider: 400, reaches: None },
    // Trailing dots and spaces (Windows/IIS read /internal./ as /internal/).
    PathCase { name: "trailing dot segment", line: "GET /internal./", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded trailing dot", line: "GET /internal%2e/", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded trailing space", line: "GET /internal%20/", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "public with trailing dots", line: "GET /public%2e%2e/internal/x", anonymous: 400, outsider: 400, reaches: None },
    // Letter case: rules are case-sensitive by default, so /INTERNAL is
    // unmatched and falls to default_access = "restricted" (any verified
    // user). See `upper_case_prefix_*` below.
    PathCase { name: "upper-case internal", line: "GET /INTERNAL/x", anonymous: 401, outsider: 200, reaches: Some("/INTERNAL/x") },
    // Control characters, raw or escaped.
    PathCase { name: "encoded NUL after docs", line: "GET /docs%00", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded NUL segment then dot-dot", line: "GET /public/%00/../docs", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded NUL before dot-dot", line: "GET /public/..%00/internal", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded tab in internal", line: "GET /internal%09/x", anonymous: 400, outsider: 400, reaches: None },
    // Escapes of escapes of a dot, a separator or NUL: an upstream that
    // decodes twice would read them as such, so they are refused.
    PathCase { name: "double-encoded dot-dot", line: "GET /public/%252e%252e/docs/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "double-encoded slash", line: "GET /public/..%252fdocs/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "double-encoded backslash", line: "GET /public/..%255cdocs/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "double-encoded NUL", line: "GET /docs/x%2500.html", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "double-encoded escapes of the digits", line: "GET /public/%25%32%65%25%32%65/docs/x", anonymous: 400, outsider: 400, reaches: None },
    // Other escaped escapes are data, decoded once: %25 stays %25.
    PathCase { name: "escaped percent before a letter", line: "GET /public/%2541", anonymous: 200, outsider: 200, reaches: Some("/public/%2541") },
    // Overlong UTF-8 for '.' (the IIS unicode bug).
    PathCase { name: "overlong UTF-8 dots", line: "GET /public/%c0%ae%c0%ae/docs/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "overlong UTF-8 dots into internal", line: "GET /public/%c0%ae%c0%ae/internal/x", anonymous: 400, outsider: 400, reaches: None },
    // Above the root is refused, never clamped to '/'.
    PathCase { name: "dot-dot at root", line: "GET /..", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "dot-dot above root into internal", line: "GET /../internal/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "two dot-dots from public", line: "GET /public/../../internal/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded dot-dot above root", line: "GET /%2e%2e/internal", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "two encoded dot-dots from public", line: "GET /public/%2e%2e/%2e%2e/internal", anonymous: 400, outsider: 400, reaches: None },
    // A query or fragment that looks like a path never feeds the rules.
    PathCase { name: "query that looks like a traversal", line: "GET /public?/../internal/x", anonymous: 200, outsider: 200, reaches: Some("/public?/../internal/x") },
    PathCase { name: "restricted path with a public-looking query", line: "GET /internal/x?/../../public", anonymous: 401, outsider: 403, reaches: None },
    // Absolute-form: hyper hands the gate the URI's path, which is gated.
    PathCase { name: "absolute-form into docs", line: "GET http://portal.test/docs/x", anonymous: 401, outsider: 200, reaches: Some("/docs/x") },
    PathCase { name: "absolute-form into internal", line: "GET http://portal.test/internal/x", anonymous: 401, outsider: 403, reaches: None },
    PathCase { name: "absolute-form with dot-dot", line: "GET http://portal.test/public/../internal/x", anonymous: 401, outsider: 403, reaches: None },
    // Escapes an upstream could read another way: one that decodes `%3F`
    // into a query separator would read `/internal%3F/x` as `/internal`, one
    // that NFKC-folds fullwidth dots (U+FF0E) would see `..`. Refused.
    PathCase { name: "encoded question mark before a traversal", line: "GET /public%3F/../internal/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded question mark after internal", line: "GET /internal%3F/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "encoded hash after internal", line: "GET /internal%23/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "fullwidth dots are refused", line: "GET /public/%ef%bc%8e%ef%bc%8e/internal/x", anonymous: 400, outsider: 400, reaches: None },
    PathCase { name: "fullwidth slash is refused", line: "GET /public/..%ef%bc%8finternal/x", anonymous: 400, outsider: 400, reaches: None },
    // Targets that are not a path.
    PathCase { name: "asterisk-form OPTIONS", line: "OPTIONS *", anonymous: 400, outsider: 400, reaches: None },
    // CONNECT in any form is answered 405, never tunnelled or forwarded.
    PathCase { name: "authority-form CONNECT", line: "CONNECT internal.example:443", anonymous: 405, outsider: 405, reaches: None },
    PathCase { name: "origin-form CONNECT", line: "CONNECT /public/a", anonymous: 405, outsider: 405, reaches: None },
    PathCase { name: "TRACE", line: "TRACE /public/a", anonymous: 405, outsider: 405, reaches: None },
    // The upstream gets the normalized path, not the client's spelling.
    PathCase { name: "public path is forwarded normalized", line: "GET /public//a/./b", anonymous: 200, outsider: 200, reaches: Some("/public/a/b") },
    PathCase { name: "public path keeps its trailing slash", line: "GET /public/a/b/..", anonymous: 200, outsider: 200, reaches: Some("/public/a/") },
    PathCase { name: "public path decoded unreserved", line: "GET /public/%7euser/%41", anonymous: 200, outsider: 200, reaches: Some("/public/~user/A") },
];

#[tokio::test]
async fn path_confusion_never_reaches_a_restricted_page_under_another_spelling() {
    let (upstream, gate) = setup().await;
    let outsider = token_for(OUTSIDER);
    let mut cases = Vec::new();
    for case in PATH_CASES {
        let forwarded = |status: u16| {
            if (200..300).contains(&status) {
                case.reaches.map(str::to_owned)
            } else {
                None
            }
        };
        let identity = |status: u16| match case.reaches {
            Some(uri)
                if (200..300).contains(&status)
                    && admits(uri.split('?').next().unwrap_or(uri)) != Admits::Anyone =>
            {
                Some(OUTSIDER.to_owned())
            }
            _ => None,
        };
        cases.push(Case {
            name: format!("{} (no token): {}", case.name, case.line),
            request: raw_request(case.line, &[]),
            status: case.anonymous,
            reaches: forwarded(case.anonymous),
            identity: None,
        });
        cases.push(Case {
            name: format!("{} ({OUTSIDER}): {}", case.name, case.line),
            request: raw_request(case.line, &[bearer_line(&outsider)]),
            status: case.outsider,
            reaches: forwarded(case.outsider),
            identity: identity(case.outsider),
        });
    }
    run_cases(&gate, &upstream, &cases).await;
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn encoded_traversal_into_a_restricted_prefix_is_refused_with_a_path_reason() {
    // The 400s above come from the gate's normalizer, not only from hyper's
    // parser: the body names the reason.
    let (upstream, gate) = setup().await;
    for (line, reason) in [
        ("GET /public/..%2fdocs/x", "escaped slash"),
        ("GET /public/%5c../docs", "escaped slash"),
        ("GET /public/..\\docs", "backslash"),
        ("GET /docs;x", "path parameters"),
        ("GET /internal%20/", "ends in a dot or a space"),
        ("GET /docs%00", "control character"),
        ("GET /public/%c0%ae%c0%ae/docs/x", "not valid UTF-8"),
        ("GET /..", "above the root"),
        ("OPTIONS *", "not an origin-form path"),
    ] {
        let reply = send_raw(&gate, raw_request(line, &[]).as_bytes()).await;
        assert_eq!(reply.status, 400, "{line}: {}", reply.text);
        assert!(reply.text.contains(reason), "{line}: {}", reply.text);
    }
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn upper_case_prefix_is_unmatched_and_falls_to_the_restricted_default() {
    // Found: with the default case-sensitive rules, `/INTERNAL/x` matches no
    // rule, so default_access = "restricted" applies: 401 without a token,
    // but *any* verified user (here not example.com) is forwarded. Behind an
    // upstream that serves paths case-insensitively (IIS, some S3-style
    // hosts) that reads /internal/x; `case_insensitive_paths = true` is the
    // setting for such upstreams, and with it the domain rule applies.
    let (upstream, gate) = setup().await;
    let outsider = token_for(OUTSIDER);
    let anonymous = send_raw(&gate, raw_request("GET /INTERNAL/x", &[]).as_bytes()).await;
    assert_eq!(anonymous.status, 401);
    let reply = send_raw(
        &gate,
        raw_request("GET /INTERNAL/x", &[bearer_line(&outsider)]).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/INTERNAL/x");
    assert_eq!(seen[0].headers["x-forwarded-email"], OUTSIDER);
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;

    let upstream = RecordingUpstream::start().await;
    let config = config_for(&upstream.url(), "").replacen(
        "default_access",
        "case_insensitive_paths = true\ndefault_access",
        1,
    );
    let gate = GateProcess::start(&config).await;
    let staff = token_for("dev@example.com");
    for (line, token, status) in [
        ("GET /INTERNAL/x", Some(&outsider), 403),
        ("GET /Internal/x", None, 401),
        ("GET /%49nternal/x", Some(&outsider), 403),
        ("GET /BOARD/minutes", Some(&staff), 403),
        ("GET /INTERNAL/x", Some(&staff), 200),
    ] {
        let headers: Vec<String> = token.map(|t| bearer_line(t)).into_iter().collect();
        let reply = send_raw(&gate, raw_request(line, &headers).as_bytes()).await;
        assert_eq!(
            reply.status, status,
            "case-insensitive {line}: {}",
            reply.text
        );
    }
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(seen, vec!["/INTERNAL/x"]);
    gate.stop().await;
}

#[tokio::test]
async fn absolute_form_target_is_gated_by_its_path_and_sent_to_the_configured_upstream() {
    let (upstream, gate) = setup().await;
    let token = token_for("ada@example.com");
    // A target naming another host than Host: which one would the rules,
    // public_hosts and X-Forwarded-Host read? Refused.
    let reply = send_raw(
        &gate,
        raw_request("GET http://evil.example/docs/x?a=1", &[bearer_line(&token)]).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(upstream.seen().is_empty());
    let reply = send_raw(
        &gate,
        raw_request("GET http://portal.test/docs/x?a=1", &[bearer_line(&token)]).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/docs/x?a=1");
    // The upstream's Host is its own, never the client's authority.
    assert_eq!(seen[0].headers["host"], upstream.addr.to_string().as_str());
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn fragment_in_the_request_target_never_feeds_the_rules() {
    // Clients never send a fragment. Found: hyper accepts a raw `#` in the
    // target and the `http` crate's URI parser drops everything from it, so
    // the gate judges and forwards the path before the `#`.
    let (upstream, gate) = setup().await;
    let reply = send_raw(
        &gate,
        raw_request("GET /public/x#/../../internal/x", &[]).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let restricted = send_raw(
        &gate,
        raw_request("GET /internal/x#/../../public", &[]).as_bytes(),
    )
    .await;
    assert_eq!(restricted.status, 401, "{}", restricted.text);
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(seen, vec!["/public/x"]);
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn connect_is_never_tunnelled() {
    let (upstream, gate) = setup().await;
    let token = token_for("ada@example.com");
    let text = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n{}\r\n\r\nGET /docs/x HTTP/1.1\r\nHost: portal.test\r\nConnection: close\r\n\r\n",
        upstream.addr,
        upstream.addr,
        bearer_line(&token)
    );
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert!(
        reply
            .text
            .contains("allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        "{}",
        reply.text
    );
    // The bytes after the CONNECT head are a second request the gate gates
    // (with no token: 401), never bytes tunnelled to the upstream.
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    gate.stop().await;
}

#[tokio::test]
async fn connect_with_a_path_is_answered_405_and_never_forwarded() {
    let (upstream, gate) = setup().await;
    // Before: forwarded to the upstream as a CONNECT, and the client never
    // got an answer.
    let text = "CONNECT /public/a HTTP/1.1\r\nHost: portal.test\r\nConnection: close\r\n\r\n";
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert!(reply.text.contains("the gate does not forward this method"));
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    gate.stop().await;
}
