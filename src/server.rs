//! The server: accept connections, read requests, and walk each one
//! through the gate's phases.
//!
//! The life of one request, each phase one call below:
//! accept → read request (hyper) → normalize path → token API? → find token
//! → decide (rule, cache, admit) → forward or reject → log.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body::Body;
use crate::cache::TokenCache;
use crate::config::{Config, Limits};
use crate::gate::{self, Credential, Decision, TokenPlaces};
use crate::headers::{self, ClientInfo};
use crate::limiter::FailureLimiter;
use crate::proxy::{Outgoing, Upstream};
use crate::reject::{Audience, Reason};
use crate::rules::Access;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Gate {
    /// The validated config.
    config: Config,
    /// Opened tokens, so each is decrypted once.
    cache: TokenCache,
    /// Where admitted requests go.
    upstream: Upstream,
    /// Failed token API attempts per client address.
    limiter: FailureLimiter,
    /// The `released-page` element's script, with its ETag.
    script: crate::embed::EmbedScript,
}

impl Gate {
    /// Build the gate's state from a validated config.
    pub fn new(config: Config) -> std::io::Result<Gate> {
        let upstream = Upstream::new(&config.upstream)?;
        let cache = TokenCache::new(config.verification.cache_capacity);
        let limiter = FailureLimiter::new(
            config.limits.api_failure_burst,
            config.limits.api_failure_refill,
        );
        Ok(Gate {
            config,
            cache,
            upstream,
            limiter,
            script: crate::embed::EmbedScript::new(),
        })
    }

