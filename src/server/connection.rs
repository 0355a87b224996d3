//! One client connection: HTTP/1.1 or HTTP/2 (by ALPN or preface) with
//! every limit applied, its requests through the proxy's phases, and its
//! idle clock ([`crate::server::idle`]).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::Limits;
use crate::http::phases::{self, AccessLog, Outcome, ProxyConn, StreamIdle};
use crate::ops::state::Gate;
use crate::server::idle::{BodyEnd, IdleWatch, Progress, ProgressBody, Verdict, Waiting, Written};

/// Serve one connection until the client closes it, its idle clock says
/// to close or drop it ([`IdleWatch`]), or the server shuts down
/// (`closing`). A close is graceful: requests in flight finish first
/// (HTTP/2 sends GOAWAY). A drop is not: the client stopped sending or
/// reading, and the connection must not hold its place, or its upstream
/// slots, for ever.
pub(crate) async fn serve<I>(
    io: I,
    gate: Arc<Gate>,
    conn: ProxyConn,
    limits: &Limits,
    mut closing: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let progress = Arc::new(Progress::new());
    let peer = conn.info.peer();
    let service = service(gate, conn, Arc::clone(&progress));
    let builder = connection_builder(limits);
    let io = TokioIo::new(Written {
        io,
        progress: Arc::clone(&progress),
    });
    // Upgrades: a WebSocket handshake the upstream switched takes the
    // connection over ([`crate::upstream::tunnel`]).
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut idle = IdleWatch::new(progress, limits);
    let mut watchdog = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.idle_timeout,
        limits.idle_timeout,
    );
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = watchdog.tick() => {
                if idle.an_answer_stalled() {
                    tracing::debug!(%peer, "an answer made no progress for two idle periods; dropping the connection");
                    return Ok(());
                }
            }
            changed = closing.changed(), if !idle.is_closing() => {
                if changed.is_err() || *closing.borrow() {
                    connection.as_mut().graceful_shutdown();
                    idle.asked_to_close(tokio::time::Instant::now());
                }
            }
            () = tokio::time::sleep_until(idle.next_look()) => {
                match idle.look(tokio::time::Instant::now()) {
                    Verdict::Wait => {}
                    Verdict::Close => connection.as_mut().graceful_shutdown(),
                    Verdict::Drop(why) => {
                        tracing::debug!(%peer, why, "dropping the connection");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The connection's hyper service: each request through the proxy's
/// phases, its arrival and answer counted as progress, and its response
/// body measured and logged when it ends.
fn service(
    gate: Arc<Gate>,
    conn: ProxyConn,
    progress: Arc<Progress>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<ProgressBody<LogAtEnd>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<http::Response<ProgressBody<LogAtEnd>>, Infallible>,
    > + Send,
> + Clone {
    service_fn(move |request| {
        let gate = Arc::clone(&gate);
        let progress = Arc::clone(&progress);
        let conn = conn.clone();
        progress.first_request.store(true, Ordering::Relaxed);
        progress.touch();
        let waiting = Waiting::enter(&progress);
        async move {
            // Boxed: hyper keeps a slot for this future for the life of
            // the connection, idle or not; the proxy's future is the large
            // part of it.
            let (response, log) = Box::pin(phases::proxy(&gate, request, &conn)).await;
            drop(waiting);
            progress.touch();
            let stream_idle = response.extensions().get::<StreamIdle>().map(|s| s.0);
            let end = LogAtEnd { log, gate };
            Ok::<_, Infallible>(
                response.map(|body| ProgressBody::new(body, progress, end, stream_idle)),
            )
        }
    })
}

/// The access log's last phase, run when a response body ends.
struct LogAtEnd {
    log: AccessLog,
    gate: Arc<Gate>,
}

impl BodyEnd for LogAtEnd {
    fn end(self, outcome: Outcome, bytes: u64) {
        self.log.finish(&self.gate, outcome, bytes);
    }
}

/// The HTTP/1.1 + HTTP/2 connection builder with every limit applied. Both
/// protocols get a timer: without one, hyper's header timeout is inert.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid-reset and reset-flood protections of h2 (CVE-2023-44487).
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024);
    // No keep-alive pings from the gate: their replies would count as
    // activity and keep an idle HTTP/2 connection open past the idle
    // timeout, which already closes dead and idle peers alike.
    builder
}
