//! The life of one request, top to bottom, each phase one call:
//! normalize path → host and query checks → the gate's own endpoints →
//! find credential → exchange a URL token for a session → decide (rule,
//! cache, user) → forward or reject → log.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::Config;
use crate::gate::{self, Credential, Decision, TokenPlaces};
use crate::headers::{self, ClientInfo};
use crate::proxy::Outgoing;
use crate::reject::{Audience, Reason};
use crate::rules::Access;
use crate::state::{Active, Gate};

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `"https"` behind the gate's TLS, `"http"` otherwise.
    pub proto: &'static str,
}

/// One request, top to bottom. Never fails: every refusal is a response.
pub async fn handle(gate: &Gate, request: Request<Incoming>, conn: Connection) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    // The config in force when the request arrived; a reload meanwhile
    // does not change it under the request.
    let active = gate.active();
    let (response, path, decision) = decide_and_answer(gate, &active, request, conn).await;
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
    active: &Active,
    request: Request<Incoming>,
    conn: Connection,
) -> (Response<Body>, String, &'static str) {
    let config = &*active.config;
    let peer = conn.peer;
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
            limiter: gate.limiter(),
            ip: peer.ip(),
        };
        let response = crate::api::handle(config, caller, request, now).await;
        return (response, path, "token-api");
    }
    if path == config.embed.script_path {
        let response = gate.script().respond(request.method(), request.headers());
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
            gate.cache(),
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
    let identity = match gate::decide(config, gate.cache(), &path, credential.as_ref(), now) {
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
        proto: conn.proto,
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
    match active.upstream.forward(outgoing).await {
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
