//! The WebSocket handshake (RFC 6455 section 4): how the gate reads one,
//! and the one check that opens a tunnel.
//!
//! A handshake is a request like any other until the upstream answers:
//! path, rules, credentials and header hygiene all apply, and the upgrade
//! fields are put back after the hygiene only for a handshake that reads
//! one way. The tunnel opens only on a `101` whose `Upgrade` is
//! `websocket` and whose `Sec-WebSocket-Accept` answers the client's key
//! ([`switches`]): an upstream that answers anything else, to a forged or
//! a real upgrade, keeps the connection under HTTP framing, so no client
//! can speak raw HTTP through a tunnel that never was (the "WebSocket
//! smuggling" family).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use sha1::{Digest, Sha1};

use crate::access::reason::Reason;

/// The GUID RFC 6455 appends to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A handshake the gate read, and the answer its upstream must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handshake {
    /// The `Sec-WebSocket-Accept` a real 101 carries.
    pub accept: String,
}

/// Whether `name`'s comma-separated values hold `token`
/// (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    crate::http::headers::list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
}

/// The WebSocket handshake a request makes, if it makes one: `Upgrade`
/// naming `websocket` with `Connection: upgrade`, on an HTTP/1.1 GET, with
/// a 16-byte `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`. An
/// `Upgrade: websocket` that is not all of that is refused (400): it is a
/// handshake nobody can complete, or a probe. Other upgrades (`h2c`) are
/// not handshakes; the hygiene drops their fields, as for any request.
pub(crate) fn read(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Option<Handshake>, Reason> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if *method != Method::GET || version != Version::HTTP_11 {
        return Err(Reason::BadRequest(
            "a WebSocket handshake is an HTTP/1.1 GET",
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Reason::BadRequest(
            "a WebSocket handshake needs Connection: upgrade",
        ));
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.as_bytes().trim_ascii(),
        _ => b"",
    };
    let key_ok = STANDARD.decode(key).is_ok_and(|raw| raw.len() == 16);
    if !version_ok || !key_ok {
        return Err(Reason::BadRequest(
            "a WebSocket handshake needs one Sec-WebSocket-Key of 16 bytes and \
             Sec-WebSocket-Version: 13",
        ));
    }
    Ok(Some(Handshake {
        accept: accept_for(key),
    }))
}

/// `Sec-WebSocket-Accept` for `key`: base64 of SHA-1 of the key and the
/// GUID.
pub(crate) fn accept_for(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// Puts back the upgrade fields the hygiene removed, on a handshake the
/// gate admitted (and nothing else named in `Connection`).
pub(crate) fn restore_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Whether `response` switches to the WebSocket protocol for `handshake`:
/// 101, `Upgrade: websocket`, `Connection: upgrade`, and the accept key
/// that answers the client's.
pub(crate) fn switches<B>(response: &Response<B>, handshake: &Handshake) -> bool {
    let headers = response.headers();
    let mut accepts = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    let accept_ok = match (accepts.next(), accepts.next()) {
        (Some(accept), None) => accept.as_bytes() == handshake.accept.as_bytes(),
        _ => false,
    };
    response.status() == StatusCode::SWITCHING_PROTOCOLS
        && has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
        && accept_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// Header pairs, changed by a test case.
    type Change<'a> = &'a dyn Fn(&mut Vec<(&str, &str)>);

    fn handshake_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    }

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept() {
        // RFC 6455 section 1.3.
        assert_eq!(accept_for(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_handshake_reads_one_way_or_is_refused() {
        let ok = read(
            &Method::GET,
            Version::HTTP_11,
            &headers(&handshake_headers()),
        );
        assert_eq!(
            ok,
            Ok(Some(Handshake {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }))
        );
        assert_eq!(
            read(
                &Method::GET,
                Version::HTTP_11,
                &headers(&[("upgrade", "h2c")])
            ),
            Ok(None)
        );
        assert_eq!(
            read(&Method::GET, Version::HTTP_11, &HeaderMap::new()),
            Ok(None)
        );
        let refused = |method: Method, version: Version, change: Change<'_>| {
            let mut pairs = handshake_headers();
            change(&mut pairs);
            read(&method, version, &headers(&pairs)).is_err()
        };
        assert!(refused(Method::POST, Version::HTTP_11, &|_| {}));
        assert!(refused(Method::GET, Version::HTTP_10, &|_| {}));
        assert!(refused(Method::GET, Version::HTTP_11, &|p| p[1] =
            ("connection", "keep-alive")));
        assert!(refused(Method::GET, Version::HTTP_11, &|p| p[3] =
            ("sec-websocket-version", "8")));
        assert!(refused(Method::GET, Version::HTTP_11, &|p| p[2] =
            ("sec-websocket-key", "c2hvcnQ=")));
        assert!(refused(Method::GET, Version::HTTP_11, &|p| p
            .push(("sec-websocket-key", KEY))));
    }

    #[test]
    fn only_a_true_switch_opens_a_tunnel() {
        let handshake = Handshake {
            accept: accept_for(KEY.as_bytes()),
        };
        let answer = |status: u16, pairs: &[(&str, &str)]| {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            *response.headers_mut() = headers(pairs);
            switches(&response, &handshake)
        };
        let good = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(answer(101, &good));
        assert!(!answer(200, &good));
        assert!(!answer(426, &good));
        assert!(!answer(101, &good[..2]));
        assert!(!answer(
            101,
            &[good[0], good[1], ("sec-websocket-accept", "AAAA")]
        ));
        assert!(!answer(101, &[("upgrade", "h2c"), good[1], good[2]]));
        assert!(!answer(101, &[good[0], good[2]]));
    }
}
