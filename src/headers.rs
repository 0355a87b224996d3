//! Header hygiene: what the upstream must never see from the client, and
//! the identity the gate vouches for.
//!
//! Order matters and is fixed by [`prepare_upstream_headers`]: first drop
//! hop-by-hop headers (and every header the client named in `Connection`),
//! then every client-sent copy of an identity or forwarding header and the
//! token itself, and only then set the gate's own headers. So no
//! `Connection: x-forwarded-email` trick can remove or keep anything the
//! gate sets.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::gate::{bearer_token, TokenPlaces, TOKEN_HEADER};
use crate::reject::Reason;
use crate::token::{Opened, TokenError};

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus the legacy ones proxies
/// still see).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers by which an upstream may learn who the user is, where the
/// request came from, or which path it was "really" for (IIS, Symfony and
/// Laravel route on `X-Original-URL` and `X-Rewrite-URL`, which would let a
/// public path serve a restricted one). Only the gate sets the identity and
/// forwarding ones; client copies of all are removed in any case, and in
/// the `_` spelling some servers fold into `-`.
const GATE_OWNED: [&str; 19] = [
    "x-forwarded-email",
    "x-forwarded-user",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-auth-request-email",
    "x-auth-request-user",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-forwarded-uri",
];

/// The verified user's email, set by the gate.
pub const FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// The verified user's id (or email when the token has no user id).
pub const FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");

/// What the gate knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `"http"` or `"https"`: what the client spoke to the gate.
    pub proto: &'static str,
    /// The peer is a configured trusted proxy: its `X-Forwarded-*` headers
    /// are extended rather than replaced.
    pub trusted: bool,
}

/// Rewrite a client's request headers into the upstream's.
///
/// `host` is the host the client asked for (for `X-Forwarded-Host`);
/// `identity` is the verified user, if the page needed one.
pub fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    places: TokenPlaces,
    client: ClientInfo,
    host: Option<HeaderValue>,
    identity: Option<&Opened>,
) -> Result<(), Reason> {
    strip_connection_named(headers);
    let relayed = client.trusted.then(|| Relayed::take(headers));
    // One pass over the names: hop-by-hop headers; Content-Length (hyper
    // re-frames the body from its own length, so a stale or conflicting one
    // never passes); Host (the forwarder sets the upstream's); the token's
    // header; and every client copy of a header only the gate may set.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(name)
                || **name == header::CONTENT_LENGTH
                || **name == header::HOST
                || (places.header && name.as_str() == TOKEN_HEADER)
                || is_gate_owned(name.as_str())
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if places.bearer {
        strip_bearer(headers);
    }

    let peer = client.peer.ip().to_string();
    let relayed = relayed.unwrap_or_default();
    let chain = match relayed.for_chain {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer,
    };
    if let Ok(chain) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    let proto = relayed
        .proto
        .unwrap_or(HeaderValue::from_static(client.proto));
    headers.insert(X_FORWARDED_PROTO, proto);
    if let Some(host) = relayed.host.or(host) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Some(opened) = identity {
        // Tokens are checked for a header-safe identity when opened; should
        // one still not fit a header, refuse rather than forward without it.
        let claims = &opened.claims;
        let user = claims.user_id.as_deref().unwrap_or(&claims.email);
        let (Ok(email), Ok(user)) = (
            HeaderValue::from_str(&claims.email),
            HeaderValue::from_str(user),
        ) else {
            return Err(Reason::InvalidToken(TokenError::BadClaims));
        };
        headers.insert(FORWARDED_EMAIL, email);
        headers.insert(FORWARDED_USER, user);
    }
    Ok(())
}

/// The address a request came from: the peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not one
/// (each proxy appends the address it saw, so the entries right of it are
/// the trusted chain's own). Where the chain cannot be read, the peer: a
/// rate limit then falls on the proxy rather than on whatever a client
/// wrote. For per-client limits behind a load balancer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let chain: Vec<&[u8]> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .collect();
    for entry in chain.iter().rev() {
        let Some(ip) = std::str::from_utf8(entry)
            .ok()
            .map(str::trim)
            .and_then(|text| {
                text.parse::<IpAddr>()
                    .ok()
                    .or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
            })
        else {
            return peer;
        };
        if !trusted(ip) {
            return ip;
        }
    }
    peer
}

/// What a trusted proxy in front of the gate already said about the client.
#[derive(Debug, Default)]
struct Relayed {
    /// Every `X-Forwarded-For` value, joined in order.
    for_chain: Option<String>,
    /// The first `X-Forwarded-Proto`.
    proto: Option<HeaderValue>,
    /// The first `X-Forwarded-Host`.
    host: Option<HeaderValue>,
}

impl Relayed {
    fn take(headers: &HeaderMap) -> Relayed {
        let chain: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        Relayed {
            for_chain: (!chain.is_empty()).then(|| chain.join(", ")),
            proto: headers.get(X_FORWARDED_PROTO).cloned(),
            host: headers.get(X_FORWARDED_HOST).cloned(),
        }
    }
}

/// Drop hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_connection_named(headers);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Drop every header the client named in `Connection` (hop-by-hop by
/// declaration). The common request has no `Connection` header: no work.
fn strip_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Whether `name` (lower-case, as `http` stores it) is a header only the
/// gate may set, in its `-` or `_` spelling.
fn is_gate_owned(name: &str) -> bool {
    GATE_OWNED.iter().any(|owned| {
        owned.len() == name.len()
            && owned
                .bytes()
                .zip(name.bytes())
                .all(|(o, n)| o == n || (o == b'-' && n == b'_'))
    })
}

