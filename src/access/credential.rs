//! Where a credential lives, in one place: how the gate finds a token or
//! the session cookie in a request ([`find_credential`]), and how every
//! credential, in the spellings the gate reads and in those it does not,
//! is taken out of what the upstream sees ([`strip`], [`is_token_header`],
//! [`query_without_token`]) and out of what the browser gets from it
//! ([`strip_session_set_cookies`]).

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderValue};

use crate::access::reason::Reason;
use crate::token::keys::Purpose;
use crate::token::TokenError;

/// Query parameters that carry a token (both spellings are in use).
pub(crate) const TOKEN_QUERY_PARAMS: [&str; 2] = ["auth-token", "auth_token"];
/// The header that carries a token besides `Authorization: Bearer`.
pub(crate) const TOKEN_HEADER: &str = "x-auth-token";
/// Where a token or session was found; the forwarder removes it from each
/// of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenPlaces {
    /// In the query string.
    pub query: bool,
    /// In `Authorization: Bearer`.
    pub bearer: bool,
    /// In `X-Auth-Token`.
    pub header: bool,
    /// The session cookie.
    pub cookie: bool,
}
/// What a request proves its user with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// A token from the API (query, `Authorization: Bearer`, `X-Auth-Token`).
    Token(Cow<'a, str>),
    /// A session cookie from an earlier exchange.
    Session(&'a str),
}
impl Credential<'_> {
    /// The sealed string, as the cache keys it.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Credential::Token(token) => token,
            Credential::Session(session) => session,
        }
    }

    /// What it must have been sealed as to count.
    pub(crate) fn purpose(&self) -> Purpose {
        match self {
            Credential::Token(_) => Purpose::Token,
            Credential::Session(_) => Purpose::Session,
        }
    }
}
/// The credential a request carries: a token when there is one (a fresh
/// token replaces the session), else the session cookie. Several
/// different tokens, or several different session cookies, are refused.
pub(crate) fn find_credential<'a>(
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Result<(Option<Credential<'a>>, TokenPlaces), Reason> {
    let (token, mut places) = find_token(query, headers)?;
    let mut sessions = cookie_values(headers);
    let session = sessions.next();
    if let Some(first) = session {
        places.cookie = true;
        if sessions.any(|other| other != first) {
            return Err(Reason::ConflictingTokens);
        }
    }
    let credential = match (token, session) {
        (Some(token), _) => Some(Credential::Token(token)),
        (None, Some(session)) => Some(Credential::Session(session)),
        (None, None) => None,
    };
    Ok((credential, places))
}
/// The token a request carries, if any (sessions aside).
///
/// The same token may appear in several places (an embed that sets both the
/// query and a header); different tokens in one request are refused rather
/// than guessing which one the client meant.
pub(crate) fn find_token<'a>(
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Result<(Option<Cow<'a, str>>, TokenPlaces), Reason> {
    let mut found: Option<Cow<'a, str>> = None;
    let mut places = TokenPlaces::default();
    let mut offer = |candidate: Cow<'a, str>| -> Result<(), Reason> {
        match &found {
            Some(existing) if *existing != candidate => Err(Reason::ConflictingTokens),
            Some(_) => Ok(()),
            None => {
                found = Some(candidate);
                Ok(())
            }
        }
    };

    if let Some(query) = query {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if TOKEN_QUERY_PARAMS.contains(&name.as_ref()) {
                places.query = true;
                offer(value)?;
            }
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        if let Some(token) = bearer_token(value.as_bytes()) {
            places.bearer = true;
            offer(Cow::Borrowed(token))?;
        }
    }
    for value in headers.get_all(TOKEN_HEADER) {
        let token = value
            .to_str()
            .map_err(|_| Reason::InvalidToken(TokenError::Malformed))?;
        places.header = true;
        offer(Cow::Borrowed(token.trim()))?;
    }
    Ok((found, places))
}
/// The credential of `Authorization: Bearer <token>`, if the header is one.
/// A tab after the scheme counts as a space: whatever the gate strips as a
/// Bearer credential, it also reads as one.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The session cookie's name. `__Host-` makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can plant or read it.
pub(crate) const COOKIE_NAME: &str = "__Host-portal-gate-session";
/// The session cookie's value, if the request carries one. Several copies
/// (a stale one from another path, say) are refused by the caller as
/// conflicting credentials, so this returns them all. `Cookie` headers are
/// read as bytes, so another cookie's non-ASCII value cannot hide the
/// session; a session value that is not UTF-8 comes back empty, which no
/// session opens.
pub(crate) fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
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
pub(crate) fn scrub_cookies(headers: &mut HeaderMap) {
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
pub(crate) fn strip_session_set_cookies(headers: &mut HeaderMap) {
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

/// Remove every `Authorization` value of the Bearer scheme (whatever
/// follows it: a space, a tab, nothing), keeping any other credentials the
/// client sends (e.g. Basic for the upstream's own login). Bearer values
/// are the gate's tokens, or tokens it could not read: neither is the
/// upstream's business.
fn strip_bearer(headers: &mut HeaderMap) {
    if !headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| !is_bearer_scheme(v.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for value in kept {
        headers.append(header::AUTHORIZATION, value);
    }
}
/// Whether an `Authorization` value is of the Bearer scheme.
fn is_bearer_scheme(value: &[u8]) -> bool {
    let value = value.trim_ascii_start();
    let scheme = value
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"bearer")
}
/// Whether a query parameter's name (as sent, before decoding) names a
/// token in any spelling: `auth-token` or `auth_token` in any case, with
/// any of its characters percent-encoded. The gate reads a token only
/// from the two exact spellings ([`crate::access::decision::TOKEN_QUERY_PARAMS`]);
/// the upstream sees none of them.
fn is_token_param(raw_name: &str) -> bool {
    let decoded = form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .map(|(name, _)| name)
        .unwrap_or_default();
    decoded.len() == "auth-token".len()
        && decoded
            .bytes()
            .zip("auth-token".bytes())
            .all(|(d, t)| d.to_ascii_lowercase() == t || (t == b'-' && d == b'_'))
}
/// The query without token parameters ([`is_token_param`]), other
/// parameters kept in order and as the client encoded them; `None` when
/// nothing is left. Borrowed when there was nothing to remove.
pub(crate) fn query_without_token(query: &str) -> Option<Cow<'_, str>> {
    let is_kept =
        |pair: &&str| !pair.is_empty() && !is_token_param(pair.split('=').next().unwrap_or(""));
    if query
        .split('&')
        .all(|pair| pair.is_empty() || is_kept(&pair))
    {
        return (!query.is_empty()).then_some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query.split('&').filter(is_kept).collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join("&")))
}
/// Token parameters out of a `Referer` (the page that linked here may have
/// carried one in its URL), and its fragment too, which browsers never
/// send but a client might. A `Referer` that cannot be rewritten goes.
fn scrub_referer(headers: &mut HeaderMap) {
    let Some(referer) = headers.get(header::REFERER) else {
        return;
    };
    let Ok(text) = referer.to_str() else {
        headers.remove(header::REFERER);
        return;
    };
    let (without_fragment, fragment) = match text.split_once('#') {
        Some((before, _)) => (before, true),
        None => (text, false),
    };
    let (base, query) = match without_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (without_fragment, None),
    };
    let scrubbed = query.map(query_without_token);
    let changed = fragment || matches!(&scrubbed, Some(q) if !matches!(q, Some(Cow::Borrowed(_))));
    if !changed {
        return;
    }
    let rebuilt = match scrubbed.flatten() {
        Some(query) => format!("{base}?{query}"),
        None => base.to_string(),
    };
    match HeaderValue::from_str(&rebuilt) {
        Ok(value) => {
            headers.insert(header::REFERER, value);
        }
        Err(_) => {
            headers.remove(header::REFERER);
        }
    }
}

