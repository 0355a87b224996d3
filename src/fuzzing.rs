//! The fuzz harnesses: cargo-fuzz builds the crate with `--cfg fuzzing`,
//! and each target in `fuzz/fuzz_targets/` hands its bytes to one function
//! here, which runs the crate's own parser on them and asserts what that
//! parser promises. Living in the crate, they reach its internals without
//! making them public. The unit tests below replay every seed and every
//! input a fuzzer once broke the crate with (`fuzz/seeds/`,
//! `fuzz/regressions/`) through the same functions on each `cargo test`.
//! `docs/fuzzing.md` has the commands and the runs.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::{AeadInPlace, KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use sha2::Sha256;

use crate::access::credential::{self, COOKIE_NAME, TOKEN_HEADER};
use crate::access::path;
use crate::access::rules::{Access, RuleOptions, RuleSet, RuleSpec};
use crate::http::headers::{self, ClientInfo};
use crate::http::host::plain_host;
use crate::token::format::{self as token, Opened, TokenError, MAX_TOKEN_LEN};
use crate::token::keys::{Purpose, SecretRing, SecretSpec};

// ---- token_open
// `token::open` and `token::open_session` on whatever a client can send,
// then the time checks.
//
// Each input is tried two ways, for both purposes (`pg1.` tokens and
// `pgs1.` session cookies):
//
// 1. as the token text itself (if UTF-8): the header split, key lookup and
//    base64 decode see arbitrary bytes;
// 2. as the *plaintext* of a correctly sealed value under a configured key.
//    Random bytes never get past the AEAD tag, so without this the claims
//    parser (serde_json, the `acc`/`eml` checks, e-mail lower-casing) would
//    never see fuzzed input. A sealed token must open or fail with
//    `BadClaims` (or `TooLong`); anything else means the sealing here and
//    `docs/token-format.md` disagree with `src/token.rs`.
//
// Whatever opens goes through `Claims::check_time` and `Opened::check` at
// the extreme clocks and skews, which must saturate, never panic.

/// A live primary key and a retired one, so `Opened::check` takes both paths.
/// Both are secrets of `tests/vectors/tokens.json`, so its valid tokens are
/// seeds that open (`fuzz/seeds/token_open/`).
const LIVE: (&str, &[u8]) = ("k2024-01", b"portal-gate test secret one");
const RETIRED: (&str, &[u8]) = ("primary", b"s3cr3t");

fn ring() -> &'static SecretRing {
    static RING: OnceLock<SecretRing> = OnceLock::new();
    RING.get_or_init(|| {
        SecretRing::new(vec![
            SecretSpec {
                id: LIVE.0.into(),
                value: LIVE.1.to_vec(),
                primary: true,
                not_after: None,
            },
            SecretSpec {
                id: RETIRED.0.into(),
                value: RETIRED.1.to_vec(),
                primary: false,
                not_after: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
            },
        ])
        .expect("the fixed fuzz ring is valid")
    })
}

/// The `LIVE` key for `purpose`, derived as `docs/token-format.md` specifies.
fn live_cipher(purpose: Purpose) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"portal-gate"), LIVE.1)
        .expand(purpose.info(), &mut key)
        .expect("32 bytes is a valid HKDF output");
    XChaCha20Poly1305::new(&key.into())
}

/// Both purposes, with their prefix, opener and (derived once) live cipher.
type Opener = fn(&SecretRing, &str) -> Result<Opened, TokenError>;
fn purposes() -> &'static [(&'static str, Opener, XChaCha20Poly1305); 2] {
    static ALL: OnceLock<[(&str, Opener, XChaCha20Poly1305); 2]> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            (
                token::VERSION_PREFIX,
                token::open,
                live_cipher(Purpose::Token),
            ),
            (
                token::SESSION_PREFIX,
                token::open_session,
                live_cipher(Purpose::Session),
            ),
        ]
    })
}

