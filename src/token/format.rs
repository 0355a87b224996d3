//! The token format: mint and open.
//!
//! A token is `pg1.<key-id>.<base64url-no-pad(nonce(24) || ciphertext+tag)>`:
//! XChaCha20-Poly1305 under the key derived for `<key-id>` (see
//! [`crate::token::keys`]), with the clear header `pg1.<key-id>.` as associated
//! data, over a compact JSON object of [`Claims`]. `docs/token-format.md` is
//! the full specification, with a reference minter in Python.
//!
//! Opening is split in two so the result can be cached: [`open`] checks
//! structure and authenticity (time-independent); [`Opened::check`] (or
//! [`Claims::check_time`]) checks the clock, on every use.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::{AeadInPlace, Tag, XNonce};
use rand_core::{OsRng, RngCore};

pub(crate) use crate::token::claims::Claims;
use crate::token::keys::{is_valid_key_id, Purpose, SecretRing, TokenKey};

/// Hard maximum length of a token in bytes, checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The version tag that starts every token of this format, with its dot.
pub(crate) const VERSION_PREFIX: &str = "pg1.";

/// The version tag of session cookies: the same layout as tokens, under a
/// key derived for [`Purpose::Session`].
pub(crate) const SESSION_PREFIX: &str = "pgs1.";

/// The clear prefix of each kind of sealed claims.
const fn prefix(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Token => VERSION_PREFIX,
        Purpose::Session => SESSION_PREFIX,
    }
}

/// Bytes of XChaCha20 nonce at the start of the decoded body.
const NONCE_LEN: usize = 24;
/// Bytes of Poly1305 tag at the end of the decoded body.
const TAG_LEN: usize = 16;

/// Why a token was not accepted. Every variant means "not authenticated";
/// they are told apart for logs and metrics, never shown to the client.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`]; nothing was decoded.
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not `pg1.<key-id>.<base64url>` with a body long enough for nonce and
    /// tag (includes unknown versions).
    #[error("token is malformed")]
    Malformed,
    /// The key id in the header is not configured.
    #[error("token names a key that is not configured")]
    UnknownKey,
    /// The AEAD tag did not verify: tampered, or minted with another secret.
    #[error("token failed authentication")]
    Rejected,
    /// Authentic, but the plaintext is not valid claims JSON (or `acc`/`eml`
    /// is empty).
    #[error("token claims are invalid")]
    BadClaims,
    /// Past its expiry plus the clock-skew allowance.
    #[error("token has expired")]
    Expired,
    /// Issued further in the future than the clock-skew allowance.
    #[error("token is not yet valid")]
    NotYetValid,
    /// The secret that opened it is past its configured `not_after`.
    #[error("token's key has been retired")]
    ExpiredKey,
}

/// The result of opening a token: its claims and the id of the key that
/// opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated claims (email lower-cased).
    pub(crate) claims: Claims,
    /// Id of the secret whose key verified the token.
    pub(crate) key_id: Box<str>,
    /// A token or a session cookie: each is only ever honoured as what it
    /// was opened as, cached or not.
    pub(crate) purpose: Purpose,
    /// [`TokenKey::fingerprint`] of the key that opened it.
    pub(crate) key_fingerprint: [u8; 16],
}

impl Opened {
    /// The authenticated claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The id of the secret whose key opened it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Mints a token for `claims` under `key`, with a fresh random nonce from the
/// OS CSPRNG. The email is written ASCII lower-cased. Claims are not
/// validated; keep them small enough that the token stays within
/// [`MAX_TOKEN_LEN`] (about 2.9 KB of JSON with a 64-character key id), or it
/// will not open.
///
/// # Panics
/// If the operating system's random number generator fails.
pub fn mint(key: &TokenKey, claims: &Claims) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    seal(Purpose::Token, key, claims, &nonce)
}

/// Seals `claims` as a session cookie value (`pgs1.` prefix, session key).
/// Same format and limits as tokens; see `docs/token-format.md`.
///
/// # Panics
/// If the operating system's random number generator fails.
pub(crate) fn mint_session(key: &TokenKey, claims: &Claims) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    seal(Purpose::Session, key, claims, &nonce)
}

/// Opens a session cookie value sealed by [`mint_session`]; errors as
/// [`open`].
pub(crate) fn open_session(ring: &SecretRing, session: &str) -> Result<Opened, TokenError> {
    unseal(Purpose::Session, ring, session)
}

