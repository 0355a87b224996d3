//! The token API: the customer's backend trades the shared secret and a
//! user's identity for a short-lived encrypted token.
//!
//! `POST /auth/api/token` (and its alias `/auth/api/impersonation/token`)
//! with `Authorization: Bearer <secret>` and a JSON body. The secret is
//! compared in constant time against every live configured secret; the
//! body is read only after the secret checks out, and never beyond the
//! configured `limits.api_max_body`. Failed attempts are rate-limited per
//! client address ([`FailureLimiter`]); a correct secret always passes, so
//! that nobody sharing the backend's address can lock it out. With
//! `[api] allowed_sources`, only those networks may call at all.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use crate::config::Config;
use crate::http::limiter::FailureLimiter;
use crate::http::respond::{self, json_error, OwnResponse};
use crate::token::{self, Attributes, ClaimError, Claims};

/// The longest avatar URL kept in a token.
const MAX_AVATAR_URL: usize = 1024;

/// The longest token the API mints: its session cookie (one byte longer,
/// under the cookie's name) must stay within the 4096 bytes browsers keep
/// for one cookie, with room for longer timestamps.
const MAX_MINTED_LEN: usize = crate::http::session::MAX_COOKIE_BYTES
    - crate::access::credential::COOKIE_NAME.len()
    - "=".len()
    - "s".len()
    - 64;

#[derive(Debug, Deserialize)]
struct TokenRequest {
    account_id: Option<String>,
    user_email: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Attributes>,
}

#[derive(Debug, Default, Deserialize)]
struct Profile {
    name: Option<String>,
    avatar_url: Option<String>,
}

/// Why an API request was refused; each maps to one status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ApiError {
    MethodNotAllowed,
    SourceNotAllowed,
    Unauthorized,
    RateLimited(Duration),
    TooLarge(usize),
    BodyTimeout,
    BadRequest(String),
    WrongAccount,
    NoLiveSecret,
    /// The revoke API without a `[revocation]` store.
    NoStore,
    /// The store is out of reach: the revocation was not written.
    StoreUnavailable,
}

impl ApiError {
    /// A fixed label for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            ApiError::MethodNotAllowed => "method",
            ApiError::SourceNotAllowed => "source",
            ApiError::Unauthorized => "unauthorized",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::TooLarge(_) => "too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::WrongAccount => "wrong_account",
            ApiError::NoLiveSecret => "no_live_secret",
            ApiError::NoStore => "no_store",
            ApiError::StoreUnavailable => "store_unavailable",
        }
    }

    /// The refusal, counted under its label: how every API call ends
    /// when it fails.
    pub(crate) fn answer(self, metrics: &crate::ops::metrics::Metrics) -> OwnResponse {
        metrics.api_failure(self.label());
        self.into_response()
    }

    fn into_response(self) -> OwnResponse {
        let retry_after = match self {
            ApiError::RateLimited(wait) => Some(wait.as_secs().max(1)),
            _ => None,
        };
        let (status, message) = match self {
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "use POST".to_string()),
            ApiError::SourceNotAllowed => (
                StatusCode::FORBIDDEN,
                "the token API does not take calls from this address".to_string(),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid shared secret".to_string(),
            ),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed attempts; retry later".to_string(),
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_string(),
            ),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            ApiError::WrongAccount => (
                StatusCode::FORBIDDEN,
                "account_id is not this portal's account".to_string(),
            ),
            ApiError::NoLiveSecret => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no configured secret may mint tokens now".to_string(),
            ),
            ApiError::NoStore => (
                StatusCode::NOT_IMPLEMENTED,
                "no [revocation] store is configured; add a [[revocations]] entry instead"
                    .to_string(),
            ),
            ApiError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the revocation store is unreachable; nothing was revoked, retry".to_string(),
            ),
        };
        let mut response = json_error(status, &message);
        if let Some(seconds) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portal-gate-api\""),
            );
        }
        response
    }
}

/// The state the API needs besides the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// Failed-attempt limiter shared by all connections.
    pub limiter: &'a FailureLimiter,
    /// Counters of minted tokens and refusals.
    pub metrics: &'a crate::ops::metrics::Metrics,
    /// The client's address, for the limiter.
    pub ip: std::net::IpAddr,
}

/// Answer one token API request.
pub(crate) async fn handle<B>(
    config: &Config,
    caller: Caller<'_>,
    request: Request<B>,
    now: u64,
) -> OwnResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    match mint_for(config, caller, request, now).await {
        Ok(response) => {
            caller.metrics.minted();
            response
        }
        Err(error) => error.answer(caller.metrics),
    }
}

