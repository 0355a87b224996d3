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

use crate::access::credential;
use crate::access::reason::Reason;
use crate::token::format::{Opened, TokenError};

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

/// Client headers the upstream never sees, whatever their case and in
/// their `_` spelling too (some servers fold `_` into `-`). Three
/// families, reviewed against the lists 403-bypass tools try on proxies
/// (docs/security.md lists them):
///
/// - **identity**: only the gate says who the user is;
/// - **client address and forwarding**: only the gate (or a trusted proxy
///   before it, read before this strip) says where a request came from;
///   an upstream that allows by address must not read a client's word;
/// - **path, host and method overrides**: IIS, Symfony, Laravel, Envoy and
///   others route on them, which would let a public path serve a
///   restricted one, or a GET act as a DELETE; WebDAV's `Destination`
///   names a second path the rules never judged.
fn is_gate_owned(name: &str) -> bool {
    // The common header has no `_`: no copy then.
    let folded;
    let name = if name.contains('_') {
        folded = name.replace('_', "-");
        folded.as_str()
    } else {
        name
    };
    name.starts_with("x-forwarded-")
        || name.starts_with("x-auth-request-")
        || name.starts_with("x-envoy-")
        || name.starts_with("x-pomerium-")
        || name.starts_with("cf-access-")
        || name.starts_with("x-goog-authenticated-")
        || name.starts_with("x-goog-iap-")
        || matches!(
            name,
            // Identity, as this gate and other gating proxies set it
            // (oauth2-proxy, Authelia, Pomerium, Cloudflare Access,
            // IAP and Grafana's auth proxy; prefixes above): an
            // upstream that moved from one of them may still read it.
            |"remote-user"| "remote-email" | "remote-groups" | "remote-name"
                | "x-remote-user" | "x-webauth-user"
                // Client address and forwarding.
                | "forwarded" | "forwarded-for" | "x-forwarded" | "x-forward-for"
                | "x-forwarder-for" | "x-originally-forwarded-for"
                | "x-real-ip" | "real-ip" | "x-client-ip" | "client-ip"
                | "true-client-ip" | "x-true-ip" | "cf-connecting-ip"
                | "fastly-client-ip" | "x-cluster-client-ip" | "cluster-client-ip"
                | "x-originating-ip" | "x-remote-ip" | "x-remote-addr"
                | "x-original-remote-addr" | "x-proxyuser-ip"
                | "x-custom-ip-authorization" | "x-azure-clientip"
                | "x-azure-socketip" | "x-appengine-user-ip"
                // Path, host and method overrides.
                | "x-original-url" | "x-original-uri" | "x-rewrite-url"
                | "x-override-url" | "x-original-path" | "x-request-uri"
                | "request-uri" | "x-http-destinationurl" | "x-proxy-url"
                | "proxy-url" | "base-url" | "http-url" | "destination"
                | "x-host" | "x-original-host" | "x-http-host-override"
                | "proxy-host" | "x-http-method-override" | "x-http-method"
                | "x-method-override"
        )
}

/// The verified user's email, set by the gate.
pub(crate) const FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// The verified user's id (or email when the token has no user id).
pub(crate) const FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// The verified user's groups, comma-separated.
const FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// The verified user's display name, percent-encoded UTF-8.
const FORWARDED_NAME: HeaderName = HeaderName::from_static("x-forwarded-name");
/// The verified user's avatar URL.
const FORWARDED_AVATAR_URL: HeaderName = HeaderName::from_static("x-forwarded-avatar-url");

/// What a name or an attribute value keeps raw in a header: RFC 8187's
/// `attr-char` but `+` (letters, digits and ``!#$&-.^_`|~``; a form-style
/// decoder would read `+` as a space). Everything else, UTF-8 bytes
/// included, is percent-encoded, so any value survives any header parser,
/// decodes one way, and a `,` inside a value never splits a list.
const ATTR_CHAR_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// What an avatar URL may not carry raw in a header: controls, space and
/// (always, by the crate) non-ASCII.
const URL_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');