/// Remove bearer tokens from `Authorization`, keeping any other
/// credentials the client sends (e.g. Basic for the upstream's own login).
fn strip_bearer(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| bearer_token(v.as_bytes()).is_none())
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for value in kept {
        headers.append(header::AUTHORIZATION, value);
    }
}

/// The query without token parameters, other parameters kept in order and
/// as the client encoded them; `None` when nothing is left.
pub fn query_without_token(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let name = form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(n, _)| n)
                .unwrap_or_default();
            !crate::gate::TOKEN_QUERY_PARAMS.contains(&name.as_ref())
        })
        .filter(|pair| !pair.is_empty())
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

/// Keep shared caches from storing a page served to one verified user:
/// `public` and `s-maxage` are dropped and `private` is added, unless the
/// upstream already said `private` or `no-store`.
pub fn make_private(headers: &mut HeaderMap) {
    // The common cases, without allocating: no Cache-Control at all, or
    // one that already keeps the page out of shared caches.
    let mut values = headers.get_all(header::CACHE_CONTROL).iter().peekable();
    if values.peek().is_none() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let already = values.any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store")
            })
        })
    });
    if already {
        return;
    }
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let lower = |d: &String| d.to_ascii_lowercase();
    if directives
        .iter()
        .map(lower)
        .any(|d| d == "private" || d == "no-store")
    {
        return;
    }
    let mut kept = vec!["private".to_string()];
    kept.extend(directives.into_iter().filter(|d| {
        let d = d.to_ascii_lowercase();
        d != "public" && !d.starts_with("s-maxage")
    }));
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

/// Strip hop-by-hop headers from an upstream response before it goes back.
pub fn prepare_client_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_reads_forwarded_for_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let trusted = |ip: IpAddr| ip == proxy || ip == "10.0.0.2".parse::<IpAddr>().expect("ip");
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("value"));
            }
            h
        };
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        // An untrusted peer's own claims are ignored.
        assert_eq!(
            client_ip(stranger, &with(&["203.0.113.9"]), trusted),
            stranger
        );
        // Behind the proxies: the last address that is not theirs.
        let chain = with(&["192.0.2.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(
            client_ip(proxy, &chain, trusted),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let ported = with(&["[2001:db8::1]:443"]);
        assert_eq!(
            client_ip(proxy, &ported, trusted),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        // Unreadable, empty, or only proxies: the peer.
        assert_eq!(
            client_ip(proxy, &with(&["203.0.113.9, junk"]), trusted),
            proxy
        );
        assert_eq!(client_ip(proxy, &with(&[]), trusted), proxy);
        assert_eq!(client_ip(proxy, &with(&["10.0.0.2"]), trusted), proxy);
    }

    fn client() -> ClientInfo {
        ClientInfo {
            peer: "192.0.2.7:4000".parse().expect("addr"),
            proto: "http",
            trusted: false,
        }
    }

    #[test]
    fn forwarding_headers_are_extended_only_for_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let trusted = ClientInfo {
            trusted: true,
            ..client()
        };
        prepare_upstream_headers(&mut h, TokenPlaces::default(), trusted, None, None).expect("ok");
        assert_eq!(h["x-forwarded-for"], "198.51.100.9, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        prepare_upstream_headers(&mut h, TokenPlaces::default(), client(), None, None).expect("ok");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn connection_cannot_remove_what_the_gate_sets() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-forwarded-for, keep-alive"),
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        prepare_upstream_headers(&mut h, TokenPlaces::default(), client(), None, None).expect("ok");
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"192.0.2.7"[..])
        );
        assert!(h.get(header::CONNECTION).is_none());
    }

    #[test]
    fn spoofed_identity_in_any_spelling_is_removed() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-email",
            HeaderValue::from_static("ceo@example.com"),
        );
        h.append(
            "x-forwarded-email",
            HeaderValue::from_static("cfo@example.com"),
        );
        h.insert("x_forwarded_user", HeaderValue::from_static("admin"));
        h.insert(
            "X-Auth-Request-Email",
            HeaderValue::from_static("ceo@example.com"),
        );
        prepare_upstream_headers(&mut h, TokenPlaces::default(), client(), None, None).expect("ok");
        assert!(h.get("x-forwarded-email").is_none());
        assert!(h.get("x_forwarded_user").is_none());
        assert!(h.get("x-auth-request-email").is_none());
    }

    #[test]
    fn bearer_token_removed_but_basic_kept() {
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer pg1.x.y"),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        );
        let places = TokenPlaces {
            bearer: true,
            ..TokenPlaces::default()
        };
        prepare_upstream_headers(&mut h, places, client(), None, None).expect("ok");
        let values: Vec<_> = h.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values, vec![HeaderValue::from_static("Basic dTpw")]);
    }

    #[test]
    fn verified_responses_are_never_stored_by_shared_caches() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, s-maxage=3600"),
        );
        make_private(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "private, max-age=600");
        let mut none = HeaderMap::new();
        make_private(&mut none);
        assert_eq!(none[header::CACHE_CONTROL], "private");
        let mut store = HeaderMap::new();
        store.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        make_private(&mut store);
        assert_eq!(store[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn query_token_removed_others_kept_in_order() {
        assert_eq!(
            query_without_token("a=1&auth-token=x&b=2&auth_token=x"),
            Some("a=1&b=2".into())
        );
        assert_eq!(
            query_without_token("auth%2Dtoken=x&c=%20"),
            Some("c=%20".into())
        );
        assert_eq!(query_without_token("auth-token=x"), None);
        assert_eq!(query_without_token("a&&b"), Some("a&b".into()));
    }
}
