//! Adversarial requests against the real server, each checked twice: the
//! status the client gets, and what the upstream received.
//!
//! Classes covered:
//!
//! 1. **Path confusion** against the restricted prefixes of
//!    [`config_for`] (`/docs/**` verified, `/internal/**` example.com only,
//!    `/board/**` one email, everything unmatched restricted): merged
//!    slashes, `..`/`.` segments raw and percent-encoded in any case,
//!    encoded slashes and backslashes, raw backslashes, path parameters,
//!    trailing dots and spaces, letter case, NUL and control characters,
//!    double encoding (never decoded twice), overlong UTF-8, `..` above the
//!    root, fragments and queries that look like paths, absolute-form
//!    targets, `OPTIONS *` and `CONNECT`; and that a forwarded path is the
//!    normalized one.
//! 2. **Identity-header spoofing**: `X-Forwarded-Email` and friends on
//!    public and verified pages, duplicates, mixed case, `_` spellings,
//!    `Connection:`-nominated headers, `X-Forwarded-For`, `Forwarded`,
//!    `X-Real-IP`, `X-Forwarded-Host`.
//! 3. **Tokens**: duplicates (same is fine, different is 400), query versus
//!    headers, oversized, other account, unknown secret or key id, expired,
//!    empty bearer, scheme case, percent-encoded parameter names (and that
//!    the token never reaches the upstream); tokens whose email or user id
//!    claim cannot be forwarded as one clean header value.
//! 4. **Request smuggling / framing**: Content-Length with
//!    Transfer-Encoding, conflicting Content-Lengths, obsolete line folding,
//!    non-chunked Transfer-Encoding, a request hidden in a body, a chunked
//!    body whose framing breaks after the head.
//! 5. **HTTP/2** (h2c prior knowledge): the same gate checks over h2.
//!
//! Tests that forward anything end with
//! [`assert_upstream_saw_only_admitted_requests`], an
//! oracle that restates the test rules independently of the gate's code
//! and checks each request the upstream saw: a normalized path, an identity
//! exactly when the rules require one and one the rules admit, no token,
//! and only the gate's own forwarding headers.
//!
//! Tests marked `BUG (found here)` fail on purpose: they assert the secure
//! behaviour the gate does not have yet.
//!
//! Helpers this file adds on top of `support` (kept here, not in the shared
//! fixture): raw HTTP/1.1 request building and reply parsing
//! ([`raw_request`], [`RawReply`]), the oracle, and an h2c client
//! ([`h2_get`]).

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

// ---------------------------------------------------------------------------
// Fixture additions
// ---------------------------------------------------------------------------

async fn setup() -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    (upstream, gate)
}