/// What the gate knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientInfo {
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
/// `identity` is the verified user, if the page needed one. The
/// credentials go whatever their spelling: every `Authorization: Bearer`,
/// `X-Auth-Token` in either spelling, the session cookie in any case and
/// behind any separator, and token parameters in a `Referer`.
pub(crate) fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    client: ClientInfo,
    host: Option<HeaderValue>,
    identity: Option<&Opened>,
    forward: &[(String, HeaderName)],
) -> Result<(), Reason> {
    strip_connection_named(headers);
    let relayed = client.trusted.then(|| Relayed::take(headers));
    // One pass over the names: hop-by-hop headers; Content-Length (hyper
    // re-frames the body from its own length, so a stale or conflicting one
    // never passes); Host (the forwarder sets the upstream's); and every
    // client copy of a header only the gate may set, the token's included.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(name)
                || **name == header::CONTENT_LENGTH
                || **name == header::HOST
                || is_gate_owned(name.as_str())
                || credential::is_token_header(name.as_str())
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    credential::strip(headers);

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
    match identity {
        Some(opened) => set_identity(headers, opened, forward),
        None => Ok(()),
    }
}

/// The verified user's headers: `X-Forwarded-Email` and `-User` always;
/// `-Groups`, `-Name` and `-Avatar-Url` when the credential carries them;
/// `X-Forwarded-Attr-<Key>` for each attribute `[forward] attributes`
/// lists and the credential carries (a list's items comma-separated).
/// Names and attribute values are percent-encoded ([`ATTR_CHAR_ESCAPES`]).
fn set_identity(
    headers: &mut HeaderMap,
    opened: &Opened,
    forward: &[(String, HeaderName)],
) -> Result<(), Reason> {
    // Claims are checked for header-safe values when opened; should one
    // still not fit a header, refuse rather than forward without it.
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| Reason::InvalidToken(TokenError::BadClaims))
    };
    let encoded = |text: &str, escapes| {
        value(&percent_encoding::utf8_percent_encode(text, escapes).to_string())
    };
    let claims = &opened.claims;
    let user = claims.user_id.as_deref().unwrap_or(&claims.email);
    headers.insert(FORWARDED_EMAIL, value(&claims.email)?);
    headers.insert(FORWARDED_USER, value(user)?);
    if !claims.groups.is_empty() {
        headers.insert(FORWARDED_GROUPS, value(&claims.groups.join(","))?);
    }
    if let Some(name) = &claims.name {
        headers.insert(FORWARDED_NAME, encoded(name, ATTR_CHAR_ESCAPES)?);
    }
    if let Some(avatar) = &claims.avatar_url {
        headers.insert(FORWARDED_AVATAR_URL, encoded(avatar, URL_ESCAPES)?);
    }
    for (key, header) in forward {
        if let Some(attribute) = claims.attributes.get(key) {
            let items: Vec<String> = attribute
                .values()
                .iter()
                .map(|v| percent_encoding::utf8_percent_encode(v, ATTR_CHAR_ESCAPES).to_string())
                .collect();
            headers.insert(header.clone(), value(&items.join(","))?);
        }
    }
    Ok(())
}

