//! Server-sent events and long answers through the real server: an event
//! stream may pause longer than the connection's idle clock allows an
//! ordinary answer, and every event reaches the client as soon as the
//! upstream sends it.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;

/// When each event left the upstream.
type Sent = Arc<Mutex<Vec<Instant>>>;

/// `events` events `every` apart, each stamped when it is handed to hyper.
struct Events {
    left: usize,
    every: Duration,
    next: Pin<Box<tokio::time::Sleep>>,
    sent: Sent,
}

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(std::future::Future::poll(self.next.as_mut(), cx));
        self.left -= 1;
        let every = self.every;
        self.next
            .as_mut()
            .reset(tokio::time::Instant::now() + every);
        self.sent.lock().unwrap().push(Instant::now());
        let event = format!("data: event {}\n\n", self.left);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}

/// An upstream that answers every request with `events` parts `every`
/// apart, as `content_type`.
async fn upstream(events: usize, every: Duration, content_type: &'static str) -> (String, Sent) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent: Sent = Arc::default();
    let stamps = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let stamps = Arc::clone(&stamps);
            let service = service_fn(move |_request: Request<Incoming>| {
                let body = Events {
                    left: events,
                    every,
                    next: Box::pin(tokio::time::sleep(every)),
                    sent: Arc::clone(&stamps),
                };
                let mut response = Response::new(body);
                response
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), sent)
}

/// The parts of the answer to `url` and when each arrived, and whether
/// the body ended cleanly.
async fn read_parts(url: &str) -> (Vec<Instant>, bool) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let response = client.get(url.parse().unwrap()).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut arrived = Vec::new();
    loop {
        match body.frame().await {
            None => return (arrived, true),
            Some(Err(_)) => return (arrived, false),
            Some(Ok(frame)) => {
                if frame.is_data() {
                    arrived.push(Instant::now());
                }
            }
        }
    }
}

const PAGES: &str = "[limits]\nidle_timeout = \"1s\"\n[[pages]]\npath = \"/feed/**\"\naccess = \"public\"\n[[pages]]\npath = \"/poll/**\"\naccess = \"public\"\nstream_idle_timeout = \"5s\"\n";

#[tokio::test]
async fn an_event_stream_outlives_the_idle_clock_and_each_event_arrives_at_once() {
    // Pauses of 2.5 s: more than two idle periods of 1 s.
    let (url, sent) = upstream(3, Duration::from_millis(2_500), "text/event-stream").await;
    let gate = GateProcess::start(&config_for(&url, PAGES)).await;
    let (arrived, complete) = read_parts(&gate.url("/feed/live")).await;
    assert!(complete, "the stream was cut");
    let sent = sent.lock().unwrap().clone();
    assert_eq!(arrived.len(), 3);
    assert_eq!(sent.len(), 3);
    for (sent, arrived) in sent.iter().zip(&arrived) {
        let delay = arrived.saturating_duration_since(*sent);
        assert!(
            delay < Duration::from_millis(100),
            "an event took {delay:?}"
        );
    }
    gate.stop().await;
}

#[tokio::test]
async fn an_ordinary_answer_that_pauses_as_long_is_cut_unless_its_rule_says_otherwise() {
    let (url, _sent) = upstream(3, Duration::from_millis(2_500), "text/plain").await;
    let gate = GateProcess::start(&config_for(&url, PAGES)).await;
    let (arrived, complete) = read_parts(&gate.url("/public/slow")).await;
    assert!(
        !complete && arrived.len() < 3,
        "{} parts, complete {complete}",
        arrived.len()
    );
    // /poll/** has stream_idle_timeout = 5s: the same answer passes.
    let (arrived, complete) = read_parts(&gate.url("/poll/slow")).await;
    assert!(complete && arrived.len() == 3);
    gate.stop().await;
}
