//! Access by who the customer is, through the real server: groups and
//! attributes minted by the token API, the page rules on them and on
//! methods, the identity headers the upstream receives, and `/auth/me`.

mod support;

use http::{Method, StatusCode};
use support::*;

/// Rules of the README's worked example, and the attributes forwarded.
const RULES: &str = r#"
[forward]
attributes = ["plan", "support_tier"]

[embed]
allowed_origins = ["https://app.example.com"]

[[pages]]
path = "/roadmap/**"
access = "verified"
require = { plan = ["pro", "enterprise"] }

[[pages]]
path = "/beta/**"
access = "verified"
allow_groups = ["beta"]

[[pages]]
path = "/eu/**"
access = "verified"
allow_groups = ["beta"]
allow_domains = ["example.com"]
require = { plan = ["pro"], region = ["eu"] }

[[pages]]
path = "/ideas/**"
access = "public"

[[pages]]
path = "/ideas/**"
methods = ["POST"]
access = "verified"

[[pages]]
path = "/specs/**"
methods = ["GET"]
access = "public"
"#;

async fn gate() -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), RULES)).await;
    (upstream, gate)
}

/// Mints through the token API with `extra` JSON fields.
async fn mint(gate: &GateProcess, email: &str, extra: &str) -> String {
    let reply = api(gate, email, extra).await;
    assert_eq!(reply.status, StatusCode::OK, "mint failed: {}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    json["token"].as_str().expect("token").to_string()
}

async fn api(gate: &GateProcess, email: &str, extra: &str) -> Reply {
    request(Method::POST, &gate.url("/auth/api/token"))
        .bearer(SECRET)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"{email}"{extra}}}"#
        ))
        .send()
        .await
}

fn error_of(reply: &Reply) -> String {
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error body");
    json["error"].as_str().expect("error field").to_string()
}

