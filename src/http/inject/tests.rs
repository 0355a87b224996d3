//! The injection's cases: streamed pages in small chunks, pages without a
//! head, and the answers that must pass byte for byte.

use super::*;
use crate::config::Config;
use crate::upstream::body::testing::fed;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::path::Path;

const TAG: &str = "<script src=\"/embed-frame.js\" defer></script>";

fn embed(inject: bool) -> Embed {
    let text = format!(
        "{}\n[embed]\ninject_frame_script = {inject}\n",
        crate::config::TEST_CONFIG
    );
    Config::parse(&text, Path::new("test.toml"))
        .expect("valid")
        .embed
}

/// An upstream answer with `headers` whose body arrives in `chunks`.
fn answer(headers: &[(&'static str, &str)], chunks: &[&[u8]]) -> Response<Body> {
    let (tx, body) = fed();
    for chunk in chunks {
        tx.send(Bytes::copy_from_slice(chunk)).expect("send");
    }
    drop(tx);
    let mut response = Response::new(body::boxed(body));
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).expect("value");
        response.headers_mut().append(*name, value);
    }
    response
}

fn html(chunks: &[&[u8]]) -> Response<Body> {
    answer(&[("content-type", "text/html; charset=utf-8")], chunks)
}

/// `response` through the injection, as a frame's GET, and its body.
async fn framed(mut response: Response<Body>) -> (HeaderMap, Vec<u8>) {
    inject(&embed(true), &Method::GET, true, &mut response);
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.headers, bytes.to_vec())
}

/// `page` in chunks of 1 to 7 bytes.
fn crumbs(page: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = page;
    let mut size = 1;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
        size = size % 7 + 1;
    }
    out
}

#[tokio::test]
async fn a_page_in_small_chunks_gets_the_tag_at_the_end_of_its_head() {
    let page = b"<!doctype html><html><head><title>Changelog</title>\
<meta name=\"description\" content=\"a > b, split anywhere\"></head>\
<body><h1>2.4.0</h1><script>if (a </head> b) {}</script></body></html>";
    let chunks = crumbs(page);
    assert!(chunks.len() > 40, "{}", chunks.len());
    // `</head>` itself straddles chunks somewhere in there.
    assert!(!chunks.iter().any(|c| c.windows(7).any(|w| w == b"</head>")));
    let (headers, body) = framed(html(&chunks)).await;
    let text = String::from_utf8(body).expect("utf-8");
    let expected = String::from_utf8_lossy(page).replacen("</head>", &format!("{TAG}</head>"), 1);
    assert_eq!(text, expected);
    assert_eq!(text.matches(TAG).count(), 1);
    assert_eq!(headers.get("vary").expect("vary"), "sec-fetch-dest");
}

