//! The header hygiene between client and upstream: what
//! `headers::prepare_upstream_headers` leaves for the upstream, what
//! `headers::filter_response` leaves for the client, and the one reading of
//! a host named in a header (`handler::plain_host`, for `Host` and a
//! relayed `X-Forwarded-Host`).
//!
//! Input: one header field per line, `name: value` (a header value cannot
//! hold a newline, so nothing is lost by splitting on it); the first byte
//! of the input picks whether the peer is a trusted proxy.
//!
//! Invariants, whatever the fields:
//! - no credential reaches the upstream: no `Authorization` of the Bearer
//!   scheme, no `X-Auth-Token` in either spelling, no session cookie in any
//!   case or behind any separator, at most one `Cookie` field, no token
//!   parameter in a `Referer`;
//! - no client copy of the identity headers;
//! - a verified response carries no `Set-Cookie` for the session and is
//!   `private` with `no-cache` or `no-store`;
//! - a host `plain_host` accepts has no userinfo, no list and a valid port.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portal_gate::access::decision;
use portal_gate::http::headers::{self, ClientInfo};
use portal_gate::http::phases::plain_host;
use portal_gate::http::session::COOKIE_NAME;

fuzz_target!(|input: &[u8]| {
    let trusted = input.first().is_some_and(|b| b & 1 == 1);
    let mut fields = HeaderMap::new();
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if let Some(host) = plain_host(value.as_bytes()) {
            let text = host.as_str();
            assert!(!text.contains(['@', ',']), "{text:?}");
            if let Some((_, port)) = text
                .rsplit_once(']')
                .map_or(text, |(_, p)| p)
                .rsplit_once(':')
            {
                assert!(port.parse::<u16>().is_ok(), "{text:?}");
            }
        }
        fields.append(name, value);
    }

    let mut upstream = fields.clone();
    let client = ClientInfo {
        peer: "192.0.2.7:4000".parse().expect("addr"),
        proto: "http",
        trusted,
    };
    if headers::prepare_upstream_headers(&mut upstream, client, None, None).is_ok() {
        for value in upstream.get_all(http::header::AUTHORIZATION) {
            assert!(
                decision::bearer_token(value.as_bytes()).is_none(),
                "{value:?}"
            );
            let scheme = value.as_bytes().split(|b| *b == b' ' || *b == b'\t').next();
            assert!(
                !scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"bearer")),
                "{value:?}"
            );
        }
        for name in upstream.keys() {
            let folded = name.as_str().replace('_', "-");
            assert!(
                folded != "x-auth-token" && folded != "x-forwarded-email",
                "{name}"
            );
        }
        let cookies: Vec<_> = upstream.get_all(http::header::COOKIE).iter().collect();
        assert!(cookies.len() <= 1, "{cookies:?}");
        for cookie in cookies {
            for pair in cookie.as_bytes().split(|&b| b == b';' || b == b',') {
                let name = pair
                    .split(|&b| b == b'=')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                let session =
                    pair.contains(&b'=') && name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes());
                assert!(!session, "{cookie:?}");
            }
        }
        if let Some(referer) = upstream.get(http::header::REFERER) {
            let text = referer.to_str().expect("a kept Referer is text");
            let query = text.split_once('?').map(|(_, q)| q);
            let none = HeaderMap::new();
            let found = decision::find_token(query, &none);
            assert!(matches!(found, Ok((None, _))), "{text:?}: {found:?}");
            assert!(!text.contains('#'), "{text:?}");
        }
    }

    let mut answer = fields;
    headers::filter_response(&mut answer, true);
    for cookie in answer.get_all(http::header::SET_COOKIE) {
        let pair = cookie
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        let name = pair
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        assert!(
            !name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes()),
            "{cookie:?}"
        );
    }
    let cache: Vec<_> = answer.get_all(http::header::CACHE_CONTROL).iter().collect();
    assert!(
        cache == ["private, no-cache"] || cache == ["private, no-store"],
        "{cache:?}"
    );
});
