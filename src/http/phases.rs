//! The life of one request, top to bottom, each phase one call:
//! normalize path → host and query checks → the gate's own endpoints →
//! find credential → exchange a URL token for a session → decide (rule,
//! cache, user) → forward or reject → log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::access::decision::{self, Credential, Decision};
use crate::access::rules::Access;
use crate::config::Config;
use crate::http::headers::{self, ClientInfo};
use crate::http::respond::{Audience, Reason};
use crate::ops::state::{Active, Gate};
use crate::token::format::Opened;
use crate::upstream::body::Body;
use crate::upstream::proxy::Outgoing;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `"https"` behind the gate's TLS, `"http"` otherwise.
    pub proto: &'static str,
    /// Requests of this connection with the upstream at once
    /// (`limits.max_inflight_per_connection`): one HTTP/2 connection must
    /// not take the upstream exchanges every client shares.
    pub inflight: Arc<Semaphore>,
}

/// What the access log and the metrics say about one request, filled in
/// as it goes through the phases.
/// It borrows from the config in force and shares the opened credential,
/// so filling it in copies nothing.
#[derive(Debug, Default)]
struct Trace<'c> {
    /// The normalized path (`-` when it could not be normalized).
    path: String,
    /// What the gate did: `public`, `verified`, `reject`, `exchange`, ...
    decision: &'static str,
    /// The pattern of the rule that governed the path.
    rule: Option<&'c str>,
    /// The verified user (admitted or not): secret id and email.
    user: Option<Arc<Opened>>,
    /// The upstream's status, when the request was forwarded.
    upstream_status: Option<u16>,
}

/// One request, top to bottom. Never fails: every refusal is a response.
pub async fn handle(gate: &Gate, request: Request<Incoming>, conn: Connection) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    // The config in force when the request arrived; a reload meanwhile
    // does not change it under the request.
    let active = gate.active();
    let mut trace = Trace::default();
    let mut response = decide_and_answer(gate, &active, request, &conn, &mut trace).await;
    if let Some(policy) = &active.config.embed.frame_ancestors {
        // Every answer, the gate's own pages included: who may frame them.
        response
            .headers_mut()
            .append(header::CONTENT_SECURITY_POLICY, policy.clone());
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    gate.metrics().request(trace.decision, status, elapsed);
    if let Some(user) = &trace.user {
        gate.metrics().verified(&user.key_id);
    }
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        // Logging off (say RUST_LOG=warn): skip the pseudonym's hash.
        return response;
    }
    // Never a token, a secret or a cookie; the user only as a keyed
    // pseudonym unless the operator asked for emails.
    let user = trace
        .user
        .as_ref()
        .map(|user| &*user.claims.email)
        .map(|email| {
            if active.config.log_user_email {
                email.to_string()
            } else {
                active.config.secrets.pseudonym(email)
            }
        });
    tracing::info!(
        target: "access",
        %method,
        path = %trace.path,
        status,
        decision = trace.decision,
        rule = trace.rule,
        secret_id = trace.user.as_ref().map(|user| &*user.key_id),
        user = user.as_deref(),
        upstream_status = trace.upstream_status,
        latency_us = elapsed.as_micros() as u64,
    );
    response
}

async fn decide_and_answer<'c>(
    gate: &Gate,
    active: &'c Active,
    request: Request<Incoming>,
    conn: &Connection,
    trace: &mut Trace<'c>,
) -> Response<Body> {
    let audience = Audience::of(request.method(), request.headers());
    if let Err(reason) = check_method_and_body(&request) {
        trace.path = "-".into();
        trace.decision = "reject";
        return reason.into_response(audience);
    }

    // Normalize: one reading of the path, for the rules and the upstream.
    let path = match crate::access::path::normalize(request.uri().path()) {
        Ok(path) => path.into_owned(),
        Err(error) => {
            trace.path = "-".into();
            trace.decision = "reject";
            return Reason::BadPath(error).into_response(audience);
        }
    };
    let response = answer(gate, active, request, conn, &path, audience, trace).await;
    // The trace takes the path once the request no longer needs it.
    trace.path = path;
    response
}