/// Mints with a caller-chosen nonce: for test vectors only; never use a
/// chosen nonce in production (a repeated nonce breaks the AEAD).
#[doc(hidden)]
#[cfg(test)]
pub(crate) fn mint_with_nonce(key: &TokenKey, claims: &Claims, nonce: &[u8; NONCE_LEN]) -> String {
    seal(Purpose::Token, key, claims, nonce)
}

fn seal(purpose: Purpose, key: &TokenKey, claims: &Claims, nonce: &[u8; NONCE_LEN]) -> String {
    let claims: Cow<'_, Claims> = if claims.email.bytes().any(|b| b.is_ascii_uppercase()) {
        let mut lowered = claims.clone();
        lowered.email.make_ascii_lowercase();
        Cow::Owned(lowered)
    } else {
        Cow::Borrowed(claims)
    };
    let mut token = header(prefix(purpose), key.id());
    let mut body = Vec::with_capacity(NONCE_LEN + 128 + TAG_LEN);
    body.extend_from_slice(nonce);
    serde_json::to_writer(&mut body, &*claims)
        .unwrap_or_else(|_| unreachable!("claims always serialize into a Vec"));
    let tag = key
        .cipher(purpose)
        .encrypt_in_place_detached(
            XNonce::from_slice(nonce),
            token.as_bytes(),
            &mut body[NONCE_LEN..],
        )
        .unwrap_or_else(|_| unreachable!("plaintext is far below the XChaCha20 limit"));
    body.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode_string(&body, &mut token);
    token
}

/// `pg1.<key-id>.`: the clear header, which is also the associated data.
fn header(prefix: &str, key_id: &str) -> String {
    // Room for the base64 body of a typical token, to encode without regrowing.
    let mut header = String::with_capacity(prefix.len() + key_id.len() + 1 + 256);
    header.push_str(prefix);
    header.push_str(key_id);
    header.push('.');
    header
}

/// Decodes and decrypts a token (structure and authenticity only; no time
/// checks). In order: length limit, then header split (unknown version or
/// malformed id → `Malformed`, unconfigured id → `UnknownKey`), base64url
/// decode, AEAD open with the header as associated data (`Rejected`), JSON
/// parse and claim checks (`BadClaims`: any rule of
/// [`Claims::validate`] broken). The email is lower-cased again (defence in depth).
pub fn open(ring: &SecretRing, token: &str) -> Result<Opened, TokenError> {
    unseal(Purpose::Token, ring, token)
}

fn unseal(purpose: Purpose, ring: &SecretRing, token: &str) -> Result<Opened, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let version = prefix(purpose);
    let rest = token.strip_prefix(version).ok_or(TokenError::Malformed)?;
    let (key_id, body) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    if !is_valid_key_id(key_id) {
        return Err(TokenError::Malformed);
    }
    let key = ring.get(key_id).ok_or(TokenError::UnknownKey)?;
    let aad = &token.as_bytes()[..version.len() + key_id.len() + 1];

    let mut bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(TokenError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
    let (plaintext, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
    key.cipher(purpose)
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| TokenError::Rejected)?;

    let mut claims: Claims =
        serde_json::from_slice(plaintext).map_err(|_| TokenError::BadClaims)?;
    claims.email.make_ascii_lowercase();
    // The identity is forwarded in headers and matched by rules: refuse
    // anything that could read as two identities or not fit a header, even
    // from a minter other than this gate.
    claims.validate().map_err(|_| TokenError::BadClaims)?;
    Ok(Opened {
        claims,
        key_id: key.id().into(),
        purpose,
        key_fingerprint: key.fingerprint(),
    })
}

