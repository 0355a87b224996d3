//! WebSocket tunnels: an admitted handshake sent upstream on a connection
//! of its own, and, only once the upstream truly switched protocols
//! ([`websocket::switches`]), the bytes copied both ways.
//!
//! A tunnel is bounded: `limits.max_tunnels` open at once (503 beyond),
//! and it closes when no byte moved either way for
//! `limits.tunnel_idle_timeout`, when the credential it was opened under
//! expires (its `exp` plus `clock_skew`), is revoked, or loses its secret
//! to a reload (removed, changed or retired), and `limits.shutdown_grace`
//! after the gate is told to stop. Closing drops both TCP connections; the gate
//! sends no WebSocket close frame (it never parses the frames it copies).
//! The per-request timeouts do not apply once the tunnel is open.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access::decision;
use crate::access::reason::Reason;
use crate::http::phases::{ProxyConn, Tunnelled};
use crate::http::websocket;
use crate::ops::state::{Active, Gate};
use crate::token::Opened;
use crate::token::TokenError;
use crate::upstream::body::{self, Body};
use crate::upstream::proxy::Upstream;

/// In the extensions of a `101` the gate answers: the response filter
/// keeps its upgrade fields (any other `101` is refused).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TunnelOpen;

/// The open tunnels, counted against `limits.max_tunnels`.
#[derive(Debug, Default)]
pub(crate) struct TunnelCount(Arc<AtomicUsize>);

impl TunnelCount {
    /// One more tunnel, unless `max` are open.
    fn take(&self, max: usize) -> Option<TunnelSlot> {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        taken.ok().map(|_| TunnelSlot(Arc::clone(&self.0)))
    }
}

/// One tunnel's place, given back when it closes.
struct TunnelSlot(Arc<AtomicUsize>);

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open a tunnel for the admitted handshake `request`: the upstream's
/// answer, and the tunnel running behind it when that answer is a true
/// switch. Any other answer is relayed as an ordinary response (its
/// connection closes after it); a `101` that does not switch to the
/// client's protocol is refused (502).
pub(crate) async fn open(
    gate: &Arc<Gate>,
    active: &Active,
    mut request: Request<Incoming>,
    conn: &ProxyConn,
) -> Result<Response<Body>, Reason> {
    let tunnelled = request
        .extensions_mut()
        .remove::<Tunnelled>()
        .ok_or(Reason::Internal)?;
    let Upstream::Http(http) = &*active.upstream else {
        // A static directory answers the GET as it would any other.
        let body_timeout = active.config.limits.body_timeout;
        return active.upstream.forward(request, body_timeout, conn).await;
    };
    let metrics = gate.metrics();
    let Some(slot) = gate.tunnels().take(active.config.limits.max_tunnels) else {
        metrics.tunnel_refused("limit");
        return Err(Reason::TooManyTunnels);
    };
    let client_side = hyper::upgrade::on(&mut request);
    let mut answer = http.send_upgrade(request).await.inspect_err(|_| {
        metrics.tunnel_refused("upstream");
    })?;
    if !websocket::switches(&answer, &tunnelled.handshake) {
        if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
            metrics.tunnel_refused("handshake");
            return Err(Reason::UpstreamHandshake);
        }
        metrics.tunnel_refused("answered");
        return Ok(answer.map(body::boxed));
    }
    let upstream_side = hyper::upgrade::on(&mut answer);
    let response = switching(&answer);
    metrics.tunnel_opened();
    let tunnel = Tunnel {
        gate: Arc::clone(gate),
        user: tunnelled.user,
        limits: Limits::of(active),
        closing: conn.closing.clone(),
        _held: (slot, Arc::clone(&conn.held)),
        peer: conn.info.peer(),
    };
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client_side, upstream_side) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "a tunnel could not take over its connections");
                tunnel.gate.metrics().tunnel_closed("upstream");
                return;
            }
        };
        tunnel
            .run(TokioIo::new(client), TokioIo::new(upstream))
            .await;
    });
    Ok(response)
}

