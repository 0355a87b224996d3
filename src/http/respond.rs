//! Why a request is refused, and the one place that turns a reason into an
//! HTTP status.
//!
//! Every refusal in the gate is a [`Reason`]. Its class says whose fault it
//! was: the client's (4xx), the upstream's (502/504) or ours (500). The body
//! is a short, fixed reason: it never echoes a token, a secret or the user's
//! input back.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::upstream::body::{self, Body};

/// Why the gate did not forward a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
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
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnavailable,
    /// The upstream did not answer within the configured timeout.
    UpstreamTimeout,
    /// A failure of the gate itself.
    Internal,
}

impl Reason {
    /// The HTTP status for this reason. This is the only place that decides it.
    pub fn status(self) -> StatusCode {
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
    pub fn message(self) -> &'static str {
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

    /// The response a client sees, in the form its [`Audience`] reads:
    /// JSON `{"error": ...}` for API clients, a short text for pages, and
    /// for a denied frame the page that tells the embedding element (see
    /// [`crate::http::embed`]). 401 always carries `WWW-Authenticate: Bearer`.
    pub fn into_response(self, audience: Audience) -> Response<Body> {
        let denied = matches!(
            self.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        );
        let mut response = if audience == Audience::Api {
            json_error(self.status(), self.message())
        } else if audience == Audience::Frame && denied {
            crate::http::embed::auth_required_page(self.status(), self.message())
        } else {
            let mut text = String::with_capacity(self.message().len() + 1);
            text.push_str(self.message());
            text.push('\n');
            let mut response = Response::new(body::full(Bytes::from(text)));
            *response.status_mut() = self.status();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        if self.status() == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                Reason::MissingToken => "Bearer realm=\"portal-gate\"",
                _ => "Bearer realm=\"portal-gate\", error=\"invalid_token\"",
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self == Reason::MethodNotAllowed {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
        }
        if self == Reason::BodyTimeout {
            // The rest of the body may still come: this connection ends.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The methods the gate forwards, for `Allow` (any other extension method
/// is forwarded too; `CONNECT` and `TRACE` never are).
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Who will read a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A program: non-navigation requests and `Accept: application/json`.
    Api,
    /// A person looking at a page.
    Page,
    /// A page inside the `released-page` element's frame.
    Frame,
}

impl Audience {
    /// The audience of a request, from its method and fetch metadata.
    pub fn of(method: &http::Method, headers: &HeaderMap) -> Audience {
        if !crate::http::session::is_navigation(method, headers) {
            Audience::Api
        } else if crate::http::embed::is_frame_request(headers) {
            Audience::Frame
        } else {
            Audience::Page
        }
    }
}

/// A JSON error body `{"error": message}` with the given status.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(body::full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