/// The token API's steps: who may call (`allowed_sources`, POST, the
/// shared secret), the body, the claims, the token.
async fn mint_for<B>(
    config: &Config,
    caller: Caller<'_>,
    request: Request<B>,
    now: u64,
) -> Result<OwnResponse, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    let bytes = admitted_body(config, caller, request, now).await?;
    let claims = validate(config, parse(&bytes)?, now)?;
    let key = config.secrets.primary();
    if !key.is_live(std::time::UNIX_EPOCH + Duration::from_secs(now)) {
        return Err(ApiError::NoLiveSecret);
    }
    let token = token::mint(key, &claims);
    let longest = MAX_MINTED_LEN.min(config.limits.max_token_len);
    if token.len() > longest {
        // Each field is within its limits, but all of them together would
        // make a token the gate refuses (`limits.max_token_len`), or a
        // session cookie a browser drops.
        return Err(ApiError::BadRequest(format!(
            "groups and attributes: together too large, the token would exceed \
             {longest} bytes"
        )));
    }
    let expires_at = std::time::UNIX_EPOCH + Duration::from_secs(claims.expires_at);
    let answer = serde_json::json!({
        "token": token,
        "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
        "expires_in": claims.expires_at.saturating_sub(now),
    });
    let mut response = respond::json(StatusCode::OK, &answer);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The steps every call of the API takes before its own: who may call
/// (`allowed_sources`, POST, the shared secret), then its body.
pub(crate) async fn admitted_body<B>(
    config: &Config,
    caller: Caller<'_>,
    request: Request<B>,
    now: u64,
) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    if !config.api.allows_source(caller.ip) {
        return Err(ApiError::SourceNotAllowed);
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    authorize(config, caller, &request, now)?;
    read_body(config, request).await
}

/// The bearer must be a live configured secret (compared in constant
/// time). Only failures count, and only failures wait: a correct secret
/// always passes, so a shared address (a load balancer without
/// `trusted_proxies`) cannot be used to lock the backend out.
fn authorize<B>(
    config: &Config,
    caller: Caller<'_>,
    request: &Request<B>,
    now: u64,
) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::access::credential::bearer_token(v.as_bytes()));
    let at = std::time::UNIX_EPOCH + Duration::from_secs(now);
    if presented
        .and_then(|p| config.secrets.verify_bearer(p.as_bytes(), at))
        .is_some()
    {
        return Ok(());
    }
    let started = std::time::Instant::now();
    caller
        .limiter
        .check(caller.ip, started)
        .map_err(ApiError::RateLimited)?;
    caller.limiter.record_failure(caller.ip, started);
    Err(ApiError::Unauthorized)
}

/// The request body, at most `limits.api_max_body` bytes (413), within
/// `limits.body_timeout` (408).
async fn read_body<B>(config: &Config, request: Request<B>) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    let max_body = config.limits.api_max_body;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(ApiError::TooLarge(max_body));
    }
    let collected = Limited::new(request.into_body(), max_body).collect();
    let collected = tokio::time::timeout(config.limits.body_timeout, collected)
        .await
        .map_err(|_elapsed| ApiError::BodyTimeout)?;
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(max_body)),
        Err(_) => Err(ApiError::BadRequest("the body could not be read".into())),
    }
}

/// The request's JSON; a value of the wrong shape is named by its path
/// (`groups[2]`, `attributes.plan`), with serde's description of what was
/// found instead (the caller's own input, sent back to the caller).
fn parse(bytes: &[u8]) -> Result<TokenRequest, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let request: TokenRequest = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." => ApiError::BadRequest(format!("malformed JSON: {inner}")),
            field => ApiError::BadRequest(format!("{field}: {inner}")),
        }
    })?;
    json.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(request)
}

/// Check the request's fields and turn them into claims.
fn validate(config: &Config, body: TokenRequest, now: u64) -> Result<Claims, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(why.to_string());
    let account_id = body
        .account_id
        .ok_or_else(|| bad("account_id is required"))?;
    let email = body
        .user_email
        .ok_or_else(|| bad("user_email is required"))?;
    if account_id != config.verification.account_id {
        return Err(ApiError::WrongAccount);
    }
    let ttl = config.verification.token_ttl.as_secs();
    let field = |e: ClaimError| bad(&format!("{} {e}", e.field()));
    let mut claims = Claims::for_user(account_id, &email, body.user_id, now, ttl).map_err(field)?;
    claims.groups = body.groups.unwrap_or_default();
    claims.attributes = body.attributes.unwrap_or_default();
    claims.validate().map_err(field)?;
    let profile = body.profile.unwrap_or_default();
    if let Some(name) = &profile.name {
        if name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "profile.name must be at most 200 characters, without control characters",
            ));
        }
    }
    if let Some(avatar) = &profile.avatar_url {
        let valid = avatar.len() <= MAX_AVATAR_URL
            && url::Url::parse(avatar)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !valid {
            return Err(bad(
                "profile.avatar_url must be an http(s) URL of at most 1024 bytes",
            ));
        }
    }
    claims.name = profile.name;
    claims.avatar_url = profile.avatar_url;
    Ok(claims)
}
