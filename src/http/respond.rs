//! The responses the gate gives itself: a refusal in the form its reader
//! expects (text, JSON, the denied-frame page), and the plain-text and
//! JSON bodies every other answer of the gate is built from.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

pub(crate) use crate::access::reason::Reason;
use http_body_util::Full;

impl Reason {
    /// The response a client sees, in the form its [`Audience`] reads:
    /// JSON `{"error": ...}` for API clients, a short text for pages, and
    /// for a denied frame the page that tells the embedding element (see
    /// [`crate::http::embed`]). 401 always carries `WWW-Authenticate: Bearer`.
    pub(crate) fn into_response(self, audience: Audience) -> OwnResponse {
        let denied = matches!(
            self.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        );
        let mut response = if audience == Audience::Api {
            json_error(self.status(), self.message())
        } else if audience == Audience::Frame && denied {
            crate::http::embed::auth_required_page(self.status(), self.message())
        } else {
            text(self.status(), self.message())
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
        if matches!(self, Reason::MethodNotAllowed | Reason::MethodNotListed) {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Audience {
    /// A program: non-navigation requests and `Accept: application/json`.
    #[default]
    Api,
    /// A person looking at a page.
    Page,
    /// A page inside the `released-page` element's frame.
    Frame,
}

impl Audience {
    /// The audience of a request, from its method and fetch metadata.
    pub(crate) fn of(method: &http::Method, headers: &HeaderMap) -> Audience {
        if !crate::http::session::is_navigation(method, headers) {
            Audience::Api
        } else if crate::http::embed::is_frame_request(headers) {
            Audience::Frame
        } else {
            Audience::Page
        }
    }
}

/// A response the gate gives itself: always a small buffer, never
/// streamed.
pub(crate) type OwnResponse = Response<Full<Bytes>>;

/// A plain-text response: `message` and a newline.
pub(crate) fn text(status: StatusCode, message: &str) -> OwnResponse {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    with_type(status, Bytes::from(body), "text/plain; charset=utf-8")
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> OwnResponse {
    with_type(status, Bytes::from(value.to_string()), "application/json")
}

/// A JSON error body `{"error": message}` with the given status.
pub(crate) fn json_error(status: StatusCode, message: &str) -> OwnResponse {
    json(status, &serde_json::json!({ "error": message }))
}

/// A response without a body.
pub(crate) fn empty(status: StatusCode) -> OwnResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// `body` as `content_type`, with `status`.
pub(crate) fn with_type(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
) -> OwnResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