/// The items of a comma-separated header list (`Connection`, `Upgrade`,
/// `Accept`), trimmed, across every copy of the header; values that are
/// not text contribute none.
pub(crate) fn list_items(
    headers: &HeaderMap,
    name: header::HeaderName,
) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The address a request came from: the peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not one
/// (each proxy appends the address it saw, so the entries right of it are
/// the trusted chain's own). Where the chain cannot be read, the peer: a
/// rate limit then falls on the proxy rather than on whatever a client
/// wrote. For per-client limits behind a load balancer.
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
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
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_connection_named(headers);
    // One pass to look, since most responses carry none but `Connection`.
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Drop every header the client named in `Connection` (hop-by-hop by
/// declaration). The common request has no `Connection` header: no work.
/// The common values name nothing to look up: `close` names no field, and
/// `keep-alive` is hop-by-hop anyway (every caller removes [`HOP_BY_HOP`]
/// next).
fn strip_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let named: Vec<HeaderName> = list_items(headers, header::CONNECTION)
        .filter(|name| {
            !name.eq_ignore_ascii_case("close") && !name.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Headers by which a response tells a CDN or a cache in front of the gate
/// how long to keep it, overriding `Cache-Control` for whoever reads them
/// (RFC 9213 `CDN-Cache-Control` and its vendor forms,
/// `Surrogate-Control`, Akamai's `Edge-Control`, nginx's
/// `X-Accel-Expires`). None may reach a cache for a verified page.
fn is_targeted_cache_field(name: &str) -> bool {
    name.ends_with("cdn-cache-control")
        || matches!(
            name,
            "surrogate-control" | "edge-control" | "x-accel-expires"
        )
}

/// Keep a page served to one verified user out of every cache but that
/// user's browser, and make the browser ask again before each use:
///
/// - `Cache-Control` becomes `private, no-cache` (`private, no-store` when
///   the upstream said `no-store`), whatever else the upstream said: no
///   `max-age` and no heuristic freshness to show the page from the cache
///   once the session has ended, no `public`, `s-maxage`, qualified
///   `private="..."` or `stale-*` for a shared cache to act on;
/// - the targeted cache fields ([`is_targeted_cache_field`]) go;
/// - `Vary` gains `Cookie` and `Authorization`, the credentials a browser
///   sends, so that a stored copy is never revalidated on behalf of
///   another session.
pub(crate) fn make_private(headers: &mut HeaderMap) {
    let no_store = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-store"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if no_store {
            "private, no-store"
        } else {
            "private, no-cache"
        }),
    );
    let targeted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_targeted_cache_field(name.as_str()))
        .cloned()
        .collect();
    for name in targeted {
        headers.remove(name);
    }
    let varies_on_everything = headers
        .get_all(header::VARY)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"*");
    if !varies_on_everything {
        headers.append(
            header::VARY,
            HeaderValue::from_static("Cookie, Authorization"),
        );
    }
}

