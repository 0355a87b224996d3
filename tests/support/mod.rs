//! Test fixtures: a recording upstream, the gate running in-process on an
//! ephemeral port, the real binary, and a small HTTP client.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portal_gate::token::{self, Claims};
use portal_gate::token::{SecretRing, SecretSpec};
use portal_gate::ManualClock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod h2;
mod naive;
pub use h2::*;
pub use naive::*;

pub const ACCOUNT: &str = "acct_test";
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const OTHER_SECRET: &str = "another-secret-that-the-gate-does-not-know";

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A recording upstream: answers 200 "upstream: <path>" and remembers
/// every request. `/slow/...` waits two seconds first; each request header
/// `x-test-answer-header: name: value` becomes a header of the answer.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl RecordingUpstream {
    pub async fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let record = Arc::clone(&seen);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted_count = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                accepted_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let (parts, body) = req.into_parts();
                            let path = parts.uri.path().to_string();
                            // `.../early/...` answers at once and reads the body
                            // meanwhile, keeping the connection (as an upstream
                            // that answers an upload before it has all of it).
                            let body = if path.contains("/early/") {
                                tokio::spawn(body.collect());
                                Bytes::new()
                            } else {
                                body.collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default()
                            };
                            record.lock().expect("lock").push(Seen {
                                method: parts.method.clone(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers.clone(),
                                body,
                            });
                            if path.starts_with("/slow/") {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                            }
                            let text = Bytes::from(format!("upstream: {path}"));
                            let mut response = Response::new(if path.contains("/drip/") {
                                Drip::body(text)
                            } else {
                                Full::new(text).boxed()
                            });
                            response
                                .headers_mut()
                                .insert("x-upstream", "yes".parse().expect("value"));
                            // Each `x-test-answer-header: name: value` of
                            // the request is a header of the answer.
                            for wanted in parts.headers.get_all("x-test-answer-header") {
                                let text = wanted.to_str().expect("ascii");
                                let (name, value) = text.split_once(": ").expect("name: value");
                                response.headers_mut().append(
                                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                                    http::HeaderValue::from_str(value).expect("value"),
                                );
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RecordingUpstream {
            addr,
            seen,
            connections,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections the upstream has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Requests the upstream saw for paths starting with `prefix`.
    pub fn seen_under(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.starts_with(prefix))
            .collect()
    }
}

/// A response body sent in two halves 1.5 s apart (the upstream's
/// `.../drip/...` paths): an upstream that streams slowly.
struct Drip {
    halves: Vec<Bytes>,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Drip {
    fn body(text: Bytes) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
        let half = text.len() / 2;
        Drip {
            halves: vec![text.slice(half..), text.slice(..half)],
            pause: None,
        }
        .boxed()
    }
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(std::future::Future::poll(pause.as_mut(), cx));
        }
        let next = self.halves.pop();
        if !self.halves.is_empty() {
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(1_500))));
        }
        std::task::Poll::Ready(next.map(|half| Ok(hyper::body::Frame::data(half))))
    }
}

/// A config for a gate in front of `upstream_url`, with the rules used
/// across the tests, plus `extra` TOML: its top-level keys (the lines
/// before its first `[table]`) go first, its tables last.
pub fn config_for(upstream_url: &str, extra: &str) -> String {
    let split = extra
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(extra.lines().count());
    let top = extra.lines().take(split).collect::<Vec<_>>().join("\n");
    let extra = extra.lines().skip(split).collect::<Vec<_>>().join("\n");
    format!(
        r#"
{top}
listen = "127.0.0.1:0"
default_access = "restricted"

[upstream]
url = "{upstream_url}"
timeout = "1s"
connect_timeout = "1s"

[verification]
account_id = "{ACCOUNT}"
token_ttl = "5m"
cache_capacity = 100

[[secrets]]
id = "k1"
value = "{SECRET}"

[[pages]]
path = "/"
access = "public"

[[pages]]
path = "/public/**"
access = "public"

[[pages]]
path = "/docs/**"
access = "verified"

[[pages]]
path = "/internal/**"
access = "verified"
allow_domains = ["example.com"]

[[pages]]
path = "/board/**"
access = "verified"
allow_emails = ["ceo@example.com"]
{extra}
"#
    )
}

