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
//!
//! Knobs (environment), for moving the floor one hyper option at a time:
//! - `FLOOR_INLINE=1`: drive the upstream connection inside the client
//!   connection's task (both futures polled by one task) instead of a task
//!   of its own, so a request and its response cross no task boundary;
//! - `FLOOR_HALF_CLOSE=1`: hyper's `half_close(true)` (no read to detect a
//!   client's EOF while a request is in flight);
//! - `FLOOR_WRITEV=0|1`: hyper's write strategy (unset: hyper's default,
//!   vectored writes when the socket supports them);
//! - `FLOOR_MAX_BUF=N`: hyper's `max_buf_size` on both sides.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

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

/// The knobs, read once.
struct Knobs {
    inline: bool,
    half_close: bool,
    writev: Option<bool>,
    max_buf: Option<usize>,
}

static KNOBS: LazyLock<Knobs> = LazyLock::new(|| {
    let var = |name: &str| std::env::var(name).ok();
    Knobs {
        inline: var("FLOOR_INLINE").as_deref() == Some("1"),
        half_close: var("FLOOR_HALF_CLOSE").as_deref() == Some("1"),
        writev: var("FLOOR_WRITEV").map(|v| v == "1"),
        max_buf: var("FLOOR_MAX_BUF").map(|v| v.parse().expect("FLOOR_MAX_BUF is a number")),
    }
});

async fn serve(stream: TcpStream, peer: SocketAddr, upstream: String) {
    let knobs = &*KNOBS;
    let _ = stream.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let mut client = hyper::client::conn::http1::Builder::new();
    if let Some(writev) = knobs.writev {
        client.writev(writev);
    }
    if let Some(max) = knobs.max_buf {
        client.max_buf_size(max);
    }
    let Ok((sender, connection)) = client.handshake(TokioIo::new(upstream)).await else {
        return;
    };
    // Shared by the requests of one client connection, which hyper's
    // server runs one at a time.
    let sender = Arc::new(Mutex::new(sender));
    let peer = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a header value");
    let service = hyper::service::service_fn(move |request| {
        forward(Arc::clone(&sender), request, peer.clone())
    });
    let mut server = hyper::server::conn::http1::Builder::new();
    server.half_close(knobs.half_close);
    if let Some(writev) = knobs.writev {
        server.writev(writev);
    }
    if let Some(max) = knobs.max_buf {
        server.max_buf_size(max);
    }
    let served = server.serve_connection(TokioIo::new(stream), service);
    if knobs.inline {
        // Both connections in this one task: the client connection's end
        // ends the upstream's too.
        tokio::pin!(served, connection);
        tokio::select! {
            _ = &mut served => {}
            _ = &mut connection => { let _ = served.await; }
        }
    } else {
        tokio::spawn(connection);
        let _ = served.await;
    }
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