    /// The config this gate runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Serve the gate on `listener` until `shutdown` completes, then let
/// in-flight requests finish (up to a grace period) and return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let gate = Arc::new(Gate::new(config)?);
    let limits = gate.config.limits.clone();
    let builder = connection_builder(&limits);
    // Each connection holds a permit; at the limit, the accept loop waits
    // and new connections queue in the kernel's listen backlog.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
        let gate = Arc::clone(&gate);
        let service = service_fn(move |request| {
            let gate = Arc::clone(&gate);
            async move { Ok::<_, Infallible>(handle(&gate, request, peer).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
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

/// One request, top to bottom. Never fails: every refusal is a response.
pub async fn handle(gate: &Gate, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let (response, path, decision) = decide_and_answer(gate, request, peer).await;
    tracing::info!(
        target: "access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        decision,
        latency_us = started.elapsed().as_micros() as u64,
    );
    response
}

async fn decide_and_answer(
    gate: &Gate,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> (Response<Body>, String, &'static str) {
    let config = &gate.config;
    let now = gate::unix_now();
    let audience = Audience::of(request.method(), request.headers());

    // Normalize: one reading of the path, for the rules and the upstream.
    let path = match crate::path::normalize(request.uri().path()) {
        Ok(path) => path.into_owned(),
        Err(error) => {
            return (
                Reason::BadPath(error).into_response(audience),
                "-".into(),
                "bad-path",
            )
        }
    };

    // A host this gate does not serve, or an oversized query: refuse early.
    if !serves_host(config, &request) {
        return (
            Reason::MisdirectedHost.into_response(audience),
            path,
            "bad-host",
        );
    }
    if request
        .uri()
        .query()
        .is_some_and(|q| q.len() > config.limits.max_query_len)
    {
        return (
            Reason::QueryTooLong.into_response(audience),
            path,
            "bad-query",
        );
    }

    // The gate's own endpoints.
    if crate::api::TOKEN_PATHS.contains(&path.as_str()) {
        let caller = crate::api::Caller {
            limiter: &gate.limiter,
            ip: peer.ip(),
        };
        let response = crate::api::handle(config, caller, request, now).await;
        return (response, path, "token-api");
    }
    if path == config.embed.script_path {
        let response = gate.script.respond(request.method(), request.headers());
        return (response, path, "embed-script");
    }
    if path == config.embed.logout_path {
        return (crate::session::logout_response(), path, "logout");
    }

    // Find the credential: a token, or else the session cookie.
    let (credential, places) = match gate::find_credential(request.uri().query(), request.headers())
    {
        Ok(found) => found,
        Err(reason) => return (reason.into_response(audience), path, "reject"),
    };

    // Exchange: a token in a navigation's URL becomes a session cookie.
    if let (Some(credential @ Credential::Token(_)), true) =
        (&credential, places.query && audience != Audience::Api)
    {
        match exchange(
            config,
            &gate.cache,
            credential,
            &path,
            request.uri().query(),
            now,
        ) {
            Ok(response) => return (response, path, "exchange"),
            Err(reason) if gate::access_for(config, &path).1 != Access::Public => {
                return (reason.into_response(audience), path, "reject");
            }
            // A bad token on a public page: the page is public all the same.
            Err(_) => {}
        }
    }

    // Decide: the rule, the credential through the cache, the user.
    let identity = match gate::decide(config, &gate.cache, &path, credential.as_ref(), now) {
        Decision::Reject(reason) => return (reason.into_response(audience), path, "reject"),
        Decision::Forward(identity) => identity,
    };

    // Forward: rewrite the request for the upstream, then send it.
    let label = if identity.is_some() {
        "verified"
    } else {
        "public"
    };
    let client = ClientInfo {
        peer,
        proto: "http",
        trusted: config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip())),
    };
    let outgoing =
        match outgoing_request(request, path.clone(), client, places, identity.as_deref()) {
            Ok(outgoing) => outgoing,
            Err(reason) => return (reason.into_response(audience), path, "reject"),
        };
    match gate.upstream.forward(outgoing).await {
        Ok(mut response) => {
            if identity.is_some() {
                headers::make_private(response.headers_mut());
            }
            if let Some(policy) = &config.embed.frame_ancestors {
                response
                    .headers_mut()
                    .append(header::CONTENT_SECURITY_POLICY, policy.clone());
            }
            (response, path, label)
        }
        Err(reason) => (reason.into_response(audience), path, "upstream-error"),
    }
}

/// Trade a valid token for a session cookie, redirecting to the same URL
/// without the token.
fn exchange(
    config: &Config,
    cache: &crate::cache::TokenCache,
    token: &Credential<'_>,
    path: &str,
    query: Option<&str>,
    now: u64,
) -> Result<Response<Body>, Reason> {
    let opened = gate::verify(config, cache, token, now)?;
    let ttl = config.verification.session_ttl.as_secs();
    let claims = crate::session::session_claims(&opened, now, ttl);
    let sealed = crate::token::mint_session(config.secrets.primary(), &claims);
    let location = match query.and_then(headers::query_without_token) {
        Some(rest) => format!("{path}?{rest}"),
        None => path.to_string(),
    };
    Ok(crate::session::exchange_response(&location, &sealed, ttl))
}

/// Clean the request for the upstream: token and session cookie out,
/// hop-by-hop and spoofed identity headers out, the gate's own headers in.
fn outgoing_request(
    mut request: Request<Incoming>,
    path: String,
    client: ClientInfo,
    places: TokenPlaces,
    identity: Option<&crate::token::Opened>,
) -> Result<Outgoing, Reason> {
    let query = request.uri().query().and_then(headers::query_without_token);
    let host = request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if places.cookie {
        crate::session::strip_cookie(request.headers_mut());
    }
    headers::prepare_upstream_headers(request.headers_mut(), places, client, host, identity)?;
    Ok(Outgoing {
        request,
        path,
        query,
    })
}

/// Whether the request's host (`Host`, or the HTTP/2 `:authority`) is one
/// the gate serves. An empty `public_hosts` list serves any host. Entries
/// without a port match the host on any port.
fn serves_host(config: &Config, request: &Request<Incoming>) -> bool {
    if config.public_hosts.is_empty() {
        return true;
    }
    let authority = match request.uri().authority() {
        Some(authority) => Some(authority.clone()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok()),
    };
    let Some(authority) = authority else {
        return false;
    };
    let full = authority.as_str().to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    config
        .public_hosts
        .iter()
        .any(|allowed| *allowed == full || *allowed == host)
}
