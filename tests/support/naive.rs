//! An upstream as many small servers are built (Python's `http.server` in
//! HTTP/1.1 mode among them): it reads request heads one after another on
//! a keep-alive connection and never reads a body it has no use for, so a
//! body left on the connection is read as the next request's head. It
//! honours `Connection: close` by closing after its answer, as they do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request head the naive upstream read.
#[derive(Debug, Clone)]
pub struct NaiveSeen {
    pub method: String,
    pub path: String,
    /// `X-Forwarded-Email` as the upstream read it.
    pub email: Option<String>,
}

pub struct NaiveUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<NaiveSeen>>>,
}

impl NaiveUpstream {
    pub async fn start() -> NaiveUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&record)));
            }
        });
        NaiveUpstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<NaiveSeen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Heads in, answers out, bodies never read.
async fn serve(mut stream: tokio::net::TcpStream, seen: Arc<Mutex<Vec<NaiveSeen>>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = match request.parse(&buffer) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            Err(_) => return,
        };
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let entry = NaiveSeen {
            method: request.method.unwrap_or("").to_string(),
            path: request.path.unwrap_or("").to_string(),
            email: header("x-forwarded-email"),
        };
        let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let text = format!(
            "naive: {} as {}",
            entry.path,
            entry.email.as_deref().unwrap_or("nobody")
        );
        seen.lock().expect("lock").push(entry);
        buffer.drain(..parsed);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() || close {
            return;
        }
    }
}
