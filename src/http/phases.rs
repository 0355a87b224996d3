//! The life of one request, as a list of phases, each one function whose
//! doc says what it decides.
//!
//! [`Gate::admit`] runs the access phases, the same for the proxy and for
//! an application gated in-process by [`crate::GateLayer`]:
//!
//! 1. [`classify`]: the method and the body (`CONNECT`, `TRACE`: 405; a
//!    body on GET or HEAD: 400), one reading of the path (400), the host
//!    (421, 400) and the query's length (414).
//! 2. [`own_endpoint`]: the token API, the embed script and logout,
//!    answered by the gate itself.
//! 3. [`find_credential`]: a token, else the session cookie (400 when
//!    several disagree).
//! 4. [`exchange_session`]: a token in a navigation's URL becomes a
//!    session cookie (303).
//! 5. [`decide`]: the rule, the credential through the decrypt cache, the
//!    user (401, 403).
//! 6. [`upstream_request`]: the request as the upstream (or the
//!    application) sees it: the normalized path, no credential, no spoofed
//!    header, the gate's identity headers.
//!
//! The proxy ([`proxy`]) goes on with:
//!
//! 7. forward ([`crate::upstream::proxy::Upstream::forward`]): to the
//!    portal host (408, 502, 504);
//! 8. [`response_filter`]: what the client may see of the upstream's
//!    answer, and the framing policy on every answer; then, for a frame,
//!    the frame script's tag in the upstream's HTML
//!    ([`crate::http::inject`]);
//! 9. [`AccessLog::finish`]: once the response body has ended (or was
//!    dropped), one access-log event and the metrics, with the final
//!    outcome, the bytes sent and the whole duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response};
use http_body::Body as HttpBody;
use hyper::body::Incoming;

use crate::access::credential::{self, Credential, TokenPlaces};
use crate::access::decision::{self, Decision};
use crate::access::reason::Reason;
use crate::access::rules::{Access, PageRule};
use crate::config::{Config, Endpoint};
use crate::http::headers::{self, ClientInfo};
use crate::http::respond::{Audience, OwnResponse};
use crate::http::{api, host, session, websocket};
use crate::ops::state::{Active, Gate};
use crate::token::Opened;
use crate::upstream::body::{self, Body, BoxError};
use crate::upstream::tunnel::TunnelOpen;

/// What the gate knows about the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    peer: SocketAddr,
    tls: bool,
}

impl ConnInfo {
    /// A connection from `peer`, over TLS or not. An application gated by
    /// [`crate::GateLayer`] puts one in the request's extensions (else the
    /// layer uses an unspecified address: see the layer's docs).
    pub fn new(peer: SocketAddr, tls: bool) -> ConnInfo {
        ConnInfo { peer, tls }
    }

    /// The TCP peer.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the client spoke TLS to the gate.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `"https"` or `"http"`, for `X-Forwarded-Proto`.
    fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// The verified user of a forwarded request, as the gate opened the token
/// or session. It is in the extensions of every request [`Gate::admit`]
/// forwards for a verified user, and cannot be built outside the gate: an
/// application that finds one knows the gate put it there.
#[derive(Debug, Clone)]
pub struct Identity(Arc<Opened>);

impl Identity {
    /// The user's email, ASCII lower-cased.
    pub fn email(&self) -> &str {
        &self.0.claims.email
    }

    /// The user's id in the customer's app, when the token carried one.
    pub fn user_id(&self) -> Option<&str> {
        self.0.claims.user_id.as_deref()
    }

    /// The display name from the user's profile, if any.
    pub fn name(&self) -> Option<&str> {
        self.0.claims.name.as_deref()
    }

    /// The avatar URL from the user's profile, if any.
    pub fn avatar_url(&self) -> Option<&str> {
        self.0.claims.avatar_url.as_deref()
    }

    /// The groups the user is in, as the token carried them.
    pub fn groups(&self) -> &[String] {
        &self.0.claims.groups
    }

