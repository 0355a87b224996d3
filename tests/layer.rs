//! GateLayer in front of a real axum application on a real server: the
//! application gets the proxy's statuses, path normalization and header
//! hygiene, the gate's own endpoints, and the verified user as a request
//! extension; a refused request never reaches a handler.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, any};
use axum::{Extension, Router, ServiceExt};
use http::{HeaderMap, Method, StatusCode};
use portal_gate::{ConnInfo, Gate, GateLayer, Identity};
use support::*;

/// What a handler saw: the path and query it was routed on, its headers,
/// and the verified user.
#[derive(Debug, Clone)]
struct Handled {
    uri: String,
    headers: HeaderMap,
    email: Option<String>,
}

type Log = Arc<Mutex<Vec<Handled>>>;

/// The application's one handler: records the request, answers with what
/// it saw and, for the `/set-session` test, tries to set the session.
async fn handler(
    Extension(log): Extension<Log>,
    identity: Option<Extension<Identity>>,
    request: Request,
) -> Response {
    let email = identity.map(|Extension(user)| user.email().to_string());
    let seen = Handled {
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
        email: email.clone(),
    };
    log.lock().expect("lock").push(seen);
    let text = format!(
        "app: {} as {}",
        request.uri().path(),
        email.as_deref().unwrap_or("nobody")
    );
    let mut response = text.into_response();
    if request.uri().path().ends_with("/set-session") {
        response.headers_mut().append(
            "set-cookie",
            "__Host-portal-gate-session=forged; Path=/"
                .parse()
                .expect("value"),
        );
        response.headers_mut().insert(
            "cache-control",
            "public, max-age=600".parse().expect("value"),
        );
    }
    response
}

/// The peer, from axum's connection info, for the gate.
async fn conn_info(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(ConnInfo::new(peer, false));
    next.run(request).await
}

/// The tests' config without its `[upstream]`: a gate that guards an
/// application in-process needs none.
fn config_without_upstream() -> String {
    let upstream =
        "[upstream]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n";
    let text = config_for("http://127.0.0.1:9", "");
    assert!(text.contains(upstream), "the tests' config changed shape");
    text.replace(upstream, "")
}

/// A gate with the tests' rules and no upstream.
fn gate() -> Arc<Gate> {
    let text = config_without_upstream();
    let config = portal_gate::Config::parse(&text, std::path::Path::new("layer.toml"))
        .expect("a config without [upstream] is valid");
    Arc::new(Gate::new(config).expect("gate"))
}

/// An axum application gated by the layer, wrapped around the whole
/// router so that routing sees the path the gate judged, served on an
/// ephemeral port; and the log of what its handler saw.
async fn gated_app() -> (SocketAddr, Log) {
    let gate = gate();
    let log: Log = Arc::default();
    let router = Router::new()
        .route("/", routing::get(handler))
        .route("/{*rest}", any(handler))
        .layer(Extension(Arc::clone(&log)));
    let gated = tower::Layer::layer(&GateLayer::new(gate), router);
    let gated = tower::ServiceExt::<Request>::map_response(gated, |response| {
        response.map(axum::body::Body::new)
    });
    let app = tower::Layer::layer(&middleware::from_fn(conn_info), gated);
    (serve(app).await, log)
}

/// Serve an application on an ephemeral port, with the peer in axum's
/// `ConnectInfo`.
async fn serve<S>(app: S) -> SocketAddr
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, service).await;
    });
    addr
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[tokio::test]
async fn the_application_gets_the_verified_user_and_refused_requests_never_reach_it() {
    let (addr, log) = gated_app().await;
    let public = get(&url(addr, "/public/a")).send().await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.body, "app: /public/a as nobody");

    let missing = get(&url(addr, "/docs/a")).send().await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"portal-gate\"")
    );
    let outsider = get(&url(addr, "/internal/a"))
        .bearer(&token_for("eve@example.org"))
        .send()
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);

    let token = token_for("Ada@Example.com");
    let verified = get(&url(addr, "/docs/a?x=1&auth-token=nope"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(
        verified.status,
        StatusCode::BAD_REQUEST,
        "two different tokens"
    );
    let verified = get(&url(addr, "/docs/a?x=1")).bearer(&token).send().await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body, "app: /docs/a as ada@example.com");
    assert_eq!(verified.header("cache-control"), Some("private, no-cache"));

    let seen = log.lock().expect("lock").clone();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["/public/a", "/docs/a?x=1"],
        "only the admitted reached a handler"
    );
    let docs = &seen[1];
    assert_eq!(docs.email.as_deref(), Some("ada@example.com"));
    assert_eq!(docs.headers["x-forwarded-email"], "ada@example.com");
    assert!(
        docs.headers.get("authorization").is_none(),
        "the token never reaches the app"
    );
    assert_eq!(docs.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        docs.headers["host"],
        addr.to_string(),
        "the host the client asked for"
    );
}

#[tokio::test]
async fn the_application_is_routed_on_the_one_reading_of_the_path() {
    let (addr, log) = gated_app().await;
    #[rustfmt::skip]
    let cases = [
        ("/public/%2e%2e/docs/x", StatusCode::UNAUTHORIZED),
        ("/public//a/./b/../c", StatusCode::OK),
        ("/public/%64ocs", StatusCode::OK),
        ("/public/..%2fdocs/x", StatusCode::BAD_REQUEST),
        ("/public/%252e%252e/docs/x", StatusCode::BAD_REQUEST),
        ("/public/a;x=1", StatusCode::BAD_REQUEST),
        ("/docs/../../etc/passwd", StatusCode::BAD_REQUEST),
    ];
    for (path, want) in cases {
        let reply = get(&url(addr, path)).send().await;
        assert_eq!(reply.status, want, "{path}: {}", reply.body);
    }
    let uris: Vec<String> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    assert_eq!(uris, ["/public/a/c", "/public/docs"]);
}

