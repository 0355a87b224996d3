//! The embed end to end, in a real browser: headless Chromium, driven over
//! WebDriver by chromedriver, shows `<released-page>` on a host page of
//! another site (`http://localhost:<port>`) framing the gate
//! (`http://127.0.0.1:<port>`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/install-browser`).
//! Without them the test is skipped with a loud message, and fails when
//! `CI` is set.
//!
//! The WebDriver client is the handful of commands the test uses, over the
//! hyper client the crate already has: WebDriver is JSON over HTTP, and a
//! client crate would bring a second HTTP and TLS stack for that.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use support::{GateProcess, ACCOUNT, SECRET};
use webdriver::Browser;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any one expectation may take to come true.
const PATIENCE: Duration = Duration::from_secs(30);

/// The portal's stylesheet sets the body's background to `--paper`.
const PORTAL_BACKGROUND: &str = "rgb(246, 247, 251)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_page_frames_the_portal_across_sites() {
    if !browser_available() {
        return;
    }
    let mut host = HostApp::bind().await;
    let gate = GateProcess::start(&gate_config(&host.origin())).await;
    let portal = format!("http://{}", gate.addr);
    host.serve(portal.clone());
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;

    // The sessions a token is exchanged for live in the frame's cookie
    // partition, which every case here shares: the cases without a valid
    // token come first, so no session can make them pass, and each token in
    // a URL replaces the session before it.

    // A public page needs no token.
    browser.goto(&host.page("/", None)).await;
    browser.enter_embed().await;
    let h1 = browser
        .wait_for("the public home page in the frame", "document.querySelector('h1')?.textContent === 'Acme portal' && document.querySelector('h1').textContent")
        .await;
    assert_eq!(h1, "Acme portal");
    browser.leave_frames().await;

    // A restricted page without a token: refused, and the host is told.
    browser.goto(&host.page("/roadmap/", None)).await;
    let status = auth_required(&browser, "without a token").await;
    assert_eq!(status, "401");
    assert_frame_hides_roadmap(&browser, "restricted content shown without a token").await;

    // An expired token: refused the same way, so the host can fetch a new one.
    let expired = support::bad_tokens().expired;
    browser.goto(&host.page("/roadmap/", Some(&expired))).await;
    let status = auth_required(&browser, "for an expired token").await;
    assert_eq!(status, "401");

    // A valid token of a user the page does not admit: 403, passed on.
    let outsider = support::token_for("eve@example.org");
    browser
        .goto(&host.page("/internal/", Some(&outsider)))
        .await;
    let status = auth_required(&browser, "for a user the page does not admit").await;
    assert_eq!(status, "403");

    // A valid token: the restricted page renders with the portal's styles,
    // and the token has left the frame's address.
    let token = support::mint_via_api(&gate, "ada@example.com").await;
    browser.goto(&host.page("/roadmap/", Some(&token))).await;
    browser.enter_embed().await;
    let background = browser
        .poll("document.querySelector('h1')?.textContent === 'Roadmap' && getComputedStyle(document.body).backgroundColor")
        .await;
    let background = match background {
        Ok(background) => background,
        Err(last) => {
            let frame = browser
                .script("return location.href + ' ' + document.body.innerText.slice(0, 200)")
                .await;
            browser.leave_frames().await;
            let refused = browser
                .script("return document.body.dataset.authRequired ?? null")
                .await;
            panic!("the roadmap did not render with a valid token: frame at {frame}, last {last}, host saw auth-required {refused}");
        }
    };
    assert_eq!(
        background, PORTAL_BACKGROUND,
        "/assets/portal.css did not style the frame"
    );
    let href = browser.script("return location.href").await;
    let href = href.as_str().unwrap_or_default().to_string();
    assert!(href.ends_with("/roadmap/"), "frame at {href}");
    assert!(
        !href.contains("auth-token") && !href.contains(&token),
        "token still in the frame's URL: {href}"
    );

    // The session cookie, not the token, authenticates the page from now
    // on: a reload (the new document lacks the old one's mark) still shows it.
    browser
        .script("document.documentElement.dataset.old = '1'; location.reload(); return null")
        .await;
    let h1 = browser
        .poll("!document.documentElement.dataset.old && document.readyState === 'complete' && document.querySelector('h1')?.textContent")
        .await;
    assert_eq!(
        h1,
        Ok("Roadmap".to_string()),
        "after a reload without the token"
    );
    browser.leave_frames().await;
    let refused = browser
        .script("return document.body.dataset.authRequired ?? null")
        .await;
    assert_eq!(
        refused,
        Value::Null,
        "auth-required fired with a valid token"
    );

    browser
        .screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/embed.png"))
        .await;

    // The host app's user signs out and the token is removed: the element
    // ends the portal session on its way, so the roadmap is refused again
    // rather than shown to whoever uses this browser next.
    browser
        .script(
            "document.querySelector('released-page').removeAttribute('auth-token'); return null",
        )
        .await;
    let status = auth_required(&browser, "once the token was removed").await;
    assert_eq!(status, "401");
    assert_frame_hides_roadmap(&browser, "the old session still shows the roadmap").await;

    // The demo page, on the gate's own site: without a token its log shows
    // the refusal; a token in its fragment reloads the element, which then
    // shows the roadmap.
    browser.goto(&gate.url("/demo/embed.html")).await;
    let logged = browser
        .wait_for(
            "the demo's auth-required log entry",
            "[...document.querySelectorAll('#log li')].map(li => li.textContent).find(t => t.includes('auth-required'))",
        )
        .await;
    assert!(logged.contains("status 401"), "demo log: {logged}");
    let token = support::mint_via_api(&gate, "ada@example.com").await;
    browser
        .script(&format!(
            "location.hash = 'auth-token={token}'; return null"
        ))
        .await;
    browser.enter_embed().await;
    browser
        .wait_for(
            "the roadmap in the demo page",
            "document.querySelector('h1')?.textContent === 'Roadmap' && 'yes'",
        )
        .await;
    browser.leave_frames().await;
    browser
        .screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/demo.png"))
        .await;
    browser.quit().await;
    gate.stop().await;
}

