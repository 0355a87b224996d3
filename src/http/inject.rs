//! The frame script in pages whose template lacks it (`[embed]
//! inject_frame_script = true`): which upstream answers get its tag, and
//! what that changes in their headers. [`rewriter`] streams the body.
//!
//! Only a frame request's answer (`Sec-Fetch-Dest: iframe` or `frame`)
//! is rewritten, only `text/html` in an ASCII-compatible charset, never a
//! compressed body (`Content-Encoding` other than `identity`: it passes
//! unchanged), never a range, and never a page whose
//! `Content-Security-Policy` would refuse a same-origin script: the page
//! is then left as it is.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Empty;

use crate::config::Embed;
use crate::upstream::body::{self, Body};

pub(crate) mod rewriter;

/// The answer's `Vary` for caches: with injection on, an HTML answer
/// depends on whether a frame asked for it.
const VARY_FRAME: HeaderValue = HeaderValue::from_static("sec-fetch-dest");

/// Why an HTML answer keeps its bytes, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not `text/html`.
    NotHtml,
    /// A status without a body (1xx, 204, 304) or a part of one (206).
    NoWholeBody,
    /// Compressed: lol-html reads plain bytes only.
    Encoded,
    /// A charset lol-html cannot read (UTF-16 and the like).
    Charset,
    /// The page's `Content-Security-Policy` would block the script.
    Policy,
}

/// Insert the frame script's tag into `response`, the upstream's answer
/// to a request made with `method` by a frame (`frame`) or not, when
/// `embed.inject_frame_script` is on and the answer can take it (module
/// docs). A rewritten answer loses `Content-Length` and `ETag` (its bytes
/// changed); every answer that could be rewritten gets
/// `Vary: Sec-Fetch-Dest`, so no cache hands one reader's version to the
/// other.
pub(crate) fn inject(embed: &Embed, method: &Method, frame: bool, response: &mut Response<Body>) {
    if !embed.inject_frame_script {
        return;
    }
    if let Err(skip) = injectable(response.status(), response.headers()) {
        if skip != Skip::NotHtml && frame {
            tracing::debug!(
                ?skip,
                "frame script not inserted; the page passes unchanged"
            );
        }
        return;
    }
    let headers = response.headers_mut();
    headers.append(header::VARY, VARY_FRAME);
    if !frame || method == Method::HEAD {
        return;
    }
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ETAG);
    let tag = script_tag(&embed.frame_script_path);
    let upstream = std::mem::replace(response.body_mut(), body::boxed(Empty::new()));
    *response.body_mut() = body::boxed(rewriter::Injected::new(upstream, &tag));
}

/// Whether an answer with `status` and `headers` can take the tag.
pub(crate) fn injectable(status: StatusCode, headers: &HeaderMap) -> Result<(), Skip> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut params = media.split(';');
    let essence = params.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/html") {
        return Err(Skip::NotHtml);
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT;
    if bodiless {
        return Err(Skip::NoWholeBody);
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(Skip::Encoded);
    }
    if !params.all(ascii_compatible_charset) {
        return Err(Skip::Charset);
    }
    if !policy_allows_own_script(headers) {
        return Err(Skip::Policy);
    }
    Ok(())
}

/// A media-type parameter that is not a charset, or a charset lol-html's
/// tokenizer reads like ASCII (where every tag is ASCII).
fn ascii_compatible_charset(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return true;
    };
    if !name.trim().eq_ignore_ascii_case("charset") {
        return true;
    }
    let value = value.trim().trim_matches('"').to_ascii_lowercase();
    matches!(
        value.as_str(),
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "latin1" | "iso8859-1"
    ) || value.starts_with("iso-8859-")
        || value.starts_with("windows-125")
}

/// Whether every `Content-Security-Policy` of the answer lets the page
/// load a script from its own origin: the directive that governs script
/// elements (`script-src-elem`, else `script-src`, else `default-src`)
/// is absent, or names `'self'` without `'strict-dynamic'` (which makes
/// browsers ignore `'self'`). Unreadable policies count as refusing.
/// `Content-Security-Policy-Report-Only` blocks nothing and is not read.
pub(crate) fn policy_allows_own_script(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .all(|value| match value.to_str() {
            Ok(text) => text.split(',').all(policy_allows),
            Err(_) => false,
        })
}

/// One policy of a `Content-Security-Policy` value.
fn policy_allows(policy: &str) -> bool {
    let mut governing: [Option<&str>; 3] = [None; 3];
    for directive in policy.split(';') {
        let directive = directive.trim();
        let (name, sources) = directive
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((directive, ""));
        let slot = ["script-src-elem", "script-src", "default-src"]
            .iter()
            .position(|wanted| name.eq_ignore_ascii_case(wanted));
        // Browsers keep the first of a repeated directive.
        if let Some(slot) = slot {
            governing[slot].get_or_insert(sources);
        }
    }
    let Some(sources) = governing.into_iter().flatten().next() else {
        return true;
    };
    let has = |keyword: &str| {
        sources
            .split_ascii_whitespace()
            .any(|s| s.eq_ignore_ascii_case(keyword))
    };
    has("'self'") && !has("'strict-dynamic'")
}

/// `<script src="PATH" defer></script>`, the path HTML-escaped.
fn script_tag(path: &str) -> String {
    let mut tag = String::with_capacity(path.len() + 40);
    tag.push_str("<script src=\"");
    crate::http::embed::push_escaped(&mut tag, path);
    tag.push_str("\" defer></script>");
    tag
}

#[cfg(test)]
mod tests;
