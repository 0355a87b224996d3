//! The embed: the `released-page` element's script, the frame script
//! that sizes the element from inside the frame, and the page a denied
//! frame gets.
//!
//! A host app loads the script from the gate (`GET /embed.js` by default)
//! and writes `<released-page page="/roadmap/" auth-token="...">`; the
//! element frames the portal page at the gate's origin and passes the token
//! as a direct link does. When the gate refuses a frame navigation, it
//! answers with [`auth_required_page`], which tells the element through
//! `postMessage`, and the element fires `portal-gate:auth-required` so the
//! host app can fetch a fresh token.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::http::respond::{self, OwnResponse};
use http_body_util::Full;

/// The element's source: dependency-free, served as is.
const SCRIPT: &str = include_str!("embed/released-page.js");

/// The frame script's source; [`FRAME_SCRIPT_ORIGINS`] is replaced by the
/// allowed parent origins of the config in force.
const FRAME_SCRIPT: &str = include_str!("embed/frame.js");

/// Where the frame script's list of allowed parent origins goes.
const FRAME_SCRIPT_ORIGINS: &str = "/*PARENT_ORIGINS*/[]";

/// A script the gate serves itself (the element's, the frame's), with its
/// strong ETag (a hash of the bytes, computed once).
#[derive(Debug, Clone)]
pub(crate) struct EmbedScript {
    /// The bytes served; a cheap clone per response.
    bytes: Bytes,
    /// `"<base64url of the first 16 bytes of SHA-256>"`: the tag changes
    /// exactly when the bytes do (a release, or for the frame script a
    /// config whose allowed origins changed).
    etag: HeaderValue,
}

impl Default for EmbedScript {
    fn default() -> EmbedScript {
        EmbedScript::new()
    }
}

impl EmbedScript {
    /// The compiled-in element script and its ETag.
    pub(crate) fn new() -> EmbedScript {
        EmbedScript::of(Bytes::from_static(SCRIPT.as_bytes()))
    }

    /// The frame script, posting only to `allowed_origins` (validated
    /// origins, `embed.allowed_origins`) and the page's own origin; to any
    /// parent when the list is empty. The list is baked into the bytes, so
    /// a portal template includes the script with no configuration of its
    /// own, and the list can only come from the gate's config.
    pub(crate) fn frame(allowed_origins: &[String]) -> EmbedScript {
        // Origins are ASCII `scheme://host[:port]`: JSON strings as they are.
        let list = serde_json::to_string(allowed_origins).unwrap_or_else(|_| "[]".into());
        let source = FRAME_SCRIPT.replacen(FRAME_SCRIPT_ORIGINS, &list, 1);
        EmbedScript::of(Bytes::from(source))
    }

