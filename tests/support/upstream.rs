//! A recording upstream: what it saw, and answers a test can shape.
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