/// Whether a header name (lower-case, as `http` stores it) is the token's
/// header, in the spelling the gate reads (`x-auth-token`) or with `_` for
/// any `-` (which some servers fold): never forwarded either way.
pub(crate) fn is_token_header(name: &str) -> bool {
    name.len() == TOKEN_HEADER.len()
        && name
            .bytes()
            .zip(TOKEN_HEADER.bytes())
            .all(|(n, t)| n == t || (t == b'-' && n == b'_'))
}

/// Take every credential out of request headers bound for the upstream,
/// keeping everything else: Bearer `Authorization` values, the session
/// cookie (the `Cookie` fields joined into one), and token parameters of a
/// `Referer`. The token's own header goes with the other gate-owned names
/// ([`is_token_header`]).
pub(crate) fn strip(headers: &mut HeaderMap) {
    strip_bearer(headers);
    scrub_cookies(headers);
    scrub_referer(headers);
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
    fn token_places_are_found_and_conflicts_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("value"));
        let (token, places) = find_token(Some("x=1&auth_token=abc"), &headers).expect("same token");
        assert_eq!(token.as_deref(), Some("abc"));
        assert!(places.query && places.bearer && !places.header);
        headers.insert(TOKEN_HEADER, "def".parse().expect("value"));
        assert_eq!(
            find_token(None, &headers).err(),
            Some(Reason::ConflictingTokens)
        );
        assert_eq!(
            find_token(Some("auth-token=a&auth-token=b"), &HeaderMap::new()).err(),
            Some(Reason::ConflictingTokens)
        );
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
    fn query_token_removed_in_any_spelling_others_kept_in_order() {
        let without = |q| query_without_token(q).map(Cow::into_owned);
        assert_eq!(
            without("a=1&auth-token=x&b=2&auth_token=x"),
            Some("a=1&b=2".into())
        );
        assert_eq!(without("auth%2Dtoken=x&c=%20"), Some("c=%20".into()));
        assert_eq!(without("Auth-Token=x&AUTH_TOKEN=y&c"), Some("c".into()));
        assert_eq!(without("auth-token=x"), None);
        // Untouched without a token; rebuilt without empty pairs with one.
        assert_eq!(without("a&&b"), Some("a&&b".into()));
        assert_eq!(without("a&&auth-token=x&b"), Some("a&b".into()));
        assert_eq!(without("auth-tokens=x"), Some("auth-tokens=x".into()));
        // Near misses of the same length stay: only `-` may be `_`.
        assert_eq!(without("authxtoken=1"), Some("authxtoken=1".into()));
        assert_eq!(without("_uth-token=1"), Some("_uth-token=1".into()));
        assert!(matches!(
            query_without_token("a=1&b"),
            Some(Cow::Borrowed("a=1&b"))
        ));
        assert_eq!(without(""), None);
    }
}