#[tokio::test]
async fn spoofed_headers_and_stray_credentials_never_reach_the_application() {
    let (addr, log) = gated_app().await;
    let token = token_for("ada@example.com");
    let reply = get(&url(addr, "/public/spoof?AUTH_TOKEN=x&q=1"))
        .header("x-forwarded-email", "ceo@example.com")
        .header("x_forwarded_user", "ceo")
        .header("x-original-url", "/board/minutes")
        .header("x-http-method-override", "DELETE")
        .header("cookie", "a=1, __Host-portal-gate-session=x; b=2")
        .header("x-auth-token", &token)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = log.lock().expect("lock")[0].clone();
    assert_eq!(seen.uri, "/public/spoof?q=1");
    for gone in [
        "x-forwarded-email",
        "x_forwarded_user",
        "x-original-url",
        "x-http-method-override",
        "x-auth-token",
    ] {
        assert!(seen.headers.get(gone).is_none(), "{gone} reached the app");
    }
    assert_eq!(seen.headers["cookie"], "a=1; b=2");
    assert_eq!(seen.email, None, "a token on a public page is no identity");
}

#[tokio::test]
async fn the_gates_own_endpoints_answer_under_the_layer() {
    let (addr, log) = gated_app().await;
    let minted = mint_at(&url(addr, "/auth/api/token"), "ada@example.com").await;
    assert!(minted.starts_with("pg1.k1."));
    let script = get(&url(addr, "/embed.js")).send().await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("released-page"));
    let exchange = navigate(&url(addr, &format!("/docs/page?auth-token={minted}")))
        .send()
        .await;
    assert_eq!(exchange.status, StatusCode::SEE_OTHER);
    assert_eq!(exchange.header("location"), Some("/docs/page"));
    let cookie = exchange
        .header("set-cookie")
        .expect("session")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let page = get(&url(addr, "/docs/page"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(page.body, "app: /docs/page as ada@example.com");
    let logout = navigate(&url(addr, "/auth/logout")).send().await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(logout.header("clear-site-data"), Some("\"cache\""));
    let uris: Vec<String> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    assert_eq!(uris, ["/docs/page"], "the gate answered the rest itself");
}

#[tokio::test]
async fn methods_bodies_and_the_response_filter_hold_under_the_layer() {
    let (addr, log) = gated_app().await;
    let trace = request(Method::TRACE, &url(addr, "/public/x")).send().await;
    assert_eq!(trace.status, StatusCode::METHOD_NOT_ALLOWED);
    let get_body = get(&url(addr, "/public/x")).body("smuggled").send().await;
    assert_eq!(get_body.status, StatusCode::BAD_REQUEST);
    let post = request(Method::POST, &url(addr, "/public/form"))
        .body("name=ada")
        .send()
        .await;
    assert_eq!(post.status, StatusCode::OK);
    // The application cannot set or clear the gate's session, and its
    // verified pages are kept out of shared caches.
    let token = token_for("ada@example.com");
    let set = get(&url(addr, "/docs/set-session"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert!(set.header("set-cookie").is_none());
    assert_eq!(set.header("cache-control"), Some("private, no-cache"));
    let uris: Vec<String> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    assert_eq!(uris, ["/public/form", "/docs/set-session"]);
}

/// With the `axum` feature: `Identity` is an extractor, and the layer reads
/// the peer from axum's `ConnectInfo` without any middleware.
#[cfg(feature = "axum")]
#[tokio::test]
async fn identity_is_an_axum_extractor() {
    async fn roadmap(user: Identity) -> String {
        format!("roadmap for {}", user.email())
    }
    async fn maybe(user: Option<Identity>) -> String {
        format!(
            "maybe {}",
            user.map_or("nobody".into(), |u| u.email().to_string())
        )
    }
    let gate = gate();
    let router = Router::new()
        .route("/docs/roadmap", routing::get(roadmap))
        .route("/public/roadmap", routing::get(roadmap))
        .route("/public/maybe", routing::get(maybe));
    let gated = tower::Layer::layer(&GateLayer::new(gate), router);
    let app = tower::ServiceExt::<Request>::map_response(gated, |response| {
        response.map(axum::body::Body::new)
    });
    let addr = serve(app).await;
    let token = token_for("ada@example.com");
    let verified = get(&url(addr, "/docs/roadmap")).bearer(&token).send().await;
    assert_eq!(verified.body, "roadmap for ada@example.com");
    // A public page carries no identity: the extractor refuses it, and
    // Option<Identity> is None.
    let public = get(&url(addr, "/public/roadmap"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(public.status, StatusCode::UNAUTHORIZED);
    let maybe = get(&url(addr, "/public/maybe")).send().await;
    assert_eq!(maybe.body, "maybe nobody");
}

#[tokio::test]
async fn the_proxy_refuses_a_config_without_an_upstream() {
    let (dir, path) = config_file("http://127.0.0.1:9", "");
    std::fs::write(&path, config_without_upstream()).expect("write");
    let out = std::process::Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key `upstream`"), "{stderr}");
    assert!(stderr.contains("needs an [upstream]"), "{stderr}");
    // The library refuses to serve it too, before accepting anything.
    let config = portal_gate::Config::load(&path).expect("valid for the layer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let served = portal_gate::run(listener, config, std::future::pending()).await;
    assert!(served.is_err());
    drop(dir);
}