/// `<prefix>k2024-01.<base64url(nonce || seal(plaintext))>` under `cipher`.
fn seal(prefix: &str, cipher: &XChaCha20Poly1305, plaintext: &[u8]) -> String {
    let nonce = [7u8; 24];
    let mut token = format!("{prefix}{}.", LIVE.0);
    let mut body = Vec::with_capacity(24 + plaintext.len() + 16);
    body.extend_from_slice(&nonce);
    body.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            token.as_bytes(),
            &mut body[24..],
        )
        .expect("fuzz inputs are far below the XChaCha20 limit");
    body.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode_string(&body, &mut token);
    token
}

/// Every clock-dependent check at the edges of the clock and skew ranges.
fn check_times(opened: &Opened) {
    let claims = &opened.claims;
    assert!(!claims.account_id.is_empty() && !claims.email.is_empty());
    assert!(!claims.email.bytes().any(|b| b.is_ascii_uppercase()));
    for now in [0, claims.issued_at, claims.expires_at, u64::MAX] {
        for skew in [0, 60, u64::MAX] {
            let _ = claims.check_time(now, skew);
        }
    }
    let far_future = UNIX_EPOCH
        .checked_add(Duration::from_secs(u64::MAX / 4))
        .unwrap_or(UNIX_EPOCH);
    let before_epoch = UNIX_EPOCH
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(UNIX_EPOCH);
    for now in [UNIX_EPOCH, before_epoch, SystemTime::now(), far_future] {
        for skew in [0, u64::MAX] {
            let _ = opened.check(ring(), now, skew);
        }
    }
}

/// `token_open`: the bytes as a token and a session, and as the
/// plaintext of a correctly sealed one.
pub fn token_open(data: &[u8]) {
    for (prefix, open, cipher) in purposes() {
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(opened) = open(ring(), text) {
                check_times(&opened);
            }
        }

        let sealed = seal(prefix, cipher, data);
        match open(ring(), &sealed) {
            Ok(opened) => {
                assert_eq!(&*opened.key_id, LIVE.0);
                check_times(&opened);
            }
            Err(TokenError::BadClaims) => {}
            Err(TokenError::TooLong) => assert!(sealed.len() > MAX_TOKEN_LEN),
            Err(other) => panic!("a correctly sealed {prefix} value failed with {other:?}"),
        }
    }
}

// ---- path_normalize
// `path::normalize` on arbitrary request paths, checking the invariants its
// module documentation promises, then `RuleSet::find` on the result.
//
// The rules and the upstream must see one reading of the path (see
// `src/path.rs`), so an output that is not normal, or that normalizes to
// something else a second time, is a bypass waiting to happen.

/// Patterns of every kind `rules` knows: root, exact, `*`, `**`, nested
/// prefixes; once case-sensitive and once case-insensitive.
const PATTERNS: [(&str, Access); 7] = [
    ("/", Access::Public),
    ("/docs/**", Access::Public),
    ("/docs/internal/**", Access::Verified),
    ("/docs/internal/public.html", Access::Public),
    ("/team/*/notes", Access::Verified),
    ("/assets/*", Access::Public),
    ("/a!b/**", Access::Verified),
];

fn rule_sets() -> &'static [RuleSet; 2] {
    static SETS: OnceLock<[RuleSet; 2]> = OnceLock::new();
    SETS.get_or_init(|| {
        let compile = |case_insensitive| {
            let specs = PATTERNS
                .iter()
                .map(|&(path, access)| RuleSpec {
                    path: path.into(),
                    access,
                    ..RuleSpec::default()
                })
                .collect();
            RuleSet::compile(specs, RuleOptions { case_insensitive })
                .expect("the fixed fuzz rules compile")
        };
        [compile(false), compile(true)]
    })
}

