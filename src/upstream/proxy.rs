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

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::http::respond::Reason;
use crate::upstream::body::{self, AtEnd, Body, OnEnd};
use crate::upstream::files::StaticDir;
use crate::upstream::pool::{Http1Pool, PoolError};
use crate::upstream::upload::{Upload, UploadError};

/// Where admitted requests go.
#[derive(Debug)]
pub enum Upstream {
    /// A static directory.
    Dir(StaticDir),
    /// A portal host.
    Http(Box<HttpUpstream>),
}

/// A portal host reached over HTTP or HTTPS with pooled connections.
#[derive(Debug)]
pub struct HttpUpstream {
    /// How requests reach it.
    transport: Transport,
    /// How long to wait for the response head.
    timeout: Duration,
    /// One permit per exchange with the upstream, held until its response
    /// body ends: bounds the upstream connections in use.
    exchanges: Arc<Semaphore>,
}

/// Exchanges with the upstream at once at most, so upstream connections
/// in use (one each on HTTP/1.1) stay well inside the descriptor budget
/// however many client requests are in flight; more wait for a free one,
/// within the upstream timeout.
pub const MAX_UPSTREAM_EXCHANGES: usize = 4096;

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
    },
}

/// hyper-util's pooled client over rustls.
type TlsClient = Client<HttpsConnector<HttpConnector>, Upload>;

/// A request the gate has admitted, already rewritten for the upstream
/// except for its target.
#[derive(Debug)]
pub struct Outgoing {
    /// The request, with cleaned headers; its URI is replaced here.
    pub request: Request<Incoming>,
    /// The normalized path, then `?` and the query without token
    /// parameters if one is left: built once, moved into the URI as is.
    pub target: String,
    /// Where the path ends in `target`.
    pub path_len: usize,
    /// Whether the request's method may carry a body (GET and HEAD may
    /// not: theirs was refused if it had one, and is never read).
    pub body_allowed: bool,
    /// Time the client has for the start of its body, and the longest
    /// pause in the rest (`limits.body_timeout`).
    pub body_timeout: Duration,
}

impl Outgoing {
    /// The target for `path` (normalized) and `query`, and the path's
    /// length in it: one allocation.
    pub fn target(path: &str, query: Option<&str>) -> (String, usize) {
        let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        (target, path.len())
    }

    /// The normalized path.
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The query, if any is left.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_len + 1..)
    }
}

impl Upstream {
    /// Build the upstream from its config, with a connection pool for
    /// each of `workers` worker threads.
    pub fn new(config: &UpstreamConfig, workers: usize) -> std::io::Result<Upstream> {
        match &config.target {
            UpstreamTarget::Dir(dir) => Ok(Upstream::Dir(StaticDir::new(dir)?)),
            UpstreamTarget::Url(url) => Ok(Upstream::Http(Box::new(HttpUpstream::new(
                url, config, workers,
            )?))),
        }
    }

