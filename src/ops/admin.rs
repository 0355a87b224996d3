//! The admin listener: `/healthz`, `/readyz` and `/metrics`, on their own
//! address (`[admin] listen`), never on the public port.
//!
//! Readiness needs a recent sign of life from the upstream. Traffic alone
//! cannot give one to a replica that is not ready yet (it gets none), so a
//! probe opens a TCP connection to the upstream every few seconds.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::UpstreamTarget;
use crate::http::respond::{self, OwnResponse};
use crate::ops::state::Gate;
use bytes::Bytes;

/// How often the upstream is probed.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How recent the upstream's last answer must be for `/readyz`.
pub(crate) const READY_WINDOW_SECS: u64 = 15;

/// Admin connections open at once at most; more are closed at once. Probes
/// and scrapes need a handful; the bound keeps a flood of admin
/// connections from using up the descriptors the public port needs.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one admin connection may last in all, however slowly its
/// client reads the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve the admin endpoints on `listener` until `shutdown` completes. Each
/// connection serves one request and closes, within
/// 5 seconds, so a slot of the 256 it holds at most is never
/// held for long.
pub async fn serve(listener: TcpListener, gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Whether connections are being refused: logged when it starts and
    // ends, not once per connection of a flood.
    let mut refusing = false;
    while let Some((stream, peer)) =
        crate::server::listener::accept_or_shutdown(&listener, &mut shutdown, "admin").await
    {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !refusing {
                tracing::warn!(%peer, max = MAX_CONNECTIONS, "admin connection limit reached; closing new connections");
                refusing = true;
            }
            continue;
        };
        if refusing {
            tracing::info!("admin connections accepted again");
            refusing = false;
        }
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gate = Arc::clone(&gate);
                async move { Ok::<_, Infallible>(answer(&gate, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

/// `/readyz`: the upstream answered recently and, with a revocation store
/// in `fail_mode = "closed"`, the revocation set is fresh enough to serve
/// verified pages. The body says the store's state either way.
fn readiness(gate: &Gate) -> OwnResponse {
    let now = gate.clock().unix_now();
    let config = gate.config();
    let store = config.store.as_ref().map(|store| {
        let live = gate.live();
        let state = match live.connected() {
            true => "connected",
            false => "unreachable",
        };
        let line = format!("revocation store {state}; set {} s old", live.age(now));
        let stale = live.too_stale(store.fails_closed(), store.max_staleness.as_secs(), now);
        (line, stale)
    });
    let (store_line, stale) = store.unwrap_or_default();
    let upstream_ok = gate.is_ready(now, READY_WINDOW_SECS);
    let mut text = match upstream_ok {
        true => "ready".to_string(),
        false => "the upstream has not answered recently".to_string(),
    };
    if !store_line.is_empty() {
        text.push_str(&format!("\n{store_line}"));
    }
    let status = match upstream_ok && !stale {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    respond::text(status, &text)
}

fn answer(gate: &Gate, request: &Request<Incoming>) -> OwnResponse {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return respond::text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    match request.uri().path() {
        "/healthz" => respond::text(StatusCode::OK, "ok"),
        "/readyz" => readiness(gate),
        "/metrics" => {
            let now = gate.clock().unix_now();
            let live = gate.live();
            gate.metrics().revocation_set(live.len(), live.age(now));
            respond::with_type(
                StatusCode::OK,
                Bytes::from(gate.metrics().render(gate.cache())),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        _ => respond::text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Probe the upstream forever: a TCP connection that opens within the
/// connect timeout counts as a sign of life.
pub async fn probe_upstream(gate: Arc<Gate>) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let config = gate.config();
        let UpstreamTarget::Url(url) = &config.upstream.target else {
            continue;
        };
        let Some(host) = url.host() else { continue };
        let port = url
            .port_u16()
            .unwrap_or(if url.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(config.upstream.connect_timeout, connect).await {
            Ok(Ok(_stream)) => gate.upstream_health().mark(gate.clock().unix_now()),
            Ok(Err(error)) => tracing::debug!(%error, "upstream probe failed"),
            Err(_) => tracing::debug!("upstream probe timed out"),
        }
    }
}