    /// The user's attributes, as the token carried them.
    pub fn attributes(&self) -> &crate::token::Attributes {
        &self.0.claims.attributes
    }

    /// The portal account the user belongs to.
    pub fn account_id(&self) -> &str {
        &self.0.claims.account_id
    }

    /// The id of the secret that sealed the credential.
    pub fn secret_id(&self) -> &str {
        &self.0.key_id
    }

    /// When the credential expires, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.0.claims.expires_at
    }
}

/// What the gate does with a request: forward it, rewritten, or answer it
/// itself.
#[derive(Debug)]
pub enum Admission<B> {
    /// Forward this request: its path normalized, its query without
    /// token parameters, every credential and spoofed header gone, the
    /// gate's identity headers set and, for a verified user, the
    /// [`Identity`] in its extensions.
    Forward(Request<B>),
    /// Answer with this response: a refusal, the token API, the embed
    /// script, logout or the session exchange. Nothing goes further.
    Respond(OwnResponse),
}

impl Gate {
    /// Run the access phases on `request` (module docs): what the proxy
    /// runs before it forwards, and what [`crate::GateLayer`] runs before
    /// the application's handler.
    pub async fn admit<B>(&self, request: Request<B>, conn: &ConnInfo) -> Admission<B>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let active = self.active();
        let mut trace = Trace::default();
        admit(self, &active, request, conn, &mut trace).await
    }
}

/// What the access log and the metrics say about one request, filled in
/// as it goes through the phases.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The normalized path (`-` when it could not be normalized).
    path: String,
    /// What the gate did: `public`, `verified`, `reject`, `exchange`...
    decision: &'static str,
    /// The governing rule's index in the config's `pages`.
    rule: Option<usize>,
    /// The verified user (admitted or not).
    user: Option<Arc<Opened>>,
    /// The upstream's status, when the request was forwarded.
    upstream_status: Option<u16>,
    /// Who reads a refusal of this request.
    audience: Audience,
    /// A frame asked (`Sec-Fetch-Dest: iframe`): its HTML may get the
    /// frame script ([`crate::http::inject`]).
    frame: bool,
}

/// What every access phase reads: the gate, the config in force, the
/// connection, and the time (taken once, from the gate's clock).
#[derive(Debug, Clone, Copy)]
struct Phase<'a> {
    gate: &'a Gate,
    config: &'a Config,
    conn: &'a ConnInfo,
    now: u64,
}

/// A request once [`classify`] has read it.
#[derive(Debug)]
struct Target {
    /// The one reading of the path: what the rules judge and the upstream
    /// receives.
    path: String,
    /// The host the client asked for.
    host: Option<HeaderValue>,
    /// Who reads a refusal.
    audience: Audience,
    /// The peer is one of the `trusted_proxies`.
    trusted: bool,
    /// The WebSocket handshake the request makes, if it makes one.
    websocket: Option<websocket::Handshake>,
}

/// The access phases, top to bottom; every refusal is a response.
pub(crate) async fn admit<B>(
    gate: &Gate,
    active: &Active,
    request: Request<B>,
    conn: &ConnInfo,
    trace: &mut Trace,
) -> Admission<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let phase = Phase {
        gate,
        config: &active.config,
        conn,
        now: gate.clock().unix_now(),
    };
    let audience = Audience::of(request.method(), request.headers());
    trace.audience = audience;
    trace.frame = crate::http::embed::is_frame_request(request.headers());
    let mut target = match classify(&phase, &request, audience, trace) {
        Ok(target) => target,
        Err(reason) => {
            if trace.path.is_empty() {
                trace.path = "-".into();
            }
            return refuse(trace, reason);
        }
    };
    let admission = admit_classified(&phase, request, &target, trace).await;
    // The trace takes the path once the phases no longer need it.
    trace.path = std::mem::take(&mut target.path);
    admission
}

