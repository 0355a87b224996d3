//! The one response body type the gate hands to hyper.
//!
//! Upstream bodies stream through as they are; the gate's own answers are
//! small buffers. Both are boxed into [`Body`] so every handler returns the
//! same type.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body can fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: a streamed upstream body or a small buffer of ours.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
