//! Token-to-session exchange: a short-lived token in a page's URL becomes a
//! session cookie, so the page's assets and links are authenticated and the
//! token leaves the address bar, the history and `Referer` headers.
//!
//! The session is stateless: its cookie value is the token's claims sealed
//! again under a key derived for sessions ([`crate::token::format::mint_session`]),
//! with the session's own lifetime. Any replica with the same secrets opens
//! it; nothing is stored.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::access::credential::COOKIE_NAME;
use crate::http::respond::{self, OwnResponse};
use crate::token::format::{Claims, Opened};

/// Whether a request is a browser navigation that may be redirected: a GET
/// whose `Sec-Fetch-Mode` is `navigate` or, from clients that send no
/// fetch metadata, one that accepts HTML; never one that asks for JSON.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET || accepts(headers, "application/json") {
        return false;
    }
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => accepts(headers, "text/html"),
    }
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    crate::http::headers::list_items(headers, header::ACCEPT).any(|item| {
        item.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type))
    })
}

/// The claims of a new session for the user a token vouched for, with a
/// fresh random session id (which a revocation can name).
///
/// # Panics
/// If the operating system's random number generator fails.
pub(crate) fn session_claims(opened: &Opened, now: u64, ttl_secs: u64) -> Claims {
    Claims {
        session_id: Some(new_session_id()),
        issued_at: now,
        expires_at: now.saturating_add(ttl_secs),
        ..opened.claims.clone()
    }
}

/// 16 random bytes from the OS, base64url: 22 characters.
fn new_session_id() -> String {
    use base64::Engine;
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The most bytes of name and value browsers keep for one cookie (RFC
/// 6265 section 6.1 asks for at least 4096; Chrome and Firefox stop there).
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// Whether a session cookie with this value is one a browser keeps.
pub(crate) fn fits_in_a_cookie(sealed: &str) -> bool {
    COOKIE_NAME.len() + 1 + sealed.len() <= MAX_COOKIE_BYTES
}

/// The 303 that ends the exchange: back to `location` (the same URL without
/// the token) with the session cookie set. The response is never cached
/// and sends no `Referer` onward.
pub(crate) fn exchange_response(location: &str, sealed: &str, ttl_secs: u64) -> OwnResponse {
    let cookie = format!(
        "{COOKIE_NAME}={sealed}; Path=/; Max-Age={ttl_secs}; HttpOnly; Secure; SameSite=None; Partitioned"
    );
    redirect(location, &cookie)
}

/// The answer to the logout path: the cookie cleared, the browser's cache
/// of this origin cleared (`Clear-Site-Data: "cache"`, so that no
/// restricted page is shown from it to the next person on that browser),
/// then on to `next` (from the query) when it is a path on this portal,
/// else to `/`. Only a normalized local path is followed, so the logout
/// path cannot be used as an open redirect, and what `next` decoded to is
/// percent-encoded again where a `Location` may not carry it raw (spaces,
/// tabs, bidi controls and other non-ASCII).
pub(crate) fn logout_response(query: Option<&str>) -> OwnResponse {
    let cookie =
        format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=None; Partitioned");
    let next = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(name, _)| name == "next")
        .map(|(_, value)| value.into_owned());
    let location = next.as_deref().and_then(local_path).unwrap_or("/");
    let location = percent_encoding::utf8_percent_encode(location, LOCATION_UNSAFE).to_string();
    let mut response = redirect(&location, &cookie);
    response.headers_mut().insert(
        HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static("\"cache\""),
    );
    response
}

/// What a `Location` must not carry raw: controls, space, the characters
/// RFC 3986 never allows unencoded, and (always, by the crate) non-ASCII.
/// `%` stays: `next` is already a normalized, encoded path.
const LOCATION_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `next` if it is a path on this portal: starts with one `/`, and its
/// path part is already normalized (no `//host`, no `\`, no dot segments).
fn local_path(next: &str) -> Option<&str> {
    let (path, _query) = next.split_once('?').unwrap_or((next, ""));
    let normal = crate::access::path::normalize(path).ok()?;
    (normal == path && !next.contains(['#', '\\'])).then_some(next)
}

fn redirect(location: &str, cookie: &str) -> OwnResponse {
    let mut response = respond::empty(StatusCode::SEE_OTHER);
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    } else {
        headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    }
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        h
    }

    #[test]
    fn navigations_are_told_apart_from_api_calls() {
        let nav = headers(&[("sec-fetch-mode", "navigate"), ("accept", "text/html,*/*")]);
        assert!(is_navigation(&Method::GET, &nav));
        assert!(!is_navigation(&Method::POST, &nav));
        let fetch = headers(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]);
        assert!(!is_navigation(&Method::GET, &fetch));
        let old_browser = headers(&[("accept", "text/html;q=0.9")]);
        assert!(is_navigation(&Method::GET, &old_browser));
        let json = headers(&[
            ("sec-fetch-mode", "navigate"),
            ("accept", "application/json"),
        ]);
        assert!(!is_navigation(&Method::GET, &json));
        assert!(!is_navigation(&Method::GET, &headers(&[("accept", "*/*")])));
    }

    #[test]
    fn exchange_sets_a_host_only_partitioned_cookie() {
        let response = exchange_response("/roadmap/?x=1", "pgs1.k.abc", 259_200);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/roadmap/?x=1");
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii");
        for part in [
            "__Host-portal-gate-session=pgs1.k.abc",
            "Path=/",
            "Max-Age=259200",
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Partitioned",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(!cookie.contains("Domain"));
        assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
        let logout = logout_response(None);
        assert_eq!(logout.headers()[header::LOCATION], "/");
        let next = |q: &str| {
            logout_response(Some(q)).headers()[header::LOCATION]
                .to_str()
                .expect("ascii")
                .to_string()
        };
        assert_eq!(next("next=%2Froadmap%2F%3Fx%3D1"), "/roadmap/?x=1");
        for evil in [
            "next=%2F%2Fevil.example%2F",
            "next=https%3A%2F%2Fevil.example",
            "next=%2F%5Cevil",
            "next=%2Fa%2F..%2Fb",
            "next=evil",
        ] {
            assert_eq!(next(evil), "/", "{evil}");
        }
        assert!(logout.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0"));
    }
}