/// Every phase after normalization, for the normalized `path`.
async fn answer<'c>(
    gate: &Gate,
    active: &'c Active,
    request: Request<Incoming>,
    conn: &Connection,
    path: &str,
    audience: Audience,
    trace: &mut Trace<'c>,
) -> Response<Body> {
    let config = &*active.config;
    let now = decision::unix_now();
    let refuse = |trace: &mut Trace<'_>, reason: Reason| {
        trace.decision = "reject";
        reason.into_response(audience)
    };

    // One reading of the host, for public_hosts and X-Forwarded-Host; a
    // host this gate does not serve, or an oversized query: refuse early.
    let host = match requested_host(&request) {
        Ok(host) => host,
        Err(reason) => return refuse(trace, reason),
    };
    if !serves_host(config, host.as_ref()) {
        return refuse(trace, Reason::MisdirectedHost);
    }
    let trusted = config.trusts_proxy(conn.peer.ip());
    if trusted {
        // The host a trusted proxy relays is the one the client asked
        // for, and the one the upstream is told: held to the same list.
        match relayed_host(&request) {
            Ok(Some(relayed)) if !serves_host(config, Some(&relayed)) => {
                return refuse(trace, Reason::MisdirectedHost)
            }
            Ok(_) => {}
            Err(reason) => return refuse(trace, reason),
        }
    }
    if request
        .uri()
        .query()
        .is_some_and(|q| q.len() > config.limits.max_query_len)
    {
        return refuse(trace, Reason::QueryTooLong);
    }

    // The gate's own endpoints.
    if crate::http::api::TOKEN_PATHS.contains(&path) {
        trace.decision = "token-api";
        let caller = crate::http::api::Caller {
            limiter: gate.limiter(),
            metrics: gate.metrics(),
            ip: headers::client_ip(conn.peer.ip(), request.headers(), |ip| {
                config.trusts_proxy(ip)
            }),
        };
        return crate::http::api::handle(config, caller, request, now).await;
    }
    if path == config.embed.script_path {
        trace.decision = "embed-script";
        return gate.script().respond(request.method(), request.headers());
    }
    if path == config.embed.logout_path {
        trace.decision = "logout";
        return crate::http::session::logout_response(request.uri().query());
    }

    // Find the credential: a token, or else the session cookie.
    let (credential, places) =
        match decision::find_credential(request.uri().query(), request.headers()) {
            Ok(found) => found,
            Err(reason) => return refuse(trace, reason),
        };
    let (rule, access) = decision::access_for(config, path);
    trace.rule = rule.map(|r| r.pattern());

    // Exchange: a token in a navigation's URL becomes a session cookie.
    if let (Some(credential @ Credential::Token(_)), true) =
        (&credential, places.query && audience != Audience::Api)
    {
        match decision::verify(config, gate.cache(), credential, now) {
            Ok(opened) => {
                trace.decision = "exchange";
                trace.user = Some(Arc::clone(&opened));
                return exchange(config, &opened, path, request.uri().query(), now);
            }
            Err(reason) if access != Access::Public => return refuse(trace, reason),
            // A bad token on a public page: the page is public all the same.
            Err(_) => {}
        }
    }

    // Decide: the rule, the credential through the cache, the user.
    let identity = match decision::decide_for_rule(
        config,
        gate.cache(),
        (rule, access),
        credential.as_ref(),
        now,
    ) {
        Decision::Reject(reason) => return refuse(trace, reason),
        Decision::NotAdmitted(opened) => {
            trace.user = Some(opened);
            return refuse(trace, Reason::NotAdmitted);
        }
        Decision::Forward(identity) => identity,
    };
    trace.user = identity.clone();

    // Forward: rewrite the request for the upstream, then send it.
    let client = ClientInfo {
        peer: conn.peer,
        proto: conn.proto,
        trusted,
    };
    let identity_ref = identity.as_deref();
    let outgoing = match outgoing_request(request, path, client, host, identity_ref, config) {
        Ok(outgoing) => outgoing,
        Err(reason) => return refuse(trace, reason),
    };
    match active.upstream.forward(outgoing, &conn.inflight).await {
        Ok(mut response) => {
            gate.upstream_health().mark(now);
            trace.decision = if identity.is_some() {
                "verified"
            } else {
                "public"
            };
            trace.upstream_status = Some(response.status().as_u16());
            headers::filter_response(response.headers_mut(), identity.is_some());
            response
        }
        Err(reason) => {
            trace.decision = "upstream-error";
            match reason {
                Reason::UpstreamTimeout => gate.metrics().upstream_error("timeout"),
                Reason::UpstreamUnavailable => gate.metrics().upstream_error("unavailable"),
                _ => trace.decision = "reject",
            }
            reason.into_response(audience)
        }
    }
}

/// Trade a verified token for a session cookie, redirecting to the same
/// URL without the token.
fn exchange(
    config: &Config,
    opened: &Opened,
    path: &str,
    query: Option<&str>,
    now: u64,
) -> Response<Body> {
    let ttl = config.verification.session_ttl.as_secs();
    let claims = crate::http::session::session_claims(opened, now, ttl);
    let sealed = crate::token::format::mint_session(config.secrets.primary(), &claims);
    let location = match query.and_then(headers::query_without_token) {
        Some(rest) => format!("{path}?{rest}"),
        None => path.to_string(),
    };
    crate::http::session::exchange_response(&location, &sealed, ttl)
}

/// Clean the request for the upstream: token and session cookie out,
/// hop-by-hop and spoofed identity headers out, the gate's own headers in.
fn outgoing_request(
    mut request: Request<Incoming>,
    path: &str,
    client: ClientInfo,
    host: Option<HeaderValue>,
    identity: Option<&crate::token::format::Opened>,
    config: &Config,
) -> Result<Outgoing, Reason> {
    // Token parameters out of the query, in any spelling; borrowed when
    // there are none.
    let query = request.uri().query().and_then(headers::query_without_token);
    let (target, path_len) = Outgoing::target(path, query.as_deref());
    headers::prepare_upstream_headers(request.headers_mut(), client, host, identity)?;
    let body_allowed = may_carry_body(request.method());
    Ok(Outgoing {
        request,
        target,
        path_len,
        body_allowed,
        body_timeout: config.limits.body_timeout,
    })
}

