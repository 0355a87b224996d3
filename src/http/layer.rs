//! The gate as a tower `Layer`, for a Rust portal host that gates its own
//! handlers in-process, with no proxy hop.
//!
//! Every request runs [`Gate::admit`], the phases the proxy runs, so the
//! application gets the same path normalization, statuses and header
//! hygiene, and the gate's own endpoints (the token API, `/embed.js`,
//! logout, the session exchange). A forwarded request reaches the inner
//! service with its path normalized, no credential, and the verified
//! [`Identity`] in its extensions (and in `X-Forwarded-Email` and
//! `X-Forwarded-User`), and the host the client asked for as `Host`; the
//! inner service's answer gets the proxy's
//! response filter (no `Set-Cookie` touching the session; a verified page
//! private and revalidated; the framing policy).
//!
//! The connection's peer is read from a [`ConnInfo`] in the request's
//! extensions, or, with the `axum` feature, axum's
//! `ConnectInfo<SocketAddr>`; without either the gate sees
//! `0.0.0.0:0`, so every client shares one token API failure bucket (a
//! correct secret always passes) and `X-Forwarded-For` says `0.0.0.0`.
//!
//! ```no_run
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use portal_gate::{Config, Gate, GateLayer};
//!
//! let config = Config::load(std::path::Path::new("portal-gate.toml"))?;
//! let gate = Arc::new(Gate::new(config)?);
//! let layer = GateLayer::new(gate);
//! // axum: Router::new().route(...).layer(layer)
//! // hyper: tower::ServiceBuilder::new().layer(layer).service(app)
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::phases::{self, Admission, ConnInfo, Identity};
use crate::ops::state::Gate;
use crate::upstream::body::BoxError;

/// A tower `Layer` that puts the gate in front of a service.
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl GateLayer {
    /// A layer admitting requests through `gate` (keep a clone of the
    /// `Arc` to reload it).
    pub fn new(gate: Arc<Gate>) -> GateLayer {
        GateLayer { gate }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService {
            gate: Arc::clone(&self.gate),
            inner,
        }
    }
}

/// The service [`GateLayer`] wraps around an application's.
#[derive(Debug, Clone)]
pub struct GateService<S> {
    gate: Arc<Gate>,
    inner: S,
}

/// A response of the gated service: the gate's own answer (a small
/// buffer) or the inner service's.
pub type GatedBody<B> = Either<Full<Bytes>, B>;

impl<S, B, ResBody> Service<Request<B>> for GateService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<GatedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service that was polled ready takes this request; a clone
        // stays for the next one (tower's usual dance).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            let conn = conn_info(&request);
            let config = gate.config();
            match gate.admit(request, &conn).await {
                Admission::Respond(answer) => {
                    let mut answer = answer.map(Either::Left);
                    phases::frame_policy(&config, answer.headers_mut());
                    Ok(answer)
                }
                Admission::Forward(mut request) => {
                    restore_host(&mut request);
                    let verified = request.extensions().get::<Identity>().is_some();
                    let mut response = inner.call(request).await?.map(Either::Right);
                    crate::http::headers::filter_response(response.headers_mut(), verified);
                    phases::frame_policy(&config, response.headers_mut());
                    Ok(response)
                }
            }
        })
    }
}

/// The application is where the request goes, so it gets the host the
/// client asked for (checked against `public_hosts`) as `Host`, where the
/// proxy would give an upstream its own.
fn restore_host<B>(request: &mut Request<B>) {
    if let Some(host) = request.headers().get("x-forwarded-host").cloned() {
        request.headers_mut().insert(http::header::HOST, host);
    }
}

/// The peer of the request's connection: a [`ConnInfo`] the application
/// put in the extensions, else axum's `ConnectInfo` (with the `axum`
/// feature), else an unspecified address.
fn conn_info<B>(request: &Request<B>) -> ConnInfo {
    if let Some(info) = request.extensions().get::<ConnInfo>() {
        return *info;
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(peer)) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return ConnInfo::new(*peer, false);
    }
    ConnInfo::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), false)
}

#[cfg(feature = "axum")]
mod axum_extractor {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::Identity;

    /// The request has no verified user: it did not pass [`super::GateLayer`],
    /// or its page is public. A handler behind the layer that needs a user
    /// should take `Option<Identity>` on public pages.
    #[derive(Debug, Clone, Copy)]
    pub struct NoIdentity;

    impl IntoResponse for NoIdentity {
        fn into_response(self) -> Response {
            (StatusCode::UNAUTHORIZED, "a verified user is required\n").into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Identity {
        type Rejection = NoIdentity;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NoIdentity> {
            parts
                .extensions
                .get::<Identity>()
                .cloned()
                .ok_or(NoIdentity)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Identity>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_extractor::NoIdentity;
