//! The gate in-process on an ephemeral port, and the configs the tests use.
#![allow(unused_imports)]

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

use super::*;

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

/// The gate in-process with a handle on its state (to reload it), a
/// manual clock (to move time instead of sleeping) and its admin listener.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub gate: Arc<portal_gate::Gate>,
    pub clock: Arc<ManualClock>,
    pub stop: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Serve `config_text` (as if read from `tests/gate.toml`), its clock
    /// starting at the system's now.
    pub async fn start(config_text: &str) -> Running {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gate.toml");
        let config = portal_gate::Config::parse(config_text, &path).expect("config");
        let now = std::time::UNIX_EPOCH + Duration::from_secs(unix_now());
        let clock = Arc::new(ManualClock::new(now));
        let gate = portal_gate::Gate::new(config)
            .expect("gate")
            .with_clock(Arc::clone(&clock) as _);
        let gate = Arc::new(gate);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(portal_gate::serve(listener, Arc::clone(&gate), async {
            let _ = stopped.await;
        }));
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let admin_addr = admin.local_addr().expect("addr");
        let serving =
            portal_gate::ops::serve_admin(admin, Arc::clone(&gate), std::future::pending());
        tokio::spawn(serving);
        Running {
            addr,
            admin: admin_addr,
            gate,
            clock,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Reload the gate with `config_text`; panics if the reload is refused.
    pub fn reload(&self, config_text: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gate.toml");
        let config = portal_gate::Config::parse(config_text, &path).expect("config");
        self.gate.reload(config).expect("reload");
    }

    /// What `/metrics` says now.
    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin))
            .send()
            .await
            .body
    }
}

impl Running {
    /// A token for `email` issued by this gate's clock (which stands still
    /// unless a test moves it), valid five minutes.
    pub fn token_for(&self, email: &str) -> String {
        use portal_gate::Clock;
        let now = self.clock.unix_now();
        token_with(SECRET, "k1", email, ACCOUNT, now, now + 300)
    }
}