/// A refusal, in the form the request's reader expects.
fn refuse<B>(trace: &mut Trace, reason: Reason) -> Admission<B> {
    trace.decision = match reason {
        Reason::Revoked => "revoked",
        _ => "reject",
    };
    Admission::Respond(reason.into_response(trace.audience))
}

/// Phases 2 to 6, for a request [`classify`] has read.
async fn admit_classified<B>(
    phase: &Phase<'_>,
    request: Request<B>,
    target: &Target,
    trace: &mut Trace,
) -> Admission<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(endpoint) = phase.config.endpoint_at(&target.path) {
        return Admission::Respond(own_endpoint(phase, endpoint, request, trace).await);
    }
    let (credential, places) = match find_credential(&request) {
        Ok(found) => found,
        Err(reason) => return refuse(trace, reason),
    };
    let rule = match decision::access_for(phase.config, &target.path, request.method()) {
        Ok(rule) => rule,
        Err(reason) => return refuse(trace, reason),
    };
    trace.rule = rule.0.map(PageRule::index);
    if target.websocket.is_some() && rule.0.is_some_and(|rule| !rule.allows_websocket()) {
        return refuse(trace, Reason::WebSocketRefused);
    }
    // A handshake is never redirected: its URL token is its credential.
    let token_in_url = places.query.then_some(credential.as_ref()).flatten();
    let token_in_url = token_in_url.filter(|_| target.websocket.is_none());
    match exchange_session(phase, target, &request, token_in_url, rule.1, trace) {
        Ok(Some(answer)) => return Admission::Respond(answer),
        Ok(None) => {}
        Err(reason) => return refuse(trace, reason),
    }
    let identity = match decide(phase, rule, credential.as_ref(), trace) {
        Ok(identity) => identity,
        Err(reason) => return refuse(trace, reason),
    };
    drop(credential);
    match upstream_request(request, target, phase, identity) {
        Ok(request) => Admission::Forward(request),
        Err(reason) => refuse(trace, reason),
    }
}

/// Phase 1. Refuse what the gate never forwards before anything else is
/// read: `CONNECT` in any form (there is no tunnel behind the gate) and
/// `TRACE` (it would echo the gate's identity headers back to the page),
/// 405; a body on a GET or HEAD, over HTTP/1.1 and HTTP/2 alike (an
/// upstream that never reads it would read it as its next request), 400.
/// Then read the path once ([`crate::access::path::normalize`], 400 on
/// doubt), the host (a host the gate does not serve: 421; a `Host` or a
/// relayed `X-Forwarded-Host` that is not one plain host: 400) and the
/// query's length (414).
fn classify<B: HttpBody>(
    phase: &Phase<'_>,
    request: &Request<B>,
    audience: Audience,
    trace: &mut Trace,
) -> Result<Target, Reason> {
    let config = phase.config;
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
    let websocket = websocket::read(method, request.version(), request.headers())?;
    let path = crate::access::path::normalize(request.uri().path())
        .map_err(Reason::BadPath)?
        .into_owned();
    let trusted = config.trusts_proxy(phase.conn.peer.ip());
    let host = host::check(config, request, trusted);
    let query_too_long = request
        .uri()
        .query()
        .is_some_and(|q| q.len() > config.limits.max_query_len);
    let refusal = match host {
        Err(reason) => Some(reason),
        Ok(_) if query_too_long => Some(Reason::QueryTooLong),
        Ok(_) => None,
    };
    if let Some(reason) = refusal {
        // Refused after one reading of the path: the log names it.
        trace.path = path;
        return Err(reason);
    }
    let host = host.unwrap_or_default();
    Ok(Target {
        path,
        host,
        audience,
        trusted,
        websocket,
    })
}