#[tokio::test]
async fn groups_admit_and_refuse_and_the_refusal_names_the_condition() {
    let (upstream, gate) = gate().await;
    let beta = mint(&gate, "ada@example.org", r#","groups":["alpha","beta"]"#).await;
    let reply = get(&gate.url("/beta/x")).bearer(&beta).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let nobody = mint(&gate, "bob@example.org", "").await;
    let other = mint(&gate, "eve@example.org", r#","groups":["Beta","beta2"]"#).await;
    for token in [&nobody, &other] {
        let reply = get(&gate.url("/beta/y"))
            .bearer(token)
            .header("accept", "application/json")
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(
            error_of(&reply),
            "this user is in no group this page admits"
        );
        assert!(!reply.body.contains("Beta") && !reply.body.contains("eve"));
    }
    let text = navigate(&gate.url("/beta/y")).bearer(&other).send().await;
    assert_eq!(text.body, "this user is in no group this page admits\n");
    assert!(upstream.seen_under("/beta/y").is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn required_attributes_must_all_hold_whatever_admitted() {
    let (upstream, gate) = gate().await;
    let pro = mint(&gate, "ada@example.org", r#","attributes":{"plan":"pro"}"#).await;
    let enterprise = mint(
        &gate,
        "ada@example.org",
        r#","attributes":{"plan":["free","enterprise"]}"#,
    )
    .await;
    let free = mint(&gate, "bob@example.org", r#","attributes":{"plan":"free"}"#).await;
    let none = mint(&gate, "bob@example.org", "").await;
    for token in [&pro, &enterprise] {
        let reply = get(&gate.url("/roadmap/")).bearer(token).send().await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    for token in [&free, &none] {
        let reply = navigate(&gate.url("/roadmap/")).bearer(token).send().await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(
            reply.body,
            "this user's attributes do not meet this page's require\n"
        );
    }
    // Allow lists ("any of") and require ("and") together.
    let cases = [
        (
            r#","groups":["beta"],"attributes":{"plan":"pro","region":["us","eu"]}"#,
            "x@example.org",
            200,
        ),
        (
            r#","attributes":{"plan":"pro","region":"eu"}"#,
            "x@example.com",
            200,
        ),
        (
            r#","attributes":{"plan":"pro","region":"eu"}"#,
            "x@example.org",
            403,
        ),
        (
            r#","groups":["beta"],"attributes":{"plan":"pro"}"#,
            "x@example.org",
            403,
        ),
        (
            r#","groups":["beta"],"attributes":{"plan":"pro","region":"EU"}"#,
            "x@example.org",
            403,
        ),
    ];
    for (extra, email, status) in cases {
        let token = mint(&gate, email, extra).await;
        let reply = get(&gate.url("/eu/page")).bearer(&token).send().await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{email} {extra}: {}",
            reply.body
        );
    }
    assert_eq!(upstream.seen_under("/eu/").len(), 2);
    gate.stop().await;
}

#[tokio::test]
async fn a_rule_with_methods_beats_one_without_and_others_fall_through() {
    let (upstream, gate) = gate().await;
    // GET of the ideas is public; a POST (a vote) needs a verified user.
    let read = get(&gate.url("/ideas/7")).send().await;
    assert_eq!(read.status, StatusCode::OK);
    let vote = request(Method::POST, &gate.url("/ideas/7/vote"))
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(vote.status, StatusCode::UNAUTHORIZED);
    assert!(upstream.seen_under("/ideas/7/vote").is_empty());
    let token = mint(&gate, "ada@example.org", "").await;
    let vote = request(Method::POST, &gate.url("/ideas/7/vote"))
        .bearer(&token)
        .body("up")
        .send()
        .await;
    assert_eq!(vote.status, StatusCode::OK);
    let seen = upstream.seen_under("/ideas/7/vote");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-email"], "ada@example.org");

    // /specs/** is public for GET and HEAD only: other methods fall to
    // default_access (restricted), and so do other spellings of GET.
    for method in ["GET", "HEAD"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = request(method.clone(), &gate.url("/specs/a")).send().await;
        assert_eq!(reply.status, StatusCode::OK, "{method}");
    }
    for method in ["POST", "DELETE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = request(method.clone(), &gate.url("/specs/a")).send().await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method}");
    }
    // A method no `methods` list can name, on a path whose rules name
    // methods: nobody can say which rule it falls under, so 405, never the
    // laxest rule (an upstream may read `post` as POST).
    for (path, method) in [
        ("/specs/a", "get"),
        ("/specs/a", "PURGE"),
        ("/ideas/7/vote", "post"),
        ("/ideas/7/vote", "Post"),
        ("/ideas/7/vote", "PROPPATCH"),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = request(method.clone(), &gate.url(path))
            .header("accept", "application/json")
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(reply.header("allow").unwrap().contains("POST"));
        assert!(error_of(&reply).contains("rules name their methods"));
    }
    // Where no rule names methods, extension methods pass as before.
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    let token = mint(&gate, "ada@example.org", "").await;
    let reply = request(propfind, &gate.url("/docs/a"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(upstream
        .seen_under("/specs/a")
        .iter()
        .all(|s| s.method == Method::GET || s.method == Method::HEAD));
    gate.stop().await;
}

#[tokio::test]
async fn identity_headers_reach_the_upstream_and_client_copies_never_do() {
    let (upstream, gate) = gate().await;
    let token = mint(
        &gate,
        "ada@example.org",
        r#","user_id":"u-1","groups":["beta","org:acme"],"profile":{"name":"Zoë Ünal, Ph.D.+1","avatar_url":"https://cdn.example.com/a/ada.png"},"attributes":{"plan":"pro","support_tier":["gold","24/7, on call"],"region":"eu"}"#,
    )
    .await;
    let spoofed = [
        ("x-forwarded-groups", "admins"),
        ("X_Forwarded_Groups", "admins"),
        ("x-forwarded-name", "Mallory"),
        ("x-forwarded-avatar-url", "https://evil.example/x.png"),
        ("x-forwarded-attr-plan", "enterprise"),
        ("x-forwarded-attr-region", "us"),
        ("x_forwarded_attr_plan", "enterprise"),
        ("remote-groups", "admins"),
    ];
    let mut call = get(&gate.url("/docs/a")).bearer(&token);
    for (name, value) in spoofed {
        call = call.header(name, value);
    }
    assert_eq!(call.send().await.status, StatusCode::OK);
    let seen = &upstream.seen_under("/docs/a")[0].headers;
    let all = |name: &str| -> Vec<&str> {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-forwarded-groups"), ["beta,org:acme"]);
    assert_eq!(
        all("x-forwarded-name"),
        ["Zo%C3%AB%20%C3%9Cnal%2C%20Ph.D.%2B1"]
    );
    assert_eq!(
        all("x-forwarded-avatar-url"),
        ["https://cdn.example.com/a/ada.png"]
    );
    assert_eq!(all("x-forwarded-attr-plan"), ["pro"]);
    assert_eq!(
        all("x-forwarded-attr-support-tier"),
        ["gold,24%2F7%2C%20on%20call"]
    );
    assert_eq!(all("x-forwarded-user"), ["u-1"]);
    // Not listed in [forward]: never sent, and the client's copy is gone.
    assert!(all("x-forwarded-attr-region").is_empty());
    for name in [
        "x_forwarded_groups",
        "x_forwarded_attr_plan",
        "remote-groups",
    ] {
        assert!(!seen.contains_key(name), "{name}");
    }

    // A public page gets none of them, whatever the client sent.
    let mut call = get(&gate.url("/public/p")).bearer(&token);
    for (name, value) in spoofed {
        call = call.header(name, value);
    }
    assert_eq!(call.send().await.status, StatusCode::OK);
    let seen = &upstream.seen_under("/public/p")[0].headers;
    for name in [
        "x-forwarded-groups",
        "x-forwarded-name",
        "x-forwarded-attr-plan",
        "x-forwarded-avatar-url",
    ] {
        assert!(!seen.contains_key(name), "{name}");
    }
    gate.stop().await;
}

#[tokio::test]
async fn claims_smuggled_in_the_query_or_headers_never_count() {
    let (upstream, gate) = gate().await;
    let plain = mint(&gate, "eve@example.org", "").await;
    let smuggles = [
        (
            "/beta/x?groups=beta&group=beta",
            "x-forwarded-groups",
            "beta",
        ),
        ("/beta/x", "x-auth-request-groups", "beta"),
        ("/beta/x", "remote-groups", "beta"),
        (
            "/roadmap/?plan=pro&attributes[plan]=pro",
            "x-forwarded-attr-plan",
            "pro",
        ),
        ("/roadmap/", "x-forwarded-plan", "pro"),
    ];
    for (path, name, value) in smuggles {
        let reply = get(&gate.url(path))
            .bearer(&plain)
            .header(name, value)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {name}");
    }
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn bad_claims_get_a_400_that_names_the_field() {
    let (_upstream, gate) = gate().await;
    let many: Vec<String> = (0..33).map(|i| format!("\"g{i}\"")).collect();
    let many_keys: Vec<String> = (0..17).map(|i| format!("\"k{i}\":\"v\"")).collect();
    let long_list: Vec<String> = (0..17).map(|_| "\"v\"".to_string()).collect();
    let cases = [
        (
            format!(r#","groups":[{}]"#, many.join(",")),
            "groups must hold at most 32 groups",
        ),
        (
            r#","groups":["ok","a b"]"#.to_string(),
            "groups[1] must match ^[A-Za-z0-9:._-]{1,64}$",
        ),
        (
            format!(r#","groups":["{}"]"#, "g".repeat(65)),
            "groups[0] must match",
        ),
        (
            r#","groups":["ok",5]"#.to_string(),
            "groups[1]: invalid type: integer `5`, expected a string",
        ),
        (
            r#","groups":"beta""#.to_string(),
            "groups: invalid type: string \"beta\", expected a sequence",
        ),
        (
            r#","attributes":{"Plan":"pro"}"#.to_string(),
            "attributes.Plan is not a valid key",
        ),
        (
            format!(r#","attributes":{{"plan":"{}"}}"#, "x".repeat(129)),
            "attributes.plan must be a string of at most 128 characters",
        ),
        (
            r#","attributes":{"plan":5}"#.to_string(),
            "attributes.plan: invalid type: integer `5`, expected a string or a list of strings",
        ),
        (
            r#","attributes":{"plan":{"tier":"pro"}}"#.to_string(),
            "attributes.plan: invalid type: map, expected a string or a list of strings",
        ),
        (
            r#","attributes":{"plan":["pro",["x"]]}"#.to_string(),
            "attributes.plan[1]: invalid type: sequence, expected a string",
        ),
        (
            r#","attributes":{"plan":"pro","plan":"free"}"#.to_string(),
            "attributes: duplicate key \"plan\"",
        ),
        (
            format!(r#","attributes":{{{}}}"#, many_keys.join(",")),
            "attributes: at most 16 keys",
        ),
        (
            format!(r#","attributes":{{"k":[{}]}}"#, long_list.join(",")),
            "attributes.k: a list holds at most 16 strings",
        ),
        (
            r#","attributes":["plan"]"#.to_string(),
            "attributes: invalid type: sequence, expected an object of attributes",
        ),
        (
            r#","groups":[],"groups":["beta"]"#.to_string(),
            "duplicate field `groups`",
        ),
    ];
    for (extra, expected) in cases {
        let reply = api(&gate, "ada@example.org", &extra).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{extra}");
        let error = error_of(&reply);
        assert!(error.contains(expected), "{extra}: {error}");
    }
    // Every field within its limits, all together too large for a cookie.
    let huge: Vec<String> = (0..16)
        .map(|i| format!(r#""k{i}":["{}","{}"]"#, "x".repeat(128), "y".repeat(128)))
        .collect();
    let reply = api(
        &gate,
        "ada@example.org",
        &format!(r#","attributes":{{{}}}"#, huge.join(",")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&reply).starts_with("groups and attributes: together too large"));
    // The limits themselves are allowed.
    let groups: Vec<String> = (0..32).map(|i| format!("\"g{i}\"")).collect();
    let token = mint(
        &gate,
        "ada@example.org",
        &format!(r#","groups":[{}]"#, groups.join(",")),
    )
    .await;
    let reply = get(&gate.url("/docs/x")).bearer(&token).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    gate.stop().await;
}

#[tokio::test]
async fn the_session_carries_the_claims_and_auth_me_reports_them() {
    let (upstream, gate) = gate().await;
    let token = mint(
        &gate,
        "ada@example.org",
        r#","groups":["beta"],"attributes":{"plan":"pro"},"profile":{"name":"Ada"}"#,
    )
    .await;

    // With the token.
    let me = get(&gate.url("/auth/me")).bearer(&token).send().await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.header("cache-control"), Some("no-store"));
    let json: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(json["email"], "ada@example.org");
    assert_eq!(json["name"], "Ada");
    assert_eq!(json["groups"], serde_json::json!(["beta"]));
    assert_eq!(json["attributes"], serde_json::json!({"plan": "pro"}));
    assert_eq!(json["secret_id"], "k1");
    assert_eq!(json["credential"], "token");
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));

    // The token becomes a session, which keeps the claims.
    let exchange = navigate(&gate.url(&format!("/beta/?auth-token={token}")))
        .send()
        .await;
    assert_eq!(exchange.status, StatusCode::SEE_OTHER);
    let cookie = session_cookie(&exchange);
    let page = get(&gate.url("/beta/"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let roadmap = get(&gate.url("/roadmap/"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(roadmap.status, StatusCode::OK);
    let me = get(&gate.url("/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await;
    let json: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(json["credential"], "session");
    assert_eq!(json["groups"], serde_json::json!(["beta"]));

    // Nothing, or a bad token: 401 JSON.
    let nothing = get(&gate.url("/auth/me")).send().await;
    assert_eq!(nothing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&nothing), "a token is required for this page");
    let bad = get(&gate.url("/auth/me"))
        .bearer(&bad_tokens().expired)
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(upstream.seen_under("/auth/me").is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn auth_me_admits_allowed_origins_with_credentials_preflight_included() {
    let (_upstream, gate) = gate().await;
    let preflight = |origin: &'static str| {
        request(Method::OPTIONS, &gate.url("/auth/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
    };
    let ok = preflight("https://app.example.com").send().await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, HEAD"));
    let refused = preflight("https://evil.example").send().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.header("access-control-allow-origin"), None);

    let token = mint(&gate, "ada@example.org", "").await;
    let read = get(&gate.url("/auth/me"))
        .bearer(&token)
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        read.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(read.header("vary").unwrap().contains("Origin"));
    let foreign = get(&gate.url("/auth/me"))
        .bearer(&token)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    gate.stop().await;
}

#[tokio::test]
async fn the_user_info_path_is_configurable() {
    let upstream = RecordingUpstream::start().await;
    let config = config_for(&upstream.url(), "[embed]\nme_path = \"/whoami\"");
    let gate = GateProcess::start(&config).await;
    let token = mint(&gate, "ada@example.org", "").await;
    let me = get(&gate.url("/whoami")).bearer(&token).send().await;
    assert_eq!(me.status, StatusCode::OK);
    // The old path is now an ordinary (restricted) page.
    let old = get(&gate.url("/auth/me")).bearer(&token).send().await;
    assert_eq!(old.body, "upstream: /auth/me");
    gate.stop().await;
}

#[tokio::test]
async fn head_is_judged_by_the_get_rule_never_by_a_laxer_one() {
    let upstream = RecordingUpstream::start().await;
    let extra = r#"
[[pages]]
path = "/reports/**"
access = "public"

[[pages]]
path = "/reports/**"
methods = ["GET"]
access = "verified"
allow_groups = ["finance"]
"#;
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    for method in [Method::GET, Method::HEAD] {
        let reply = request(method.clone(), &gate.url("/reports/q3"))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method}");
    }
    // Other methods fall to the rule without methods: public.
    let options = request(Method::OPTIONS, &gate.url("/reports/q3"))
        .send()
        .await;
    assert_eq!(options.status, StatusCode::OK);
    let finance = mint(&gate, "cfo@example.org", r#","groups":["finance"]"#).await;
    let head = request(Method::HEAD, &gate.url("/reports/q3"))
        .bearer(&finance)
        .send()
        .await;
    assert_eq!(head.status, StatusCode::OK);
    let seen = upstream.seen_under("/reports/q3");
    assert_eq!(
        seen.iter().map(|s| s.method.clone()).collect::<Vec<_>>(),
        [Method::OPTIONS, Method::HEAD]
    );
    gate.stop().await;
}

/// The library API: a backend mints with `token::mint` (groups and
/// attributes included), and `Gate::admit` judges the rules and hands the
/// application an `Identity` that carries them.
#[tokio::test]
async fn the_library_mints_claims_and_admit_judges_them() {
    use http_body_util::Empty;
    use portal_gate::token::{self, AttrValue, Claims};
    use portal_gate::{Admission, ConnInfo, Gate, Identity};

    let upstream = RecordingUpstream::start().await;
    let text = config_for(&upstream.url(), RULES);
    let config = portal_gate::Config::parse(&text, std::path::Path::new("claims.toml")).unwrap();
    let gate = Gate::new(config).unwrap();
    // The backend's own copy of the shared secret.
    let ring = token::SecretRing::new(vec![token::SecretSpec {
        id: "k1".into(),
        value: SECRET.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .unwrap();
    let key = ring.primary();
    let now = unix_now();
    let mut claims = Claims::for_user(ACCOUNT.into(), "ada@example.org", None, now, 60).unwrap();
    claims.groups = vec!["beta".into()];
    claims
        .attributes
        .insert("plan".into(), AttrValue::One("enterprise".into()));
    claims.validate().unwrap();
    let sealed = token::mint(key, &claims);
    let conn = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 1)), false);
    let admit = |method: Method, path: &str, token: Option<&str>| {
        let mut request = http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        gate.admit(request.body(Empty::<bytes::Bytes>::new()).unwrap(), &conn)
    };
    match admit(Method::GET, "/roadmap/q3", Some(&sealed)).await {
        Admission::Forward(request) => {
            let user = request.extensions().get::<Identity>().expect("identity");
            assert_eq!(user.groups(), ["beta"]);
            let plan = user.attributes().get("plan").expect("plan");
            assert_eq!(plan.values(), ["enterprise"]);
            assert_eq!(request.headers()["x-forwarded-attr-plan"], "enterprise");
            assert_eq!(request.headers()["x-forwarded-groups"], "beta");
        }
        Admission::Respond(answer) => panic!("refused: {}", answer.status()),
    }
    claims.attributes = Default::default();
    let free = token::mint(key, &claims);
    match admit(Method::GET, "/roadmap/q3", Some(&free)).await {
        Admission::Respond(answer) => assert_eq!(answer.status(), StatusCode::FORBIDDEN),
        Admission::Forward(_) => panic!("a user without the plan was forwarded"),
    }
    match admit(Method::POST, "/ideas/1/vote", None).await {
        Admission::Respond(answer) => assert_eq!(answer.status(), StatusCode::UNAUTHORIZED),
        Admission::Forward(_) => panic!("an anonymous vote was forwarded"),
    }
    assert!(matches!(
        admit(Method::GET, "/ideas/1", None).await,
        Admission::Forward(_)
    ));
    // A token whose claims break a rule does not open, whoever minted it.
    claims.groups = vec!["has space".into()];
    let bad = token::mint(key, &claims);
    match admit(Method::GET, "/docs/a", Some(&bad)).await {
        Admission::Respond(answer) => assert_eq!(answer.status(), StatusCode::UNAUTHORIZED),
        Admission::Forward(_) => panic!("claims that break the rules were forwarded"),
    }
}

/// A token minted offline with claims too large for a session cookie still
/// opens its page (it is within `max_token_len`), but is not traded for a
/// cookie a browser would drop: the navigation is served with the token.
#[tokio::test]
async fn a_token_too_large_for_a_cookie_serves_its_request_instead_of_a_lost_redirect() {
    use portal_gate::token::{self, AttrValue, Claims};
    let (upstream, gate) = gate().await;
    let ring = token::SecretRing::new(vec![token::SecretSpec {
        id: "k1".into(),
        value: SECRET.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .unwrap();
    let now = unix_now();
    let mut claims = Claims::for_user(ACCOUNT.into(), "ada@example.org", None, now, 60).unwrap();
    for i in 0..16 {
        claims
            .attributes
            .insert(format!("k{i}"), AttrValue::One("x".repeat(128)));
    }
    // The profile name fills the rest, up to the longest token that opens.
    let mut sealed = String::new();
    for len in 0.. {
        claims.name = Some("n".repeat(len));
        let next = token::mint(ring.primary(), &claims);
        if next.len() > 4096 {
            break;
        }
        sealed = next;
    }
    assert!(sealed.len() > 4096 - 30, "{}", sealed.len());
    let page = navigate(&gate.url(&format!("/docs/a?auth-token={sealed}")))
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.header("set-cookie").is_none());
    assert_eq!(upstream.seen_under("/docs/a")[0].uri, "/docs/a");
    gate.stop().await;
}

#[tokio::test]
async fn the_token_api_never_mints_a_token_the_gate_would_refuse() {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(
        &upstream.url(),
        "[limits]\nmax_token_len = 600",
    ))
    .await;
    let groups: Vec<String> = (0..32).map(|i| format!("\"group-number-{i}\"")).collect();
    let reply = api(
        &gate,
        "ada@example.org",
        &format!(r#","groups":[{}]"#, groups.join(",")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&reply).contains("the token would exceed 600 bytes"),
        "{}",
        reply.body
    );
    let token = mint(&gate, "ada@example.org", r#","groups":["beta"]"#).await;
    assert_eq!(
        get(&gate.url("/docs/a")).bearer(&token).send().await.status,
        StatusCode::OK
    );
    gate.stop().await;
}
