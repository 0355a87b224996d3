//! The upstream: where a request goes once the gate has admitted it.
//!
//! Either a portal host over HTTP, through pooled keep-alive connections
//! ([`crate::upstream::pool`] for `http://`, hyper-util's client for `https://`), or a
//! static directory ([`crate::upstream::files`]). The forwarder builds the upstream
//! request from the *normalized* path, so the rule that matched is the rule
//! for what the upstream serves, and from headers that
//! [`crate::http::headers`] has already cleaned.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::reason::Reason;
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::http::phases::{may_carry_body, ProxyConn};
use crate::upstream::body::{self, AtEnd, Body, OnEnd};
use crate::upstream::files::StaticDir;
use crate::upstream::pool::{Http1Pool, PoolError};
use crate::upstream::upload::{Upload, UploadError};

/// Where admitted requests go.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// A static directory.
    Dir(StaticDir),
    /// A portal host.
    Http(Box<HttpUpstream>),
    /// None: the gate guards an application in-process; the proxy does
    /// not start without an upstream, so nothing is forwarded here.
    None,
}

/// A portal host reached over HTTP or HTTPS with pooled connections.
#[derive(Debug)]
pub(crate) struct HttpUpstream {
    /// How requests reach it.
    transport: Transport,
    /// How long to wait for the response head.
    timeout: Duration,
    /// One permit per request with the upstream (a slot), held until its response
    /// body ends: bounds the upstream connections in use.
    slots: Arc<Semaphore>,
}

/// Requests with the upstream at once at most ("slots"), so upstream connections
/// in use (one each on HTTP/1.1) stay well inside the descriptor budget
/// however many client requests are in flight; more wait for a free one,
/// within the upstream timeout.
pub(crate) const MAX_UPSTREAM_SLOTS: usize = 4096;

/// The connections to the upstream: pooled per worker ([`crate::server::workers`])
/// either way, so a request uses connections driven by its own thread.
#[derive(Debug)]
enum Transport {
    /// `http://`: HTTP/1.1 connections of our own pool.
    Plain(Arc<Http1Pool>),
    /// `https://`: one hyper-util client per worker (TLS, and HTTP/2 when
    /// the upstream offers it), and the URL's scheme and authority, which
    /// that client takes in each request's URI.
    Tls {
        clients: Box<[TlsClient]>,
        base: Uri,
        upgrades: Box<TlsUpgrades>,
    },
}

/// What a WebSocket handshake needs to reach an `https://` upstream on a
/// connection of its own: TLS with ALPN `http/1.1` only (a WebSocket over
/// HTTP/2 would need RFC 8441's extended CONNECT).
struct TlsUpgrades {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls_pki_types::ServerName<'static>,
    /// `host:port`, to connect to.
    address: String,
    /// The upstream's `Host`.
    host: HeaderValue,
    connect_timeout: Duration,
}

/// hyper-util's pooled client over rustls.
type TlsClient = Client<HttpsConnector<HttpConnector>, Upload>;

impl Upstream {
    /// Build the upstream from its config, with a connection pool for
    /// each of `workers` worker threads.
    pub(crate) fn new(config: &UpstreamConfig, workers: usize) -> std::io::Result<Upstream> {
        match &config.target {
            UpstreamTarget::None => Ok(Upstream::None),
            UpstreamTarget::Dir(dir) => Ok(Upstream::Dir(StaticDir::new(dir)?)),
            UpstreamTarget::Url(url) => Ok(Upstream::Http(Box::new(HttpUpstream::new(
                url, config, workers,
            )?))),
        }
    }

    /// Send an admitted `request` (its target the normalized path and
    /// query, its headers cleaned) upstream, for the client connection
    /// `conn`, and return the response to pass back. `body_timeout` bounds
    /// the arrival of the request body ([`crate::upstream::upload`]).
    pub(crate) async fn forward(
        &self,
        request: Request<Incoming>,
        body_timeout: Duration,
        conn: &ProxyConn,
    ) -> Result<Response<Body>, Reason> {
        match self {
            Upstream::Dir(dir) => {
                let uri = request.uri();
                let response = dir.serve(request.method(), uri.path(), uri.query()).await;
                Ok(response.map(body::boxed))
            }
            Upstream::Http(http) => http.forward(request, body_timeout, conn).await,
            Upstream::None => Err(Reason::Internal),
        }
    }
}

