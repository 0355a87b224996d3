//! `token::open` and `token::open_session` on whatever a client can send,
//! then the time checks.
//!
//! Each input is tried two ways, for both purposes (`pg1.` tokens and
//! `pgs1.` session cookies):
//!
//! 1. as the token text itself (if UTF-8): the header split, key lookup and
//!    base64 decode see arbitrary bytes;
//! 2. as the *plaintext* of a correctly sealed value under a configured key.
//!    Random bytes never get past the AEAD tag, so without this the claims
//!    parser (serde_json, the `acc`/`eml` checks, e-mail lower-casing) would
//!    never see fuzzed input. A sealed token must open or fail with
//!    `BadClaims` (or `TooLong`); anything else means the sealing here and
//!    `docs/token-format.md` disagree with `src/token.rs`.
//!
//! Whatever opens goes through `Claims::check_time` and `Opened::check` at
//! the extreme clocks and skews, which must saturate, never panic.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::{AeadInPlace, KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use libfuzzer_sys::fuzz_target;
use portal_gate::token::keys::{Purpose, SecretRing, SecretSpec};
use portal_gate::token::{self, Opened, TokenError, MAX_TOKEN_LEN};
use sha2::Sha256;

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

fuzz_target!(|data: &[u8]| {
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
});