/// Whether a request's method gives a body a meaning the gate forwards.
/// GET and HEAD do not (RFC 9110 section 9.3). OPTIONS and DELETE may
/// carry one, and go with it (see [`crate::upstream::pool`] for how a
/// body never shares an upstream connection with a later request).
pub(crate) fn may_carry_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Phase 2. The gate's own endpoints ([`Config::endpoints`]): the token
/// API (its body read within `limits.body_timeout`), the embed script and
/// the frame script (GET and HEAD, with `ETag`), and logout (the cookie and the browser's
/// cache cleared, then a local redirect).
async fn own_endpoint<B>(
    phase: &Phase<'_>,
    endpoint: Endpoint,
    request: Request<B>,
    trace: &mut Trace,
) -> OwnResponse
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let Phase {
        gate, config, conn, ..
    } = *phase;
    match endpoint {
        Endpoint::TokenApi => {
            trace.decision = "token-api";
            let trusted = |ip| config.trusts_proxy(ip);
            let caller = api::Caller {
                limiter: gate.limiter(),
                metrics: gate.metrics(),
                ip: headers::client_ip(conn.peer.ip(), request.headers(), trusted),
            };
            api::handle(config, caller, request, phase.now).await
        }
        Endpoint::EmbedScript => {
            trace.decision = "embed-script";
            gate.script().respond(request.method(), request.headers())
        }
        Endpoint::RevokeApi => {
            trace.decision = "revoke-api";
            let trusted = |ip| config.trusts_proxy(ip);
            let caller = api::Caller {
                limiter: gate.limiter(),
                metrics: gate.metrics(),
                ip: headers::client_ip(conn.peer.ip(), request.headers(), trusted),
            };
            crate::http::revoke::handle(gate, caller, request, phase.now).await
        }
        Endpoint::Logout => {
            trace.decision = "logout";
            let session = credential::cookie_values(request.headers()).next();
            end_session(phase, session.map(str::to_owned)).await;
            session::logout_response(request.uri().query())
        }
        Endpoint::Me => {
            trace.decision = "me";
            crate::http::me::handle(config, gate.checks(), &request, phase.now)
        }
        Endpoint::FrameScript => {
            trace.decision = "frame-script";
            let script = &config.embed.frame_script;
            script.respond(request.method(), request.headers())
        }
    }
}

/// With a shared store, logout also revokes the session it ends (by its
/// id), so that a copy of the cookie dies with the sign-out on every
/// replica. A store out of reach does not keep the browser's cookie: it is
/// cleared all the same, and the failure logged.
async fn end_session(phase: &Phase<'_>, session: Option<String>) {
    let Some(session) = session.filter(|_| phase.config.store.is_some()) else {
        return;
    };
    let credential = Credential::Session(&session);
    let checks = phase.gate.checks();
    let Ok(opened) = decision::verify(phase.config, checks, &credential, phase.now) else {
        return;
    };
    let Some(id) = opened.claims.session_id.clone() else {
        return;
    };
    let subject = crate::access::revocation::Subject::SessionId(id);
    let before = phase.now.saturating_add(1);
    if let Err(error) = crate::ops::store::revoke(phase.gate, &subject, before).await {
        tracing::warn!(%error, "logout could not revoke its session in the store");
    }
}

/// Phase 3. The credential the request carries: a token (query parameter,
/// `Authorization: Bearer`, `X-Auth-Token`), else the session cookie, and
/// where it was found. Different tokens, or different session cookies, in
/// one request: 400, rather than a guess.
fn find_credential<B>(
    request: &Request<B>,
) -> Result<(Option<Credential<'_>>, TokenPlaces), Reason> {
    credential::find_credential(request.uri().query(), request.headers())
}