/// The upstream's response head as the client gets it: hop-by-hop headers
/// out (hyper does not remove them from a response it relays), no cookie
/// that would set, replace or clear the gate's session, and for a verified
/// page the cache rules of [`make_private`].
pub(crate) fn filter_response(headers: &mut HeaderMap, verified: bool) {
    strip_hop_by_hop(headers);
    credential::strip_session_set_cookies(headers);
    if verified {
        make_private(headers);
    }
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
        prepare_upstream_headers(&mut h, trusted, None, None, &[]).expect("ok");
        assert_eq!(h["x-forwarded-for"], "198.51.100.9, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
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
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
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
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
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
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer\tpg1.x.y"),
        );
        h.append(header::AUTHORIZATION, HeaderValue::from_static("bearer"));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("BEARER   z"),
        );
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
        let values: Vec<_> = h.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values, vec![HeaderValue::from_static("Basic dTpw")]);
    }

    fn response(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        h
    }

    #[test]
    fn verified_responses_are_kept_by_no_shared_cache_and_revalidated_by_the_browser() {
        let mut h = response(&[
            (
                "cache-control",
                "public, max-age=600, s-maxage=3600, private=\"set-cookie\"",
            ),
            ("cache-control", "stale-while-revalidate=60, immutable"),
            ("cdn-cache-control", "max-age=86400"),
            ("cloudflare-cdn-cache-control", "max-age=86400"),
            ("surrogate-control", "max-age=86400"),
            ("edge-control", "cache-maxage=1d"),
            ("x-accel-expires", "3600"),
            ("vary", "Accept-Encoding"),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ]);
        filter_response(&mut h, true);
        let values: Vec<_> = h.get_all(header::CACHE_CONTROL).iter().collect();
        assert_eq!(values, ["private, no-cache"]);
        for gone in [
            "cdn-cache-control",
            "cloudflare-cdn-cache-control",
            "surrogate-control",
            "edge-control",
            "x-accel-expires",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Cookie, Authorization"]);
        assert!(h.contains_key(header::LAST_MODIFIED));

        let mut none = HeaderMap::new();
        filter_response(&mut none, true);
        assert_eq!(none[header::CACHE_CONTROL], "private, no-cache");
        let mut store = response(&[("cache-control", "max-age=5, No-Store"), ("vary", "*")]);
        filter_response(&mut store, true);
        assert_eq!(store[header::CACHE_CONTROL], "private, no-store");
        let vary: Vec<_> = store.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["*"], "Vary: * already varies on everything");
    }

    #[test]
    fn public_responses_keep_their_cache_fields() {
        let mut h = response(&[
            ("cache-control", "public, max-age=600"),
            ("cdn-cache-control", "max-age=86400"),
        ]);
        filter_response(&mut h, false);
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=600");
        assert_eq!(h["cdn-cache-control"], "max-age=86400");
        assert!(!h.contains_key(header::VARY));
    }

    #[test]
    fn hop_by_hop_fields_of_a_response_never_reach_the_client() {
        let mut h = response(&[
            ("connection", "close, x-upstream-secret"),
            ("x-upstream-secret", "internal"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/html"),
        ]);
        filter_response(&mut h, false);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
    }

    #[test]
    fn the_upstream_can_neither_set_nor_clear_the_session() {
        let mut h = response(&[
            ("set-cookie", "theme=dark; Path=/"),
            (
                "set-cookie",
                "__Host-portal-gate-session=; Max-Age=0; Path=/",
            ),
            (
                "set-cookie",
                "__HOST-PORTAL-GATE-SESSION=forged; Path=/; Secure",
            ),
            ("set-cookie", " __host-portal-gate-session =x"),
            ("set-cookie", "=__Host-portal-gate-session=forged"),
            ("set-cookie", "__Host-portal-gate-session"),
            ("set-cookie", "lang=en"),
        ]);
        filter_response(&mut h, false);
        let kept: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(kept, ["theme=dark; Path=/", "lang=en"]);
    }

    #[test]
    fn only_the_connection_named_headers_go_others_arrive() {
        let mut h = response(&[
            ("connection", "x-foo, X-Bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("accept", "text/html"),
            ("x-baz", "3"),
        ]);
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
        assert!(!h.contains_key("x-foo") && !h.contains_key("x-bar"));
        assert_eq!(h["accept"], "text/html");
        assert_eq!(h["x-baz"], "3");
    }

    #[test]
    fn the_clients_length_host_and_token_go_every_other_header_stays() {
        let mut h = response(&[
            ("content-length", "12"),
            ("host", "portal.example.com"),
            ("x-auth-token", "pg1.k.abc"),
            ("x_auth_token", "pg1.k.abc"),
            ("accept", "text/html"),
            ("accept-language", "en"),
            ("user-agent", "test"),
        ]);
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
        for gone in ["content-length", "host", "x-auth-token", "x_auth_token"] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["accept"], "text/html");
        assert_eq!(h["accept-language"], "en");
        assert_eq!(h["user-agent"], "test");
    }

    #[test]
    fn path_host_method_and_address_overrides_never_pass_in_any_spelling() {
        let names = [
            "x-original-url",
            "X_Rewrite_URL",
            "x-override-url",
            "x-forwarded-path",
            "x-forwarded-server",
            "x-http-method-override",
            "x-method-override",
            "x-host",
            "destination",
            "true-client-ip",
            "cf-connecting-ip",
            "x-custom-ip-authorization",
            "x-client-ip",
            "x_real_ip",
            "remote-user",
            "x-envoy-original-path",
            "cf-access-authenticated-user-email",
            "x-auth-request-access-token",
            "x-pomerium-claim-email",
            "x-goog-authenticated-user-email",
            "x-goog-iap-jwt-assertion",
            // However long, in the `_` spelling too.
            "x_forwarded_email_and_then_a_very_long_tail_well_past_sixty_four_characters",
        ];
        let mut h = HeaderMap::new();
        for name in names {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("/internal/"),
            );
        }
        h.append("x-request-id", HeaderValue::from_static("abc"));
        prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            left,
            ["x-request-id", "x-forwarded-for", "x-forwarded-proto"]
        );
    }

    #[test]
    fn a_token_in_the_referer_is_scrubbed_the_rest_kept() {
        let scrubbed = |referer: &str| {
            let mut h = response(&[("referer", referer)]);
            prepare_upstream_headers(&mut h, client(), None, None, &[]).expect("ok");
            h.get(header::REFERER)
                .map(|v| v.to_str().expect("ascii").to_string())
        };
        assert_eq!(
            scrubbed("https://app.example.com/p?a=1&auth-token=pg1.k.x&b=2").as_deref(),
            Some("https://app.example.com/p?a=1&b=2")
        );
        assert_eq!(
            scrubbed("https://app.example.com/p?AUTH_TOKEN=pg1.k.x#auth-token=y").as_deref(),
            Some("https://app.example.com/p")
        );
        assert_eq!(
            scrubbed("https://app.example.com/p?x=1").as_deref(),
            Some("https://app.example.com/p?x=1")
        );
    }
}
