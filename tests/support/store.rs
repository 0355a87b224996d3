//! A real Valkey/Redis server for the revocation tests, started on a free
//! loopback port with its own data directory and stopped by its PID.
#![allow(unused_imports)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The server binary: Debian's `redis-server`, or `valkey-server`.
fn server_binary() -> Option<&'static str> {
    ["/usr/bin/valkey-server", "/usr/bin/redis-server"]
        .into_iter()
        .find(|path| Path::new(path).exists())
}

/// Whether a store server is installed. Skips loudly without one, and
/// fails in CI, where `.ci/run` installs it.
pub fn store_available() -> bool {
    if server_binary().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("redis-server missing; .ci/run installs it");
    }
    eprintln!("\n** SKIPPED: redis-server (or valkey-server) is not installed. **\n");
    false
}

/// A running store server.
pub struct StoreServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The certificate and key files: TLS only, on `port`.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Where the TLS files live, kept as long as the server.
    keep: Option<tempfile::TempDir>,
}

impl StoreServer {
    /// A server on a free port, answering PING.
    pub async fn start() -> StoreServer {
        StoreServer::launch(None).await
    }

    /// A server that speaks only TLS, with this certificate and key (PEM).
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> StoreServer {
        let dir = tempfile::tempdir().expect("dir");
        let cert = dir.path().join("store-cert.pem");
        let key = dir.path().join("store-key.pem");
        std::fs::write(&cert, cert_pem).expect("cert");
        std::fs::write(&key, key_pem).expect("key");
        let mut server = StoreServer::launch(Some((cert, key))).await;
        server.keep = Some(dir);
        server
    }

    async fn launch(tls: Option<(std::path::PathBuf, std::path::PathBuf)>) -> StoreServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("dir");
        let mut server = StoreServer {
            port,
            child: None,
            dir,
            tls,
            keep: None,
        };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stop the server (by PID) and wait for it to go.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port, empty (it keeps nothing on disk).
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(server_binary().expect("a store server"));
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-auth-clients", "no", "--tls-cert-file"])
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the store server");
        self.child = Some(child);
        for _ in 0..200 {
            let up = match self.tls {
                None => self.command(&["PING"]).await.as_deref() == Some("+PONG"),
                Some(_) => tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok(),
            };
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the store server did not answer on port {}", self.port);
    }

    /// Send one command (RESP array of bulk strings); the first line of
    /// the answer, or `None` when the server does not answer.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(out.as_bytes()).await.ok()?;
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().next().map(str::to_owned)
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.stop();
    }
}