/// Phase 4. A valid token in the URL (`token_in_url`) of a browser
/// navigation is traded for a session cookie, with a 303 to the same URL
/// without the token (`Ok(Some(answer))`); the token then leaves the
/// address bar, the history and `Referer`. A bad token there is refused on
/// a restricted page and ignored on a public one (`Ok(None)`: go on).
fn exchange_session<B>(
    phase: &Phase<'_>,
    target: &Target,
    request: &Request<B>,
    token_in_url: Option<&Credential<'_>>,
    access: Access,
    trace: &mut Trace,
) -> Result<Option<OwnResponse>, Reason> {
    let Some(token @ Credential::Token(_)) = token_in_url else {
        return Ok(None);
    };
    if target.audience == Audience::Api {
        return Ok(None);
    }
    let Phase { config, now, .. } = *phase;
    let opened = match decision::verify(config, phase.gate.checks(), token, now) {
        Ok(opened) => opened,
        Err(_) if access == Access::Public => return Ok(None),
        Err(reason) => return Err(reason),
    };
    let ttl = config.verification.session_ttl.as_secs();
    let claims = session::session_claims(&opened, now, ttl);
    let sealed = crate::token::mint_session(config.secrets.primary(), &claims);
    if !session::fits_in_a_cookie(&sealed) {
        // A token minted elsewhere with claims too large for a cookie: a
        // browser would drop it, and the redirect would lose the page. The
        // token serves this one request instead.
        return Ok(None);
    }
    trace.decision = "exchange";
    trace.user = Some(Arc::clone(&opened));
    let query = request.uri().query();
    let location = match query.and_then(credential::query_without_token) {
        Some(rest) => format!("{}?{rest}", target.path),
        None => target.path.clone(),
    };
    Ok(Some(session::exchange_response(&location, &sealed, ttl)))
}

/// Phase 5. The decision ([`decision::decide`]): a public page passes
/// without an identity; otherwise the credential must open (through the
/// decrypt cache) and validate (401), and the rule must admit its user
/// (403). `Ok` carries the verified user when the page needed one.
fn decide(
    phase: &Phase<'_>,
    rule: (Option<&PageRule>, Access),
    credential: Option<&Credential<'_>>,
    trace: &mut Trace,
) -> Result<Option<Arc<Opened>>, Reason> {
    let checks = phase.gate.checks();
    match decision::decide(phase.config, checks, rule, credential, phase.now) {
        Decision::Reject(reason) => Err(reason),
        Decision::NotAdmitted(opened, reason) => {
            trace.user = Some(opened);
            Err(reason)
        }
        Decision::Forward(identity) => {
            trace.decision = if identity.is_some() {
                "verified"
            } else {
                "public"
            };
            trace.user.clone_from(&identity);
            Ok(identity)
        }
    }
}

/// Phase 6. The request as the upstream sees it: the normalized path and
/// the query without token parameters as its target (origin form), every
/// hop-by-hop, credential, spoofed identity and override header gone, and
/// only then the gate's own (`X-Forwarded-*`, and for a verified user
/// `X-Forwarded-Email`, `-User`, `-Groups`, `-Name`, `-Avatar-Url` and
/// the listed `-Attr-<Key>`, with the [`Identity`] in the extensions). See [`headers::prepare_upstream_headers`].
fn upstream_request<B>(
    request: Request<B>,
    target: &Target,
    phase: &Phase<'_>,
    identity: Option<Arc<Opened>>,
) -> Result<Request<B>, Reason> {
    let conn = phase.conn;
    let (mut parts, body) = request.into_parts();
    let query = parts.uri.query().and_then(credential::query_without_token);
    let mut path_and_query =
        String::with_capacity(target.path.len() + query.as_ref().map_or(0, |q| q.len() + 1));
    path_and_query.push_str(&target.path);
    if let Some(query) = &query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    drop(query);
    // The target's bytes move into the URI without another copy.
    let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
        .map_err(|_| Reason::BadRequest("the request target cannot be forwarded"))?;
    parts.uri = http::Uri::from(path_and_query);
    let client = ClientInfo {
        peer: conn.peer,
        proto: conn.proto(),
        trusted: target.trusted,
    };
    let host = target.host.clone();
    let forward = &phase.config.forward;
    headers::prepare_upstream_headers(
        &mut parts.headers,
        client,
        host,
        identity.as_deref(),
        forward,
    )?;
    if let Some(handshake) = &target.websocket {
        websocket::restore_upgrade(&mut parts.headers);
        parts.extensions.insert(Tunnelled {
            handshake: handshake.clone(),
            user: identity.clone(),
        });
    }
    if let Some(opened) = identity {
        parts.extensions.insert(Identity(opened));
    }
    Ok(Request::from_parts(parts, body))
}