    /// Send `outgoing` upstream and return the response to pass back.
    /// `inflight` is the client connection's own limit on requests with
    /// the upstream at once.
    pub async fn forward(
        &self,
        outgoing: Outgoing,
        inflight: &Arc<Semaphore>,
    ) -> Result<Response<Body>, Reason> {
        match self {
            Upstream::Dir(dir) => {
                let response = dir
                    .serve(outgoing.request.method(), outgoing.path(), outgoing.query())
                    .await;
                Ok(response.map(body::boxed))
            }
            Upstream::Http(http) => http.forward(outgoing, inflight).await,
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
            exchanges: Arc::new(Semaphore::new(MAX_UPSTREAM_EXCHANGES)),
        })
    }

    /// Forward in three steps: the start of the request body, read before
    /// anything is held for the upstream (within `limits.body_timeout`, see
    /// [`crate::upstream::upload`]); a share of the client connection's in-flight
    /// limit (within `upstream.timeout`); then an exchange, a connection
    /// and the response head (within `upstream.timeout` again).
    async fn forward(
        &self,
        outgoing: Outgoing,
        inflight: &Arc<Semaphore>,
    ) -> Result<Response<Body>, Reason> {
        let Outgoing {
            request,
            target,
            body_allowed,
            body_timeout,
            ..
        } = outgoing;
        let (mut parts, body) = request.into_parts();
        let body = match body_allowed {
            true => Upload::read(body, body_timeout)
                .await
                .map_err(|error| upload_refusal(&error))?,
            false => Upload::empty(),
        };
        let inflight = tokio::time::timeout(self.timeout, Arc::clone(inflight).acquire_owned())
            .await
            .map_err(|_elapsed| Reason::UpstreamTimeout)?
            .map_err(|_closed| Reason::Internal)?;
        // The target's bytes move into the URI without another copy.
        let target = PathAndQuery::from_maybe_shared(Bytes::from(target))
            .map_err(|_| Reason::BadRequest("the request target cannot be forwarded"))?;
        // HTTP/1.1 or HTTP/2 is the connection's choice; on HTTP/1.1 `Host`
        // is the upstream's (the client's Host went into X-Forwarded-Host).
        parts.version = Version::HTTP_11;
        let exchange = async {
            // Waiting for a free exchange counts against the same timeout.
            let permit = Arc::clone(&self.exchanges)
                .acquire_owned()
                .await
                .map_err(|_| Failure::Closed)?;
            // Boxed once, with the permits that live as long as the body.
            let exchange = Exchange {
                _exchange: permit,
                _inflight: inflight,
            };
            Ok(match &self.transport {
                Transport::Plain(pool) => {
                    parts.uri = Uri::from(target);
                    let request = Request::from_parts(parts, body);
                    let response = pool.send(request).await.map_err(Failure::Pool)?;
                    response.map(|body| body::boxed(OnEnd::new(body, exchange)))
                }
                Transport::Tls { clients, base } => {
                    let mut uri = base.clone().into_parts();
                    uri.path_and_query = Some(target);
                    parts.uri = Uri::from_parts(uri).map_err(|_| Failure::Target)?;
                    if !body.is_empty() {
                        // Never back to the pool on HTTP/1.1 (see
                        // `crate::upstream::pool`); hyper drops the field on HTTP/2,
                        // whose streams cannot leave bytes behind.
                        parts
                            .headers
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    let request = Request::from_parts(parts, body);
                    let client = &clients[crate::server::workers::index() % clients.len()];
                    let response = client.request(request).await.map_err(Failure::Client)?;
                    response.map(|body| body::boxed(OnEnd::new(body, exchange)))
                }
            })
        };
        let sent = tokio::time::timeout(self.timeout, exchange).await;
        match sent {
            Err(_elapsed) => Err(Reason::UpstreamTimeout),
            Ok(Err(Failure::Closed | Failure::Target)) => Err(Reason::Internal),
            Ok(Err(failure)) => match failure.upload_error() {
                // The client's own body broke or stalled: the client's
                // fault, not the upstream's.
                Some(error) => {
                    tracing::debug!(%error, "request body failed while forwarding");
                    Err(upload_refusal(error))
                }
                None => {
                    tracing::warn!(error = %failure, connect = failure.is_connect(), "upstream request failed");
                    Err(Reason::UpstreamUnavailable)
                }
            },
            Ok(Ok(response)) => Ok(response),
        }
    }
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

/// Why an exchange with the upstream failed, from either transport.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Pool(PoolError),
    #[error(transparent)]
    Client(hyper_util::client::legacy::Error),
    #[error("the exchange limit was closed")]
    Closed,
    #[error("the request target cannot be joined to the upstream URL")]
    Target,
}

/// What a request holds while it is with the upstream, given back when its
/// response body ends or is dropped.
struct Exchange {
    /// One of the exchanges every client shares.
    _exchange: OwnedSemaphorePermit,
    /// The client connection's share (`limits.max_inflight_per_connection`).
    _inflight: OwnedSemaphorePermit,
}

impl AtEnd for Exchange {
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
