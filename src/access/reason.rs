//! Why a request is refused, and the one place that turns a reason into an
//! HTTP status.
//!
//! Every refusal in the gate is a [`Reason`]. Its class says whose fault it
//! was: the client's (4xx), the upstream's (502/504) or ours (500). The
//! message is short and fixed: it never echoes a token, a secret or the
//! user's input back. How a refusal reads (text, JSON, the denied-frame
//! page) is [`crate::http::respond`]'s business.

use http::StatusCode;

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
    /// The client did not send its request body in time.
    BodyTimeout,
    /// A restricted page was requested without a token.
    MissingToken,
    /// The token could not be opened or is no longer valid.
    InvalidToken(crate::token::format::TokenError),
    /// The token was minted for another account.
    WrongAccount,
    /// Several different tokens arrived with one request.
    ConflictingTokens,
    /// The token is valid, but the page rule does not admit this user.
    NotAdmitted,
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
            Reason::MissingToken | Reason::InvalidToken(_) | Reason::WrongAccount => {
                StatusCode::UNAUTHORIZED
            }
            Reason::NotAdmitted => StatusCode::FORBIDDEN,
            Reason::QueryTooLong => StatusCode::URI_TOO_LONG,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
            Reason::BodyTimeout => "the request body did not arrive in time",
            Reason::MissingToken => "a token is required for this page",
            Reason::InvalidToken(crate::token::format::TokenError::Expired) => {
                "the token has expired"
            }
            Reason::InvalidToken(_) => "the token is not valid",
            Reason::WrongAccount => "the token is not valid for this portal",
            Reason::ConflictingTokens => "the request carries several different tokens",
            Reason::NotAdmitted => "this user may not see this page",
            Reason::UpstreamUnavailable => "the portal host is unavailable",
            Reason::UpstreamTimeout => "the portal host did not answer in time",
            Reason::Internal => "internal error",
        }
    }
}
