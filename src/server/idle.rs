//! Idle by progress: when a connection has gone quiet long enough to
//! close, and when one must be dropped.
//!
//! Bytes on the wire do not count as life: HTTP/2 PINGs and window updates
//! would keep a connection that serves nothing, or whose client reads
//! nothing, open for ever. Progress does: a request arriving, an answer
//! beginning, a piece of an answer handed over, and on HTTP/1.1 bytes
//! written ([`Progress`]). [`IdleWatch`] turns that into decisions:
//!
//! - no request head within `header_read_timeout` of the start: drop;
//! - no progress for `idle_timeout`, with nothing waiting on the upstream:
//!   close gracefully (requests in flight finish; HTTP/2 sends GOAWAY);
//! - still no progress a whole period after that: drop (the client
//!   stopped reading, or left its HTTP/2 window shut);
//! - any one answer that hands over nothing for two periods, while others
//!   move: drop ([`Progress::an_answer_stalled`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::Limits;
use crate::http::phases::Outcome;
use crate::upstream::body::{Body, BoxError};

/// Told once how a response body ended and how many bytes went out (the
/// access log's last phase).
pub(crate) trait BodyEnd: Unpin {
    /// The body ended so, after `bytes` bytes.
    fn end(self, outcome: Outcome, bytes: u64);
}

/// What a connection's requests are doing, for its idle timeout: when one
/// last made progress (arrived, got its answer, or handed the client
/// another piece of it), and how many are waiting on the upstream (for
/// the response head or the next piece of a body). Bytes on the wire do
/// not count: HTTP/2 PINGs and window updates would keep a connection that
/// serves nothing, or whose client reads nothing, open for ever.
#[derive(Debug)]
pub(crate) struct Progress {
    /// When the connection started.
    origin: tokio::time::Instant,
    /// Milliseconds after `origin` of the last progress.
    last_ms: AtomicU64,
    /// Requests and bodies waiting on the upstream.
    waiting: AtomicUsize,
    /// The clocks of the answers under way (see [`Answer`]): one answer
    /// that stops making progress is a stall even while others move.
    answers: Mutex<Vec<(Weak<AtomicU64>, Option<Duration>)>>,
    /// What the connection speaks, once its first bytes said: on
    /// HTTP/1.1 bytes written count as progress (see [`Written`]).
    protocol: OnceLock<Protocol>,
    /// A request has arrived: the header timeout of the first no longer
    /// applies.
    pub(crate) first_request: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            origin: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            answers: Mutex::new(Vec::new()),
            protocol: OnceLock::new(),
            first_request: AtomicBool::new(false),
        }
    }

    /// Record progress now; returns when, for an answer's own clock.
    pub(crate) fn touch(&self) -> u64 {
        let ms = self.now_ms();
        self.last_ms.store(ms, Ordering::Relaxed);
        ms
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn last(&self) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn is_http1(&self) -> bool {
        self.protocol.get() == Some(&Protocol::Http1)
    }

    /// A clock for a new answer, started now, with its own stall limit
    /// (a stream's) or the connection's.
    fn register_answer(&self, limit: Option<Duration>) -> Arc<AtomicU64> {
        let clock = Arc::new(AtomicU64::new(self.now_ms()));
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.retain(|(answer, _)| answer.strong_count() > 0);
        answers.push((Arc::downgrade(&clock), limit));
        clock
    }

    /// Whether an answer under way has handed over nothing for `limit`,
    /// whether its client stopped reading or its upstream stopped sending.
    pub(crate) fn an_answer_stalled(&self, limit: Duration) -> bool {
        let now = self.now_ms();
        let ms = |limit: Duration| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        // On HTTP/1.1 the bytes written are the answer's too.
        let written = match self.is_http1() {
            true => self.last_ms.load(Ordering::Relaxed),
            false => 0,
        };
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.iter().any(|(clock, own)| {
            let Some(clock) = clock.upgrade() else {
                return false;
            };
            let last = clock.load(Ordering::Relaxed).max(written);
            now.saturating_sub(last) >= ms(own.unwrap_or(limit))
        })
    }
}

