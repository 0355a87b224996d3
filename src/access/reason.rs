//! Why a request is refused, and the one place that turns a reason into an
//! HTTP status.
//!
//! Every refusal in the gate is a [`Reason`]. Its class says whose fault it
//! was: the client's (4xx), the upstream's (502/504) or ours (500). The
//! message is short and fixed: it never echoes a token, a secret or the
//! user's input back. How a refusal reads (text, JSON, the denied-frame
//! page) is [`crate::http::respond`]'s business.

use http::StatusCode;

use crate::access::rules::Refusal;

/// Why the gate did not forward a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The path cannot be read one way only.
    BadPath(crate::access::path::PathError),
    /// The request target or framing is not something the gate forwards.
    BadRequest(&'static str),
    /// The query string is longer than `limits.max_query_len`.
    QueryTooLong,
    /// The request names a host this gate does not serve.
    MisdirectedHost,
    /// A method the gate never forwards (`CONNECT`, `TRACE`).
    MethodNotAllowed,
    /// A WebSocket handshake on a path whose rule says `websocket = false`.
    WebSocketRefused,
    /// `limits.max_tunnels` are open.
    TooManyTunnels,
    /// The upstream answered a WebSocket handshake with a `101` that does
    /// not switch to the protocol the client asked for.
    UpstreamHandshake,
    /// A method no `methods` list can name (`post`, `PURGE`) on a path
    /// whose rules name methods.
    MethodNotListed,
    /// The client did not send its request body in time.
    BodyTimeout,
    /// A restricted page was requested without a token.
    MissingToken,
    /// The token could not be opened or is no longer valid.
    InvalidToken(crate::token::format::TokenError),
    /// The token was minted for another account.
    WrongAccount,
    /// The credential was issued before a revocation of its user, or
    /// before `sessions_not_before`.
    Revoked,
    /// The shared revocation store has been out of reach longer than
    /// `max_staleness`, with `fail_mode = "closed"`.
    RevocationsUnknown,
    /// Several different tokens arrived with one request.
    ConflictingTokens,
    /// The token is valid, but the page rule does not admit this user:
    /// which condition failed, and whether the rule is one for the
    /// request's method.
    NotAdmitted {
        /// The condition that failed.
        refusal: crate::access::rules::Refusal,
        /// The rule that refused applies to some methods only.
        method_rule: bool,
    },
    /// The upstream could not be reached or broke off its answer.
    UpstreamUnavailable,
    /// The upstream did not answer within the configured timeout.
    UpstreamTimeout,
    /// A failure of the gate itself.
    Internal,
}

impl Reason {
    /// The HTTP status for this reason. This is the only place that decides it.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Reason::BadPath(_) | Reason::BadRequest(_) | Reason::ConflictingTokens => {
                StatusCode::BAD_REQUEST
            }
            Reason::MissingToken
            | Reason::InvalidToken(_)
            | Reason::WrongAccount
            | Reason::Revoked => StatusCode::UNAUTHORIZED,
            Reason::NotAdmitted { .. } | Reason::WebSocketRefused => StatusCode::FORBIDDEN,
            Reason::TooManyTunnels | Reason::RevocationsUnknown => StatusCode::SERVICE_UNAVAILABLE,
            Reason::UpstreamHandshake => StatusCode::BAD_GATEWAY,
            Reason::QueryTooLong => StatusCode::URI_TOO_LONG,
            Reason::MethodNotAllowed | Reason::MethodNotListed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            Reason::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed text for the response body and the log.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Reason::BadPath(e) => e.reason(),
            Reason::BadRequest(why) => why,
            Reason::QueryTooLong => "the query string is too long",
            Reason::MisdirectedHost => "this gate does not serve that host",
            Reason::MethodNotAllowed => "the gate does not forward this method",
            Reason::WebSocketRefused => "this page does not take WebSocket connections",
            Reason::TooManyTunnels => "too many WebSocket connections are open; retry later",
            Reason::UpstreamHandshake => "the portal host did not complete the WebSocket handshake",
            Reason::MethodNotListed => {
                "this page's rules name their methods, and this method is not one of them"
            }
            Reason::BodyTimeout => "the request body did not arrive in time",
            Reason::MissingToken => "a token is required for this page",
            Reason::InvalidToken(crate::token::format::TokenError::Expired) => {
                "the token has expired"
            }
            Reason::InvalidToken(_) => "the token is not valid",
            Reason::WrongAccount => "the token is not valid for this portal",
            Reason::Revoked => "this sign-in has been revoked; sign in again",
            Reason::RevocationsUnknown => {
                "the revocation store is out of reach; verified pages are paused"
            }
            Reason::ConflictingTokens => "the request carries several different tokens",
            Reason::NotAdmitted {
                refusal,
                method_rule,
            } => not_admitted(refusal, method_rule),
            Reason::UpstreamUnavailable => "the portal host is unavailable",
            Reason::UpstreamTimeout => "the portal host did not answer in time",
            Reason::Internal => "internal error",
        }
    }
}

/// What a 403 says: the condition the user did not meet, and for a rule
/// with `methods`, that it holds for this method. Never the user's claims.
fn not_admitted(refusal: Refusal, method_rule: bool) -> &'static str {
    match (refusal, method_rule) {
        (Refusal::Email, false) => "this user is not on this page's allow lists",
        (Refusal::Email, true) => "this user is not on this page's allow lists for this method",
        (Refusal::Group, false) => "this user is in no group this page admits",
        (Refusal::Group, true) => "this user is in no group this page admits for this method",
        (Refusal::Lists, false) => {
            "this user is on none of this page's allow lists (emails, domains, groups)"
        }
        (Refusal::Lists, true) => {
            "this user is on none of this page's allow lists (emails, domains, groups) \
             for this method"
        }
        (Refusal::Attribute, false) => "this user's attributes do not meet this page's require",
        (Refusal::Attribute, true) => {
            "this user's attributes do not meet this page's require for this method"
        }
    }
}
