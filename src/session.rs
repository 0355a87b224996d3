//! Token-to-session exchange: a short-lived token in a page's URL becomes a
//! session cookie, so the page's assets and links are authenticated and the
//! token leaves the address bar, the history and `Referer` headers.
//!
//! The session is stateless: its cookie value is the token's claims sealed
//! again under a key derived for sessions ([`crate::token::mint_session`]),
//! with the session's own lifetime. Any replica with the same secrets opens
//! it; nothing is stored.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::token::{Claims, Opened};

/// The session cookie's name. `__Host-` makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can plant or read it.
pub const COOKIE_NAME: &str = "__Host-portal-gate-session";

/// Whether a request is a browser navigation that may be redirected: a GET
/// whose `Sec-Fetch-Mode` is `navigate` or, from clients that send no
/// fetch metadata, one that accepts HTML; never one that asks for JSON.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET || accepts(headers, "application/json") {
        return false;
    }
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => accepts(headers, "text/html"),
    }
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type))
        })
}

/// The session cookie's value, if the request carries one. Several copies
/// (a stale one from another path, say) are refused by the caller as
/// conflicting credentials, so this returns them all. `Cookie` headers are
/// read as bytes, so another cookie's non-ASCII value cannot hide the
/// session; a session value that is not UTF-8 comes back empty, which no
/// session opens.
pub fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let (name, value) = split_pair(pair)?;
            (name == COOKIE_NAME.as_bytes()).then(|| std::str::from_utf8(value).unwrap_or(""))
        })
}

/// A `name=value` cookie pair, both trimmed of spaces and tabs.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = pair.iter().position(|&b| b == b'=')?;
    Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
}

/// Remove the session cookie from `Cookie` headers, keeping every other
/// cookie (whatever its bytes) for the upstream.
pub fn strip_cookie(headers: &mut HeaderMap) {
    let kept: Vec<Vec<u8>> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| {
            let pairs: Vec<&[u8]> = v
                .as_bytes()
                .split(|&b| b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|pair| {
                    !pair.is_empty()
                        && split_pair(pair).is_none_or(|(name, _)| name != COOKIE_NAME.as_bytes())
                })
                .collect();
            pairs.join(&b"; "[..])
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(header::COOKIE, value);
        }
    }
}

/// The claims of a new session for the user a token vouched for.
pub fn session_claims(opened: &Opened, now: u64, ttl_secs: u64) -> Claims {
    Claims {
        issued_at: now,
        expires_at: now.saturating_add(ttl_secs),
        ..opened.claims.clone()
    }
}

/// The 303 that ends the exchange: back to `location` (the same URL without
/// the token) with the session cookie set. The response is never cached
/// and sends no `Referer` onward.
pub fn exchange_response(location: &str, sealed: &str, ttl_secs: u64) -> Response<Body> {
    let cookie = format!(
        "{COOKIE_NAME}={sealed}; Path=/; Max-Age={ttl_secs}; HttpOnly; Secure; SameSite=None; Partitioned"
    );
    redirect(location, &cookie)
}

/// The answer to the logout path: the cookie cleared, then on to `next`
/// (from the query) when it is a path on this portal, else to `/`. Only a
/// normalized local path is followed, so the logout path cannot be used as
/// an open redirect.
pub fn logout_response(query: Option<&str>) -> Response<Body> {
    let cookie =
        format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=None; Partitioned");
    let next = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(name, _)| name == "next")
        .map(|(_, value)| value.into_owned());
    let location = next.as_deref().and_then(local_path).unwrap_or("/");
    redirect(location, &cookie)
}

/// `next` if it is a path on this portal: starts with one `/`, and its
/// path part is already normalized (no `//host`, no `\`, no dot segments).
fn local_path(next: &str) -> Option<&str> {
    let (path, _query) = next.split_once('?').unwrap_or((next, ""));
    let normal = crate::path::normalize(path).ok()?;
    (normal == path && !next.contains(['#', '\\'])).then_some(next)
}

fn redirect(location: &str, cookie: &str) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
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
    fn the_session_cookie_is_found_and_stripped_others_kept() {
        let mut h = headers(&[
            ("cookie", "a=1; __Host-portal-gate-session=pgs1.k.x; b=2"),
            ("cookie", "__Host-portal-gate-session=pgs1.k.y"),
        ]);
        let found: Vec<&str> = cookie_values(&h).collect();
        assert_eq!(found, vec!["pgs1.k.x", "pgs1.k.y"]);
        strip_cookie(&mut h);
        let left: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(left, vec!["a=1; b=2"]);
    }

    #[test]
    fn a_non_ascii_cookie_does_not_hide_the_session_from_the_strip() {
        let mut h = HeaderMap::new();
        let value = b"a=caf\xc3\xa9; __Host-portal-gate-session=pgs1.k.x;b=2";
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(value).expect("obs-text"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b" __Host-portal-gate-session = pgs1.k.\xff")
                .expect("obs-text"),
        );
        let found: Vec<&str> = cookie_values(&h).collect();
        // The second is no UTF-8: empty, so it cannot open.
        assert_eq!(found, vec!["pgs1.k.x", ""]);
        strip_cookie(&mut h);
        let left: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].as_bytes(), b"a=caf\xc3\xa9; b=2");
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