impl Claims {
    /// Time checks, done only after the AEAD tag verified: `Expired` when
    /// `now > exp + skew`; `NotYetValid` when `iat > now + skew`. All
    /// arithmetic saturates, so extreme values cannot overflow.
    pub fn check_time(&self, now_unix: u64, skew_secs: u64) -> Result<(), TokenError> {
        if now_unix > self.expires_at.saturating_add(skew_secs) {
            return Err(TokenError::Expired);
        }
        if self.issued_at > now_unix.saturating_add(skew_secs) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

impl Opened {
    /// The key that opened it is still configured with the same value
    /// (`UnknownKey`) and live at `now` (`ExpiredKey`).
    pub(crate) fn check_key(&self, ring: &SecretRing, now: SystemTime) -> Result<(), TokenError> {
        let key = ring
            .get(&self.key_id)
            .filter(|key| key.fingerprint() == self.key_fingerprint)
            .ok_or(TokenError::UnknownKey)?;
        match key.is_live(now) {
            true => Ok(()),
            false => Err(TokenError::ExpiredKey),
        }
    }

    /// Everything that depends on the clock or on the current ring, for a
    /// freshly opened or a cached token: the key must still be configured
    /// with the same value (`UnknownKey`) and live (`ExpiredKey`), then
    /// [`Claims::check_time`].
    pub(crate) fn check(
        &self,
        ring: &SecretRing,
        now: SystemTime,
        skew_secs: u64,
    ) -> Result<(), TokenError> {
        self.check_key(ring, now)?;
        // A clock before 1970 is treated as 1970: tokens look young, not old,
        // and `NotYetValid` still bounds them.
        let now_unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.claims.check_time(now_unix, skew_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::claims::{AttrValue, ClaimError};
    use crate::token::keys::SecretSpec;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ring(secrets: &[(&str, &str)]) -> SecretRing {
        SecretRing::new(
            secrets
                .iter()
                .map(|(id, value)| SecretSpec {
                    id: (*id).to_owned(),
                    value: value.as_bytes().to_vec(),
                    primary: false,
                    not_after: None,
                })
                .collect(),
        )
        .unwrap()
    }

    fn claims() -> Claims {
        Claims {
            account_id: "acct_42".to_owned(),
            email: "Ada@Example.COM".to_owned(),
            user_id: Some("u-7".to_owned()),
            name: Some("Ada Lovelace".to_owned()),
            avatar_url: Some("https://example.com/a.png".to_owned()),
            groups: vec!["beta".to_owned()],
            attributes: [("plan".to_owned(), AttrValue::One("pro".to_owned()))]
                .into_iter()
                .collect(),
            session_id: Some("s3ss10n-1d-0f-22-chars".to_owned()),
            issued_at: 1_700_000_000,
            expires_at: 1_700_003_600,
        }
    }

    fn lowered(mut c: Claims) -> Claims {
        c.email.make_ascii_lowercase();
        c
    }

    /// Splits a token into its clear header (with the dot) and decoded body.
    fn split(token: &str) -> (&str, Vec<u8>) {
        let dot = token.rfind('.').unwrap();
        (
            &token[..=dot],
            URL_SAFE_NO_PAD.decode(&token[dot + 1..]).unwrap(),
        )
    }

    #[test]
    fn claims_for_a_user_normalize_the_email_and_refuse_bad_identities() {
        let claims =
            Claims::for_user("acct".into(), "  Ada@Example.COM\n", None, 100, 60).expect("claims");
        assert_eq!(claims.email, "ada@example.com");
        assert_eq!((claims.issued_at, claims.expires_at), (100, 160));
        assert_eq!(claims.name, None);
        let far = Claims::for_user("acct".into(), "a@b.co", Some("u:1".into()), u64::MAX, 60);
        assert_eq!(far.expect("claims").expires_at, u64::MAX);
        let refused = |email: &str, id: Option<&str>| {
            Claims::for_user("acct".into(), email, id.map(Into::into), 0, 1).unwrap_err()
        };
        assert_eq!(refused("a@b", None), ClaimError::Email);
        assert_eq!(refused("a,b@c.d", None), ClaimError::Email);
        assert_eq!(refused("a@b.co", Some("has space")), ClaimError::UserId);
        assert_eq!(refused("a@b.co", Some("")), ClaimError::UserId);
        assert_eq!(
            ClaimError::UserId.to_string(),
            "must match ^[a-zA-Z0-9:_-]{1,255}$"
        );
    }

    #[test]
    fn minted_token_opens_with_lowercased_email() {
        let ring = ring(&[("k1", "secret-one")]);
        let token = mint(ring.primary(), &claims());
        assert!(token.starts_with("pg1.k1."));
        let opened = open(&ring, &token).unwrap();
        assert_eq!(opened.claims, lowered(claims()));
        assert_eq!(&*opened.key_id, "k1");
    }

    #[test]
    fn minimal_claims_omit_optional_names() {
        let ring = ring(&[("k1", "s")]);
        let minimal = Claims {
            user_id: None,
            name: None,
            avatar_url: None,
            groups: Vec::new(),
            attributes: Default::default(),
            session_id: None,
            ..claims()
        };
        let token = mint_with_nonce(ring.primary(), &minimal, &[7; 24]);
        let (header, body) = split(&token);
        let mut plaintext = body[NONCE_LEN..body.len() - TAG_LEN].to_vec();
        let tag = Tag::clone_from_slice(&body[body.len() - TAG_LEN..]);
        ring.primary()
            .cipher(Purpose::Token)
            .decrypt_in_place_detached(
                XNonce::from_slice(&[7; 24]),
                header.as_bytes(),
                &mut plaintext,
                &tag,
            )
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&plaintext).unwrap(),
            r#"{"acc":"acct_42","eml":"ada@example.com","iat":1700000000,"exp":1700003600}"#
        );
        assert_eq!(open(&ring, &token).unwrap().claims, lowered(minimal));
    }

    #[test]
    fn fresh_nonce_per_mint() {
        let ring = ring(&[("k1", "s")]);
        assert_ne!(
            mint(ring.primary(), &claims()),
            mint(ring.primary(), &claims())
        );
    }

    #[test]
    fn every_flipped_bit_in_the_body_is_rejected() {
        let ring = ring(&[("k1", "s")]);
        let token = mint(ring.primary(), &claims());
        let (header, body) = split(&token);
        for bit in 0..body.len() * 8 {
            let mut bad = body.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let bad = format!("{header}{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(open(&ring, &bad), Err(TokenError::Rejected), "bit {bit}");
        }
    }

    #[test]
    fn every_flipped_bit_in_the_token_text_is_rejected() {
        let ring = ring(&[("k1", "s"), ("k0", "t"), ("j1", "u")]);
        let token = mint(ring.primary(), &claims());
        for bit in 0..token.len() * 8 {
            let mut bad = token.clone().into_bytes();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(bad) = String::from_utf8(bad) {
                assert!(open(&ring, &bad).is_err(), "bit {bit}: {bad}");
            }
        }
    }

    #[test]
    fn truncated_tokens_are_rejected() {
        let ring = ring(&[("k1", "s")]);
        let token = mint(ring.primary(), &claims());
        for len in 0..token.len() {
            assert!(open(&ring, &token[..len]).is_err(), "len {len}");
        }
        let (header, body) = split(&token);
        let short = format!(
            "{header}{}",
            URL_SAFE_NO_PAD.encode(&body[..NONCE_LEN + TAG_LEN - 1])
        );
        assert_eq!(open(&ring, &short), Err(TokenError::Malformed));
    }

    #[test]
    fn overlong_token_is_rejected_before_decoding() {
        let ring = ring(&[("k1", "s")]);
        // Garbage past the limit: TooLong, not Malformed, proves the order.
        let long = format!("pg1.k1.{}", "!".repeat(MAX_TOKEN_LEN));
        assert_eq!(open(&ring, &long), Err(TokenError::TooLong));
        let at_limit = format!("pg1.k1.{}", "!".repeat(MAX_TOKEN_LEN - 7));
        assert_eq!(open(&ring, &at_limit), Err(TokenError::Malformed));
    }

    #[test]
    fn token_under_another_secret_is_rejected() {
        let minted_by = ring(&[("k1", "one")]);
        let opened_by = ring(&[("k1", "two")]);
        let token = mint(minted_by.primary(), &claims());
        assert_eq!(open(&opened_by, &token), Err(TokenError::Rejected));
    }

    #[test]
    fn swapping_the_header_key_id_is_rejected() {
        let ring = ring(&[("k1", "one"), ("k2", "two")]);
        let token = mint(ring.get("k1").unwrap(), &claims());
        let swapped = token.replacen("pg1.k1.", "pg1.k2.", 1);
        assert_eq!(open(&ring, &swapped), Err(TokenError::Rejected));
    }

    #[test]
    fn unknown_key_id_is_reported() {
        let ring = ring(&[("k1", "one")]);
        let token = mint(ring.primary(), &claims()).replacen("pg1.k1.", "pg1.k9.", 1);
        assert_eq!(open(&ring, &token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn malformed_headers_are_reported() {
        let ring = ring(&[("k1", "one")]);
        let token = mint(ring.primary(), &claims());
        let body = &token["pg1.k1.".len()..];
        for bad in [
            format!("pg2.k1.{body}"),
            format!("PG1.k1.{body}"),
            format!("pg1..{body}"),
            format!("pg1.k 1.{body}"),
            format!("pg1.k1{body}"),
            format!("pg1.k1.{body}="),
            format!("pg1.k1.{body}.x"),
            format!("pg1.k1.{}", body.replace(['-', '_'], "+")),
            String::new(),
            "pg1.".to_owned(),
        ] {
            if bad != token {
                assert_eq!(open(&ring, &bad), Err(TokenError::Malformed), "{bad}");
            }
        }
    }

    #[test]
    fn authentic_but_bad_claims_are_reported() {
        let ring = ring(&[("k1", "s")]);
        let key = ring.primary();
        let seal = |json: &str| {
            let mut body = [0u8; 24].to_vec();
            body.extend_from_slice(json.as_bytes());
            let tag = key
                .cipher(Purpose::Token)
                .encrypt_in_place_detached(
                    XNonce::from_slice(&[0; 24]),
                    b"pg1.k1.",
                    &mut body[24..],
                )
                .unwrap();
            body.extend_from_slice(&tag);
            format!("pg1.k1.{}", URL_SAFE_NO_PAD.encode(&body))
        };
        for json in [
            "",
            "[]",
            "not json",
            r#"{"acc":"a","eml":"e","iat":1}"#,
            r#"{"eml":"e","iat":1,"exp":2}"#,
            r#"{"acc":"a","eml":"e","iat":-1,"exp":2}"#,
            r#"{"acc":"a","eml":"e","iat":1.5,"exp":2}"#,
            r#"{"acc":"","eml":"e","iat":1,"exp":2}"#,
            r#"{"acc":"a","eml":"","iat":1,"exp":2}"#,
            r#"{"acc":"a","acc":"b","eml":"e","iat":1,"exp":2}"#,
        ] {
            assert_eq!(
                open(&ring, &seal(json)),
                Err(TokenError::BadClaims),
                "{json}"
            );
        }
        // Identities that could read as two users or break a header.
        for json in [
            r#"{"acc":"a","eml":"eve@evil.org, ceo@example.com","iat":1,"exp":2}"#,
            r#"{"acc":"a","eml":"eve@evil.org@example.com","iat":1,"exp":2}"#,
            r#"{"acc":"a","eml":"ada@example.com\u0001","iat":1,"exp":2}"#,
            r#"{"acc":"a","eml":"ada@example.com","uid":"a b","iat":1,"exp":2}"#,
            r#"{"acc":"a\n","eml":"ada@example.com","iat":1,"exp":2}"#,
        ] {
            assert_eq!(
                open(&ring, &seal(json)),
                Err(TokenError::BadClaims),
                "{json}"
            );
        }
        let future =
            seal(r#"{"acc":"a","eml":"E@X.IO","iat":1,"exp":2,"new":{"x":[1]},"uid":null}"#);
        let opened = open(&ring, &future).unwrap();
        assert_eq!(opened.claims.email, "e@x.io");
        assert_eq!(opened.claims.user_id, None);
    }

    #[test]
    fn sessions_and_tokens_never_stand_in_for_each_other() {
        let ring = ring(&[("k1", "a secret")]);
        let c = claims();
        let session = mint_session(ring.primary(), &c);
        assert!(session.starts_with("pgs1.k1."));
        assert_eq!(
            open_session(&ring, &session).map(|o| o.claims),
            Ok(lowered(c.clone()))
        );
        let token = mint(ring.primary(), &c);
        assert_eq!(
            open_session(&ring, &token).err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(open(&ring, &session).err(), Some(TokenError::Malformed));
        // Same body under the other prefix: the key differs, so the tag fails.
        let relabelled = format!("pgs1.{}", &token["pg1.".len()..]);
        assert_eq!(
            open_session(&ring, &relabelled).err(),
            Some(TokenError::Rejected)
        );
    }

    #[test]
    fn time_checks_allow_skew_and_no_more() {
        let c = claims();
        let (iat, exp) = (c.issued_at, c.expires_at);
        assert_eq!(c.check_time(iat, 0), Ok(()));
        assert_eq!(c.check_time(exp, 0), Ok(()));
        assert_eq!(c.check_time(exp + 1, 0), Err(TokenError::Expired));
        assert_eq!(c.check_time(exp + 60, 60), Ok(()));
        assert_eq!(c.check_time(exp + 61, 60), Err(TokenError::Expired));
        assert_eq!(c.check_time(iat - 1, 0), Err(TokenError::NotYetValid));
        assert_eq!(c.check_time(iat - 60, 60), Ok(()));
        assert_eq!(c.check_time(iat - 61, 60), Err(TokenError::NotYetValid));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let forever = Claims {
            issued_at: u64::MAX,
            expires_at: u64::MAX,
            ..claims()
        };
        assert_eq!(forever.check_time(u64::MAX, u64::MAX), Ok(()));
        assert_eq!(forever.check_time(0, 0), Err(TokenError::NotYetValid));
        assert_eq!(forever.check_time(0, u64::MAX), Ok(()));
        let ancient = Claims {
            issued_at: 0,
            expires_at: 0,
            ..claims()
        };
        assert_eq!(ancient.check_time(u64::MAX, 0), Err(TokenError::Expired));
        assert_eq!(ancient.check_time(u64::MAX, u64::MAX), Ok(()));
    }

    #[test]
    fn opened_check_applies_ring_and_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let mut retired = SecretSpec {
            id: "old".to_owned(),
            value: b"old".to_vec(),
            primary: true,
            not_after: Some(now - Duration::from_secs(1)),
        };
        let ring_with_old = SecretRing::new(vec![retired.clone()]).unwrap();
        let opened = open(&ring_with_old, &mint(ring_with_old.primary(), &claims())).unwrap();
        assert_eq!(
            opened.check(&ring_with_old, now, 0),
            Err(TokenError::ExpiredKey)
        );

        retired.not_after = None;
        let live = SecretRing::new(vec![retired]).unwrap();
        assert_eq!(opened.check(&live, now, 0), Ok(()));
        assert_eq!(
            opened.check(&live, now + Duration::from_secs(3600), 0),
            Err(TokenError::Expired)
        );
        assert_eq!(
            opened.check(&live, UNIX_EPOCH, 0),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            opened.check(&ring(&[("new", "n")]), now, 0),
            Err(TokenError::UnknownKey)
        );
    }

    proptest! {
        #[test]
        fn mint_open_round_trips(
            local in "[A-Za-z0-9._%+-]{1,32}",
            domain in "[A-Za-z0-9-]{1,20}\\.[A-Za-z]{2,6}",
            account in "[\\PC]{1,40}",
            user in proptest::option::of("[a-zA-Z0-9:_-]{1,40}"),
            name in proptest::option::of("\\PC{0,60}"),
            avatar in proptest::option::of("https://[a-z.]{1,20}/[\\PC]{0,40}"),
            groups in proptest::collection::vec("[A-Za-z0-9:._-]{1,20}", 0..4),
            attributes in proptest::collection::btree_map(
                "[a-z][a-z0-9_]{0,10}",
                prop_oneof![
                    "\\PC{0,20}".prop_map(AttrValue::One),
                    proptest::collection::vec("\\PC{0,10}", 0..4).prop_map(AttrValue::Many),
                ],
                0..4,
            ),
            issued_at in any::<u64>(),
            expires_at in any::<u64>(),
            key_id in "[A-Za-z0-9_-]{1,64}",
        ) {
            let ring = ring(&[(key_id.as_str(), "proptest-secret")]);
            let c = Claims {
                account_id: account,
                email: format!("{local}@{domain}"),
                user_id: user,
                name,
                avatar_url: avatar,
                groups,
                attributes: attributes.into_iter().collect(),
                session_id: None,
                issued_at,
                expires_at,
            };
            let token = mint(ring.primary(), &c);
            prop_assert!(token.len() <= MAX_TOKEN_LEN);
            let opened = open(&ring, &token).unwrap();
            prop_assert_eq!(opened.claims, lowered(c));
            prop_assert_eq!(&*opened.key_id, key_id.as_str());
        }

        #[test]
        fn open_never_panics_on_garbage(token in "pg1\\.[a-z0-9]{0,3}\\.[A-Za-z0-9_-]{0,200}|\\PC{0,300}") {
            let ring = ring(&[("k1", "s")]);
            prop_assert!(open(&ring, &token).is_err());
        }
    }
}