/// An admitted WebSocket handshake, in the extensions of the request the
/// proxy sends: the answer that opens its tunnel, and the user whose
/// credential the tunnel lives under (none on a public page).
#[derive(Debug, Clone)]
pub(crate) struct Tunnelled {
    /// What a real `101` carries.
    pub(crate) handshake: websocket::Handshake,
    /// The verified user, whose credential bounds the tunnel's life.
    pub(crate) user: Option<Arc<Opened>>,
}

/// The proxy's connection: what a request needs of it beyond [`ConnInfo`].
#[derive(Debug, Clone)]
pub(crate) struct ProxyConn {
    /// The peer and whether it spoke TLS.
    pub(crate) info: ConnInfo,
    /// Requests of this connection with the upstream at once
    /// (`limits.max_inflight_per_connection`): one HTTP/2 connection must
    /// not take the upstream slots every client shares.
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
    /// The worker thread the connection runs on: its upstream pool.
    pub(crate) worker: usize,
    /// Turns true when the server shuts down (a tunnel gets
    /// `limits.shutdown_grace`, then closes).
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// The connection's place among `max_connections`, held by the
    /// connection and by every tunnel it opened, so that a shutdown waits
    /// for them too.
    pub(crate) held: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// One request through the proxy: the access phases, then forward, the
/// response filter, and the access log, which [`AccessLog::finish`] writes
/// when the response body ends. Never fails: every refusal is a response.
pub(crate) async fn proxy(
    gate: &Arc<Gate>,
    request: Request<Incoming>,
    conn: &ProxyConn,
) -> (Response<Body>, AccessLog) {
    let started = Instant::now();
    let method = request.method().clone();
    // The config in force when the request arrived; a reload meanwhile
    // does not change it under the request.
    let active = gate.active();
    let mut trace = Trace::default();
    let mut response = match admit(gate, &active, request, &conn.info, &mut trace).await {
        Admission::Respond(answer) => answer.map(body::boxed),
        Admission::Forward(request) if request.extensions().get::<Tunnelled>().is_some() => {
            tunnel(gate, &active, request, conn, &mut trace).await
        }
        Admission::Forward(request) => forward(gate, &active, request, conn, &mut trace).await,
    };
    response_filter(&active.config, &mut response, &trace);
    if trace.upstream_status.is_some() {
        let embed = &active.config.embed;
        crate::http::inject::inject(embed, &method, trace.frame, &mut response);
    }
    if let Some(limit) = stream_idle(&active.config, &response, &trace) {
        response.extensions_mut().insert(StreamIdle(limit));
    }
    let status = response.status().as_u16();
    let log = AccessLog {
        active,
        method,
        trace,
        status,
        started,
    };
    (response, log)
}

/// Phase 7 for an admitted WebSocket handshake: the tunnel
/// ([`crate::upstream::tunnel`]), or the upstream's answer when it did not
/// switch.
async fn tunnel(
    gate: &Arc<Gate>,
    active: &Active,
    request: Request<Incoming>,
    conn: &ProxyConn,
    trace: &mut Trace,
) -> Response<Body> {
    match crate::upstream::tunnel::open(gate, active, request, conn).await {
        Ok(response) => {
            gate.upstream_health().mark(gate.clock().unix_now());
            trace.upstream_status = Some(response.status().as_u16());
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                trace.decision = "tunnel";
            }
            response
        }
        Err(reason) => {
            trace.decision = "reject";
            reason.into_response(trace.audience).map(body::boxed)
        }
    }
}

