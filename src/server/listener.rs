//! The server: accept connections (TLS when configured), speak HTTP/1.1
//! and HTTP/2 on them with every limit applied, hand each request to
//! [`crate::http::phases`], and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Limits};
use crate::http::phases::{handle, Connection};
use crate::ops::state::Gate;
use crate::upstream::body::Body;

/// Serve a gate built from `config` on `listener` until `shutdown`
/// completes, then let in-flight requests finish (up to
/// `limits.shutdown_grace`) and return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, Arc::new(Gate::new(config)?), shutdown).await
}

/// Serve `gate` on `listener` until `shutdown` completes. The caller keeps
/// a handle on the gate to reload it. Every connection runs on the calling
/// runtime.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_on(listener, gate, &[], shutdown).await
}

/// Like [`serve`], with new connections spread in turn over the calling
/// runtime and `workers` (single-threaded runtimes on their own threads,
/// see [`crate::server::workers`]). Returns once every connection has closed or
/// the shutdown grace is over; connections still open on the workers then
/// end when the caller stops them ([`crate::server::workers::Workers::stop`]).
pub async fn serve_on(
    listener: TcpListener,
    gate: Arc<Gate>,
    workers: &[Handle],
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let started_with = gate.config();
    let tls = match gate.certs() {
        Some(store) => Some(TlsAcceptor::from(
            crate::server::tls::server_config(Arc::clone(store)).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    // Each connection holds a permit; at the limit, the accept loop waits
    // and new connections queue in the kernel's listen backlog.
    let max_connections = started_with.limits.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections));
    // Tells every connection to finish what it has in flight and close.
    let (closing, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut next_worker = 0usize;

    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let Some((stream, peer)) = accept_or_shutdown(&listener, &mut shutdown, "public").await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            peer,
            // Limits apply to new connections from the config in force now.
            limits: gate.config().limits.clone(),
            gate: Arc::clone(&gate),
            closing: closing_rx.clone(),
            tls: tls.clone(),
            _permit: permit,
        };
        // Round robin: worker 0 is this runtime, the others take the
        // socket over (it moves from this runtime's poller to theirs).
        let worker = next_worker % (workers.len() + 1);
        next_worker = next_worker.wrapping_add(1);
        tracing::debug!(%peer, worker, "connection accepted");
        match worker.checked_sub(1).and_then(|i| workers.get(i)) {
            None => {
                tokio::spawn(accepted.serve(stream));
            }
            Some(handle) => match stream.into_std() {
                Ok(stream) => {
                    handle.spawn(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => accepted.serve(stream).await,
                            Err(error) => {
                                tracing::warn!(%error, "cannot move a connection to its worker")
                            }
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, %peer, "cannot move a connection to its worker")
                }
            },
        }
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = closing.send(true);
    // Every connection holds a permit until it ends: all permits back means
    // all connections closed.
    let all_closed = permits.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
    tokio::select! {
        _ = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(started_with.limits.shutdown_grace) => {
            tracing::warn!("grace period over; closing remaining connections");
        }
    }
    Ok(())
}

/// The next connection on `listener`, or `None` once `shutdown` completes
/// (then do not poll it again). A failed accept (out of file descriptors
/// and the like) is logged under `name` and retried after a pause, rather
/// than spun on; the connections already open keep being served.
pub(crate) async fn accept_or_shutdown<F: Future<Output = ()>>(
    listener: &TcpListener,
    shutdown: &mut Pin<&mut F>,
    name: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(error) => {
                    tracing::warn!(%error, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// An accepted connection and what serving it needs, on whichever worker
/// it lands.
struct Accepted {
    peer: SocketAddr,
    limits: Limits,
    gate: Arc<Gate>,
    closing: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    /// Held until the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Accepted {
    /// Serve the connection (after the TLS handshake, when configured)
    /// until it ends.
    async fn serve(self, stream: TcpStream) {
        let Accepted {
            peer,
            limits,
            gate,
            closing,
            tls,
            _permit,
        } = self;
        let result = match tls {
            None => {
                let conn = Connection {
                    peer,
                    proto: "http",
                    inflight: Arc::new(Semaphore::new(limits.max_inflight_per_connection)),
                };
                serve_connection(stream, gate, conn, &limits, closing).await
            }
            Some(acceptor) => {
                // The handshake counts against the same clock as a request
                // head: a client that stalls it is cut off.
                match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(stream)) => {
                        let conn = Connection {
                            peer,
                            proto: "https",
                            inflight: Arc::new(Semaphore::new(limits.max_inflight_per_connection)),
                        };
                        serve_connection(stream, gate, conn, &limits, closing).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_elapsed) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        Ok(())
                    }
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    }
}

/// Serve HTTP/1.1 or HTTP/2 (by ALPN or preface) on one connection until
/// the client closes it, it makes no progress for `limits.idle_timeout`, or
/// the server shuts down. The last two close it gracefully: requests in
/// flight finish first (HTTP/2 sends GOAWAY). A connection that still
/// makes no progress a whole idle period after that, with nothing waiting
/// on the upstream, is dropped: its client stopped reading (or, on
/// HTTP/2, left its flow-control window shut), and it must not hold its
/// slot, or its upstream exchanges, for ever.
async fn serve_connection<I>(
    io: I,
    gate: Arc<Gate>,
    conn: Connection,
    limits: &Limits,
    mut closing: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let progress = Arc::new(Progress::new());
    let peer = conn.peer;
    let service = {
        let progress = Arc::clone(&progress);
        service_fn(move |request| {
            let gate = Arc::clone(&gate);
            let progress = Arc::clone(&progress);
            let conn = conn.clone();
            progress.first_request.store(true, Ordering::Relaxed);
            progress.touch();
            let waiting = Waiting::enter(&progress);
            async move {
                let response = handle(&gate, request, conn).await;
                drop(waiting);
                progress.touch();
                Ok::<_, Infallible>(response.map(|body| Answer::new(body, progress)))
            }
        })
    };
    let builder = connection_builder(limits);
    let io = TokioIo::new(Written {
        io,
        progress: Arc::clone(&progress),
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut asked_to_close = false;
    // Idleness counts from the last progress, or from the last time
    // something was still waiting on the upstream, whichever is later.
    let mut quiet_since = progress.last();
    // Any one answer that hands over nothing for two idle periods, its
    // client not reading or its upstream not sending, ends the connection:
    // other streams moving must not keep it (and its upstream exchange)
    // for ever.
    let stall_limit = limits.idle_timeout.saturating_mul(2);
    let mut watchdog = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.idle_timeout,
        limits.idle_timeout,
    );
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A connection gets `header_read_timeout` for its first request's
    // head, like a TLS handshake: one that sends nothing (or too little
    // for hyper to tell HTTP/1.1 from HTTP/2) does not live an idle period.
    let first_head_by = tokio::time::Instant::now() + limits.header_read_timeout;
    loop {
        let idle_at = progress.last().max(quiet_since) + limits.idle_timeout;
        tokio::select! {
            result = connection.as_mut() => return result,
            () = tokio::time::sleep_until(first_head_by), if !progress.first_request.load(Ordering::Relaxed) => {
                if !progress.first_request.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request head within the header timeout; dropping the connection");
                    return Ok(());
                }
            }
            _ = watchdog.tick() => {
                if progress.an_answer_stalled(stall_limit) {
                    tracing::debug!(peer = %peer, "an answer made no progress for two idle periods; dropping the connection");
                    return Ok(());
                }
            }
            changed = closing.changed(), if !asked_to_close => {
                if changed.is_err() || *closing.borrow() {
                    connection.as_mut().graceful_shutdown();
                    asked_to_close = true;
                    quiet_since = tokio::time::Instant::now();
                }
            }
            () = tokio::time::sleep_until(idle_at) => {
                let now = tokio::time::Instant::now();
                if progress.last() + limits.idle_timeout > now {
                    continue; // progress meanwhile
                }
                quiet_since = now;
                if progress.waiting.load(Ordering::Relaxed) > 0 {
                    continue;
                }
                if asked_to_close {
                    tracing::debug!(peer = %peer, "connection stalled after a close; dropping it");
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                asked_to_close = true;
            }
        }
    }
}

/// What a connection's requests are doing, for its idle timeout: when one
/// last made progress (arrived, got its answer, or handed the client
/// another piece of it), and how many are waiting on the upstream (for
/// the response head or the next piece of a body). Bytes on the wire do
/// not count: HTTP/2 PINGs and window updates would keep a connection that
/// serves nothing, or whose client reads nothing, open for ever.
#[derive(Debug)]
struct Progress {
    /// When the connection started.
    origin: tokio::time::Instant,
    /// Milliseconds after `origin` of the last progress.
    last_ms: AtomicU64,
    /// Requests and bodies waiting on the upstream.
    waiting: AtomicUsize,
    /// The clocks of the answers under way (see [`Answer`]): one answer
    /// that stops making progress is a stall even while others move.
    answers: Mutex<Vec<Weak<AtomicU64>>>,
    /// What the connection speaks, once its first bytes said: on
    /// HTTP/1.1 bytes written count as progress (see [`Written`]).
    protocol: OnceLock<Protocol>,
    /// A request has arrived: the header timeout of the first no longer
    /// applies.
    first_request: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            origin: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            answers: Mutex::new(Vec::new()),
            protocol: OnceLock::new(),
            first_request: AtomicBool::new(false),
        }
    }

    /// Record progress now; returns when, for an answer's own clock.
    fn touch(&self) -> u64 {
        let ms = self.now_ms();
        self.last_ms.store(ms, Ordering::Relaxed);
        ms
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn last(&self) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn is_http1(&self) -> bool {
        self.protocol.get() == Some(&Protocol::Http1)
    }

    /// A clock for a new answer, started now.
    fn register_answer(&self) -> Arc<AtomicU64> {
        let clock = Arc::new(AtomicU64::new(self.now_ms()));
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.retain(|answer| answer.strong_count() > 0);
        answers.push(Arc::downgrade(&clock));
        clock
    }

    /// Whether an answer under way has handed over nothing for `limit`,
    /// whether its client stopped reading or its upstream stopped sending.
    fn an_answer_stalled(&self, limit: Duration) -> bool {
        let now = self.now_ms();
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        // On HTTP/1.1 the bytes written are the answer's too.
        let written = match self.is_http1() {
            true => self.last_ms.load(Ordering::Relaxed),
            false => 0,
        };
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.iter().filter_map(Weak::upgrade).any(|clock| {
            let last = clock.load(Ordering::Relaxed).max(written);
            now.saturating_sub(last) >= limit
        })
    }
}

/// Which protocol a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The connection's IO. On HTTP/1.1 every byte written is progress: an
/// answer's tail can sit in hyper's and the kernel's buffers long after
/// its last piece was handed over, and a client draining it slowly is
/// still reading. On HTTP/2 writes do not count, as PING and SETTINGS
/// replies are writes a client can call for at will; there the answers'
/// own pieces are the measure (HTTP/2 flow control keeps their tails
/// short).
struct Written<I> {
    io: I,
    progress: Arc<Progress>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Written<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.progress.protocol.get().is_none() && buf.filled().len() > before {
            // Every HTTP/2 connection starts with its preface, `PRI * ...`;
            // no HTTP/1.1 request starts with the method `PRI`.
            let _ = this
                .progress
                .protocol
                .set(if buf.filled()[before..].starts_with(b"PRI") {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                });
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> Written<I> {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) && self.progress.is_http1() {
            self.progress.touch();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Written<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Counts as waiting on the upstream while it lives.
struct Waiting(Arc<Progress>);

impl Waiting {
    fn enter(progress: &Arc<Progress>) -> Waiting {
        progress.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(progress))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body on its way to the client: each piece handed over is
/// progress, and while it waits for its next piece (an upstream that
/// streams slowly) the connection is not idle. Pieces are at most
/// [`MAX_PIECE`] bytes, so a client that reads steadily makes progress
/// steadily, however large the frames it is sent.
struct Answer {
    body: Body,
    progress: Arc<Progress>,
    /// When this answer last handed over a piece (or began), in
    /// milliseconds after the connection's origin: the connection's
    /// watchdog reads it.
    clock: Arc<AtomicU64>,
    /// What is left of a frame larger than a piece.
    rest: Option<bytes::Bytes>,
    /// Held while the last poll found no piece ready.
    waiting: Option<Waiting>,
}

/// The most bytes an answer hands over at once.
const MAX_PIECE: usize = 64 * 1024;

impl Answer {
    fn new(body: Body, progress: Arc<Progress>) -> Answer {
        let clock = progress.register_answer();
        Answer {
            body,
            progress,
            clock,
            rest: None,
            waiting: None,
        }
    }

    /// Hand over at most a piece of `data`, keeping the rest for the next
    /// poll.
    fn piece(&mut self, mut data: bytes::Bytes) -> bytes::Bytes {
        if data.len() > MAX_PIECE {
            self.rest = Some(data.split_off(MAX_PIECE));
        }
        self.made_progress();
        data
    }

    fn made_progress(&self) {
        let ms = self.progress.touch();
        self.clock.store(ms, Ordering::Relaxed);
    }
}

impl http_body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = crate::upstream::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(rest) = self.rest.take() {
            let piece = self.piece(rest);
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_pending() {
            if self.waiting.is_none() {
                self.waiting = Some(Waiting::enter(&self.progress));
            }
            return Poll::Pending;
        }
        self.waiting = None;
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let piece = self.piece(data);
                    Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
                }
                Err(frame) => {
                    self.made_progress();
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            other => {
                self.made_progress();
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.body.size_hint();
        if let Some(rest) = &self.rest {
            let extra = rest.len() as u64;
            match hint.exact() {
                Some(exact) => hint.set_exact(exact + extra),
                None => {
                    if let Some(upper) = hint.upper() {
                        hint.set_upper(upper + extra);
                    }
                    hint.set_lower(hint.lower() + extra);
                }
            }
        }
        hint
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