impl HttpUpstream {
    fn new(url: &Uri, config: &UpstreamConfig, workers: usize) -> std::io::Result<HttpUpstream> {
        let authority = url
            .authority()
            .ok_or_else(|| std::io::Error::other("upstream URL has no host"))?;
        let workers = workers.max(1);
        let transport = if url.scheme_str() == Some("https") {
            let base = Uri::builder()
                .scheme("https")
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .map_err(std::io::Error::other)?;
            Transport::Tls {
                clients: tls_clients(config, workers)?,
                base,
                upgrades: Box::new(tls_upgrades(authority, config)?),
            }
        } else {
            Transport::Plain(Arc::new(Http1Pool::new(
                authority,
                config.connect_timeout,
                config.pool_idle_timeout,
                workers,
            )?))
        };
        Ok(HttpUpstream {
            transport,
            timeout: config.timeout,
            slots: Arc::new(Semaphore::new(MAX_UPSTREAM_SLOTS)),
        })
    }

    /// Forward in three steps: the start of the request body, read before
    /// anything is held for the upstream (within `limits.body_timeout`, see
    /// [`crate::upstream::upload`]); a share of the client connection's
    /// in-flight limit (within `upstream.timeout`); then an upstream slot,
    /// a connection and the response head (within `upstream.timeout`
    /// again).
    async fn forward(
        &self,
        request: Request<Incoming>,
        body_timeout: Duration,
        conn: &ProxyConn,
    ) -> Result<Response<Body>, Reason> {
        let (mut parts, body) = request.into_parts();
        let body = match may_carry_body(&parts.method) {
            true => Upload::read(body, body_timeout)
                .await
                .map_err(|error| upload_refusal(&error))?,
            false => Upload::empty(),
        };
        let inflight = Arc::clone(&conn.inflight).acquire_owned();
        let inflight = tokio::time::timeout(self.timeout, inflight)
            .await
            .map_err(|_elapsed| Reason::UpstreamTimeout)?
            .map_err(|_closed| Reason::Internal)?;
        // HTTP/1.1 or HTTP/2 is the connection's choice; on HTTP/1.1 `Host`
        // is the upstream's (the client's Host went into X-Forwarded-Host).
        parts.version = Version::HTTP_11;
        let with_upstream = async {
            // Waiting for a free slot counts against the same timeout.
            let slot = Arc::clone(&self.slots)
                .acquire_owned()
                .await
                .map_err(|_| Failure::Closed)?;
            // Boxed once, with the permits that live as long as the body.
            let held = Held {
                _slot: slot,
                _inflight: inflight,
            };
            let response = self.send(parts, body, conn.worker).await?;
            Ok::<_, Failure>(response.map(|body| body::boxed(OnEnd::new(body, held))))
        };
        match tokio::time::timeout(self.timeout, with_upstream).await {
            Err(_elapsed) => Err(Reason::UpstreamTimeout),
            Ok(Err(failure)) => Err(failure.refusal()),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Send on the transport: the gate's pool for `http://`, hyper-util's
    /// client for `https://`, each the one of `worker`.
    async fn send(
        &self,
        mut parts: http::request::Parts,
        body: Upload,
        worker: usize,
    ) -> Result<Response<body::Body>, Failure> {
        match &self.transport {
            Transport::Plain(pool) => {
                let request = Request::from_parts(parts, body);
                let response = pool.send(request, worker).await.map_err(Failure::Pool)?;
                Ok(response.map(body::boxed))
            }
            Transport::Tls { clients, base, .. } => {
                let mut uri = base.clone().into_parts();
                uri.path_and_query = parts.uri.path_and_query().cloned();
                parts.uri = Uri::from_parts(uri).map_err(|_| Failure::Target)?;
                if !body.is_empty() {
                    // Never back to the pool on HTTP/1.1 (see
                    // `crate::upstream::pool`); hyper drops the field on
                    // HTTP/2, whose streams cannot leave bytes behind.
                    parts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                let request = Request::from_parts(parts, body);
                let client = &clients[worker % clients.len()];
                let response = client.request(request).await.map_err(Failure::Client)?;
                Ok(response.map(body::boxed))
            }
        }
    }
}

impl HttpUpstream {
    /// Send an admitted WebSocket handshake (its body empty) on a
    /// connection of its own, within `upstream.timeout`, and return the
    /// answer; the caller opens the tunnel only on a true switch.
    pub(crate) async fn send_upgrade(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, Reason> {
        let (mut parts, _empty) = request.into_parts();
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, Upload::empty());
        let sent = async {
            match &self.transport {
                Transport::Plain(pool) => pool.send_upgrade(request).await.map_err(Failure::Pool),
                Transport::Tls { upgrades, .. } => upgrades.send(request).await,
            }
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Err(_elapsed) => Err(Reason::UpstreamTimeout),
            Ok(Err(failure)) => Err(failure.refusal()),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

impl std::fmt::Debug for TlsUpgrades {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsUpgrades")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl TlsUpgrades {
    async fn send(&self, request: Request<Upload>) -> Result<Response<Incoming>, Failure> {
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(header::HOST, self.host.clone());
        let tcp = crate::upstream::pool::connect_tcp(&self.address, self.connect_timeout)
            .await
            .map_err(Failure::Pool)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| Failure::Pool(PoolError::Connect(e)))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| Failure::Pool(e.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| Failure::Pool(e.into()))
    }
}

/// The TLS connector and names for WebSocket handshakes to an `https://`
/// upstream.
fn tls_upgrades(
    authority: &http::uri::Authority,
    config: &UpstreamConfig,
) -> std::io::Result<TlsUpgrades> {
    let mut tls = crate::server::tls::upstream_client_config(&config.ca_certs)
        .map_err(std::io::Error::other)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server_name =
        rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    Ok(TlsUpgrades {
        connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        server_name,
        address: format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(443)
        ),
        host: HeaderValue::from_str(authority.as_str()).map_err(std::io::Error::other)?,
        connect_timeout: config.connect_timeout,
    })
}

/// The refusal for a request body that could not be forwarded.
fn upload_refusal(error: &UploadError) -> Reason {
    match error {
        UploadError::Stalled => Reason::BodyTimeout,
        UploadError::Client(_) => Reason::BadRequest("the request body is malformed"),
    }
}

/// One hyper-util client per worker for an `https://` upstream: rustls
/// with the configured roots, ALPN offering h2 and http/1.1.
fn tls_clients(config: &UpstreamConfig, workers: usize) -> std::io::Result<Box<[TlsClient]>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let tls = crate::server::tls::upstream_client_config(&config.ca_certs)
        .map_err(std::io::Error::other)?;
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_all_versions()
        .wrap_connector(connector);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout);
    Ok((0..workers)
        .map(|_| builder.build(connector.clone()))
        .collect())
}

/// Why a request to the upstream failed, from either transport.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Pool(PoolError),
    #[error(transparent)]
    Client(hyper_util::client::legacy::Error),
    #[error("the upstream slots were closed")]
    Closed,
    #[error("the request target cannot be joined to the upstream URL")]
    Target,
}

/// What a request holds while it is with the upstream, given back when its
/// response body ends or is dropped.
struct Held {
    /// One of the upstream slots every client shares.
    _slot: OwnedSemaphorePermit,
    /// The client connection's share (`limits.max_inflight_per_connection`).
    _inflight: OwnedSemaphorePermit,
}

impl AtEnd for Held {
    fn at_end(self) {
        drop(self);
    }
}

impl Failure {
    /// The upstream could not be reached at all.
    fn is_connect(&self) -> bool {
        match self {
            Failure::Pool(error) => {
                matches!(error, PoolError::Connect(_) | PoolError::ConnectTimeout)
            }
            Failure::Client(error) => error.is_connect(),
            Failure::Closed | Failure::Target => false,
        }
    }

    /// The refusal for this failure: the client's body (400, 408), the
    /// gate's own limits (500), or the upstream (502).
    fn refusal(&self) -> Reason {
        if matches!(self, Failure::Closed | Failure::Target) {
            return Reason::Internal;
        }
        match self.upload_error() {
            // The client's own body broke or stalled: the client's fault,
            // not the upstream's.
            Some(error) => {
                tracing::debug!(%error, "request body failed while forwarding");
                upload_refusal(error)
            }
            None => {
                tracing::warn!(error = %self, connect = self.is_connect(), "upstream request failed");
                Reason::UpstreamUnavailable
            }
        }
    }

    /// The body we were sending (the client's) failed or stalled, rather
    /// than the upstream: hyper reports it as a user error whose source is
    /// the body's own error.
    fn upload_error(&self) -> Option<&UploadError> {
        let error: &(dyn std::error::Error + 'static) = match self {
            Failure::Pool(PoolError::Http(error)) => error,
            Failure::Pool(_) | Failure::Closed | Failure::Target => return None,
            Failure::Client(error) => error,
        };
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(upload) = error.downcast_ref::<UploadError>() {
                return Some(upload);
            }
            current = error.source();
        }
        None
    }
}
