//! [`Injected`]: an HTML body streamed through lol-html's rewriter, which
//! inserts one tag at the end of `<head>` (without a `</head>`, before
//! `</body>`; without either, at the end). Every other byte passes as it
//! came, chunk by chunk: nothing waits for the whole page.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame};
use lol_html::errors::RewritingError;
use lol_html::html_content::{ContentType, DocumentEnd, EndTag};
use lol_html::{element, end, send, HandlerResult, MemorySettings, OutputSink};

use crate::upstream::body::{Body, BoxError};

/// The most the rewriter may hold at once. It holds only what it has not
/// yet parsed: a start tag split across chunks, until its `>`. A longer
/// tag (a huge inline attribute) ends rewriting, and the rest of the page
/// passes unchanged (lol-html's graceful bail-out hands over every byte
/// it held), so the limit bounds memory and never breaks a page.
pub(crate) const MAX_REWRITER_MEMORY: usize = 256 * 1024;

/// The rewriter's output, drained by the body on every poll. Shared
/// because the rewriter owns its sink; the lock is never contended (one
/// body, polled by one task).
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    /// What the rewriter wrote since the last call, if anything.
    fn take(&self) -> Option<Bytes> {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(&mut *out)))
    }

    fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

impl OutputSink for Output {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend_from_slice(chunk);
    }
}

/// lol-html's `Send` rewriter: hyper needs a `Send` body.
type Rewriter = send::HtmlRewriter<'static, Output>;

/// Where the body is in its life.
enum Stage {
    /// Every chunk goes through the rewriter. In a `Mutex` only for
    /// `Sync` (the boxed body type needs it); `get_mut` never locks.
    Rewriting(Box<Mutex<Rewriter>>),
    /// The rewriter gave up on memory: chunks pass as they come.
    Passing,
    /// The upstream body has ended (or failed): only output and trailers
    /// are left.
    Ended,
}

/// The rewriter failed (a parsing ambiguity lol-html will not guess at):
/// the answer ends with this error rather than as a page cut or garbled
/// without a word.
#[derive(Debug, thiserror::Error)]
#[error("the frame script could not be inserted: {0}")]
pub(crate) struct RewriteFailed(String);

/// An upstream HTML body with the frame script's tag inserted.
pub(crate) struct Injected {
    /// The upstream's body, read chunk by chunk.
    upstream: Body,
    stage: Stage,
    /// What the rewriter has written and the client has not yet been given.
    output: Output,
    /// The upstream's trailers, given after the last of the output.
    trailers: Option<http::HeaderMap>,
    /// Whether a chunk has been seen yet (the byte-order-mark check).
    started: bool,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Rewriting(_) => "rewriting",
            Stage::Passing => "passing",
            Stage::Ended => "ended",
        };
        f.debug_struct("Injected")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

impl Injected {
    /// `upstream`, with `tag` (HTML, already escaped) inserted once.
    pub(crate) fn new(upstream: Body, tag: &str) -> Injected {
        let output = Output::default();
        let tag: Arc<str> = Arc::from(tag);
        let inserted = Arc::new(AtomicBool::new(false));
        let memory = MemorySettings::new()
            .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
            .with_graceful_bail_out_on_memory_limit_exceeded(true);
        let settings = send::Settings::new_send()
            .append_element_content_handler(element!("head", before_end_tag(&tag, &inserted)))
            .append_element_content_handler(element!("body", before_end_tag(&tag, &inserted)))
            .append_document_content_handler(end!(at_document_end(tag, inserted)))
            .with_memory_settings(memory);
        let rewriter = Rewriter::new(settings, output.clone());
        Injected {
            upstream,
            stage: Stage::Rewriting(Box::new(Mutex::new(rewriter))),
            output,
            trailers: None,
            started: false,
        }
    }