/// A live page inside the frame: the demo's `/live/` page, served by a
/// tiny portal host that also pushes updates on `/live/updates`, reaches
/// its WebSocket through the gate with the frame's session, and shows the
/// updates as they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_page_gets_its_updates_over_a_websocket_inside_the_frame() {
    if !browser_available() {
        return;
    }
    let mut host = HostApp::bind().await;
    let portal_host = live::LivePortal::start().await;
    let config = gate_config(&host.origin()).replace(
        "dir = \"../examples/portal\"",
        &format!("url = \"{}\"", portal_host.url()),
    );
    let gate = GateProcess::start(&config).await;
    host.serve(format!("http://{}", gate.addr));
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;
    let token = support::mint_via_api(&gate, "ada@example.com").await;
    browser.goto(&host.page("/live/", Some(&token))).await;
    browser.enter_embed().await;
    let update = browser
        .wait_for(
            "a live update in the frame",
            "document.querySelectorAll('#updates li').length >= 2 && document.querySelector('#updates li').textContent",
        )
        .await;
    assert!(update.starts_with("roadmap update "), "{update}");
    let state = browser
        .script("return document.getElementById('live-state').textContent")
        .await;
    assert!(
        state.as_str().unwrap_or_default().starts_with("Connected"),
        "{state}"
    );
    browser.leave_frames().await;
    browser
        .screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/live.png"))
        .await;
    // The handshake carried the frame's session, never the token.
    let handshakes = portal_host.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    assert_eq!(handshakes[0], "ada@example.com");
    browser.quit().await;
    gate.stop().await;
}

/// A portal host with a live page: the demo portal's files, and a
/// WebSocket at `/live/updates` that sends an update every 300 ms.
mod live {
    use super::*;
    use futures_util::SinkExt;
    use std::sync::Mutex;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;

    pub(crate) struct LivePortal {
        addr: SocketAddr,
        /// The `X-Forwarded-Email` of every handshake.
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl LivePortal {
        pub(crate) async fn start() -> LivePortal {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let seen: Arc<Mutex<Vec<String>>> = Arc::default();
            let record = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let record = Arc::clone(&record);
                    let service = service_fn(move |request: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move { Ok::<_, Infallible>(answer(request, &record)) }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
            });
            LivePortal { addr, seen }
        }