/// Which protocol a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// The connection's IO. On HTTP/1.1 every byte written is progress: an
/// answer's tail can sit in hyper's and the kernel's buffers long after
/// its last piece was handed over, and a client draining it slowly is
/// still reading. On HTTP/2 writes do not count, as PING and SETTINGS
/// replies are writes a client can call for at will; there the answers'
/// own pieces are the measure (HTTP/2 flow control keeps their tails
/// short).
pub(crate) struct Written<I> {
    pub(crate) io: I,
    pub(crate) progress: Arc<Progress>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Written<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.progress.protocol.get().is_none() && buf.filled().len() > before {
            // Every HTTP/2 connection starts with its preface, `PRI * ...`;
            // no HTTP/1.1 request starts with the method `PRI`.
            let _ = this
                .progress
                .protocol
                .set(if buf.filled()[before..].starts_with(b"PRI") {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                });
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> Written<I> {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) && self.progress.is_http1() {
            self.progress.touch();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Written<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Counts as waiting on the upstream while it lives.
pub(crate) struct Waiting(Arc<Progress>);

impl Waiting {
    pub(crate) fn enter(progress: &Arc<Progress>) -> Waiting {
        progress.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(progress))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body on its way to the client: each piece handed over is
/// progress, and while it waits for its next piece (an upstream that
/// streams slowly) the connection is not idle. Pieces are at most
/// [`MAX_PIECE`] bytes, so a client that reads steadily makes progress
/// steadily, however large the frames it is sent. When the body ends, or
/// is dropped before its end, it tells its [`BodyEnd`] how, and how many
/// bytes went out.
pub(crate) struct ProgressBody<E: BodyEnd> {
    body: Body,
    progress: Arc<Progress>,
    /// Told once how the body ended.
    end: Option<E>,
    /// Bytes handed over so far.
    sent: u64,
    /// When this answer last handed over a piece (or began), in
    /// milliseconds after the connection's origin: the connection's
    /// watchdog reads it.
    clock: Arc<AtomicU64>,
    /// What is left of a frame larger than a piece.
    rest: Option<bytes::Bytes>,
    /// Held while the last poll found no piece ready.
    waiting: Option<Waiting>,
}

/// The most bytes an answer hands over at once.
const MAX_PIECE: usize = 64 * 1024;

impl<E: BodyEnd> ProgressBody<E> {
    /// A body handed over on `progress`'s connection; `stream_idle` is
    /// its own stall limit, for an event stream or a rule's
    /// `stream_idle_timeout` (otherwise two idle periods).
    pub(crate) fn new(
        body: Body,
        progress: Arc<Progress>,
        end: E,
        stream_idle: Option<Duration>,
    ) -> ProgressBody<E> {
        let clock = progress.register_answer(stream_idle);
        ProgressBody {
            body,
            progress,
            end: Some(end),
            sent: 0,
            clock,
            rest: None,
            waiting: None,
        }
    }

    /// Tell the end hook, once.
    fn ended(&mut self, outcome: Outcome) {
        if let Some(end) = self.end.take() {
            end.end(outcome, self.sent);
        }
    }

    /// Hand over at most a piece of `data`, keeping the rest for the next
    /// poll.
    fn piece(&mut self, mut data: bytes::Bytes) -> bytes::Bytes {
        if data.len() > MAX_PIECE {
            self.rest = Some(data.split_off(MAX_PIECE));
        }
        self.made_progress();
        self.sent += data.len() as u64;
        data
    }

    fn made_progress(&self) {
        let ms = self.progress.touch();
        self.clock.store(ms, Ordering::Relaxed);
    }
}

impl<E: BodyEnd> http_body::Body for ProgressBody<E> {
    type Data = bytes::Bytes;
    type Error = crate::upstream::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = self.as_mut().poll_piece(cx);
        match &polled {
            Poll::Ready(None) => self.ended(Outcome::Complete),
            Poll::Ready(Some(Err(_))) => self.ended(Outcome::Failed),
            // The server stops polling once `is_end_stream` says so.
            Poll::Ready(Some(Ok(_))) if self.is_end_stream() => self.ended(Outcome::Complete),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.body.size_hint();
        if let Some(rest) = &self.rest {
            let extra = rest.len() as u64;
            match hint.exact() {
                Some(exact) => hint.set_exact(exact + extra),
                None => {
                    if let Some(upper) = hint.upper() {
                        hint.set_upper(upper + extra);
                    }
                    hint.set_lower(hint.lower() + extra);
                }
            }
        }
        hint
    }
}

impl<E: BodyEnd> ProgressBody<E> {
    /// The next piece: what is left of a large frame, else the body's
    /// next frame, cut to a piece.
    fn poll_piece(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        if let Some(rest) = self.rest.take() {
            let piece = self.piece(rest);
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_pending() {
            if self.waiting.is_none() {
                self.waiting = Some(Waiting::enter(&self.progress));
            }
            return Poll::Pending;
        }
        self.waiting = None;
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let piece = self.piece(data);
                    Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
                }
                Err(frame) => {
                    self.made_progress();
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            other => {
                self.made_progress();
                other
            }
        }
    }
}

impl<E: BodyEnd> Drop for ProgressBody<E> {
    fn drop(&mut self) {
        // hyper never polls a body that is empty from the start (a HEAD,
        // a 304): that one is complete, any other is cut short.
        let outcome = if self.rest.is_none() && self.body.is_end_stream() {
            Outcome::Complete
        } else {
            Outcome::Aborted
        };
        self.ended(outcome);
    }
}

/// What the idle clock says when it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do before the next look.
    Wait,
    /// Close gracefully: requests in flight finish.
    Close,
    /// Drop the connection now, for this reason.
    Drop(&'static str),
}

/// A connection's idle clock: when to look next, and what to do then.
#[derive(Debug)]
pub(crate) struct IdleWatch {
    progress: Arc<Progress>,
    /// `limits.idle_timeout`.
    idle: Duration,
    /// When the first request's head must have arrived by.
    first_head_by: Instant,
    /// Idleness counts from the last progress, or from the last time
    /// something was still waiting on the upstream, whichever is later.
    quiet_since: Instant,
    /// The connection was asked to close (idle, or the server shutting
    /// down): the next quiet period drops it.
    closing: bool,
}

impl IdleWatch {
    /// The clock of a connection starting now.
    pub(crate) fn new(progress: Arc<Progress>, limits: &Limits) -> IdleWatch {
        let now = Instant::now();
        IdleWatch {
            quiet_since: progress.last(),
            progress,
            idle: limits.idle_timeout,
            first_head_by: now + limits.header_read_timeout,
            closing: false,
        }
    }

    /// When to look next.
    pub(crate) fn next_look(&self) -> Instant {
        let idle_at = self.progress.last().max(self.quiet_since) + self.idle;
        if self.progress.first_request.load(Ordering::Relaxed) {
            idle_at
        } else {
            idle_at.min(self.first_head_by)
        }
    }

    /// The connection was asked to close at `now` (the server shuts down).
    pub(crate) fn asked_to_close(&mut self, now: Instant) {
        self.closing = true;
        self.quiet_since = now;
    }

    /// Whether the connection was asked to close already.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Look at the connection at `now`.
    pub(crate) fn look(&mut self, now: Instant) -> Verdict {
        let first_request = self.progress.first_request.load(Ordering::Relaxed);
        if !first_request && now >= self.first_head_by {
            return Verdict::Drop("no request head within the header timeout");
        }
        if self.progress.last().max(self.quiet_since) + self.idle > now {
            return Verdict::Wait; // progress meanwhile, or not yet due
        }
        self.quiet_since = now;
        if self.progress.waiting.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait;
        }
        if self.closing {
            return Verdict::Drop("no progress a whole idle period after a close");
        }
        self.closing = true;
        Verdict::Close
    }

    /// Whether one answer under way has handed over nothing for two idle
    /// periods: its client not reading or its upstream not sending. Other
    /// streams moving must not keep it, and its upstream slot, for ever.
    pub(crate) fn an_answer_stalled(&self) -> bool {
        self.progress.an_answer_stalled(self.idle.saturating_mul(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::body::testing::fed;
    use http_body_util::BodyExt;

    const IDLE: Duration = Duration::from_secs(60);
    const HEAD: Duration = Duration::from_secs(10);

    fn limits() -> Limits {
        Limits {
            idle_timeout: IDLE,
            header_read_timeout: HEAD,
            ..Limits::default()
        }
    }

    fn watch() -> (Arc<Progress>, IdleWatch) {
        let progress = Arc::new(Progress::new());
        let watch = IdleWatch::new(Arc::clone(&progress), &limits());
        (progress, watch)
    }

    /// A request arrived now, as the server's service records it.
    fn request_arrives(progress: &Progress) {
        progress.first_request.store(true, Ordering::Relaxed);
        progress.touch();
    }

    /// Sleep until the watch's next look, then look.
    async fn next(watch: &mut IdleWatch) -> Verdict {
        tokio::time::sleep_until(watch.next_look()).await;
        watch.look(Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_head_is_dropped_at_the_header_timeout() {
        let (_progress, mut watch) = watch();
        let started = Instant::now();
        assert_eq!(
            next(&mut watch).await,
            Verdict::Drop("no request head within the header timeout")
        );
        assert_eq!(started.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_closed_after_an_idle_period_then_dropped_after_another() {
        let (progress, mut watch) = watch();
        request_arrives(&progress);
        let started = Instant::now();
        assert_eq!(next(&mut watch).await, Verdict::Close);
        assert_eq!(started.elapsed(), IDLE);
        assert!(watch.is_closing());
        assert_eq!(
            next(&mut watch).await,
            Verdict::Drop("no progress a whole idle period after a close")
        );
        assert_eq!(started.elapsed(), IDLE * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_pushes_the_idle_deadline_and_waiting_on_the_upstream_holds_it() {
        let (progress, mut watch) = watch();
        request_arrives(&progress);
        tokio::time::sleep(IDLE / 2).await;
        progress.touch();
        let started = Instant::now();
        assert_eq!(next(&mut watch).await, Verdict::Close);
        assert_eq!(started.elapsed(), IDLE, "counted from the last progress");

        let (progress, mut watch) = self::watch();
        request_arrives(&progress);
        let waiting = Waiting::enter(&progress);
        for _ in 0..3 {
            assert_eq!(
                next(&mut watch).await,
                Verdict::Wait,
                "waiting on the upstream"
            );
        }
        drop(waiting);
        assert_eq!(next(&mut watch).await, Verdict::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_close_drops_the_connection_one_quiet_period_later() {
        let (progress, mut watch) = watch();
        request_arrives(&progress);
        tokio::time::sleep(IDLE / 4).await;
        watch.asked_to_close(Instant::now());
        let asked = Instant::now();
        assert!(matches!(next(&mut watch).await, Verdict::Drop(_)));
        assert_eq!(asked.elapsed(), IDLE);
    }

    /// Counts how bodies end, for the tests.
    #[derive(Debug, Default, Clone)]
    struct Ends(Arc<Mutex<Vec<(Outcome, u64)>>>);

    impl BodyEnd for Ends {
        fn end(self, outcome: Outcome, bytes: u64) {
            self.0.lock().expect("lock").push((outcome, bytes));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_hands_over_nothing_for_two_periods_is_a_stall() {
        let (progress, watch) = watch();
        request_arrives(&progress);
        let (tx, body) = fed();
        let ends = Ends::default();
        let body = crate::upstream::body::boxed(body);
        let mut answer = ProgressBody::new(body, Arc::clone(&progress), ends.clone(), None);
        tx.send(bytes::Bytes::from_static(b"first")).expect("send");
        let first = answer.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "first");
        tokio::time::sleep(IDLE * 2 - Duration::from_secs(1)).await;
        assert!(!watch.an_answer_stalled());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(watch.an_answer_stalled(), "two periods without a piece");
        drop(answer);
        assert!(!watch.an_answer_stalled(), "a dropped answer is no stall");
        assert_eq!(*ends.0.lock().expect("lock"), [(Outcome::Aborted, 5)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_has_its_own_stall_limit() {
        let (progress, watch) = watch();
        request_arrives(&progress);
        let (_tx, body) = fed();
        let body = crate::upstream::body::boxed(body);
        let stream = Duration::from_secs(600);
        let answer = ProgressBody::new(body, Arc::clone(&progress), Ends::default(), Some(stream));
        tokio::time::sleep(IDLE * 5).await;
        assert!(
            !watch.an_answer_stalled(),
            "five idle periods between events"
        );
        tokio::time::sleep(stream - IDLE * 5).await;
        assert!(watch.an_answer_stalled(), "the stream's own limit");
        drop(answer);
    }

    #[tokio::test]
    async fn a_body_tells_how_it_ended_and_what_went_out() {
        let progress = Arc::new(Progress::new());
        let ends = Ends::default();
        let whole = crate::upstream::body::boxed(http_body_util::Full::new(bytes::Bytes::from(
            vec![b'x'; MAX_PIECE + 10],
        )));
        let answer = ProgressBody::new(whole, Arc::clone(&progress), ends.clone(), None);
        let collected = answer.collect().await.expect("body").to_bytes();
        assert_eq!(collected.len(), MAX_PIECE + 10);
        let empty = ProgressBody::new(
            crate::upstream::body::boxed(http_body_util::Empty::new()),
            progress,
            ends.clone(),
            None,
        );
        drop(empty);
        assert_eq!(
            *ends.0.lock().expect("lock"),
            [
                (Outcome::Complete, (MAX_PIECE + 10) as u64),
                (Outcome::Complete, 0)
            ]
        );
    }
}
