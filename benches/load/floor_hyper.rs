//! A measuring stick for `benches/load/ab.sh`, not a proxy to deploy: the
//! least a reverse proxy built on hyper can do per request.
//!
//! One single-threaded tokio runtime; hyper's HTTP/1.1 server on each
//! client connection, and one hyper HTTP/1.1 client connection to the
//! upstream owned by that client connection (the cheapest arrangement
//! hyper allows: no pool, no timers, no limits). Per request it does the
//! gate's smallest header work (drop `Authorization`, add
//! `X-Forwarded-For`, mark the response private) and nothing else: no
//! token, no rule, no log, no metric. What the gate costs beyond this is
//! the gate's own work and its production plumbing; what this costs
//! beyond `floor_raw` is hyper.
//!
//! ```text
//! cargo build --release --example floor_hyper
//! target/release/examples/floor_hyper serve --config gate.toml --listen 127.0.0.1:8080
//! ```
//!
//! It reads only `[upstream] url` (`http://` only) from the gate's config.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[path = "floor_common.rs"]
mod floor_common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    floor_common::run(serve)
}

async fn serve(stream: TcpStream, peer: SocketAddr, upstream: String) {
    let _ = stream.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    tokio::spawn(connection);
    // Shared by the requests of one client connection, which hyper's
    // server runs one at a time.
    let sender = Arc::new(Mutex::new(sender));
    let peer = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a header value");
    let service = hyper::service::service_fn(move |request| {
        forward(Arc::clone(&sender), request, peer.clone())
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Forward one request on the connection's upstream connection. An
/// upstream failure is returned to hyper, which closes the client
/// connection: enough for a measuring stick.
async fn forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    mut request: Request<Incoming>,
    peer: HeaderValue,
) -> Result<Response<Incoming>, hyper::Error> {
    let headers = request.headers_mut();
    headers.remove(header::AUTHORIZATION);
    headers.insert("x-forwarded-for", peer);
    // The lock is never held across an await.
    let lock = || sender.lock().unwrap_or_else(PoisonError::into_inner);
    std::future::poll_fn(|cx| lock().poll_ready(cx)).await?;
    let sent = lock().send_request(request);
    let mut response = sent.await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}
