//! A request body on its way to the upstream.
//!
//! A body costs the upstream side something only once the gate holds an
//! slot and an upstream connection for it, so the gate first reads
//! the start of the body on its own, up to [`BUFFERED_BODY`] bytes within
//! `limits.body_timeout` ([`Upload::read`]). Most bodies (forms, JSON) end
//! there: they go upstream whole, and a client that sends half a body and
//! stops holds nothing upstream. A longer body then streams, and must keep
//! coming: a pause longer than `limits.body_timeout` between two of its
//! pieces ends it ([`UploadError::Stalled`], a 408 when the upstream has
//! not answered yet). So a client cannot hold an upstream connection by
//! sending slowly for longer than that, however long `upstream.timeout`.
//!
//! Trailers of a request body are not forwarded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::upstream::body::BoxError;

/// The most bytes of a body the gate reads before it takes an upstream
/// slot (nginx's `client_body_buffer_size` is the same on 64-bit).
pub(crate) const BUFFERED_BODY: usize = 16 * 1024;

/// Why a request body could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// The client sent nothing more for `limits.body_timeout`.
    #[error("the request body stalled")]
    Stalled,
    /// The client's body broke (bad chunked framing, a reset stream).
    #[error("the request body is malformed: {0}")]
    Client(#[source] BoxError),
}

/// A request body for the upstream: none, read whole, or read in part and
/// streaming the rest.
#[derive(Debug)]
pub(crate) struct Upload<B = Incoming> {
    /// The pieces read already, in order.
    read: VecDeque<Bytes>,
    /// The rest of a body longer than [`BUFFERED_BODY`].
    rest: Option<Rest<B>>,
}

/// The streaming part of a long body, with its pause limit.
#[derive(Debug)]
struct Rest<B> {
    body: B,
    /// The longest pause between two pieces.
    pause: Duration,
    /// When the current pause runs out.
    deadline: Pin<Box<Sleep>>,
}

impl<B> Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// No body at all.
    pub(crate) fn empty() -> Upload<B> {
        Upload {
            read: VecDeque::new(),
            rest: None,
        }
    }

    /// Whether there is no body: a connection that carried this request
    /// may carry another, as no byte of it can be left unread upstream.
    pub(crate) fn is_empty(&self) -> bool {
        self.read.is_empty() && self.rest.is_none()
    }

    /// Read `body` up to [`BUFFERED_BODY`] bytes (or its end) within
    /// `timeout`; the rest, if any, streams with pauses of at most
    /// `timeout`.
    pub(crate) async fn read(mut body: B, timeout: Duration) -> Result<Upload<B>, UploadError> {
        let mut read = VecDeque::new();
        let mut len = 0;
        let deadline = Instant::now() + timeout;
        while !body.is_end_stream() {
            if len >= BUFFERED_BODY {
                let rest = Rest {
                    body,
                    pause: timeout,
                    deadline: Box::pin(tokio::time::sleep(timeout)),
                };
                return Ok(Upload {
                    read,
                    rest: Some(rest),
                });
            }
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_elapsed| UploadError::Stalled)?;
            match frame {
                None => break,
                Some(Err(error)) => return Err(UploadError::Client(error.into())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            len += data.len();
                            read.push_back(data);
                        }
                    }
                }
            }
        }
        Ok(Upload { read, rest: None })
    }
}

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = UploadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        if let Some(piece) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut rest.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                rest.deadline.as_mut().reset(Instant::now() + rest.pause);
                match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    // Trailers: not forwarded; the body ends here.
                    Err(_trailers) => {
                        self.rest = None;
                        Poll::Ready(None)
                    }
                }
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(UploadError::Client(error.into()))))
            }
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => match rest.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(UploadError::Stalled))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(|r| r.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|piece| piece.len() as u64).sum();
        let mut hint = match &self.rest {
            None => SizeHint::with_exact(0),
            Some(rest) => rest.body.size_hint(),
        };
        match hint.exact() {
            Some(exact) => hint.set_exact(exact + read),
            None => {
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + read);
                }
                hint.set_lower(hint.lower() + read);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::body::testing::fed;
    use http_body_util::Full;

    const PAUSE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_small_body_is_read_whole_and_an_empty_one_is_empty() {
        let small = Full::new(Bytes::from_static(b"name=ada"));
        let upload = Upload::read(small, PAUSE).await.expect("read");
        assert!(upload.rest.is_none() && !upload.is_empty());
        assert_eq!(upload.size_hint().exact(), Some(8));
        let bytes = upload.collect().await.expect("body").to_bytes();
        assert_eq!(bytes, "name=ada");

        let none = Full::new(Bytes::new());
        let upload = Upload::read(none, PAUSE).await.expect("read");
        assert!(upload.is_empty() && upload.is_end_stream());
        assert!(Upload::<Full<Bytes>>::empty().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_before_its_buffered_part_is_read_is_stalled() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"half a form")).expect("send");
        let started = Instant::now();
        let read = Upload::read(body, PAUSE).await;
        assert!(matches!(read, Err(UploadError::Stalled)), "{read:?}");
        assert_eq!(started.elapsed(), PAUSE);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_body_streams_its_rest_and_may_pause_at_most_the_timeout() {
        let (tx, body) = fed();
        tx.send(Bytes::from(vec![b'a'; BUFFERED_BODY]))
            .expect("send");
        let mut upload = Upload::read(body, PAUSE).await.expect("read");
        assert!(upload.rest.is_some(), "the rest streams");
        let first = upload.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data").len(), BUFFERED_BODY);

        // Pieces within the pause limit pass, each one restarting it.
        for _ in 0..3 {
            tokio::time::sleep(PAUSE - Duration::from_secs(1)).await;
            tx.send(Bytes::from_static(b"more")).expect("send");
            let piece = upload.frame().await.expect("frame").expect("data");
            assert_eq!(piece.into_data().expect("data"), "more");
        }
        // Then a pause of the whole limit ends it.
        let started = Instant::now();
        let stalled = upload.frame().await.expect("an error, not the end");
        assert!(matches!(stalled, Err(UploadError::Stalled)));
        assert_eq!(started.elapsed(), PAUSE);
    }

    #[tokio::test]
    async fn a_long_body_that_ends_is_forwarded_whole() {
        let (tx, body) = fed();
        tx.send(Bytes::from(vec![b'a'; BUFFERED_BODY + 1]))
            .expect("send");
        tx.send(Bytes::from_static(b"tail")).expect("send");
        drop(tx);
        let upload = Upload::read(body, PAUSE).await.expect("read");
        let bytes = upload.collect().await.expect("body").to_bytes();
        assert_eq!(bytes.len(), BUFFERED_BODY + 1 + 4);
        assert!(bytes.ends_with(b"atail"));
    }
}
