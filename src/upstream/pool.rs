//! Keep-alive HTTP/1.1 connections to a plain `http://` upstream, pooled
//! per worker.
//!
//! hyper-util's general-purpose pooled client cost the gate about 12 % of
//! its CPU per proxied request (pool checkout under a key, and a task per
//! request to put the connection back; docs/benchmarks.md). For a plain-HTTP
//! upstream the gate needs much less: each worker keeps a stack of idle
//! connections; a request takes the most recently used one (or opens one),
//! sends on it with hyper's connection API, and the response body puts the
//! connection back when it ends. A connection whose body was dropped early
//! is closed, never reused. So is one that carried a request body: an
//! upstream that answers without reading a body (as many do on a GET)
//! would read it as its next request, which would let a client smuggle a
//! request past the gate; such requests go with `Connection: close`.
//! `https://` upstreams (TLS, HTTP/2 by ALPN) keep hyper-util's client.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::upstream::body::{AtEnd, OnEnd};
use crate::upstream::upload::Upload;

/// Idle connections kept per worker at most; more are closed.
pub(crate) const MAX_IDLE_PER_WORKER: usize = 512;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// No TCP connection to the upstream.
    #[error("cannot connect to the upstream: {0}")]
    Connect(std::io::Error),
    /// The TCP connection took longer than `connect_timeout`.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// The request or its response failed (the upstream's side or the
    /// request body's).
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// One connection waiting for its next request.
struct Idle {
    sender: SendRequest<Upload>,
    since: Instant,
}

/// The pool of one plain-HTTP upstream.
pub(crate) struct Http1Pool {
    /// `host:port` (80 when the URL has no port), to connect to.
    address: String,
    /// The upstream's `Host`.
    host: HeaderValue,
    connect_timeout: Duration,
    /// Idle connections older than this are closed when next seen.
    idle_timeout: Duration,
    /// One stack per worker, oldest first; a worker only touches its own,
    /// so the locks are never contended.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("address", &self.address)
            .field("workers", &self.idle.len())
            .finish_non_exhaustive()
    }
}

impl Http1Pool {
    /// A pool for `authority` (with its port), one idle stack per worker.
    pub(crate) fn new(
        authority: &Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        workers: usize,
    ) -> std::io::Result<Http1Pool> {
        let host = HeaderValue::from_str(authority.as_str()).map_err(std::io::Error::other)?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Http1Pool {
            address,
            host,
            connect_timeout,
            idle_timeout,
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        })
    }

    /// Send `request`, whose URI is its target (path and query), with the
    /// upstream's `Host`, on a connection of `worker`'s stack (the worker
    /// thread the client connection runs on), and return the response,
    /// whose body puts the connection back when it ends, unless the
    /// request had a body.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: Request<Upload>,
        worker: usize,
    ) -> Result<Response<Pooled>, PoolError> {
        let worker = worker % self.idle.len();
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(header::HOST, self.host.clone());
        let reusable = body.is_empty();
        if !reusable {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let mut request = Request::from_parts(parts, body);
        loop {
            let pooled = self.checkout(worker).await;
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.returning(worker, sender, reusable, response)),
                Err(mut failed) => match failed.take_message() {
                    // Never written: a pooled connection the upstream closed
                    // meanwhile. Try the next one (or a fresh one, once).
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection of `worker` that is still
    /// open, once it is ready for a request.
    async fn checkout(&self, worker: usize) -> Option<SendRequest<Upload>> {
        loop {
            let idle = self.stack(worker).pop_back()?;
            if idle.since.elapsed() > self.idle_timeout || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Send a WebSocket handshake on a connection of its own, which never
    /// joins the pool: it becomes the tunnel's upstream side when the
    /// answer switches protocols ([`hyper::upgrade::on`] the response),
    /// and closes when the answer ends otherwise.
    pub(crate) async fn send_upgrade(
        &self,
        request: Request<Upload>,
    ) -> Result<Response<Incoming>, PoolError> {
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(header::HOST, self.host.clone());
        let stream = connect_tcp(&self.address, self.connect_timeout).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender
            .send_request(Request::from_parts(parts, body))
            .await?)
    }

    async fn connect(&self) -> Result<SendRequest<Upload>, PoolError> {
        let stream = connect_tcp(&self.address, self.connect_timeout).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The response with a body that returns `sender` to the pool at its
    /// end (at once when there is no body: a HEAD, a 204, a 304), when it
    /// is `reusable`: its request had no body.
    fn returning(
        self: &Arc<Self>,
        worker: usize,
        sender: SendRequest<Upload>,
        reusable: bool,
        response: Response<Incoming>,
    ) -> Response<Pooled> {
        let lease = Lease {
            pool: Arc::clone(self),
            worker,
            sender,
            reusable,
        };
        response.map(|body| OnEnd::new(body, lease))
    }

    fn put(&self, worker: usize, sender: SendRequest<Upload>) {
        let mut stack = self.stack(worker);
        while stack
            .front()
            .is_some_and(|oldest| oldest.since.elapsed() > self.idle_timeout)
        {
            stack.pop_front();
        }
        if stack.len() < MAX_IDLE_PER_WORKER {
            stack.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn stack(&self, worker: usize) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle[worker]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A TCP connection to `address` within `timeout`, without Nagle's delay.
pub(crate) async fn connect_tcp(
    address: &str,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, PoolError> {
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await
    {
        Err(_elapsed) => return Err(PoolError::ConnectTimeout),
        Ok(Err(error)) => return Err(PoolError::Connect(error)),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An upstream response body that puts its connection back at its end.
pub(crate) type Pooled = OnEnd<Incoming, Lease>;

/// A connection out of the pool, and how to put it back: at the end of its
/// response body, if its request had no body (otherwise the connection
/// closes once its response ends).
pub(crate) struct Lease {
    pool: Arc<Http1Pool>,
    worker: usize,
    sender: SendRequest<Upload>,
    reusable: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl AtEnd for Lease {
    fn at_end(self) {
        if self.reusable {
            self.pool.put(self.worker, self.sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_has_a_port_and_the_host_header_is_the_authority() {
        let pool = |url: &str| {
            let uri: http::Uri = url.parse().expect("url");
            Http1Pool::new(
                uri.authority().expect("authority"),
                Duration::from_secs(1),
                Duration::from_secs(1),
                2,
            )
            .expect("pool")
        };
        let named = pool("http://portal.internal/");
        assert_eq!(named.address, "portal.internal:80");
        assert_eq!(named.host, "portal.internal");
        let v6 = pool("http://[::1]:8081/");
        assert_eq!(v6.address, "[::1]:8081");
        assert_eq!(v6.host, "[::1]:8081");
        assert_eq!(v6.idle.len(), 2);
    }
}