#[tokio::test]
async fn output_streams_before_the_upstream_body_ends() {
    let (tx, upstream) = fed();
    let mut response = Response::new(body::boxed(upstream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    inject(&embed(true), &Method::GET, true, &mut response);
    let mut body = response.into_body();
    tx.send(Bytes::from_static(
        b"<html><head><title>t</title></head><body><p>first",
    ))
    .expect("send");
    let first = body.frame().await.expect("frame").expect("ok");
    let first = first.into_data().expect("data");
    // The head, with the tag, is out while the upstream is still sending.
    let mut seen = first.to_vec();
    let text = std::str::from_utf8(&seen).expect("utf-8");
    assert!(text.contains(&format!("{TAG}</head>")), "{text}");
    tx.send(Bytes::from_static(b" and more</p></body></html>"))
        .expect("send");
    drop(tx);
    while let Some(frame) = body.frame().await {
        seen.extend_from_slice(&frame.expect("ok").into_data().expect("data"));
    }
    assert!(seen.ends_with(b"<p>first and more</p></body></html>"));
}

#[tokio::test]
async fn a_rewritten_answer_loses_its_length_and_etag() {
    let page = b"<html><head></head><body>x</body></html>";
    let length = page.len().to_string();
    let response = answer(
        &[
            ("content-type", "text/html"),
            ("content-length", &length),
            ("etag", "\"abc\""),
            ("last-modified", "Tue, 01 Apr 2025 10:00:00 GMT"),
        ],
        &[page],
    );
    let (headers, body) = framed(response).await;
    assert!(headers.get("content-length").is_none());
    assert!(headers.get("etag").is_none());
    assert!(headers.get("last-modified").is_some());
    assert_eq!(body.len(), page.len() + TAG.len());
}

#[tokio::test]
async fn a_page_without_a_head_gets_the_tag_before_its_body_ends_or_at_its_end() {
    let cases: [(&[u8], String); 4] = [
        (
            b"<body><p>no head</p></body>",
            format!("<body><p>no head</p>{TAG}</body>"),
        ),
        // A head closed implicitly (no `</head>`): the body's end.
        (
            b"<html><head><title>t</title><body><p>x</p></body></html>",
            format!("<html><head><title>t</title><body><p>x</p>{TAG}</body></html>"),
        ),
        (b"<p>neither", format!("<p>neither{TAG}")),
        (b"", TAG.to_string()),
    ];
    for (page, expected) in cases {
        let (_, body) = framed(html(&crumbs(page))).await;
        assert_eq!(String::from_utf8(body).expect("utf-8"), expected);
    }
}

/// What passes through byte for byte, with its headers as they were.
async fn assert_unchanged(headers: &[(&'static str, &str)], page: &[u8], frame: bool) {
    let mut response = answer(headers, &crumbs(page));
    let before = response.headers().clone();
    inject(&embed(true), &Method::GET, frame, &mut response);
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], page, "{headers:?}");
    assert_eq!(parts.headers, before, "{headers:?}");
}

#[tokio::test]
async fn a_compressed_page_passes_unchanged() {
    // A gzip member (the bytes need not inflate: the gate never reads them).
    let gzip: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xb3\xc9\x48\x4d\x4c\xb1\x03\x00";
    for coding in ["gzip", "br", "identity, gzip"] {
        let headers = [
            ("content-type", "text/html"),
            ("content-encoding", coding),
            ("content-length", "18"),
        ];
        assert_unchanged(&headers, gzip, true).await;
    }
    // `identity` is no encoding at all.
    let (_, body) = framed(answer(
        &[
            ("content-type", "text/html"),
            ("content-encoding", "identity"),
        ],
        &[b"<head></head>"],
    ))
    .await;
    assert_eq!(body, format!("<head>{TAG}</head>").into_bytes());
}

#[tokio::test]
async fn answers_that_are_not_whole_html_pages_pass_unchanged() {
    let page: &[u8] = b"<html><head></head></html>";
    for content_type in [
        "application/json",
        "text/plain",
        "application/xhtml+xml",
        "text/html-sandboxed",
    ] {
        assert_unchanged(&[("content-type", content_type)], page, true).await;
    }
    assert_unchanged(&[], page, true).await;
    assert_unchanged(
        &[("content-type", "text/html; charset=utf-16le")],
        page,
        true,
    )
    .await;
    let bom = b"\xff\xfe<\x00h\x00e\x00a\x00d\x00>\x00";
    let (_, body) = framed(html(&[bom])).await;
    assert_eq!(body, bom.to_vec(), "a UTF-16 byte-order mark");
    let mut range = html(&[page]);
    *range.status_mut() = StatusCode::PARTIAL_CONTENT;
    let (_, body) = framed(range).await;
    assert_eq!(body, page.to_vec());
}

#[tokio::test]
async fn a_page_whose_policy_blocks_the_script_passes_unchanged() {
    let page: &[u8] = b"<html><head></head><body></body></html>";
    for policy in [
        "script-src 'none'",
        "default-src 'none'",
        "default-src https://cdn.example.com",
        "script-src 'self' 'strict-dynamic' 'nonce-abc'",
        "script-src-elem 'nonce-abc'; script-src 'self'",
        "img-src *, script-src https://cdn.example.com",
    ] {
        let headers = [
            ("content-type", "text/html"),
            ("content-security-policy", policy),
        ];
        assert_unchanged(&headers, page, true).await;
    }
    for policy in [
        "script-src 'self'",
        "default-src 'SELF'; img-src *",
        "frame-ancestors 'self' https://app.example.com",
        "script-src 'self'; script-src 'none'",
    ] {
        let response = answer(
            &[
                ("content-type", "text/html"),
                ("content-security-policy", policy),
            ],
            &[page],
        );
        let (_, body) = framed(response).await;
        assert!(
            String::from_utf8(body).expect("utf-8").contains(TAG),
            "{policy}"
        );
    }
    // Every policy is enforced: one that blocks is enough.
    let headers = [
        ("content-type", "text/html"),
        ("content-security-policy", "script-src 'self'"),
        ("content-security-policy", "default-src 'none'"),
    ];
    assert_unchanged(&headers, page, true).await;
}

#[tokio::test]
async fn only_a_frames_get_is_rewritten_and_only_when_configured() {
    let page: &[u8] = b"<html><head></head></html>";
    let mut top = html(&[page]);
    inject(&embed(true), &Method::GET, false, &mut top);
    assert_eq!(top.headers().get("vary").expect("vary"), "sec-fetch-dest");
    let bytes = top.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], page);

    let html_only = [("content-type", "text/html")];
    let mut off = answer(&html_only, &[page]);
    inject(&embed(false), &Method::GET, true, &mut off);
    assert!(off.headers().get("vary").is_none());
    let bytes = off.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], page);

    let mut head = answer(&html_only, &[]);
    inject(&embed(true), &Method::HEAD, true, &mut head);
    assert!(head
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .is_empty());
}

#[tokio::test]
async fn a_tag_longer_than_the_rewriters_memory_leaves_the_page_whole() {
    let long = "x".repeat(rewriter::MAX_REWRITER_MEMORY + 1024);
    // lol-html holds a start tag whole only when a selector matches it.
    let page =
        format!("<html><head data-x=\"{long}\"><title>t</title></head><body>end</body></html>");
    let chunks: Vec<&[u8]> = page.as_bytes().chunks(4096).collect();
    let (_, body) = framed(html(&chunks)).await;
    let body = String::from_utf8(body).expect("utf-8");
    assert!(
        body == page,
        "the page passes whole, untouched: {} bytes of {}, ends {:?}",
        body.len(),
        page.len(),
        &body[body.len().saturating_sub(80)..]
    );

    // A long tag after the head's end: the tag is in, the rest intact.
    let late = format!("<html><head></head><body data-x=\"{long}\"><p>x</p></body></html>");
    let chunks: Vec<&[u8]> = late.as_bytes().chunks(4096).collect();
    let (_, body) = framed(html(&chunks)).await;
    let body = String::from_utf8(body).expect("utf-8");
    let expected = late.replacen("</head>", &format!("{TAG}</head>"), 1);
    assert!(
        body == expected,
        "{} bytes of {}",
        body.len(),
        expected.len()
    );
}

#[test]
fn the_tag_escapes_its_path() {
    assert_eq!(script_tag("/embed-frame.js"), TAG);
    assert_eq!(
        script_tag("/a\"b<c>.js"),
        "<script src=\"/a&quot;b&lt;c&gt;.js\" defer></script>"
    );
}