/// `path_normalize`: the promises of `path::normalize`, then rule lookup.
pub fn path_normalize(raw: &str) {
    let Ok(normal) = path::normalize(raw) else {
        return;
    };
    let normal: &str = &normal;
    assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
    assert!(normal.is_ascii(), "{raw:?} -> {normal:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(
            !normal.contains(bad),
            "{raw:?} -> {normal:?} contains {bad:?}"
        );
    }
    assert!(
        !normal.ends_with("/.") && !normal.ends_with("/.."),
        "{raw:?} -> {normal:?}"
    );
    assert_eq!(
        path::normalize(normal).as_deref(),
        Ok(normal),
        "not idempotent for {raw:?}"
    );

    for rules in rule_sets() {
        if let Some(rule) = rules.find(normal, &http::Method::GET) {
            assert!(rule.index() < PATTERNS.len());
        }
    }
}

// ---- token_query
// Finding the token (and session cookie) in a request's query and headers,
// and removing the token from the query before forwarding.
//
// Input: the first line is the query string; each further line is a header
// value, for `Authorization` if it starts with `A:`, `Cookie` if it starts
// with `C:` (the prefix removed) and for `X-Auth-Token` otherwise. (A header value cannot hold a newline, so
// nothing is lost by splitting on it, and seeds stay readable.)
//
// Invariant: whatever `credential::query_without_token` leaves must carry no
// token by `credential::find_token`'s reading, or the upstream sees the bearer's
// token (the gate would strip one spelling and forward another).

/// `token_query`: finding a token, and what the query keeps of it.
pub fn token_query(input: &str) {
    let mut lines = input.split('\n');
    let query = lines.next().unwrap_or("");
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = if let Some(value) = line.strip_prefix("A:") {
            (AUTHORIZATION, value)
        } else if let Some(value) = line.strip_prefix("C:") {
            (COOKIE, value)
        } else {
            (HeaderName::from_static(TOKEN_HEADER), line)
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(name, value);
        }
    }

    let _ = credential::find_token(Some(query), &map);
    let _ = credential::find_token(None, &map);
    let _ = credential::find_credential(Some(query), &map);

    let empty = HeaderMap::new();
    if let Some(rest) = credential::query_without_token(query) {
        assert!(!rest.is_empty());
        match credential::find_token(Some(&rest), &empty) {
            Ok((None, places)) => assert!(!places.query),
            Ok((Some(token), _)) => panic!("{query:?} left token {token:?} in {rest:?}"),
            Err(reason) => panic!("{query:?} left {rest:?}, refused: {reason:?}"),
        }
    }
}

// ---- request_headers
// The header hygiene between client and upstream: what
// `headers::prepare_upstream_headers` leaves for the upstream, what
// `headers::filter_response` leaves for the client, and the one reading of
// a host named in a header (`handler::plain_host`, for `Host` and a
// relayed `X-Forwarded-Host`).
//
// Input: one header field per line, `name: value` (a header value cannot
// hold a newline, so nothing is lost by splitting on it); the first byte
// of the input picks whether the peer is a trusted proxy.
//
// Invariants, whatever the fields:
// - no credential reaches the upstream: no `Authorization` of the Bearer
//   scheme, no `X-Auth-Token` in either spelling, no session cookie in any
//   case or behind any separator, at most one `Cookie` field, no token
//   parameter in a `Referer`;
// - no client copy of the identity headers;
// - a verified response carries no `Set-Cookie` for the session and is
//   `private` with `no-cache` or `no-store`;
// - a host `plain_host` accepts has no userinfo, no list and a valid port.

/// `request_headers`: header hygiene both ways, and the host reading.
pub fn request_headers(input: &[u8]) {
    let trusted = input.first().is_some_and(|b| b & 1 == 1);
    let fields = header_fields(input);
    let mut upstream = fields.clone();
    let client = ClientInfo {
        peer: "192.0.2.7:4000".parse().expect("addr"),
        proto: "http",
        trusted,
    };
    if headers::prepare_upstream_headers(&mut upstream, client, None, None, &[]).is_ok() {
        no_credential_reaches_the_upstream(&upstream);
    }
    let mut answer = fields;
    headers::filter_response(&mut answer, true);
    a_verified_answer_is_private_and_leaves_the_session(&answer);
}

