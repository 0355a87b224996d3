//! `GET /auth/me` (`embed.me_path`): who the gate thinks the user is, as
//! JSON, so that a portal page or the host app's front end can greet the
//! user or hide what they cannot open.
//!
//! The credential is found and verified exactly as for a page (token, else
//! session cookie; through the decrypt cache). The answer is never stored
//! (`Cache-Control: no-store`). With `[embed] allowed_origins`, those
//! origins may read it with credentials (CORS, preflight included); any
//! other origin gets no CORS headers, so a browser keeps the answer from
//! its script.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

use crate::access::credential::{self, Credential};
use crate::access::decision;
use crate::access::reason::Reason;
use crate::config::Config;
use crate::http::respond::{self, json_error, Audience, OwnResponse};
use crate::token::Opened;

/// Answer one request to the user-info path.
pub(crate) fn handle<B>(
    config: &Config,
    checks: crate::access::decision::Checks<'_>,
    request: &Request<B>,
    now: u64,
) -> OwnResponse {
    let origin = allowed_origin(config, request.headers());
    let mut response = match *request.method() {
        Method::OPTIONS => preflight(request.headers(), origin.is_some()),
        Method::GET | Method::HEAD => who(config, checks, request, now),
        _ => {
            let mut refused = json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            refused.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            refused
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Cookie, Authorization"),
    );
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// The request's `Origin` when it is one of `[embed] allowed_origins`.
fn allowed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    config
        .embed
        .allowed_origins
        .iter()
        .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// A CORS preflight: 204 that lets an allowed origin send a GET with
/// credentials (and a bearer token), cached by the browser for ten
/// minutes; 403 for any other origin, so that its script learns nothing.
fn preflight(headers: &HeaderMap, allowed: bool) -> OwnResponse {
    if !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut response = respond::empty(StatusCode::NO_CONTENT);
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return response;
    }
    if !allowed {
        return json_error(
            StatusCode::FORBIDDEN,
            "this origin is not in [embed] allowed_origins",
        );
    }
    let mut response = respond::empty(StatusCode::NO_CONTENT);
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, X-Auth-Token"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// The verified user as JSON, or the 401 a page without a valid
/// credential gets (as JSON: this endpoint is for programs).
fn who<B>(
    config: &Config,
    checks: crate::access::decision::Checks<'_>,
    request: &Request<B>,
    now: u64,
) -> OwnResponse {
    let found = credential::find_credential(request.uri().query(), request.headers());
    let credential = match found {
        Ok((Some(credential), _)) => credential,
        Ok((None, _)) => return Reason::MissingToken.into_response(Audience::Api),
        Err(reason) => return reason.into_response(Audience::Api),
    };
    match decision::verify(config, checks, &credential, now) {
        Ok(opened) => respond::json(StatusCode::OK, &describe(&opened, &credential)),
        Err(reason) => reason.into_response(Audience::Api),
    }
}

/// The answer's body: the identity, the secret that sealed it, and when
/// the credential (the token, or the session it became) expires.
fn describe(opened: &Opened, credential: &Credential<'_>) -> serde_json::Value {
    let claims = &opened.claims;
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.expires_at);
    let kind = match credential {
        Credential::Token(_) => "token",
        Credential::Session(_) => "session",
    };
    serde_json::json!({
        "email": claims.email,
        "user_id": claims.user_id,
        "name": claims.name,
        "avatar_url": claims.avatar_url,
        "groups": claims.groups,
        "attributes": claims.attributes,
        "account_id": claims.account_id,
        "secret_id": opened.key_id(),
        "session_id": claims.session_id,
        "credential": kind,
        "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{AttrValue, Claims};

    const NOW: u64 = 1_800_000_000;

    fn config() -> Config {
        let text = format!(
            "{}\n[embed]\nallowed_origins = [\"https://app.example.com\"]\n",
            crate::config::TEST_CONFIG
        );
        Config::parse(&text, std::path::Path::new("test.toml")).expect("valid")
    }

    fn token(config: &Config) -> String {
        let mut claims = Claims::for_user(
            "acct".into(),
            "ada@example.com",
            Some("u-1".into()),
            NOW,
            300,
        )
        .unwrap();
        claims.groups = vec!["beta".into()];
        claims
            .attributes
            .insert("plan".into(), AttrValue::One("pro".into()));
        crate::token::mint(config.secrets.get("live").unwrap(), &claims)
    }

    fn answer(config: &Config, request: Request<()>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let cache = crate::access::cache::TokenCache::new(16);
        let live = crate::access::revocation::LiveSet::default();
        let checks = crate::access::decision::Checks {
            cache: &cache,
            live: &live,
        };
        let response = handle(config, checks, &request, NOW);
        let (parts, body) = response.into_parts();
        let bytes = futures_body(body);
        (parts.status, parts.headers, bytes)
    }

    fn futures_body(body: http_body_util::Full<bytes::Bytes>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn a_token_gets_its_identity_and_an_allowed_origin_may_read_it() {
        let c = config();
        let request = Request::get("/auth/me")
            .header("authorization", format!("Bearer {}", token(&c)))
            .header("origin", "https://app.example.com")
            .body(())
            .unwrap();
        let (status, headers, body) = answer(&c, request);
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["email"], "ada@example.com");
        assert_eq!(json["groups"], serde_json::json!(["beta"]));
        assert_eq!(json["attributes"]["plan"], "pro");
        assert_eq!(json["secret_id"], "live");
        assert_eq!(json["credential"], "token");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example.com"
        );
    }

    #[test]
    fn origins_compare_as_browsers_send_them() {
        let text = format!(
            "{}\n[embed]\nallowed_origins = [\"HTTPS://App.Example.com:443/\"]\n",
            crate::config::TEST_CONFIG
        );
        let c = Config::parse(&text, std::path::Path::new("test.toml")).expect("valid");
        assert_eq!(c.embed.allowed_origins, ["https://app.example.com"]);
        let request = Request::get("/auth/me")
            .header("origin", "https://app.example.com")
            .body(())
            .unwrap();
        let (_, headers, _) = answer(&c, request);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        let fragment = format!(
            "{}\n[embed]\nallowed_origins = [\"https://a.example#x\"]\n",
            crate::config::TEST_CONFIG
        );
        assert!(Config::parse(&fragment, std::path::Path::new("test.toml")).is_err());
    }

    #[test]
    fn nothing_gets_401_and_other_origins_no_cors() {
        let c = config();
        let request = Request::get("/auth/me")
            .header("origin", "https://evil.example")
            .body(())
            .unwrap();
        let (status, headers, body) = answer(&c, request);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(String::from_utf8(body).unwrap().contains("\"error\""));
        assert!(!headers.contains_key("access-control-allow-origin"));
        assert_eq!(headers["cache-control"], "no-store");
    }

    #[test]
    fn preflight_admits_allowed_origins_only() {
        let c = config();
        let preflight = |origin: &str| {
            Request::options("/auth/me")
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .body(())
                .unwrap()
        };
        let (status, headers, _) = answer(&c, preflight("https://app.example.com"));
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["access-control-allow-methods"], "GET, HEAD");
        let (status, headers, _) = answer(&c, preflight("https://evil.example"));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key("access-control-allow-origin"));
        let post = Request::post("/auth/me").body(()).unwrap();
        assert_eq!(answer(&c, post).0, StatusCode::METHOD_NOT_ALLOWED);
    }
}
