//! The real `portal-gate` binary, started on an ephemeral port and killed on drop.
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