/// Whether a request's method gives a body a meaning the gate forwards.
/// GET and HEAD do not (RFC 9110 section 9.3): an upstream that never
/// reads such a body would read it as its next request. OPTIONS and
/// DELETE may carry one, and go with it (see [`crate::upstream::pool`] for how a
/// body never shares an upstream connection with a later request).
fn may_carry_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Refuse what the gate never forwards, before anything else is read:
/// `CONNECT` in any form (there is no tunnel behind the gate) and `TRACE`
/// (it would echo the headers, the gate's identity headers included, back
/// to the page), and a body on a GET or HEAD, over HTTP/1.1 and HTTP/2
/// alike. A body of declared length zero is no body.
fn check_method_and_body(request: &Request<Incoming>) -> Result<(), Reason> {
    let method = request.method();
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(Reason::MethodNotAllowed);
    }
    let body = request.body();
    let has_body = !body.is_end_stream() && body.size_hint().exact() != Some(0);
    if has_body && !may_carry_body(method) {
        return Err(Reason::BadRequest(
            "a GET or HEAD request cannot carry a body",
        ));
    }
    Ok(())
}

/// The host the client asked for: the request target's authority (an
/// absolute-form HTTP/1.1 target, HTTP/2's `:authority`, without any
/// userinfo), else `Host`. Several `Host` headers, a `Host` that is not a
/// plain `host[:port]`, or one that names another host or port than the
/// authority (default ports aside), are refused: `public_hosts` and `X-Forwarded-Host` must read the same host,
/// and the upstream must not be told a different one.
fn requested_host(request: &Request<Incoming>) -> Result<Option<HeaderValue>, Reason> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reason::BadRequest("more than one Host header"));
    }
    let named = match host {
        None => None,
        Some(value) => match plain_host(value.as_bytes()) {
            Some(named) => Some(named),
            None => return Err(Reason::BadRequest("the Host header is not a host and port")),
        },
    };
    let Some(authority) = request.uri().authority() else {
        return Ok(host.cloned());
    };
    let default_port = match request.uri().scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    if let Some(named) = named {
        let same = named.host().eq_ignore_ascii_case(authority.host())
            && named.port_u16().unwrap_or(default_port)
                == authority.port_u16().unwrap_or(default_port);
        if !same {
            return Err(Reason::BadRequest(
                "the Host header names another host than the request target",
            ));
        }
        return Ok(host.cloned());
    }
    // No Host: the authority, without userinfo.
    let without_userinfo = authority.as_str().rsplit('@').next().unwrap_or_default();
    HeaderValue::from_str(without_userinfo)
        .map(Some)
        .map_err(|_| Reason::BadRequest("the request target's host cannot be forwarded"))
}

/// The `X-Forwarded-Host` a trusted proxy relayed, if any: exactly one
/// field holding one plain `host[:port]`. Several fields, a list, or
/// anything else is refused (400) rather than guessed at, since the
/// upstream is told this host.
fn relayed_host(request: &Request<Incoming>) -> Result<Option<HeaderValue>, Reason> {
    let mut relayed = request.headers().get_all("x-forwarded-host").iter();
    let Some(value) = relayed.next() else {
        return Ok(None);
    };
    if relayed.next().is_some() || plain_host(value.as_bytes()).is_none() {
        return Err(Reason::BadRequest(
            "X-Forwarded-Host is not one host and port",
        ));
    }
    Ok(Some(value.clone()))
}

/// `bytes` read as a plain `host[:port]`: no userinfo, no path, no list, a
/// port that is a port. The one reading of a host named in a header.
pub fn plain_host(bytes: &[u8]) -> Option<http::uri::Authority> {
    let named = http::uri::Authority::try_from(bytes).ok()?;
    let text = named.as_str();
    let plain = !text.contains(['@', ',']) && !text.is_empty() && has_valid_port(&named);
    plain.then_some(named)
}

/// Whether `authority` has no port, or a port in range (the `http` crate
/// accepts `host:abc` and `host:99999`, reporting no port).
fn has_valid_port(authority: &http::uri::Authority) -> bool {
    let text = authority.as_str();
    let after_host = match text.rfind(']') {
        Some(end) => &text[end + 1..],
        None => text,
    };
    match after_host.rsplit_once(':') {
        None => true,
        Some((_, port)) => port.parse::<u16>().is_ok(),
    }
}

/// Whether `host` (see [`requested_host`]) is one the gate serves. An empty
/// `public_hosts` list serves any host, a missing one included. Entries
/// without a port match the host on any port.
fn serves_host(config: &Config, host: Option<&HeaderValue>) -> bool {
    if config.public_hosts.is_empty() {
        return true;
    }
    let Some(authority) = host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    else {
        return false;
    };
    let full = authority.as_str().to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    config
        .public_hosts
        .iter()
        .any(|allowed| *allowed == full || *allowed == host)
}
