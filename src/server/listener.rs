//! The listener: accept connections up to `limits.max_connections`, hand
//! each to a worker thread in turn, do the TLS handshake when configured,
//! and shut down gracefully. What happens on one connection is
//! [`crate::server::connection`]'s business.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Limits};
use crate::http::phases::{ConnInfo, ProxyConn};
use crate::ops::state::Gate;
use crate::server::connection;

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
/// see [`crate::Workers`]). Returns once every connection has closed or
/// the shutdown grace is over; connections still open on the workers then
/// end when the caller stops them ([`crate::Workers::stop`]).
pub async fn serve_on(
    listener: TcpListener,
    gate: Arc<Gate>,
    workers: &[Handle],
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let started_with = gate.config();
    started_with
        .require_upstream()
        .map_err(std::io::Error::other)?;
    let tls = tls_acceptor(&gate)?;
    if started_with.store.is_some() {
        // Follows the shared revocation store while the gate runs.
        tokio::spawn(crate::ops::store::follow(Arc::clone(&gate)));
    }
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
        // Round robin: worker 0 is this runtime, the others take the
        // socket over (it moves from this runtime's poller to theirs).
        let worker = next_worker % (workers.len() + 1);
        next_worker = next_worker.wrapping_add(1);
        let accepted = Accepted {
            peer,
            worker,
            // Limits apply to new connections from the config in force now.
            limits: gate.config().limits.clone(),
            gate: Arc::clone(&gate),
            closing: closing_rx.clone(),
            tls: tls.clone(),
            _permit: permit,
        };
        tracing::debug!(%peer, worker, "connection accepted");
        accepted.spawn_on(stream, worker.checked_sub(1).and_then(|i| workers.get(i)));
    }

    drop(listener);
    drain(
        &closing,
        &permits,
        max_connections,
        started_with.limits.shutdown_grace,
    )
    .await;
    Ok(())
}

/// The TLS acceptor over the gate's certificate store, when it speaks
/// TLS.
fn tls_acceptor(gate: &Gate) -> std::io::Result<Option<TlsAcceptor>> {
    let Some(store) = gate.certs() else {
        return Ok(None);
    };
    let config =
        crate::server::tls::server_config(Arc::clone(store)).map_err(std::io::Error::other)?;
    Ok(Some(TlsAcceptor::from(config)))
}

/// Shutdown: tell every connection to finish what it has in flight and
/// close, then wait until all have (every connection holds one of the
/// `max` permits until it ends) or the grace period is over.
async fn drain(closing: &watch::Sender<bool>, permits: &Semaphore, max: usize, grace: Duration) {
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = closing.send(true);
    let all_closed = permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX));
    tokio::select! {
        _ = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; closing remaining connections");
        }
    }
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
    /// The worker thread it runs on, whose upstream pool it uses.
    worker: usize,
    limits: Limits,
    gate: Arc<Gate>,
    closing: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    /// Held until the connection, and every tunnel it opened, ends.
    _permit: OwnedSemaphorePermit,
}

impl Accepted {
    /// Serve the connection on this runtime (worker 0), or move the socket
    /// to `worker`'s runtime (from this runtime's poller to theirs).
    fn spawn_on(self, stream: TcpStream, worker: Option<&Handle>) {
        let Some(handle) = worker else {
            tokio::spawn(self.serve(stream));
            return;
        };
        let peer = self.peer;
        match stream.into_std() {
            Ok(stream) => {
                handle.spawn(async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => self.serve(stream).await,
                        Err(error) => {
                            tracing::warn!(%error, %peer, "cannot move a connection to its worker")
                        }
                    }
                });
            }
            Err(error) => tracing::warn!(%error, %peer, "cannot move a connection to its worker"),
        }
    }

    /// Serve the connection (after the TLS handshake, when configured)
    /// until it ends.
    async fn serve(self, stream: TcpStream) {
        let Accepted {
            peer,
            worker,
            limits,
            gate,
            closing,
            tls,
            _permit,
        } = self;
        let held = Arc::new(_permit);
        let conn = |tls| ProxyConn {
            info: ConnInfo::new(peer, tls),
            inflight: Arc::new(Semaphore::new(limits.max_inflight_per_connection)),
            worker,
            closing: closing.clone(),
            held: Arc::clone(&held),
        };
        let result = match tls {
            None => connection::serve(stream, gate, conn(false), &limits, closing).await,
            Some(acceptor) => {
                // The handshake counts against the same clock as a request
                // head: a client that stalls it is cut off.
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        connection::serve(stream, gate, conn(true), &limits, closing).await
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