/// One field per `name: value` line; every value that reads as a plain
/// host is checked as one.
fn header_fields(input: &[u8]) -> HeaderMap {
    let mut fields = HeaderMap::new();
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if let Some(host) = plain_host(value.as_bytes()) {
            let text = host.as_str();
            assert!(!text.contains(['@', ',']), "{text:?}");
            let after_host = text.rsplit_once(']').map_or(text, |(_, p)| p);
            if let Some((_, port)) = after_host.rsplit_once(':') {
                assert!(port.parse::<u16>().is_ok(), "{text:?}");
            }
        }
        fields.append(name, value);
    }
    fields
}

/// No Bearer `Authorization`, token header, session cookie (in any case,
/// behind any separator, in more than one `Cookie`), token in a
/// `Referer`, or client `X-Forwarded-Email`.
fn no_credential_reaches_the_upstream(upstream: &HeaderMap) {
    for value in upstream.get_all(http::header::AUTHORIZATION) {
        let scheme = value.as_bytes().split(|b| *b == b' ' || *b == b'\t').next();
        let bearer = scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"));
        assert!(
            !bearer && credential::bearer_token(value.as_bytes()).is_none(),
            "{value:?}"
        );
    }
    for name in upstream.keys() {
        let folded = name.as_str().replace('_', "-");
        assert!(
            folded != "x-auth-token" && folded != "x-forwarded-email",
            "{name}"
        );
    }
    let cookies: Vec<_> = upstream.get_all(http::header::COOKIE).iter().collect();
    assert!(cookies.len() <= 1, "{cookies:?}");
    for cookie in cookies {
        for pair in cookie.as_bytes().split(|&b| b == b';' || b == b',') {
            let name = pair
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let session = pair.contains(&b'=') && name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes());
            assert!(!session, "{cookie:?}");
        }
    }
    if let Some(referer) = upstream.get(http::header::REFERER) {
        let text = referer.to_str().expect("a kept Referer is text");
        let query = text.split_once('?').map(|(_, q)| q);
        let none = HeaderMap::new();
        let found = credential::find_token(query, &none);
        assert!(matches!(found, Ok((None, _))), "{text:?}: {found:?}");
        assert!(!text.contains('#'), "{text:?}");
    }
}

/// No `Set-Cookie` for the session, and `private` with `no-cache` or
/// `no-store`.
fn a_verified_answer_is_private_and_leaves_the_session(answer: &HeaderMap) {
    for cookie in answer.get_all(http::header::SET_COOKIE) {
        let pair = cookie
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        let name = pair
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        assert!(
            !name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes()),
            "{cookie:?}"
        );
    }
    let cache: Vec<_> = answer.get_all(http::header::CACHE_CONTROL).iter().collect();
    assert!(
        cache == ["private, no-cache"] || cache == ["private, no-store"],
        "{cache:?}"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file of `fuzz/<kind>/<target>/`.
    fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(kind)
            .join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).expect("read input"))
            })
            .collect()
    }

    /// Seeds and regressions of `target` through `harness`.
    fn replay(target: &str, harness: impl Fn(&[u8])) -> usize {
        let mut count = 0;
        for kind in ["seeds", "regressions"] {
            for (name, bytes) in inputs(kind, target) {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness(&bytes)));
                assert!(outcome.is_ok(), "{kind}/{target}/{name} fails its harness");
                count += 1;
            }
        }
        count
    }

    fn text(harness: fn(&str)) -> impl Fn(&[u8]) {
        move |bytes| {
            if let Ok(text) = std::str::from_utf8(bytes) {
                harness(text);
            }
        }
    }

    #[test]
    fn every_seed_and_regression_passes_its_harness() {
        assert!(replay("token_open", super::token_open) > 0);
        assert!(replay("path_normalize", text(super::path_normalize)) > 0);
        assert!(replay("token_query", text(super::token_query)) > 0);
        assert!(replay("request_headers", super::request_headers) > 0);
        assert!(
            !inputs("regressions", "path_normalize").is_empty(),
            "the regression corpus is missing"
        );
    }
}
