//! The frame side of the embed through the real server: the frame script
//! the gate serves (`embed.frame_script_path`), and its tag inserted into
//! the upstream's HTML for a frame (`embed.inject_frame_script`).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

const TAG: &str = "<script src=\"/embed-frame.js\" defer></script>";

async fn gate_with(extra: &str) -> (RecordingUpstream, GateProcess) {
    let upstream = RecordingUpstream::start().await;
    let gate = GateProcess::start(&config_for(&upstream.url(), extra)).await;
    (upstream, gate)
}

/// A frame's navigation, whose answer the recording upstream makes
/// `text/html` (plus `extra` answer headers).
fn frame_get(url: &str, extra: &[&str]) -> Call {
    let call = get(url)
        .header("sec-fetch-dest", "iframe")
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .header(
            "x-test-answer-header",
            "content-type: text/html; charset=utf-8",
        );
    extra.iter().fold(call, |call, answer| {
        call.header("x-test-answer-header", answer)
    })
}

#[tokio::test]
async fn the_frame_script_is_the_gates_own_with_the_allowed_origins_baked_in() {
    let (upstream, gate) = gate_with(
        "[embed]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:3000\"]\n",
    )
    .await;
    let reply = get(&gate.url("/embed-frame.js")).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    assert!(
        reply.body.contains(
            r#"const PARENT_ORIGINS = ["https://app.example.com","http://localhost:3000"];"#
        ),
        "{}",
        reply.body
    );
    let etag = reply.header("etag").expect("ETag").to_string();
    let again = get(&gate.url("/embed-frame.js"))
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(upstream.seen().is_empty(), "the gate serves its own script");
    gate.stop().await;

    // Another list, another script and another tag; none: any parent.
    let (upstream, gate) = gate_with("").await;
    let reply = get(&gate.url("/embed-frame.js")).send().await;
    assert!(reply.body.contains("const PARENT_ORIGINS = [];"));
    assert_ne!(reply.header("etag"), Some(etag.as_str()));
    assert!(upstream.seen().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn the_frame_script_path_is_configurable_and_the_default_then_is_a_portal_path() {
    let (upstream, gate) = gate_with("[embed]\nframe_script_path = \"/static/frame.js\"\n").await;
    let reply = get(&gate.url("/static/frame.js")).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("portal-gate:frame"));
    assert!(upstream.seen().is_empty());
    // `/embed-frame.js` is now a portal path like any other: restricted by
    // default, so refused without a token, and never the gate's script.
    let reply = get(&gate.url("/embed-frame.js")).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.body.contains("portal-gate:frame"));
    gate.stop().await;

    let clash = config_for(
        "http://127.0.0.1:9",
        "[embed]\nframe_script_path = \"/embed.js\"\n",
    );
    let err = portal_gate::Config::parse(&clash, std::path::Path::new("g.toml"))
        .expect_err("two endpoints on one path");
    assert_eq!(err.key.as_deref(), Some("embed.frame_script_path"));
}

#[tokio::test]
async fn a_frames_html_gets_the_tag_and_everything_else_passes_unchanged() {
    let (_upstream, gate) = gate_with("[embed]\ninject_frame_script = true\n").await;
    let reply = frame_get(&gate.url("/public/page"), &[]).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("upstream: /public/page{TAG}"));
    assert_eq!(reply.header("vary"), Some("sec-fetch-dest"));
    let length = reply.header("content-length").map(str::to_owned);
    assert!(length.is_none(), "a stale length: {length:?}");

    // The same page for a top-level navigation: as the upstream sent it.
    let reply = navigate(&gate.url("/public/page"))
        .header("x-test-answer-header", "content-type: text/html")
        .send()
        .await;
    assert_eq!(reply.body, "upstream: /public/page");
    assert_eq!(reply.header("vary"), Some("sec-fetch-dest"));

    // Compressed, not HTML, or behind a policy that blocks the script.
    for answer in [
        "content-encoding: gzip",
        "content-security-policy: script-src 'nonce-abc'",
    ] {
        let reply = frame_get(&gate.url("/public/page"), &[answer]).send().await;
        assert_eq!(reply.body, "upstream: /public/page", "{answer}");
    }
    let reply = get(&gate.url("/public/data"))
        .header("sec-fetch-dest", "iframe")
        .header("x-test-answer-header", "content-type: application/json")
        .send()
        .await;
    assert_eq!(reply.body, "upstream: /public/data");
    gate.stop().await;

    // Off (the default): a frame's page passes unchanged.
    let (_upstream, gate) = gate_with("").await;
    let reply = frame_get(&gate.url("/public/page"), &[]).send().await;
    assert_eq!(reply.body, "upstream: /public/page");
    assert_eq!(reply.header("vary"), None);
    gate.stop().await;
}

/// The upstream's `/drip/` answers come in two halves 1.5 s apart: the
/// rewritten first half reaches the client before the second is sent.
#[tokio::test]
async fn a_rewritten_page_streams_to_the_client() {
    let (_upstream, gate) = gate_with("[embed]\ninject_frame_script = true\n").await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(gate.url("/public/drip/page"))
        .header("sec-fetch-dest", "iframe")
        .header("x-test-answer-header", "content-type: text/html")
        .body(Empty::new())
        .expect("request");
    let started = Instant::now();
    let response = client.request(request).await.expect("answer");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("ok");
    let first_at = started.elapsed();
    let mut text = String::from_utf8(first.into_data().expect("data").to_vec()).expect("utf-8");
    while let Some(frame) = body.frame().await {
        let data = frame.expect("ok").into_data().expect("data");
        text.push_str(std::str::from_utf8(&data).expect("utf-8"));
    }
    assert!(
        first_at < Duration::from_millis(1_200),
        "the first half waited for the whole page: {first_at:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(text, format!("upstream: /public/drip/page{TAG}"));
    gate.stop().await;
}
