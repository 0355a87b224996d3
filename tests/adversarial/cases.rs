//! What the adversarial classes share: the gate they attack, raw requests
//! and replies, the table of cases, and the oracle that restates the test
//! rules independently of the gate's code.

use crate::support::*;

// ---------------------------------------------------------------------------
// Fixture additions
// ---------------------------------------------------------------------------

pub async fn setup() -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), "")).await;
    (upstream, gate)
}

/// A raw HTTP/1.1 request: `line` is the method and target (`"GET /x"`),
/// `headers` whole header lines sent verbatim (so malformed ones are
/// possible); `Host: portal.test` and `Connection: close` are added so the
/// gate closes the connection after answering.
pub fn raw_request(line: &str, headers: &[String]) -> String {
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
pub struct RawReply {
    pub status: u16,
    /// How many responses came back on the connection.
    pub responses: usize,
    pub text: String,
}

pub async fn send_raw(gate: &GateProcess, bytes: &[u8]) -> RawReply {
    let text = raw(gate.addr, bytes).await;
    RawReply {
        status: raw_status(&text),
        responses: text.matches("HTTP/1.1 ").count(),
        text,
    }
}

/// A `Authorization: Bearer` header line.
pub fn bearer_line(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Who the test rules of [`config_for`] admit to a normalized path. Written
/// out again here, not taken from the gate, so the oracle does not share
/// the gate's bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    Anyone,
    AnyVerified,
    Domain(&'static str),
    Email(&'static str),
}

pub fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub fn admits(path: &str) -> Admits {
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
pub const GATE_OWNED: [&str; 19] = [
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
pub fn violations(seen: &Seen) -> Vec<String> {
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
pub fn assert_upstream_saw_only_admitted_requests(upstream: &RecordingUpstream) {
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
pub struct Case {
    pub name: String,
    pub request: String,
    pub status: u16,
    /// The exact URI the upstream receives; `None`: nothing reaches it.
    pub reaches: Option<String>,
    /// The identity the upstream receives with it (checked when it does).
    pub identity: Option<String>,
}

/// A case sent as `line` with `headers` (see [`raw_request`]).
pub fn case(
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
pub fn refused_with_host(name: &str, host: &str) -> Case {
    Case {
        name: name.to_string(),
        request: format!("GET /public/h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        status: 400,
        reaches: None,
        identity: None,
    }
}

/// Send every case, one connection each, and report every mismatch at once.
pub async fn run_cases(gate: &GateProcess, upstream: &RecordingUpstream, cases: &[Case]) {
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

/// A verified user of another domain than the restricted rules admit.
pub const OUTSIDER: &str = "eve@example.org";