/// Phase 7, for the proxy: send the admitted request upstream.
async fn forward(
    gate: &Gate,
    active: &Active,
    request: Request<Incoming>,
    conn: &ProxyConn,
    trace: &mut Trace,
) -> Response<Body> {
    let body_timeout = active.config.limits.body_timeout;
    match active.upstream.forward(request, body_timeout, conn).await {
        Ok(response) => {
            gate.upstream_health().mark(gate.clock().unix_now());
            trace.upstream_status = Some(response.status().as_u16());
            response
        }
        Err(reason) => {
            trace.decision = match reason {
                Reason::UpstreamTimeout | Reason::UpstreamUnavailable => "upstream-error",
                _ => "reject",
            };
            match reason {
                Reason::UpstreamTimeout => gate.metrics().upstream_error("timeout"),
                Reason::UpstreamUnavailable => gate.metrics().upstream_error("unavailable"),
                _ => {}
            }
            reason.into_response(trace.audience).map(body::boxed)
        }
    }
}

/// Phase 8. The one response filter. An upstream's answer loses its
/// hop-by-hop fields and any `Set-Cookie` that would touch the gate's
/// session, and a verified page is kept out of shared caches and
/// revalidated by the browser ([`headers::filter_response`]). Every
/// answer, the gate's own included, carries the framing policy
/// (`embed.allowed_origins`).
fn response_filter(config: &Config, response: &mut Response<Body>, trace: &Trace) {
    if trace.upstream_status.is_some() {
        headers::filter_response(response.headers_mut(), trace.decision == "verified");
    }
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        // Only a tunnel the gate opened switches the client's connection.
        match response.extensions().get::<TunnelOpen>() {
            Some(TunnelOpen) => websocket::restore_upgrade(response.headers_mut()),
            None => {
                *response = Reason::UpstreamHandshake
                    .into_response(trace.audience)
                    .map(body::boxed)
            }
        }
    }
    frame_policy(config, response.headers_mut());
}

/// How long an answer may pause between two parts, when not the
/// connection's two idle periods: the rule's `stream_idle_timeout`, else
/// `limits.stream_idle_timeout` for a `text/event-stream`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamIdle(pub(crate) std::time::Duration);

fn stream_idle(
    config: &Config,
    response: &Response<Body>,
    trace: &Trace,
) -> Option<std::time::Duration> {
    let rule = trace.rule.and_then(|index| config.rules.get(index));
    if let Some(limit) = rule.and_then(PageRule::stream_idle_timeout) {
        return Some(limit);
    }
    let events = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"));
    events.then_some(config.limits.stream_idle_timeout)
}

/// Who may frame the portal (`embed.allowed_origins`): on every answer.
pub(crate) fn frame_policy(config: &Config, headers: &mut http::HeaderMap) {
    if let Some(policy) = &config.embed.frame_ancestors {
        headers.append(header::CONTENT_SECURITY_POLICY, policy.clone());
    }
}

/// How a response body ended, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every byte was handed over.
    Complete,
    /// The body failed (the upstream broke off).
    Failed,
    /// The body was dropped before its end (the client went away).
    Aborted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Phase 9's record: what is known of a request when its response head
/// goes out; [`AccessLog::finish`] adds how its body ended.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// The config the request ran under (log settings, rule patterns).
    active: Arc<Active>,
    method: Method,
    trace: Trace,
    /// The response head's status.
    status: u16,
    /// When the request arrived.
    started: Instant,
}

impl AccessLog {
    /// Phase 9. Count the request in the metrics and write one access-log
    /// event: the final outcome, the bytes of body handed over and the
    /// whole duration. Never a token, a secret or a cookie; the user as a
    /// keyed pseudonym unless `log_user_email`.
    pub(crate) fn finish(self, gate: &Gate, outcome: Outcome, bytes: u64) {
        let elapsed = self.started.elapsed();
        let trace = &self.trace;
        gate.metrics().request(trace.decision, self.status, elapsed);
        if let Some(user) = &trace.user {
            gate.metrics().verified(&user.key_id);
        }
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            // Logging off (say RUST_LOG=warn): skip the pseudonym's hash.
            return;
        }
        let config = &*self.active.config;
        let user = trace.user.as_ref().map(|user| {
            if config.log_user_email {
                user.claims.email.to_string()
            } else {
                config.secrets.pseudonym(&user.claims.email)
            }
        });
        let rule = trace
            .rule
            .and_then(|index| config.rules.get(index))
            .map(|rule| rule.pattern());
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %trace.path,
            status = self.status,
            outcome = outcome.as_str(),
            bytes,
            decision = trace.decision,
            rule,
            rule_index = trace.rule,
            secret_id = trace.user.as_ref().map(|user| &*user.key_id),
            user = user.as_deref(),
            upstream_status = trace.upstream_status,
            latency_us = elapsed.as_micros() as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::clock::ManualClock;
    use crate::token::Claims;
    use http_body_util::Empty;
    use proptest::prelude::*;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: u64 = 1_800_000_000;

