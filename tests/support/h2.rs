//! HTTP/2 (h2c, prior knowledge) connections to the gate, with bodies that
//! stall, for the tests of what one connection may hold.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub type AnyBody = BoxBody<Bytes, std::convert::Infallible>;

/// One HTTP/2 connection; clone the sender for concurrent streams.
pub async fn h2_connection(addr: SocketAddr) -> SendRequest<AnyBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

/// Send `request` on `sender`.
pub async fn h2_send(
    sender: &mut SendRequest<AnyBody>,
    request: Request<AnyBody>,
) -> Result<Response<Incoming>, hyper::Error> {
    sender.ready().await?;
    sender.send_request(request).await
}

/// A body that sends `first` and then nothing more, without ending.
pub fn stalled_body(first: Bytes) -> AnyBody {
    Stalled { first: Some(first) }.boxed()
}

struct Stalled {
    first: Option<Bytes>,
}

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}

/// A whole body of `bytes`.
pub fn whole_body(bytes: impl Into<Bytes>) -> AnyBody {
    http_body_util::Full::new(bytes.into()).boxed()
}

/// A GET over h2c with prior knowledge: status, version and body text.
pub async fn h2_get(
    gate: &super::GateProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Version, String) {
    let mut sender = h2_connection(gate.addr).await;
    let mut request = Request::builder().uri(gate.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(whole_body(Bytes::new())).expect("request");
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        h2_send(&mut sender, request),
    )
    .await
    .expect("gate answered in time")
    .expect("gate answered over h2");
    read_reply(response).await
}

/// A response's status, version and body as text.
pub async fn read_reply<B>(response: Response<B>) -> (StatusCode, Version, String)
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    (parts.status, parts.version, text)
}