    /// `bytes` and their ETag.
    fn of(bytes: Bytes) -> EmbedScript {
        let digest = Sha256::digest(&bytes);
        let tag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]));
        EmbedScript {
            bytes,
            // base64url and quotes only: always a valid header value.
            etag: HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"embed\"")),
        }
    }

    /// 200 with `Content-Type: text/javascript; charset=utf-8`,
    /// `Cache-Control: public, max-age=300`, `ETag` and
    /// `X-Content-Type-Options: nosniff`; 304 when `If-None-Match` matches
    /// (any tag of a list, or `*`); HEAD without a body; any other method
    /// 405 with `Allow: GET, HEAD`.
    pub(crate) fn respond(&self, method: &Method, request_headers: &HeaderMap) -> OwnResponse {
        if method != Method::GET && method != Method::HEAD {
            let mut response = respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            let headers = response.headers_mut();
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }

        let not_modified = none_match(request_headers, &self.etag);
        let mut response = if not_modified {
            respond::empty(StatusCode::NOT_MODIFIED)
        } else if method == Method::HEAD {
            let mut response = respond::empty(StatusCode::OK);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.bytes.len()));
            response
        } else {
            Response::new(Full::new(self.bytes.clone()))
        };

        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        if !not_modified {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            );
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Public and secret-free: let any page load it, also as a module, with
        // `crossorigin` for SRI, or under `Cross-Origin-Embedder-Policy`.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("cross-origin"),
        );
        response
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`). RFC 9110 compares
/// If-None-Match weakly, so a `W/` prefix still matches.
fn none_match(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|tag| tag.trim_ascii())
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours)
}

/// Whether the request is a frame navigation (`Sec-Fetch-Dest: iframe` or
/// `frame`).
pub(crate) fn is_frame_request(headers: &HeaderMap) -> bool {
    headers.get_all("sec-fetch-dest").iter().any(|v| {
        v.as_bytes().eq_ignore_ascii_case(b"iframe") || v.as_bytes().eq_ignore_ascii_case(b"frame")
    })
}

/// The denied frame's one inline script. It reads the status from the page
/// so every status shares one script, and so one CSP hash. The message
/// carries no secret, hence the `"*"` target.
const AUTH_SCRIPT: &str = "parent.postMessage({type:\"portal-gate:auth-required\",\
status:+document.documentElement.dataset.status},\"*\")";

/// The page's styles: a short centred note, readable at any frame size.
const AUTH_STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1d2433;\
background:#f6f7fb;display:grid;place-items:center;min-height:100vh}\
p{margin:1rem;text-align:center}";

/// The CSP of the denied frame's page: nothing loads, only [`AUTH_SCRIPT`]
/// runs. Computed once.
fn auth_page_csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = STANDARD.encode(Sha256::digest(AUTH_SCRIPT.as_bytes()));
        let policy =
            format!("default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'");
        // Base64 and ASCII only: always a valid header value.
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    })
}

/// The page a denied frame gets: the same `status`, `Content-Type:
/// text/html; charset=utf-8`, `Cache-Control: no-store`, a short message
/// (`reason`, HTML-escaped) and an inline script posting
/// `{type: "portal-gate:auth-required", status}` to the parent. It carries
/// its own `Content-Security-Policy` allowing exactly that script; a
/// `frame-ancestors` policy of the gate must be *appended* as a second
/// header (both are enforced), not replace this one. A 401 keeps its
/// `WWW-Authenticate: Bearer` challenge.
pub(crate) fn auth_required_page(status: StatusCode, reason: &str) -> OwnResponse {
    let mut html = String::with_capacity(512 + reason.len());
    html.push_str("<!doctype html>\n<html lang=\"en\" data-status=\"");
    html.push_str(status.as_str());
    html.push_str("\">\n<meta charset=\"utf-8\">\n<title>Sign-in required</title>\n<style>");
    html.push_str(AUTH_STYLE);
    html.push_str("</style>\n<p>");
    push_escaped(&mut html, reason);
    html.push_str("</p>\n<script>");
    html.push_str(AUTH_SCRIPT);
    html.push_str("</script>\n</html>\n");

    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, auth_page_csp().clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portal-gate\""),
        );
    }
    response
}

