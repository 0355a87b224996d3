//! The server: accept connections (TLS when configured), speak HTTP/1.1
//! and HTTP/2 on them with every limit applied, hand each request to
//! [`crate::handler`], and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Limits};
use crate::handler::{handle, Connection};
use crate::state::Gate;

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
/// a handle on the gate to reload it.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let started_with = gate.config();
    let tls = match gate.certs() {
        Some(store) => Some(TlsAcceptor::from(
            crate::tls::server_config(Arc::clone(store)).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    // Each connection holds a permit; at the limit, the accept loop waits
    // and new connections queue in the kernel's listen backlog.
    let permits = Arc::new(Semaphore::new(started_with.limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, and keep serving the connections we have.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Limits apply to new connections from the config in force now.
        let limits = gate.config().limits.clone();
        let gate = Arc::clone(&gate);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match tls {
                None => {
                    let conn = Connection {
                        peer,
                        proto: "http",
                    };
                    serve_connection(TokioIo::new(stream), gate, conn, &limits, watcher).await
                }
                Some(acceptor) => {
                    // The handshake counts against the same clock as a
                    // request head: a client that stalls it is cut off.
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            let conn = Connection {
                                peer,
                                proto: "https",
                            };
                            serve_connection(TokioIo::new(stream), gate, conn, &limits, watcher)
                                .await
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
        });
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(started_with.limits.shutdown_grace) => {
            tracing::warn!("grace period over; closing remaining connections");
        }
    }
    Ok(())
}

/// Serve HTTP/1.1 or HTTP/2 (by ALPN or preface) on one connection.
async fn serve_connection<I>(
    io: TokioIo<I>,
    gate: Arc<Gate>,
    conn: Connection,
    limits: &Limits,
    watcher: Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let gate = Arc::clone(&gate);
        async move { Ok::<_, Infallible>(handle(&gate, request, conn).await) }
    });
    let builder = connection_builder(limits);
    let connection = builder.serve_connection(io, service).into_owned();
    watcher.watch(connection).await
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
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
