//! A minimal WebDriver client: the commands the browser tests use.

use super::*;
use base64::Engine;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The W3C key under which element references travel.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time in this test binary: the tests run in parallel,
/// and several Chromiums starting at once on a small, busy machine can
/// take longer than a WebDriver call may.
static ONE_AT_A_TIME: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Arc::default);

/// Chromium under chromedriver, in a fresh profile. Dropping it ends the
/// session and kills chromedriver (and with it the browser) by PID.
pub(crate) struct Browser {
    /// Held for the browser's life (see [`ONE_AT_A_TIME`]).
    _turn: tokio::sync::OwnedMutexGuard<()>,
    base: String,
    session: String,
    client: Client<HttpConnector, Full<Bytes>>,
    driver: std::process::Child,
    /// The profile; removed after the browser is gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn launch(chromium: &str, chromedriver: &str) -> Browser {
        let turn = Arc::clone(&ONE_AT_A_TIME).lock_owned().await;
        let port = free_port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            _turn: turn,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            driver,
            _profile: profile,
        };
        let started = Instant::now();
        loop {
            if let Ok(status) = browser.call("GET", "/status", None).await {
                if status["ready"] == true {
                    break;
                }
            }
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = browser._profile.path().display().to_string();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1100,900",
                    format!("--user-data-dir={profile}"),
                ],
            },
        }}});
        let session = browser
            .call("POST", "/session", Some(capabilities))
            .await
            .expect("new session");
        browser.session = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        browser
    }

    /// Send one command; `Err` carries WebDriver's error and message.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| format!("{method} {path}: no answer"))?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut json: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let value = json["value"].take();
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "{method} {path}: {} {}",
                value["error"], value["message"]
            ))
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Navigate the top-level page and wait for it to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Run `body` as a function in the current frame; its return value.
    pub(crate) async fn script(&self, body: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
        .await
    }

    /// Poll `expression` in the current frame until it yields a
    /// non-empty string, and return it; after [`PATIENCE`], `Err` with
    /// the last value seen. Script errors (a frame still navigating)
    /// count as "not yet".
    pub(crate) async fn poll(&self, expression: &str) -> Result<String, Value> {
        let script = format!(
            "return (() => {{ try {{ return {expression}; }} catch (_) {{ return null; }} }})()"
        );
        let path = format!("/session/{}/execute/sync", self.session);
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < PATIENCE {
            let body = json!({"script": script, "args": []});
            match self.call("POST", &path, Some(body)).await {
                Ok(Value::String(s)) if !s.is_empty() => return Ok(s),
                Ok(other) => last = other,
                Err(e) => last = Value::String(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// [`Browser::poll`], panicking with `what` on a timeout.
    pub(crate) async fn wait_for(&self, what: &str, expression: &str) -> String {
        self.poll(expression)
            .await
            .unwrap_or_else(|last| panic!("timed out waiting for {what}; last: {last}"))
    }

    /// Switch into the `<released-page>`'s iframe (in its shadow root),
    /// once the element has rendered it.
    pub(crate) async fn enter_embed(&self) {
        self.enter_frame(
            "released-page rendered no iframe",
            "document.querySelector('released-page')?.shadowRoot?.querySelector('iframe[src]')",
        )
        .await;
    }

    /// Switch into the iframe `expression` finds, once it does; `what`
    /// names it in a timeout's message.
    pub(crate) async fn enter_frame(&self, what: &str, expression: &str) {
        let started = Instant::now();
        let frame = loop {
            let found = self.script(&format!("return {expression} ?? null")).await;
            if found.get(ELEMENT).is_some() {
                break found;
            }
            assert!(started.elapsed() < PATIENCE, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.command("POST", "/frame", Some(json!({ "id": frame })))
            .await;
    }

    /// Back to the top-level page.
    pub(crate) async fn leave_frames(&self) {
        self.command("POST", "/frame", Some(json!({ "id": null })))
            .await;
    }

    /// Save a PNG of the viewport to `path`, creating its directory.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("create screenshot dir");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// End the session: chromedriver closes the browser.
    pub(crate) async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.call("DELETE", &path, None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // A panicking test: end the session synchronously, so the
            // browser does not outlive chromedriver.
            end_session(&self.base, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` over a plain socket, usable from `Drop`.
fn end_session(base: &str, session: &str) {
    use std::io::{Read, Write};
    let Some(addr) = base.strip_prefix("http://") else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.read_to_end(&mut Vec::new());
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