/// Append `text` to `html` with the five HTML metacharacters escaped.
pub(crate) fn push_escaped(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    async fn body_text(response: OwnResponse) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    fn header<'a>(response: &'a OwnResponse, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("missing header {name}"))
    }

    #[tokio::test]
    async fn get_serves_the_script_with_cache_headers() {
        let script = EmbedScript::new();
        let response = script.respond(&Method::GET, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header(&response, "cache-control"), "public, max-age=300");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10);
        let text = body_text(response).await;
        assert!(text.contains("customElements.define(ELEMENT, ReleasedPage)"));
        assert!(text.contains("portal-gate:auth-required"));
    }

    #[test]
    fn etag_is_stable_and_is_a_hash_of_the_bytes() {
        let a = EmbedScript::new();
        let b = EmbedScript::new();
        assert_eq!(a.etag, b.etag);
        let digest = Sha256::digest(SCRIPT.as_bytes());
        let expected = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]));
        assert_eq!(a.etag.to_str().expect("ascii"), expected);
    }

    #[tokio::test]
    async fn matching_if_none_match_gets_304_without_a_body() {
        let script = EmbedScript::new();
        let etag = script.etag.to_str().expect("ascii").to_string();
        for value in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_string(),
        ] {
            let mut map = HeaderMap::new();
            map.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(&value).expect("value"),
            );
            let response = script.respond(&Method::GET, &map);
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{value}");
            assert_eq!(header(&response, "etag"), etag);
            assert_eq!(header(&response, "cache-control"), "public, max-age=300");
            assert_eq!(body_text(response).await, "", "{value}");
        }
    }

    #[tokio::test]
    async fn other_if_none_match_gets_the_script() {
        let script = EmbedScript::new();
        let response = script.respond(
            &Method::GET,
            &headers(&[("if-none-match", "\"stale\", W/\"older\"")]),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, SCRIPT);
    }

    #[tokio::test]
    async fn head_has_the_headers_and_no_body() {
        let script = EmbedScript::new();
        let response = script.respond(&Method::HEAD, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header(&response, "content-length"),
            SCRIPT.len().to_string()
        );
        assert!(response.headers().contains_key("etag"));
        assert_eq!(body_text(response).await, "");
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let script = EmbedScript::new();
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let response = script.respond(&method, &HeaderMap::new());
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(header(&response, "allow"), "GET, HEAD");
        }
    }

    #[tokio::test]
    async fn the_frame_script_carries_the_allowed_origins_and_only_them() {
        let origins = ["https://app.example.com".to_string()];
        let script = EmbedScript::frame(&origins);
        let text = body_text(script.respond(&Method::GET, &HeaderMap::new())).await;
        assert!(
            text.contains("const PARENT_ORIGINS = [\"https://app.example.com\"];"),
            "{text}"
        );
        assert!(!text.contains(FRAME_SCRIPT_ORIGINS));
        assert!(text.contains("portal-gate:frame"));
        let open = EmbedScript::frame(&[]);
        let open_text = body_text(open.respond(&Method::GET, &HeaderMap::new())).await;
        assert!(open_text.contains("const PARENT_ORIGINS = [];"));
        assert_ne!(script.etag, open.etag, "the ETag follows the bytes");
        assert_eq!(EmbedScript::frame(&origins).etag, script.etag);
    }

    #[test]
    fn frame_requests_are_recognized_by_sec_fetch_dest() {
        assert!(is_frame_request(&headers(&[("sec-fetch-dest", "iframe")])));
        assert!(is_frame_request(&headers(&[("sec-fetch-dest", "frame")])));
        assert!(is_frame_request(&headers(&[("sec-fetch-dest", "IFrame")])));
        assert!(!is_frame_request(&headers(&[(
            "sec-fetch-dest",
            "document"
        )])));
        assert!(!is_frame_request(&headers(&[("sec-fetch-dest", "script")])));
        assert!(!is_frame_request(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn auth_page_keeps_the_status_and_tells_the_parent() {
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let response = auth_required_page(status, "a token is required");
            assert_eq!(response.status(), status);
            assert_eq!(
                header(&response, "content-type"),
                "text/html; charset=utf-8"
            );
            assert_eq!(header(&response, "cache-control"), "no-store");
            assert_eq!(
                response.headers().contains_key("www-authenticate"),
                status == StatusCode::UNAUTHORIZED
            );
            let html = body_text(response).await;
            assert!(
                html.contains(&format!("data-status=\"{}\"", status.as_u16())),
                "{html}"
            );
            assert!(html.contains("<p>a token is required</p>"), "{html}");
            assert!(html.contains("portal-gate:auth-required"), "{html}");
            assert!(html.contains("parent.postMessage("), "{html}");
        }
    }

    #[tokio::test]
    async fn auth_page_escapes_the_reason() {
        let response = auth_required_page(
            StatusCode::FORBIDDEN,
            "<script>alert('x')</script> & \"more\"",
        );
        let html = body_text(response).await;
        assert!(
            html.contains(
                "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;</p>"
            ),
            "{html}"
        );
        assert_eq!(html.matches("<script>").count(), 1, "{html}");
    }

    #[tokio::test]
    async fn auth_page_csp_hash_matches_its_inline_script() {
        let response = auth_required_page(StatusCode::UNAUTHORIZED, "expired");
        let csp = header(&response, "content-security-policy").to_string();
        let html = body_text(response).await;
        // The script exactly as served, between its tags.
        let start = html.find("<script>").expect("script") + "<script>".len();
        let end = html.find("</script>").expect("end");
        let served = &html[start..end];
        let hash = STANDARD.encode(Sha256::digest(served.as_bytes()));
        assert_eq!(
            csp,
            format!("default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'")
        );
    }
}