    /// Take one frame of the upstream's: data into the rewriter (or, once
    /// it gave up, back out as it is: `Ok(Some)`), the end or trailers end
    /// the rewriter, and an error is passed on.
    fn step(
        &mut self,
        polled: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Result<Option<Bytes>, BoxError> {
        match polled {
            None => self.finish().map(|()| None),
            Some(Err(error)) => {
                self.stage = Stage::Ended;
                Err(error)
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let direct = self.feed(data)?;
                    if self.upstream.is_end_stream() {
                        self.finish()?;
                    }
                    Ok(direct)
                }
                Err(frame) => {
                    self.trailers = frame.into_trailers().ok();
                    self.finish().map(|()| None)
                }
            },
        }
    }

    /// Write `data` to the rewriter; `Ok(Some(data))` when it passes as is.
    fn feed(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        let first = !std::mem::replace(&mut self.started, true);
        let Stage::Rewriting(rewriter) = &mut self.stage else {
            return Ok(Some(data));
        };
        // A UTF-16 byte-order mark: lol-html reads ASCII-compatible
        // encodings only, so the page is left alone.
        if first && (data.starts_with(&[0xFE, 0xFF]) || data.starts_with(&[0xFF, 0xFE])) {
            self.stage = Stage::Passing;
            return Ok(Some(data));
        }
        let rewriter = rewriter.get_mut().unwrap_or_else(PoisonError::into_inner);
        let result = rewriter.write(&data);
        self.settle(result).map(|()| None)
    }

    /// End the rewriter, which writes what it still held (and, without a
    /// head or body end tag, the tag itself).
    fn finish(&mut self) -> Result<(), BoxError> {
        match std::mem::replace(&mut self.stage, Stage::Ended) {
            Stage::Rewriting(rewriter) => {
                let rewriter = rewriter
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                let result = rewriter.end();
                self.settle(result)?;
                self.stage = Stage::Ended;
                Ok(())
            }
            Stage::Passing | Stage::Ended => Ok(()),
        }
    }

    /// What a rewriter error means: past the memory limit, the rest passes
    /// unchanged; anything else ends the answer with an error, logged.
    fn settle(&mut self, result: Result<(), RewritingError>) -> Result<(), BoxError> {
        match result {
            Ok(()) => Ok(()),
            Err(RewritingError::MemoryLimitExceeded(_)) => {
                tracing::warn!(
                    limit = MAX_REWRITER_MEMORY,
                    "frame script: a tag longer than the rewriter may hold; the rest of the page passes unchanged"
                );
                self.stage = Stage::Passing;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "frame script: the HTML rewriter failed; the answer ends with an error");
                self.stage = Stage::Ended;
                Err(Box::new(RewriteFailed(error.to_string())))
            }
        }
    }
}

/// A handler for `head` or `body`: the tag goes before the element's end
/// tag, unless it went in already. (lol-html calls no end-tag handler for
/// an element closed implicitly: then the next place takes it.)
fn before_end_tag(
    tag: &Arc<str>,
    inserted: &Arc<AtomicBool>,
) -> impl FnMut(&mut send::Element<'_, '_>) -> HandlerResult + Send + 'static {
    let (tag, inserted) = (Arc::clone(tag), Arc::clone(inserted));
    move |element| {
        let (tag, inserted) = (Arc::clone(&tag), Arc::clone(&inserted));
        if let Some(handlers) = element.end_tag_handlers() {
            handlers.push(Box::new(move |end: &mut EndTag<'_>| {
                if !inserted.swap(true, Ordering::Relaxed) {
                    end.before(&tag, ContentType::Html);
                }
                Ok(())
            }));
        }
        Ok(())
    }
}

/// The last place: the end of the document, for a page with neither a
/// `</head>` nor a `</body>`.
fn at_document_end(
    tag: Arc<str>,
    inserted: Arc<AtomicBool>,
) -> impl FnOnce(&mut DocumentEnd<'_>) -> HandlerResult + Send + 'static {
    move |end| {
        if !inserted.swap(true, Ordering::Relaxed) {
            end.append(&tag, ContentType::Html);
        }
        Ok(())
    }
}

impl http_body::Body for Injected {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.output.take() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if matches!(this.stage, Stage::Ended) {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let polled = ready!(Pin::new(&mut this.upstream).poll_frame(cx));
            match this.step(polled) {
                Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.stage, Stage::Ended) && self.trailers.is_none() && self.output.is_empty()
    }
}