/// The gate running in-process on an ephemeral port.
pub struct GateProcess {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl GateProcess {
    pub async fn start(config_text: &str) -> GateProcess {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gate.toml");
        let config = portal_gate::Config::parse(config_text, &path).expect("valid config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(portal_gate::run(listener, config, async {
            let _ = stopped.await;
        }));
        GateProcess {
            addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// The gate in-process, reading the time from `clock`: tests of
    /// expiry and sessions move the clock instead of sleeping.
    pub async fn start_with_clock(config_text: &str, clock: Arc<ManualClock>) -> GateProcess {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gate.toml");
        let config = portal_gate::Config::parse(config_text, &path).expect("valid config");
        let gate = portal_gate::Gate::new(config)
            .expect("gate")
            .with_clock(clock);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(portal_gate::serve(listener, Arc::new(gate), async {
            let _ = stopped.await;
        }));
        GateProcess {
            addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
    }
}

/// A response as a user sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request under construction.
pub struct Call {
    request: http::request::Builder,
    body: Bytes,
}

pub fn get(url: &str) -> Call {
    Call {
        request: Request::builder().method(Method::GET).uri(url),
        body: Bytes::new(),
    }
}

pub fn request(method: Method, url: &str) -> Call {
    Call {
        request: Request::builder().method(method).uri(url),
        body: Bytes::new(),
    }
}

impl Call {
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.request = self.request.header(name, value);
        self
    }

    pub fn bearer(self, token: &str) -> Call {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Call {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Reply {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let request = self.request.body(Full::new(self.body)).expect("request");
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("gate answered in time")
            .expect("gate answered");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Send raw bytes over a fresh TCP connection and return the raw answer
/// (for requests a well-behaved client library refuses to build).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A token minted directly with the library, for cases the API would not
/// mint (expired, other account, unknown secret).
pub fn token_with(
    secret: &str,
    key_id: &str,
    email: &str,
    account: &str,
    issued_at: u64,
    expires_at: u64,
) -> String {
    let ring = SecretRing::new(vec![SecretSpec {
        id: key_id.to_string(),
        value: secret.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .expect("ring");
    let claims = Claims {
        account_id: account.to_string(),
        email: email.to_string(),
        user_id: None,
        name: None,
        avatar_url: None,
        issued_at,
        expires_at,
    };
    token::mint(ring.primary(), &claims)
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A valid token for `email`, minted with the test secret.
pub fn token_for(email: &str) -> String {
    let now = unix_now();
    token_with(SECRET, "k1", email, ACCOUNT, now, now + 300)
}

/// Mint a token through the gate's API.
pub async fn mint_via_api(gate: &GateProcess, email: &str) -> String {
    mint_at(&gate.url("/auth/api/token"), email).await
}

/// Mint a token for `email` through the token API at `api_url`.
pub async fn mint_at(api_url: &str, email: &str) -> String {
    let reply = request(Method::POST, api_url)
        .bearer(SECRET)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"{email}"}}"#
        ))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "mint failed: {}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    json["token"].as_str().expect("token").to_string()
}

/// `config_for(upstream_url, extra)` written to a new temporary directory:
/// the directory (the file goes with it) and the file.
pub fn config_file(upstream_url: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, &config_for(upstream_url, extra));
    (dir, path)
}

/// Write `text` as `gate.toml` in `dir`, by write-then-rename as editors and
/// config managers do, so a watching gate never reads half a file.
pub fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("gate.toml");
    let tmp = dir.path().join(".gate.toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, &path).expect("rename config");
    path
}

/// The fetch metadata a browser sends when it navigates to a page.
const NAVIGATE: [(&str, &str); 3] = [
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
];

/// A GET as a browser navigation.
pub fn navigate(url: &str) -> Call {
    NAVIGATE
        .iter()
        .fold(get(url), |call, (name, value)| call.header(name, value))
}

/// The built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portal-gate"))
}

/// The real binary serving `config` on an ephemeral port; killed on drop.
pub struct BinaryProcess {
    pub addr: SocketAddr,
    child: std::process::Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl BinaryProcess {
    pub fn start(config: &Path) -> BinaryProcess {
        BinaryProcess::start_with(config, &[])
    }

    /// Start with extra `serve` arguments (e.g. `--watch`).
    pub fn start_with(config: &Path, extra: &[&str]) -> BinaryProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn portal-gate");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // "portal-gate listening on http://ADDR" (the admin listener
                // announces itself differently); JSON logs quote the message.
                let announced = line
                    .split("portal-gate listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split("://").nth(1))
                    .map(|rest| {
                        rest.chars()
                            .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                            .collect::<String>()
                    });
                if let (Some(tx), Some(Ok(addr))) =
                    (tx.as_ref(), announced.map(|a| a.parse::<SocketAddr>()))
                {
                    let _ = tx.send(addr);
                }
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "portal-gate did not start; log: {:?}",
                    log.lock().expect("lock")
                )
            });
        BinaryProcess { addr, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("lock").join("\n")
    }

    /// Send a signal (`"HUP"`, `"TERM"`) to the process.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait until the log has a line containing `needle`, or panic.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("lock")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines of the log containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
