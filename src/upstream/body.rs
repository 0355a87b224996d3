//! The one response body type the gate hands to hyper.
//!
//! Upstream bodies stream through as they are; the gate's own answers are
//! small buffers. Both are boxed into [`Body`] so every handler returns the
//! same type.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

/// Any error a body can fail with while streaming.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: a streamed upstream body or a small buffer of ours.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// Box any body whose error converts into [`BoxError`].
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// What to do once a body has yielded its last frame; dropped undone when
/// the body is dropped before its end.
pub(crate) trait AtEnd {
    /// The body ended.
    fn at_end(self);
}

/// `inner`, which does [`AtEnd::at_end`] once it has yielded its last frame
/// (at once when it is empty from the start).
pub(crate) struct OnEnd<B, E> {
    inner: B,
    at_end: Option<E>,
}

impl<B, E> std::fmt::Debug for OnEnd<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnEnd")
            .field("ended", &self.at_end.is_none())
            .finish_non_exhaustive()
    }
}

impl<B: http_body::Body + Unpin, E: AtEnd> OnEnd<B, E> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: B, at_end: E) -> OnEnd<B, E> {
        let mut body = OnEnd {
            inner,
            at_end: Some(at_end),
        };
        if body.inner.is_end_stream() {
            body.end();
        }
        body
    }

    fn end(&mut self) {
        if let Some(at_end) = self.at_end.take() {
            at_end.at_end();
        }
    }
}

impl<B: http_body::Body + Unpin, E: AtEnd + Unpin> http_body::Body for OnEnd<B, E> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // The server stops polling once `is_end_stream` says so, so the
        // last frame may be the last poll.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended {
            self.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bodies for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::mpsc;

    /// A body the test feeds piece by piece; it ends when the sender goes.
    #[derive(Debug)]
    pub(crate) struct Fed(mpsc::UnboundedReceiver<Bytes>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|piece| piece.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    /// A fed body and the sender that feeds it.
    pub(crate) fn fed() -> (mpsc::UnboundedSender<Bytes>, Fed) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Fed(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Flag(Arc<AtomicBool>);

    impl AtEnd for Flag {
        fn at_end(self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flagged<B: http_body::Body + Unpin>(inner: B) -> (OnEnd<B, Flag>, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (OnEnd::new(inner, Flag(Arc::clone(&flag))), flag)
    }

    #[tokio::test]
    async fn on_end_runs_once_the_last_frame_is_out_and_never_when_dropped_before() {
        let (empty, ended) = flagged(Empty::<Bytes>::new());
        assert!(ended.load(Ordering::SeqCst), "an empty body ends at once");
        drop(empty);

        let (mut full, ended) = flagged(Full::new(Bytes::from_static(b"answer")));
        assert!(!ended.load(Ordering::SeqCst));
        let frame = full.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().expect("data"), "answer");
        assert!(ended.load(Ordering::SeqCst), "ended with its last frame");

        let (unread, ended) = flagged(Full::new(Bytes::from_static(b"answer")));
        drop(unread);
        assert!(!ended.load(Ordering::SeqCst), "dropped before its end");
    }
}
