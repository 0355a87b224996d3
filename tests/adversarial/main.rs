//! Adversarial requests against the real server, each checked twice: the
//! status the client gets, and what the upstream received.
//!
//! Classes covered:
//!
//! 1. **Path confusion** against the restricted prefixes of
//!    [`config_for`] (`/docs/**` verified, `/internal/**` example.com only,
//!    `/board/**` one email, everything unmatched restricted): merged
//!    slashes, `..`/`.` segments raw and percent-encoded in any case,
//!    encoded slashes and backslashes, raw backslashes, path parameters,
//!    trailing dots and spaces, letter case, NUL and control characters,
//!    double encoding (never decoded twice), overlong UTF-8, `..` above the
//!    root, fragments and queries that look like paths, absolute-form
//!    targets, `OPTIONS *` and `CONNECT`; and that a forwarded path is the
//!    normalized one.
//! 2. **Identity-header spoofing**: `X-Forwarded-Email` and friends on
//!    public and verified pages, duplicates, mixed case, `_` spellings,
//!    `Connection:`-nominated headers, `X-Forwarded-For`, `Forwarded`,
//!    `X-Real-IP`, `X-Forwarded-Host`.
//! 3. **Tokens**: duplicates (same is fine, different is 400), query versus
//!    headers, oversized, other account, unknown secret or key id, expired,
//!    empty bearer, scheme case, percent-encoded parameter names (and that
//!    the token never reaches the upstream); tokens whose email or user id
//!    claim cannot be forwarded as one clean header value.
//! 4. **Request smuggling / framing**: Content-Length with
//!    Transfer-Encoding, conflicting Content-Lengths, obsolete line folding,
//!    non-chunked Transfer-Encoding, a request hidden in a body, a chunked
//!    body whose framing breaks after the head.
//! 5. **HTTP/2** (h2c prior knowledge): the same gate checks over h2.
//!
//! Tests that forward anything end with
//! [`assert_upstream_saw_only_admitted_requests`], an
//! oracle that restates the test rules independently of the gate's code
//! and checks each request the upstream saw: a normalized path, an identity
//! exactly when the rules require one and one the rules admit, no token,
//! and only the gate's own forwarding headers.
//!
//! Tests marked `BUG (found here)` fail on purpose: they assert the secure
//! behaviour the gate does not have yet.
//!
//! One test binary, a module per class; `cases` holds what they share on
//! top of `support`: raw HTTP/1.1 request building and reply parsing,
//! the table of cases, and the oracle.

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod framing;
mod headers;
mod http2;
mod paths;
mod tokens;