    fn gate(capacity: usize, clock: &Arc<ManualClock>) -> Gate {
        let text = crate::config::TEST_CONFIG.replace(
            "[verification]",
            &format!("[verification]\ncache_capacity = {capacity}"),
        );
        let config = Config::parse(&text, Path::new("test.toml")).expect("valid");
        Gate::new(config)
            .expect("gate")
            .with_clock(Arc::clone(clock) as _)
    }

    /// What a client and the upstream would see of an admission.
    fn seen(admission: Admission<Empty<Bytes>>) -> (u16, Option<String>, Option<String>) {
        match admission {
            Admission::Forward(request) => {
                let user = request
                    .extensions()
                    .get::<Identity>()
                    .map(|u| u.email().to_string());
                (200, user, Some(request.uri().to_string()))
            }
            Admission::Respond(answer) => (answer.status().as_u16(), None, None),
        }
    }

    proptest! {
        /// For random paths, tokens (some with a flipped bit) and times,
        /// what `admit` does with the decrypt cache equals what it does
        /// without one, on a first request and on a later hit.
        #[test]
        fn the_cache_never_changes_an_admission(
            path in prop::sample::select(vec!["/", "/docs/a", "/staff/x", "/other", "/docs/%2e%2e/staff/", "/beta/x"]),
            method in prop::sample::select(vec![Method::GET, Method::POST]),
            groups in prop::sample::select(vec![vec![], vec!["beta"], vec!["editors", "beta"]]),
            plan in prop::option::of(prop::sample::select(vec!["pro", "free"])),
            key in prop::sample::select(vec!["live", "retired"]),
            account in prop::sample::select(vec!["acct", "other"]),
            email in prop::sample::select(vec!["a@example.com", "b@example.org"]),
            iat_offset in -1_000i64..1_000,
            ttl in 0u64..1_000,
            later in 0u64..2_000,
            flip in prop::option::of(0usize..200),
        ) {
            let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOW)));
            let cached = gate(10, &clock);
            let uncached = gate(0, &clock);
            let iat = NOW.saturating_add_signed(iat_offset);
            let claims = Claims {
                account_id: account.into(),
                email: email.into(),
                user_id: None,
                name: None,
                avatar_url: None,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                attributes: plan.map(|p| ("plan".to_owned(), crate::token::AttrValue::One(p.into()))).into_iter().collect(),
                session_id: None,
                issued_at: iat,
                expires_at: iat + ttl,
            };
            let config = cached.config();
            let mut token = crate::token::mint(config.secrets.get(key).expect("key"), &claims);
            if let Some(i) = flip {
                let i = i % token.len();
                let mut bytes = token.into_bytes();
                bytes[i] ^= 0x01;
                token = String::from_utf8_lossy(&bytes).into_owned();
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let conn = ConnInfo::new(SocketAddr::from(([192, 0, 2, 7], 4000)), false);
            let request = || {
                Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Empty::<Bytes>::new())
                    .expect("request")
            };
            for step in [0, later] {
                clock.advance(Duration::from_secs(step));
                let with = seen(runtime.block_on(cached.admit(request(), &conn)));
                let without = seen(runtime.block_on(uncached.admit(request(), &conn)));
                prop_assert_eq!(with, without);
            }
        }
    }
}