        pub(crate) fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub(crate) fn handshakes(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn answer(mut request: Request<Incoming>, seen: &Mutex<Vec<String>>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/live/updates" {
            return file(request.uri().path());
        }
        let email = request
            .headers()
            .get("x-forwarded-email")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody")
            .to_string();
        seen.lock().unwrap().push(email);
        let key = request
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            for n in 1..=20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if ws
                    .send(Message::text(format!("roadmap update {n}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
        headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-accept", key.parse().expect("accept"));
        response
    }

    /// A file of the demo portal (`index.html` for a directory).
    fn file(path: &str) -> Response<Full<Bytes>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/portal");
        let relative = path.trim_start_matches('/');
        let mut target = root.join(relative);
        if path.ends_with('/') {
            target = target.join("index.html");
        }
        let safe = !relative.split('/').any(|s| s == "..");
        match std::fs::read(&target).ok().filter(|_| safe) {
            Some(bytes) => {
                let kind = match target.extension().and_then(|e| e.to_str()) {
                    Some("css") => "text/css",
                    Some("svg") => "image/svg+xml",
                    _ => "text/html; charset=utf-8",
                };
                let mut response = Response::new(Full::new(Bytes::from(bytes)));
                response
                    .headers_mut()
                    .insert("content-type", http::HeaderValue::from_static(kind));
                response
            }
            None => {
                let mut response = Response::new(Full::new(Bytes::from_static(b"not found")));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        }
    }
}

/// The status the host page recorded from `portal-gate:auth-required`,
/// once it has; `when` names the case in a timeout's message.
async fn auth_required(browser: &Browser, when: &str) -> String {
    let what = format!("portal-gate:auth-required {when}");
    browser
        .wait_for(&what, "document.body.dataset.authRequired")
        .await
}

/// Assert that the embedded frame shows no Roadmap heading.
async fn assert_frame_hides_roadmap(browser: &Browser, why: &str) {
    browser.enter_embed().await;
    let h1s = browser
        .script("return [...document.querySelectorAll('h1')].map(h => h.textContent)")
        .await;
    assert!(
        !h1s.as_array().into_iter().flatten().any(|h| h == "Roadmap"),
        "{why}: {h1s}"
    );
    browser.leave_frames().await;
}

/// Whether Chromium and chromedriver are installed. Skips loudly without
/// them, and fails in CI, where `.ci/install-browser` should have run.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{missing:?} missing; run .ci/install-browser");
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("** SKIPPED tests/browser.rs: {missing:?} not installed.");
    eprintln!("** Run .ci/install-browser (as root) to run the real-browser test.");
    eprintln!("**********************************************************************");
    eprintln!();
    false
}

/// The demo portal behind the gate, with the rules of config.example.toml,
/// and the host app's origin allowed to frame it. The fixture reads configs
/// as if they were `tests/gate.toml`, hence `../examples/portal`.
fn gate_config(host_origin: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
default_access = "restricted"

[upstream]
dir = "../examples/portal"

[verification]
account_id = "{ACCOUNT}"
token_ttl = "5m"

[[secrets]]
id = "k1"
value = "{SECRET}"

[embed]
allowed_origins = ["{host_origin}"]

[[pages]]
path = "/"
access = "public"

[[pages]]
path = "/changelog/**"
access = "public"

[[pages]]
path = "/assets/**"
access = "public"

[[pages]]
path = "/demo/**"
access = "public"

[[pages]]
path = "/roadmap/**"
access = "verified"

[[pages]]
path = "/internal/**"
access = "verified"
allow_domains = ["example.com"]

[[pages]]
path = "/live/**"
access = "verified"
"#
    )
}

/// The host app: another site (`localhost`, where the gate is `127.0.0.1`)
/// whose `/host.html?page=..&token=..` loads the gate's script, shows one
/// `<released-page>` and records `portal-gate:auth-required` on its body.
struct HostApp {
    listener: Option<TcpListener>,
    addr: SocketAddr,
}

impl HostApp {
    async fn bind() -> HostApp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind host app");
        let addr = listener.local_addr().expect("addr");
        HostApp {
            listener: Some(listener),
            addr,
        }
    }

    fn origin(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }

    /// The host page showing `page`, with the token, in a frame 600 px tall.
    fn page(&self, page: &str, token: Option<&str>) -> String {
        let mut extra = vec![("height", "600")];
        extra.extend(token.map(|token| ("token", token)));
        self.page_with(page, &extra)
    }

    /// The host page showing `page`, with `extra` settings: `token`,
    /// `height`, `max-height` (the element's attributes; no height means
    /// auto) and `forger` (a second frame of the portal on the page).
    fn page_with(&self, page: &str, extra: &[(&str, &str)]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("page", page);
        for (key, value) in extra {
            query.append_pair(key, value);
        }
        format!("{}/host.html?{}", self.origin(), query.finish())
    }

    /// Serve until the test ends (the runtime drops the task).
    fn serve(&mut self, portal: String) {
        let listener = self.listener.take().expect("served once");
        let portal = Arc::new(portal);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let portal = Arc::clone(&portal);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let portal = Arc::clone(&portal);
                        async move { Ok::<_, Infallible>(host_page(&portal, &request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
}

/// `/host.html`: the host app's page, written as a customer would.
fn host_page(portal: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/host.html" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let mut page = "/".to_string();
    let mut attributes = String::new();
    let mut forger = String::new();
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match &*key {
            "page" => page = value.into_owned(),
            "token" => attributes.push_str(&format!(r#" auth-token="{}""#, attribute(&value))),
            "height" | "max-height" => {
                attributes.push_str(&format!(r#" {key}="{}""#, attribute(&value)))
            }
            // Another frame of the portal, as a widget of some other
            // feature of the host page could be.
            "forger" => {
                forger = format!(r#"<iframe id="forger" src="{portal}/changelog/"></iframe>"#)
            }
            _ => {}
        }
    }
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Host app</title>
<script src="{portal}/embed.js"></script>
</head>
<body style="margin:0;padding:16px;background:#fff;font-family:sans-serif">
<h1 id="host">Host app</h1>
<released-page page="{page}"{attributes} title="Release notes"></released-page>
{forger}
<script>
  document.addEventListener("portal-gate:auth-required", (event) => {{
    document.body.dataset.authRequired = String(event.detail.status);
  }});
  const navigated = [];
  document.addEventListener("portal-gate:navigate", (event) => {{
    navigated.push(event.detail.path);
    document.body.dataset.navigated = JSON.stringify(navigated);
  }});
</script>
</body>
</html>
"#,
        page = attribute(&page),
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// A minimal WebDriver client: the commands these tests use, nothing else.
#[path = "browser/webdriver.rs"]
mod webdriver;

/// The frame sizing itself, reporting where it is, and the checks on its
/// messages.
#[path = "browser/sizing.rs"]
mod sizing;
