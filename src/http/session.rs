//! Token-to-session exchange: a short-lived token in a page's URL becomes a
//! session cookie, so the page's assets and links are authenticated and the
//! token leaves the address bar, the history and `Referer` headers.
//!
//! The session is stateless: its cookie value is the token's claims sealed
//! again under a key derived for sessions ([`crate::token::format::mint_session`]),
//! with the session's own lifetime. Any replica with the same secrets opens
//! it; nothing is stored.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::token::format::{Claims, Opened};
use crate::upstream::body::{self, Body};

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

/// The `Cookie` headers as the upstream gets them: joined into one (an
/// HTTP/2 client may send one `cookie` field per cookie, and RFC 9113
/// section 8.2.3 asks that they be joined with `; ` for HTTP/1.1), without
/// the session cookie, every other cookie kept as it was sent, whatever
/// its bytes. The session goes in any letter case and also when a comma
/// rather than a `;` separates it, as some servers split cookies at
/// commas too (RFC 2965): it never reaches the upstream, even in a
/// spelling the gate does not read as a session.
pub fn scrub_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let Some(first) = values.next() else {
        return;
    };
    let several = values.next().is_some();
    // The common request: one header, no session in it, no comma.
    if !several && !first.as_bytes().contains(&b',') && !carries_session(first.as_bytes()) {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let kept = without_session(pair);
            let kept = kept.trim_ascii();
            if kept.is_empty() {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(kept);
        }
    }
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        if !joined.is_empty() {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// Whether a `Cookie` value names the session cookie, in any case.
fn carries_session(value: &[u8]) -> bool {
    value
        .split(|&b| b == b';' || b == b',')
        .any(is_session_pair)
}

/// Whether one `name=value` names the session cookie, in any case.
fn is_session_pair(pair: &[u8]) -> bool {
    split_pair(pair).is_some_and(|(name, _)| name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes()))
}

/// One `;`-separated cookie pair without the comma-separated parts that
/// name the session (the whole pair when it has no comma).
fn without_session(pair: &[u8]) -> Cow<'_, [u8]> {
    if !pair.contains(&b',') {
        return if is_session_pair(pair) {
            Cow::Borrowed(&[])
        } else {
            Cow::Borrowed(pair)
        };
    }
    let parts: Vec<&[u8]> = pair
        .split(|&b| b == b',')
        .filter(|part| !is_session_pair(part))
        .collect();
    Cow::Owned(parts.join(&b","[..]))
}

/// Drop every `Set-Cookie` of an upstream response that would set, replace
/// or clear the gate's session cookie: its name in any case, or a nameless
/// cookie whose value starts with it (browsers send a nameless cookie as
/// its bare value, which reads as `name=value`). Only the gate manages its
/// session; a portal plugin must not sign users out or in.
pub fn strip_session_set_cookies(headers: &mut HeaderMap) {
    let names_session = |value: &HeaderValue| {
        let pair = value.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
        let pair = pair.trim_ascii();
        let bare = pair.strip_prefix(b"=").unwrap_or(pair).trim_ascii_start();
        let name = COOKIE_NAME.as_bytes();
        is_session_pair(pair)
            || bare.len() >= name.len() && bare[..name.len()].eq_ignore_ascii_case(name)
    };
    if !headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(names_session)
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !names_session(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
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

/// The answer to the logout path: the cookie cleared, the browser's cache
/// of this origin cleared (`Clear-Site-Data: "cache"`, so that no
/// restricted page is shown from it to the next person on that browser),
/// then on to `next` (from the query) when it is a path on this portal,
/// else to `/`. Only a normalized local path is followed, so the logout
/// path cannot be used as an open redirect, and what `next` decoded to is
/// percent-encoded again where a `Location` may not carry it raw (spaces,
/// tabs, bidi controls and other non-ASCII).
pub fn logout_response(query: Option<&str>) -> Response<Body> {
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
        scrub_cookies(&mut h);
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
        scrub_cookies(&mut h);
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