/// The `101` the client gets: the upstream's switch, with only the fields
/// of the protocol.
fn switching(answer: &Response<Incoming>) -> Response<Body> {
    let mut response = Response::new(body::boxed(http_body_util::Empty::<Bytes>::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(value) = answer.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    response.extensions_mut().insert(TunnelOpen);
    response
}

/// The limits a tunnel lives under, from the config it opened with.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    grace: Duration,
}

impl Limits {
    fn of(active: &Active) -> Limits {
        let config = &active.config;
        Limits {
            idle: config.limits.tunnel_idle_timeout,
            grace: config.limits.shutdown_grace,
        }
    }

    /// How often the tunnel looks at its clocks and its credential.
    fn tick(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// An open tunnel and what it answers to.
struct Tunnel {
    gate: Arc<Gate>,
    /// The credential it was opened under; none on a public page.
    user: Option<Arc<Opened>>,
    limits: Limits,
    closing: tokio::sync::watch::Receiver<bool>,
    /// Its place among `max_tunnels`, and its client connection's place
    /// among `max_connections` (so a shutdown waits for it).
    _held: (TunnelSlot, Arc<tokio::sync::OwnedSemaphorePermit>),
    peer: std::net::SocketAddr,
}

impl Tunnel {
    /// Copy both ways until one side closes or a bound says to stop; then
    /// drop both connections, count and log the close.
    async fn run<C, U>(mut self, client: C, upstream: U)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let started = tokio::time::Instant::now();
        let activity = Arc::new(Activity::new(started));
        let mut client = Counted::new(client, Arc::clone(&activity), Side::Client);
        let mut upstream = Counted::new(upstream, Arc::clone(&activity), Side::Upstream);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        let mut ticks = tokio::time::interval(self.limits.tick());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown_at: Option<tokio::time::Instant> = None;
        let reason = loop {
            tokio::select! {
                done = copy.as_mut() => break match (done, activity.first_eof()) {
                    (_, Some(Side::Upstream)) => "upstream",
                    (Ok(_), _) | (_, Some(Side::Client)) => "client",
                    (Err(_), None) => "upstream",
                },
                _ = ticks.tick() => {
                    if let Some(reason) = self.look(&activity, shutdown_at) {
                        break reason;
                    }
                }
                changed = self.closing.changed(), if shutdown_at.is_none() => {
                    if changed.is_err() || *self.closing.borrow() {
                        shutdown_at = Some(tokio::time::Instant::now() + self.limits.grace);
                    }
                }
            }
        };
        let (up, down) = activity.bytes();
        self.gate.metrics().tunnel_closed(reason);
        tracing::info!(
            target: "access",
            event = "tunnel-closed",
            peer = %self.peer,
            reason,
            bytes_to_upstream = up,
            bytes_to_client = down,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
    }

    /// Whether a bound closes the tunnel now, and which.
    fn look(
        &self,
        activity: &Activity,
        shutdown_at: Option<tokio::time::Instant>,
    ) -> Option<&'static str> {
        let now = tokio::time::Instant::now();
        if shutdown_at.is_some_and(|at| now >= at) {
            return Some("shutdown");
        }
        if now.saturating_duration_since(activity.last()) >= self.limits.idle {
            return Some("idle");
        }
        // The checks a decrypt-cache hit repeats, on the config in force:
        // expiry, the secret still configured and live (a reload may have
        // taken it away), the account, the revocations.
        let user = self.user.as_deref()?;
        let config = self.gate.config();
        let live = self.gate.live();
        match decision::validate(&config, live, user, self.gate.clock().unix_now()) {
            Ok(()) => None,
            Err(Reason::InvalidToken(TokenError::Expired)) => Some("expiry"),
            Err(Reason::Revoked | Reason::RevocationsUnknown) => Some("revocation"),
            Err(Reason::WrongAccount) => Some("account"),
            Err(_) => Some("secret"),
        }
    }
}

/// Which end of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// What moved through a tunnel: bytes each way, when the last byte moved,
/// and which side closed first.
#[derive(Debug)]
struct Activity {
    origin: tokio::time::Instant,
    last_ms: AtomicU64,
    from_client: AtomicU64,
    from_upstream: AtomicU64,
    first_eof: std::sync::OnceLock<Side>,
}

impl Activity {
    fn new(origin: tokio::time::Instant) -> Activity {
        Activity {
            origin,
            last_ms: AtomicU64::new(0),
            from_client: AtomicU64::new(0),
            from_upstream: AtomicU64::new(0),
            first_eof: std::sync::OnceLock::new(),
        }
    }

    fn read(&self, side: Side, bytes: usize) {
        if bytes == 0 {
            let _ = self.first_eof.set(side);
            return;
        }
        let counter = match side {
            Side::Client => &self.from_client,
            Side::Upstream => &self.from_upstream,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn first_eof(&self) -> Option<Side> {
        self.first_eof.get().copied()
    }

    /// Bytes from the client (to the upstream), and from the upstream.
    fn bytes(&self) -> (u64, u64) {
        (
            self.from_client.load(Ordering::Relaxed),
            self.from_upstream.load(Ordering::Relaxed),
        )
    }
}

/// One end of a tunnel, its reads counted as activity.
struct Counted<T> {
    io: T,
    activity: Arc<Activity>,
    side: Side,
}

impl<T> Counted<T> {
    fn new(io: T, activity: Arc<Activity>, side: Side) -> Counted<T> {
        Counted { io, activity, side }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.read(self.side, buf.filled().len() - before);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