/// A raw HTTP/1.1 request: `line` is the method and target (`"GET /x"`),
/// `headers` whole header lines sent verbatim (so malformed ones are
/// possible); `Host: portal.test` and `Connection: close` are added so the
/// gate closes the connection after answering.
fn raw_request(line: &str, headers: &[String]) -> String {
    let mut text = format!("{line} HTTP/1.1\r\nHost: portal.test\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    text
}

/// A raw answer, split into what the assertions need.
#[derive(Debug)]
struct RawReply {
    status: u16,
    /// How many responses came back on the connection.
    responses: usize,
    text: String,
}

async fn send_raw(gate: &GateProcess, bytes: &[u8]) -> RawReply {
    let text = raw(gate.addr, bytes).await;
    RawReply {
        status: raw_status(&text),
        responses: text.matches("HTTP/1.1 ").count(),
        text,
    }
}

/// A `Authorization: Bearer` header line.
fn bearer_line(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Who the test rules of [`config_for`] admit to a normalized path. Written
/// out again here, not taken from the gate, so the oracle does not share
/// the gate's bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admits {
    Anyone,
    AnyVerified,
    Domain(&'static str),
    Email(&'static str),
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn admits(path: &str) -> Admits {
    if path == "/" || under(path, "/public") {
        Admits::Anyone
    } else if under(path, "/docs") {
        Admits::AnyVerified
    } else if under(path, "/internal") {
        Admits::Domain("example.com")
    } else if under(path, "/board") {
        Admits::Email("ceo@example.com")
    } else {
        // default_access = "restricted"; rules are case-sensitive by default.
        Admits::AnyVerified
    }
}

/// Names only the gate may set (or nobody: path overrides), in the
/// spelling it sets them.
const GATE_OWNED: [&str; 19] = [
    "x-forwarded-email",
    "x-forwarded-user",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-auth-request-email",
    "x-auth-request-user",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-forwarded-uri",
];

/// The problems with one request the upstream saw, if any.
fn violations(seen: &Seen) -> Vec<String> {
    let mut problems = Vec::new();
    let (path, query) = match seen.uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (seen.uri.as_str(), None),
    };
    // The shape every normalized path has (src/access/path.rs proves
    // normalize gives it and is idempotent): one reading, no dot segment.
    let normal = path.starts_with('/')
        && path.is_ascii()
        && !["//", "/./", "/../"].iter().any(|bad| path.contains(bad))
        && !path.ends_with("/.")
        && !path.ends_with("/..");
    if !normal {
        problems.push(format!("path {path:?} is not normalized"));
    }

    let emails: Vec<&str> = seen
        .headers
        .get_all("x-forwarded-email")
        .iter()
        .map(|v| v.to_str().unwrap_or("<non-utf8>"))
        .collect();
    match (admits(path), emails.as_slice()) {
        (Admits::Anyone, []) => {}
        (Admits::Anyone, some) => problems.push(format!("public page carries identity {some:?}")),
        (_, []) => problems.push("restricted page reached the upstream without identity".into()),
        (rule, [email]) => {
            let ok = match rule {
                Admits::Anyone | Admits::AnyVerified => true,
                Admits::Domain(d) => email.rsplit_once('@').is_some_and(|(_, dom)| dom == d),
                Admits::Email(e) => *email == e,
            };
            if !ok {
                problems.push(format!("{email} reached a page governed by {rule:?}"));
            }
        }
        (_, many) => problems.push(format!("several identities {many:?}")),
    }
    let users: Vec<_> = seen.headers.get_all("x-forwarded-user").iter().collect();
    if users.len() != emails.len() || users.iter().zip(&emails).any(|(u, e)| u != e) {
        problems.push(format!(
            "x-forwarded-user {users:?} does not match {emails:?}"
        ));
    }

    let forwarded_for: Vec<_> = seen.headers.get_all("x-forwarded-for").iter().collect();
    if forwarded_for != ["127.0.0.1"] {
        problems.push(format!("x-forwarded-for is {forwarded_for:?}"));
    }
    // The gate sets these itself (checked above); a client's copy of any
    // other must never get through.
    let set_by_gate = [
        "x-forwarded-email",
        "x-forwarded-user",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    for name in GATE_OWNED.iter().filter(|name| !set_by_gate.contains(name)) {
        if seen.headers.contains_key(*name) {
            problems.push(format!("client's {name} reached the upstream"));
        }
    }
    for value in seen.headers.get_all("x-forwarded-host") {
        if value.as_bytes().windows(4).any(|w| w == b"evil") {
            problems.push(format!(
                "client's x-forwarded-host {value:?} reached the upstream"
            ));
        }
    }
    for name in seen.headers.keys() {
        let dashed = name.as_str().replace('_', "-");
        if dashed != name.as_str() && GATE_OWNED.contains(&dashed.as_str()) {
            problems.push(format!("spoofable spelling {name} reached the upstream"));
        }
    }

    if let Some(query) = query {
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            if name == "auth-token" || name == "auth_token" {
                problems.push(format!("token parameter in upstream query {query:?}"));
            }
        }
    }
    for value in seen.headers.get_all("authorization") {
        if value.as_bytes().len() > 7 && value.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ") {
            problems.push("bearer token reached the upstream".into());
        }
    }
    if seen.headers.contains_key("x-auth-token") {
        problems.push("x-auth-token reached the upstream".into());
    }
    problems
}

/// The oracle: every request the upstream ever saw obeys the rules.
fn assert_upstream_saw_only_admitted_requests(upstream: &RecordingUpstream) {
    let problems: Vec<String> = upstream
        .seen()
        .iter()
        .flat_map(|seen| {
            violations(seen)
                .into_iter()
                .map(move |p| format!("{} {}: {p}", seen.method, seen.uri))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One crafted request and what must come of it.
#[derive(Debug)]
struct Case {
    name: String,
    request: String,
    status: u16,
    /// The exact URI the upstream receives; `None`: nothing reaches it.
    reaches: Option<String>,
    /// The identity the upstream receives with it (checked when it does).
    identity: Option<String>,
}

/// A case sent as `line` with `headers` (see [`raw_request`]).
fn case(
    name: &str,
    line: &str,
    headers: Vec<String>,
    status: u16,
    reaches: Option<&str>,
    identity: Option<&str>,
) -> Case {
    Case {
        name: name.to_string(),
        request: raw_request(line, &headers),
        status,
        reaches: reaches.map(str::to_owned),
        identity: identity.map(str::to_owned),
    }
}

/// A GET of a public page with `host` as its only `Host`, which must get a
/// 400 and reach nothing.
fn refused_with_host(name: &str, host: &str) -> Case {
    Case {
        name: name.to_string(),
        request: format!("GET /public/h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        status: 400,
        reaches: None,
        identity: None,
    }
}

/// Send every case, one connection each, and report every mismatch at once.
async fn run_cases(gate: &GateProcess, upstream: &RecordingUpstream, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let before = upstream.seen().len();
        let reply = send_raw(gate, case.request.as_bytes()).await;
        let arrived: Vec<Seen> = upstream.seen().into_iter().skip(before).collect();
        if reply.status != case.status {
            failures.push(format!(
                "{}: status {} (want {}); answer: {:?}",
                case.name,
                reply.status,
                case.status,
                reply.text.lines().last().unwrap_or("")
            ));
        }
        let uris: Vec<&str> = arrived.iter().map(|s| s.uri.as_str()).collect();
        let want: Vec<&str> = case.reaches.iter().map(String::as_str).collect();
        if uris != want {
            failures.push(format!(
                "{}: upstream saw {uris:?}, want {want:?}",
                case.name
            ));
        }
        for seen in &arrived {
            let email = seen
                .headers
                .get("x-forwarded-email")
                .and_then(|v| v.to_str().ok());
            if email != case.identity.as_deref() {
                failures.push(format!(
                    "{}: upstream identity {email:?}, want {:?}",
                    case.name, case.identity
                ));
            }
            for problem in violations(seen) {
                failures.push(format!("{}: {problem}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

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

const OUTSIDER: &str = "eve@example.org";

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

// ---------------------------------------------------------------------------
// 3. Tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tokens_are_accepted_once_in_one_reading_and_never_forwarded() {
    let (upstream, gate) = setup().await;
    let now = unix_now();
    let ada = mint_via_api(&gate, "ada@example.com").await;
    let bob = token_for("bob@example.com");
    let eve = token_for(OUTSIDER);
    let oversized = format!("pg1.k1.{}", "A".repeat(5_000));
    let other_account = token_with(
        SECRET,
        "k1",
        "ada@example.com",
        "acct_other",
        now,
        now + 300,
    );
    let other_secret = token_with(
        OTHER_SECRET,
        "k1",
        "ada@example.com",
        ACCOUNT,
        now,
        now + 300,
    );
    let unknown_key = token_with(SECRET, "k9", "ada@example.com", ACCOUNT, now, now + 300);
    let expired = token_with(
        SECRET,
        "k1",
        "ada@example.com",
        ACCOUNT,
        now - 3600,
        now - 600,
    );
    let ada_identity = Some("ada@example.com");

    #[rustfmt::skip]
    let cases = vec![
        case("same token twice in the query", &format!("GET /docs/a?auth-token={ada}&auth-token={ada}"), vec![], 200, Some("/docs/a"), ada_identity),
        case("same token in both spellings", &format!("GET /docs/b?auth-token={ada}&x=1&auth_token={ada}"), vec![], 200, Some("/docs/b?x=1"), ada_identity),
        case("two different tokens in the query", &format!("GET /docs/c?auth-token={ada}&auth_token={bob}"), vec![], 400, None, None),
        case("query and bearer disagree", &format!("GET /docs/d?auth-token={ada}"), vec![bearer_line(&bob)], 400, None, None),
        case("query and X-Auth-Token disagree", &format!("GET /docs/e?auth-token={ada}"), vec![format!("X-Auth-Token: {bob}")], 400, None, None),
        case("two bearer headers disagree", "GET /docs/f", vec![bearer_line(&ada), bearer_line(&bob)], 400, None, None),
        case("query and bearer agree", &format!("GET /docs/g?auth-token={ada}"), vec![bearer_line(&ada)], 200, Some("/docs/g"), ada_identity),
        case("different tokens refused on a public page too", &format!("GET /public/h?auth-token={ada}"), vec![bearer_line(&bob)], 400, None, None),
        case("oversized token", "GET /docs/i", vec![bearer_line(&oversized)], 401, None, None),
        case("oversized token in the query", &format!("GET /docs/j?auth-token={oversized}"), vec![], 401, None, None),
        case("oversized token on a public page is stripped", &format!("GET /public/k?auth-token={oversized}&q=1"), vec![], 200, Some("/public/k?q=1"), None),
        case("token for another account", "GET /docs/l", vec![bearer_line(&other_account)], 401, None, None),
        case("token from a secret not configured", "GET /docs/m", vec![bearer_line(&other_secret)], 401, None, None),
        case("token with an unknown key id", "GET /docs/n", vec![bearer_line(&unknown_key)], 401, None, None),
        case("expired token", "GET /docs/o", vec![bearer_line(&expired)], 401, None, None),
        case("expired token in the query", &format!("GET /docs/o2?auth_token={expired}"), vec![], 401, None, None),
        case("empty bearer", "GET /docs/p", vec!["Authorization: Bearer".into()], 401, None, None),
        case("bearer of spaces", "GET /docs/q", vec!["Authorization: Bearer    ".into()], 401, None, None),
        case("empty query token", "GET /docs/r?auth-token=", vec![], 401, None, None),
        case("empty X-Auth-Token", "GET /docs/r2", vec!["X-Auth-Token: ".into()], 401, None, None),
        case("lower-case bearer scheme", "GET /docs/s", vec![format!("Authorization: bearer {ada}")], 200, Some("/docs/s"), ada_identity),
        case("upper-case bearer scheme", "GET /docs/t", vec![format!("authorization: BEARER {ada}")], 200, Some("/docs/t"), ada_identity),
        case("Basic is not a token", "GET /docs/u", vec!["Authorization: Basic YWRhOnB3".into()], 401, None, None),
        case("percent-encoded parameter name", &format!("GET /docs/v?auth%2Dtoken={ada}"), vec![], 200, Some("/docs/v"), ada_identity),
        case("percent-encoded name among others", &format!("GET /docs/w?a=1&auth%2dtoken={ada}&b=%20"), vec![], 200, Some("/docs/w?a=1&b=%20"), ada_identity),
        case("percent-encoded underscore name", &format!("GET /docs/x?auth%5Ftoken={ada}"), vec![], 200, Some("/docs/x"), ada_identity),
        case("token of a user the rule does not admit", "GET /internal/y", vec![bearer_line(&eve)], 403, None, None),
        case("token via X-Auth-Token is stripped", "GET /docs/z", vec![format!("X-Auth-Token: {ada}")], 200, Some("/docs/z"), ada_identity),
        // Spellings the gate does not read as a credential still never
        // reach the upstream.
        case("X_Auth_Token spelling", "GET /public/s1", vec![format!("X_Auth_Token: {ada}")], 200, Some("/public/s1"), None),
        case("bearer after a tab", "GET /public/s2", vec![format!("Authorization: Bearer\t{ada}")], 200, Some("/public/s2"), None),
        case("bearer after a tab is a credential", "GET /docs/s2", vec![format!("Authorization: Bearer\t{ada}")], 200, Some("/docs/s2"), ada_identity),
        case("token in the Referer", "GET /public/s3", vec![format!("Referer: https://app.example.com/p?x=1&auth-token={ada}#auth-token={ada}")], 200, Some("/public/s3"), None),
        case("session cookie after a comma", "GET /public/s4", vec![format!("Cookie: a=1, __Host-portal-gate-session={ada}; b=2")], 200, Some("/public/s4"), None),
        case("session cookie in other letter case", "GET /public/s5", vec![format!("Cookie: __HOST-portal-gate-SESSION={ada}; b=2")], 200, Some("/public/s5"), None),
        case("token parameter in upper case", &format!("GET /public/s6?AUTH-TOKEN={ada}&q=1"), vec![], 200, Some("/public/s6?q=1"), None),
    ];
    run_cases(&gate, &upstream, &cases).await;

    let referer = upstream.seen_under("/public/s3");
    assert_eq!(
        referer[0].headers["referer"],
        "https://app.example.com/p?x=1"
    );
    let cookies = upstream.seen_under("/public/s4");
    assert_eq!(cookies[0].headers["cookie"], "a=1; b=2");
    for seen in upstream.seen() {
        assert!(!seen.uri.contains(&ada), "token in {}", seen.uri);
        for value in seen.headers.values() {
            let value = value.to_str().unwrap_or("");
            assert!(
                !value.contains(&ada) && !value.contains(&oversized[..64]),
                "token in a header of {}",
                seen.uri
            );
        }
    }
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

/// A valid token (test secret, key `k1`) with arbitrary `eml` and `uid`:
/// what a third-party minter following docs/token-format.md can produce,
/// since the format only requires a non-empty email string.
fn token_with_identity(email: &str, user_id: Option<&str>) -> String {
    use portal_gate::token::{self, Claims};
    use portal_gate::token::{SecretRing, SecretSpec};
    let ring = SecretRing::new(vec![SecretSpec {
        id: "k1".into(),
        value: SECRET.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .expect("ring");
    let now = unix_now();
    let claims = Claims {
        account_id: ACCOUNT.into(),
        email: email.into(),
        user_id: user_id.map(str::to_owned),
        name: None,
        avatar_url: None,
        issued_at: now,
        expires_at: now + 300,
    };
    token::mint(ring.primary(), &claims)
}

#[tokio::test]
async fn a_verified_request_never_reaches_the_upstream_without_one_clean_identity() {
    // BUG (found here): the gate opens any non-empty `eml` claim, decides on
    // it, and then sets X-Forwarded-Email only `if let Ok(..) =
    // HeaderValue::from_str(..)` (headers.rs `prepare_upstream_headers`).
    // A claim with a control character therefore reaches a verified page
    // with *no* identity header at all, and a claim such as
    // "eve@evil.org, ceo@example.com" passes the `/internal/**` domain rule
    // (gate/rules use the part after the *last* '@') and reaches the
    // upstream as a comma list that list-aware upstreams split into two
    // identities. The token API refuses such emails (`is_plausible_email`),
    // but docs/token-format.md invites other minters and opening does not
    // re-check. Secure/expected: refuse the token (401) and forward nothing.
    let (upstream, gate) = setup().await;
    let mut failures = Vec::new();
    for (name, path, email, user_id) in [
        (
            "control character in email",
            "/docs/a",
            "ada@example.com\u{1}",
            None,
        ),
        (
            "email that is a header list",
            "/internal/b",
            "eve@evil.org, ceo@example.com",
            None,
        ),
        (
            "email with two @",
            "/internal/c",
            "eve@evil.org@example.com",
            None,
        ),
        (
            "email with a space",
            "/internal/d",
            "eve@evil.org ceo@example.com",
            None,
        ),
        (
            "user id with a control character",
            "/docs/e",
            "ada@example.com",
            Some("ada\u{7f}"),
        ),
        (
            "user id that is a header list",
            "/docs/f",
            "ada@example.com",
            Some("ada, ceo"),
        ),
    ] {
        let before = upstream.seen().len();
        let token = token_with_identity(email, user_id);
        let reply = send_raw(
            &gate,
            raw_request(&format!("GET {path}"), &[bearer_line(&token)]).as_bytes(),
        )
        .await;
        let arrived: Vec<Seen> = upstream.seen().into_iter().skip(before).collect();
        if reply.status != 401 || !arrived.is_empty() {
            let headers: Vec<_> = arrived
                .iter()
                .map(|s| {
                    (
                        s.headers.get("x-forwarded-email").cloned(),
                        s.headers.get("x-forwarded-user").cloned(),
                    )
                })
                .collect();
            failures.push(format!(
                "{name} ({email:?}, {user_id:?}) on {path}: status {} (want 401), upstream got (email, user) {headers:?}",
                reply.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    gate.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Request smuggling and framing
// ---------------------------------------------------------------------------

/// A request hidden behind ambiguous framing: if any hop read the body by
/// `Content-Length` instead of the chunks, this second request would be
/// parsed on its own.
const HIDDEN: &str = "GET /docs/secret HTTP/1.1\r\nHost: portal.test\r\n\r\n";

#[tokio::test]
async fn content_length_with_transfer_encoding_is_read_as_chunked_and_closes_the_connection() {
    // Found: hyper 1.12 does not refuse CL + TE. It reads the body as
    // chunked (RFC 9112 §6.3), drops the Content-Length and closes the
    // connection after answering, so bytes after the last chunk are never
    // parsed as a request. The gate then drops both framing headers and the
    // client re-frames, so the upstream sees one well-framed request.
    let (upstream, gate) = setup().await;
    for (name, framing) in [
        (
            "CL before TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
        ),
        (
            "TE before CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
        ),
    ] {
        let before = upstream.seen().len();
        let text = format!(
            "POST /public/form HTTP/1.1\r\nHost: portal.test\r\n{framing}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{HIDDEN}"
        );
        let reply = send_raw(&gate, text.as_bytes()).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        assert_eq!(
            reply.responses, 1,
            "{name}: the hidden request was answered: {}",
            reply.text
        );
        let arrived: Vec<Seen> = upstream.seen().into_iter().skip(before).collect();
        assert_eq!(arrived.len(), 1, "{name}: {arrived:?}");
        assert_eq!(arrived[0].uri, "/public/form");
        assert_eq!(&arrived[0].body[..], b"hello", "{name}");
        assert!(
            arrived[0].headers.get("transfer-encoding").is_none()
                || arrived[0].headers.get("content-length").is_none(),
            "{name}: both framings reached the upstream"
        );
    }

    // On a restricted page the same framing is still just a 401.
    let text = format!(
        "POST /docs/form HTTP/1.1\r\nHost: portal.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HIDDEN}"
    );
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.responses, 1, "{}", reply.text);
    assert!(upstream.seen_under("/docs").is_empty());
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn ambiguous_framing_is_refused_before_anything_is_forwarded() {
    let (upstream, gate) = setup().await;
    let post = |headers: &str, body: &str| {
        format!("POST /public/form HTTP/1.1\r\nHost: portal.test\r\n{headers}\r\n\r\n{body}")
    };
    #[rustfmt::skip]
    let cases = [
        ("two different Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6", "hello!")),
        ("Content-Length list that disagrees", post("Content-Length: 5, 6", "hello!")),
        ("negative Content-Length", post("Content-Length: -1", "")),
        ("signed Content-Length", post("Content-Length: +5", "hello")),
        ("obsolete line folding", post("Content-Length: 5\r\nX-Note: a\r\n  folded", "hello")),
        ("folded Transfer-Encoding", post("Transfer-Encoding:\r\n chunked", "0\r\n\r\n")),
        ("space before colon in Transfer-Encoding", post("Transfer-Encoding : chunked", "0\r\n\r\n")),
        ("Transfer-Encoding not ending in chunked", post("Transfer-Encoding: chunked, identity", "0\r\n\r\n")),
        ("Transfer-Encoding identity", post("Transfer-Encoding: identity", "hello")),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST /public/form HTTP/1.0\r\nHost: portal.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, text) in &cases {
        let reply = send_raw(&gate, format!("{text}{HIDDEN}").as_bytes()).await;
        if reply.status != 400 {
            failures.push(format!(
                "{name}: status {} ({:?})",
                reply.status, reply.text
            ));
        }
        if reply.responses > 1 {
            failures.push(format!("{name}: the hidden request was answered"));
        }
        if !upstream.seen_under("/docs").is_empty() {
            failures.push(format!("{name}: the hidden request reached the upstream"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // hyper refuses each of these while parsing the head: nothing at all
    // reached the upstream.
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    gate.stop().await;
}

#[tokio::test]
async fn identical_duplicate_content_lengths_are_one_length() {
    // Two identical Content-Lengths are one length (RFC 9110 §8.6): fine.
    let (upstream, gate) = setup().await;
    let text = "POST /public/form HTTP/1.1\r\nHost: portal.test\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"hello");
    let lengths: Vec<_> = seen[0].headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, vec!["5"]);
    gate.stop().await;
}

#[tokio::test]
async fn a_request_inside_a_body_reaches_the_upstream_only_as_body_bytes() {
    let (upstream, gate) = setup().await;
    let text = format!(
        "POST /public/form HTTP/1.1\r\nHost: portal.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HIDDEN}",
        HIDDEN.len()
    );
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].uri, "/public/form");
    assert_eq!(&seen[0].body[..], HIDDEN.as_bytes());

    // Pipelined after a well-framed request, the same bytes are a request
    // of their own, and the gate gates it.
    let text = format!(
        "POST /public/form HTTP/1.1\r\nHost: portal.test\r\nContent-Length: 0\r\n\r\n{}",
        raw_request("GET /docs/secret", &[])
    );
    let reply = send_raw(&gate, text.as_bytes()).await;
    assert_eq!(reply.responses, 2, "{}", reply.text);
    assert!(reply.text.contains("HTTP/1.1 401"), "{}", reply.text);
    assert!(upstream.seen_under("/docs").is_empty());
    assert_upstream_saw_only_admitted_requests(&upstream);
    gate.stop().await;
}

#[tokio::test]
async fn malformed_chunked_body_is_a_client_error_not_a_bad_gateway() {
    // BUG (found here): a chunked body whose framing breaks after the head
    // (bare LF or a non-hex chunk size) is detected only while the gate
    // streams the body to the upstream. The upstream client then fails, and
    // proxy.rs maps every client error to `Reason::UpstreamUnavailable`:
    // the client gets 502 "the portal host is unavailable" and the log a
    // warning about the upstream, for what is the client's malformed
    // request. Secure/expected: 400, and never a complete request upstream.
    let (upstream, gate) = setup().await;
    let mut wrong_status = Vec::new();
    for (name, body) in [
        ("bare LF in chunk size line", "5\nhello\r\n0\r\n\r\n"),
        ("non-hex chunk size", "zz\r\nhello\r\n0\r\n\r\n"),
    ] {
        let text = format!(
            "POST /public/form HTTP/1.1\r\nHost: portal.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}{HIDDEN}"
        );
        let reply = send_raw(&gate, text.as_bytes()).await;
        let complete: Vec<_> = upstream
            .seen()
            .into_iter()
            .filter(|s| !s.body.is_empty())
            .collect();
        assert!(
            complete.is_empty(),
            "{name}: a request with a broken body arrived: {complete:?}"
        );
        assert!(upstream.seen_under("/docs").is_empty(), "{name}");
        assert!(
            reply.responses <= 1,
            "{name}: the hidden request was answered"
        );
        if reply.status != 400 {
            wrong_status.push(format!(
                "{name}: {} (want 400)",
                reply.text.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(wrong_status.is_empty(), "{}", wrong_status.join("\n"));
    gate.stop().await;
}

// ---------------------------------------------------------------------------
// 5. HTTP/2
// ---------------------------------------------------------------------------

/// A GET over h2c with prior knowledge.
async fn h2_get(
    gate: &GateProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::Version, String) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder().uri(gate.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("gate answered in time")
        .expect("gate answered over h2");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.version,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

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
