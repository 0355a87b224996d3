//! The host a request names, read one way: `Host`, the request target's
//! authority, a relayed `X-Forwarded-Host`, each a plain `host[:port]`,
//! and whether the gate serves it (`public_hosts`).

use http::header::{self, HeaderValue};
use http::Request;

use crate::access::reason::Reason;
use crate::config::Config;

/// The host the client asked for: the request target's authority (an
/// absolute-form HTTP/1.1 target, HTTP/2's `:authority`, without any
/// userinfo), else `Host`. Several `Host` headers, a `Host` that is not a
/// plain `host[:port]`, or one that names another host or port than the
/// authority (default ports aside), are refused: `public_hosts` and `X-Forwarded-Host` must read the same host,
/// and the upstream must not be told a different one.
pub(crate) fn requested_host<B>(request: &Request<B>) -> Result<Option<HeaderValue>, Reason> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reason::BadRequest("more than one Host header"));
    }
    let named = match host {
        None => None,
        Some(value) => match plain_host(value.as_bytes()) {
            Some(named) => Some(named),
            None => return Err(Reason::BadRequest("the Host header is not a host and port")),
        },
    };
    let Some(authority) = request.uri().authority() else {
        return Ok(host.cloned());
    };
    let default_port = match request.uri().scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    if let Some(named) = named {
        let same = named.host().eq_ignore_ascii_case(authority.host())
            && named.port_u16().unwrap_or(default_port)
                == authority.port_u16().unwrap_or(default_port);
        if !same {
            return Err(Reason::BadRequest(
                "the Host header names another host than the request target",
            ));
        }
        return Ok(host.cloned());
    }
    // No Host: the authority, without userinfo.
    let without_userinfo = authority.as_str().rsplit('@').next().unwrap_or_default();
    HeaderValue::from_str(without_userinfo)
        .map(Some)
        .map_err(|_| Reason::BadRequest("the request target's host cannot be forwarded"))
}
/// The `X-Forwarded-Host` a trusted proxy relayed, if any: exactly one
/// field holding one plain `host[:port]`. Several fields, a list, or
/// anything else is refused (400) rather than guessed at, since the
/// upstream is told this host.
pub(crate) fn relayed_host<B>(request: &Request<B>) -> Result<Option<HeaderValue>, Reason> {
    let mut relayed = request.headers().get_all("x-forwarded-host").iter();
    let Some(value) = relayed.next() else {
        return Ok(None);
    };
    if relayed.next().is_some() || plain_host(value.as_bytes()).is_none() {
        return Err(Reason::BadRequest(
            "X-Forwarded-Host is not one host and port",
        ));
    }
    Ok(Some(value.clone()))
}
/// `bytes` read as a plain `host[:port]`: no userinfo, no path, no list, a
/// port that is a port. The one reading of a host named in a header.
pub(crate) fn plain_host(bytes: &[u8]) -> Option<http::uri::Authority> {
    let named = http::uri::Authority::try_from(bytes).ok()?;
    let text = named.as_str();
    let plain = !text.contains(['@', ',']) && !text.is_empty() && has_valid_port(&named);
    plain.then_some(named)
}
/// Whether `authority` has no port, or a port in range (the `http` crate
/// accepts `host:abc` and `host:99999`, reporting no port).
fn has_valid_port(authority: &http::uri::Authority) -> bool {
    let text = authority.as_str();
    let after_host = match text.rfind(']') {
        Some(end) => &text[end + 1..],
        None => text,
    };
    match after_host.rsplit_once(':') {
        None => true,
        Some((_, port)) => port.parse::<u16>().is_ok(),
    }
}
/// Whether `host` (see [`requested_host`]) is one the gate serves. An empty
/// `public_hosts` list serves any host, a missing one included. Entries
/// without a port match the host on any port.
pub(crate) fn serves_host(config: &Config, host: Option<&HeaderValue>) -> bool {
    if config.public_hosts.is_empty() {
        return true;
    }
    let Some(authority) = host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    else {
        return false;
    };
    let full = authority.as_str().to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    config
        .public_hosts
        .iter()
        .any(|allowed| *allowed == full || *allowed == host)
}

/// The host phase: the host the client asked for ([`requested_host`]),
/// which the gate must serve (421), and, behind a trusted proxy, the host
/// it relayed ([`relayed_host`]), held to the same list.
pub(crate) fn check<B>(
    config: &Config,
    request: &Request<B>,
    trusted: bool,
) -> Result<Option<HeaderValue>, Reason> {
    let host = requested_host(request)?;
    if !serves_host(config, host.as_ref()) {
        return Err(Reason::MisdirectedHost);
    }
    if trusted {
        if let Some(relayed) = relayed_host(request)? {
            if !serves_host(config, Some(&relayed)) {
                return Err(Reason::MisdirectedHost);
            }
        }
    }
    Ok(host)
}
