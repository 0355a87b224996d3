//! The upstream: where a request goes once the gate has admitted it.
//!
//! Either a portal host over HTTP, through a pooled keep-alive client, or a
//! static directory ([`crate::files`]). The forwarder builds the upstream
//! request from the *normalized* path, so the rule that matched is the rule
//! for what the upstream serves, and from headers that
//! [`crate::headers`] has already cleaned.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, Body};
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::files::StaticDir;
use crate::reject::Reason;

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
    /// One pooled keep-alive client per worker ([`crate::workers`]), so a
    /// request uses connections driven by its own thread; HTTP/2 when an
    /// https upstream offers it.
    clients: Box<[Client<HttpsConnector<HttpConnector>, Incoming>]>,
    /// Scheme and authority of the upstream URL.
    base: Uri,
    /// How long to wait for the response head.
    timeout: Duration,
}

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
    pub async fn forward(&self, outgoing: Outgoing) -> Result<Response<Body>, Reason> {
        match self {
            Upstream::Dir(dir) => {
                let response = dir
                    .serve(outgoing.request.method(), outgoing.path(), outgoing.query())
                    .await;
                Ok(response.map(body::boxed))
            }
            Upstream::Http(http) => http.forward(outgoing).await,
        }
    }
}

impl HttpUpstream {
    fn new(url: &Uri, config: &UpstreamConfig, workers: usize) -> std::io::Result<HttpUpstream> {
        let authority = url
            .authority()
            .ok_or_else(|| std::io::Error::other("upstream URL has no host"))?;
        let base = Uri::builder()
            .scheme(url.scheme_str().unwrap_or("http"))
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(std::io::Error::other)?;

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls =
            crate::tls::upstream_client_config(&config.ca_certs).map_err(std::io::Error::other)?;
        // ALPN offers h2 and http/1.1 to https upstreams; plain http stays
        // HTTP/1.1 (no h2c guessing towards a server we do not know).
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout);
        let clients = (0..workers.max(1))
            .map(|_| builder.build(connector.clone()))
            .collect();
        Ok(HttpUpstream {
            clients,
            base,
            timeout: config.timeout,
        })
    }

    async fn forward(&self, outgoing: Outgoing) -> Result<Response<Body>, Reason> {
        let Outgoing {
            mut request,
            target,
            ..
        } = outgoing;
        let mut parts = self.base.clone().into_parts();
        // The target's bytes move into the URI without another copy.
        parts.path_and_query = Some(
            PathAndQuery::from_maybe_shared(Bytes::from(target))
                .map_err(|_| Reason::BadRequest("the request target cannot be forwarded"))?,
        );
        *request.uri_mut() = Uri::from_parts(parts).map_err(|_| Reason::Internal)?;
        // The client picks HTTP/1.1 or HTTP/2 per connection; on HTTP/1.1 it
        // sets `Host` from the upstream URL (the client's Host went into
        // X-Forwarded-Host).
        *request.version_mut() = Version::HTTP_11;

        let client = &self.clients[crate::workers::index() % self.clients.len()];
        let response = match tokio::time::timeout(self.timeout, client.request(request)).await {
            Err(_elapsed) => return Err(Reason::UpstreamTimeout),
            Ok(Err(error)) if client_body_failed(&error) => {
                // The client's own body broke (bad chunked framing, a reset
                // mid-upload): the client's fault, not the upstream's.
                tracing::debug!(error = %error, "request body failed while forwarding");
                return Err(Reason::BadRequest("the request body is malformed"));
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, connect = error.is_connect(), "upstream request failed");
                return Err(Reason::UpstreamUnavailable);
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, incoming) = response.into_parts();
        crate::headers::prepare_client_headers(&mut parts.headers);
        Ok(Response::from_parts(parts, body::boxed(incoming)))
    }
}

/// Whether forwarding failed because the body we were sending (the
/// client's) failed, rather than the upstream: hyper marks that as a user
/// error somewhere in the source chain.
fn client_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(hyper_error) = current.downcast_ref::<hyper::Error>() {
            if hyper_error.is_user() {
                return true;
            }
        }
        source = current.source();
    }
    false
}
