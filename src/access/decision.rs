//! The gate's decision: which rule governs a path, which token the request
//! carries, whether that token opens, and whether the rule admits its user.
//!
//! Everything here is pure apart from the decrypt cache: no I/O, no clock
//! reads (the caller passes `now`). The result is a [`Decision`] value that
//! the server turns into a forwarded request or a refusal.

use std::sync::Arc;

use crate::access::cache::TokenCache;
use crate::access::credential::Credential;
use crate::access::reason::Reason;
use crate::access::revocation::LiveSet;
use crate::access::rules::{Access, PageRule};
use crate::config::Config;
use crate::token::{self, Opened, TokenError};

/// What the gate does with a request.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// Forward it; with the verified user when the page needed one.
    Forward(Option<Arc<Opened>>),
    /// Refuse it; it never reaches the upstream.
    Reject(Reason),
    /// Refuse a verified user the rule does not admit (403, with a
    /// [`Reason::NotAdmitted`] that says which condition failed); the user
    /// is kept for the access log.
    NotAdmitted(Arc<Opened>, Reason),
}

/// What a credential is checked against besides the config: the decrypt
/// cache, and the revocations a shared store announced. Both outlive
/// reloads (the gate's state holds them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks<'a> {
    /// Opened credentials, so each is decrypted once.
    pub cache: &'a TokenCache,
    /// The store's revocations.
    pub live: &'a LiveSet,
}

/// Open a credential through the cache and check everything that can
/// change after it was sealed: expiry (with clock skew), the account, the
/// key still being configured and live, and the revocations.
pub(crate) fn verify(
    config: &Config,
    checks: Checks<'_>,
    credential: &Credential<'_>,
    now: u64,
) -> Result<Arc<Opened>, Reason> {
    let cache = checks.cache;
    let sealed = credential.as_str();
    if sealed.len() > config.limits.max_token_len {
        return Err(Reason::InvalidToken(TokenError::TooLong));
    }
    // A hit counts only for what the entry was opened as: a session
    // cookie's value offered as a URL token is not a token (the string is
    // the same, so the cache alone cannot tell them apart).
    let hit = cache
        .get(sealed)
        .filter(|opened| opened.purpose == credential.purpose());
    if let Some(opened) = hit {
        return match validate(config, checks.live, &opened, now) {
            Ok(()) => Ok(opened),
            Err(reason) => {
                cache.remove(sealed);
                Err(reason)
            }
        };
    }
    let opened = match credential {
        Credential::Token(token) => token::open(&config.secrets, token),
        Credential::Session(session) => token::open_session(&config.secrets, session),
    };
    let opened = Arc::new(opened.map_err(Reason::InvalidToken)?);
    validate(config, checks.live, &opened, now)?;
    cache.insert(sealed, Arc::clone(&opened));
    Ok(opened)
}

/// The checks that a cache hit repeats, and that an open tunnel repeats
/// while it lives: the key still configured and live, the time window, the
/// account, and the revocations.
pub(crate) fn validate(
    config: &Config,
    live: &LiveSet,
    opened: &Opened,
    now: u64,
) -> Result<(), Reason> {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
    opened
        .check(
            &config.secrets,
            at,
            config.verification.clock_skew.as_secs(),
        )
        .map_err(Reason::InvalidToken)?;
    if opened.claims.account_id != config.verification.account_id {
        return Err(Reason::WrongAccount);
    }
    if !config.revocations.is_empty() && config.revocations.refuses(&opened.claims) {
        return Err(Reason::Revoked);
    }
    if let Some(store) = &config.store {
        if live.refuses(&opened.claims) {
            return Err(Reason::Revoked);
        }
        if live.too_stale(store.fails_closed(), store.max_staleness.as_secs(), now) {
            return Err(Reason::RevocationsUnknown);
        }
    }
    Ok(())
}

/// The rule for a `method` request of `path` and its access, or the
/// default when no rule matches; 405 for a method no `methods` list can
/// name where the path's rules name methods ([`RuleSet::lookup`]).
///
/// [`RuleSet::lookup`]: crate::access::rules::RuleSet::lookup
pub(crate) fn access_for<'c>(
    config: &'c Config,
    path: &str,
    method: &http::Method,
) -> Result<(Option<&'c PageRule>, Access), Reason> {
    match config.rules.lookup(path, method) {
        Ok(Some(rule)) => Ok((Some(rule), rule.access())),
        Ok(None) => Ok((None, config.default_access.access())),
        Err(_unlisted) => Err(Reason::MethodNotListed),
    }
}

/// Decide a request whose rule and access [`access_for`] gave, carrying
/// `credential`: a public page passes without an identity; otherwise the
/// credential must open and validate ([`verify`]) and the rule must admit
/// its user.
pub(crate) fn decide(
    config: &Config,
    checks: Checks<'_>,
    (rule, access): (Option<&PageRule>, Access),
    credential: Option<&Credential<'_>>,
    now: u64,
) -> Decision {
    if access == Access::Public {
        return Decision::Forward(None);
    }
    let Some(credential) = credential else {
        return Decision::Reject(Reason::MissingToken);
    };
    let opened = match verify(config, checks, credential, now) {
        Ok(opened) => opened,
        Err(reason) => return Decision::Reject(reason),
    };
    match rule.map(|rule| (rule.admits(&opened.claims), rule.methods().is_some())) {
        Some((Err(refusal), method_rule)) => {
            let reason = Reason::NotAdmitted {
                refusal,
                method_rule,
            };
            Decision::NotAdmitted(opened, reason)
        }
        None | Some((Ok(_), _)) => Decision::Forward(Some(opened)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::Claims;
    use std::path::Path;

    const NOW: u64 = 1_800_000_000;

    /// The checks of a gate whose store announced nothing.
    fn checks(cache: &TokenCache) -> Checks<'_> {
        static NOTHING: std::sync::LazyLock<LiveSet> = std::sync::LazyLock::new(LiveSet::default);
        Checks {
            cache,
            live: &NOTHING,
        }
    }

    fn config() -> Config {
        Config::parse(&config_text(), Path::new("test.toml")).expect("valid")
    }

    fn config_text() -> String {
        crate::config::TEST_CONFIG.to_string()
    }

    fn token(config: &Config, key: &str, account: &str, email: &str, iat: u64, exp: u64) -> String {
        let claims = Claims {
            account_id: account.into(),
            email: email.into(),
            user_id: None,
            name: None,
            avatar_url: None,
            groups: Vec::new(),
            attributes: Default::default(),
            session_id: None,
            issued_at: iat,
            expires_at: exp,
        };
        token::mint(config.secrets.get(key).expect("key"), &claims)
    }

    /// The decision for the normalized `path`.
    fn decide_path(
        config: &Config,
        cache: &TokenCache,
        path: &str,
        credential: Option<&Credential<'_>>,
        now: u64,
    ) -> Decision {
        decide(
            config,
            checks(cache),
            access_for(config, path, &http::Method::GET).expect("GET is standard"),
            credential,
            now,
        )
    }

    #[test]
    fn decisions_for_each_kind_of_token() {
        let c = config();
        let cache = TokenCache::new(100);
        let ok = token(&c, "live", "acct", "a@example.com", NOW, NOW + 300);
        let outsider = token(&c, "live", "acct", "a@example.org", NOW, NOW + 300);
        let expired = token(&c, "live", "acct", "a@example.com", NOW - 900, NOW - 300);
        let retired = token(&c, "retired", "acct", "a@example.com", NOW, NOW + 300);
        let other = token(&c, "live", "other", "a@example.com", NOW, NOW + 300);
        let reject = |t: &str, p: &str| match decide_path(
            &c,
            &cache,
            p,
            Some(&Credential::Token(t.into())),
            NOW,
        ) {
            Decision::Reject(r) => Some(r),
            Decision::NotAdmitted(_, reason) => Some(reason),
            Decision::Forward(_) => None,
        };
        assert!(matches!(
            decide_path(&c, &cache, "/", None, NOW),
            Decision::Forward(None)
        ));
        assert_eq!(
            reject("", "/docs/x"),
            Some(Reason::InvalidToken(TokenError::Malformed))
        );
        assert!(matches!(
            decide_path(&c, &cache, "/docs/x", None, NOW),
            Decision::Reject(Reason::MissingToken)
        ));
        assert!(matches!(
            decide_path(&c, &cache, "/nowhere", None, NOW),
            Decision::Reject(Reason::MissingToken)
        ));
        assert_eq!(reject(&ok, "/docs/x"), None);
        assert_eq!(reject(&ok, "/staff/x"), None);
        assert_eq!(
            reject(&outsider, "/staff/x"),
            Some(Reason::NotAdmitted {
                refusal: crate::access::rules::Refusal::Email,
                method_rule: false
            })
        );
        assert_eq!(
            reject(&expired, "/docs/x"),
            Some(Reason::InvalidToken(TokenError::Expired))
        );
        assert_eq!(
            reject(&retired, "/docs/x"),
            Some(Reason::InvalidToken(TokenError::ExpiredKey))
        );
        assert_eq!(reject(&other, "/docs/x"), Some(Reason::WrongAccount));
    }

    #[test]
    fn a_cached_token_is_rechecked_for_expiry_on_every_hit() {
        let c = config();
        let cache = TokenCache::new(100);
        let t = token(&c, "live", "acct", "a@example.com", NOW, NOW + 300);
        let t = Credential::Token(t.into());
        assert!(verify(&c, checks(&cache), &t, NOW).is_ok());
        assert_eq!(cache.len(), 1);
        // Past expiry plus skew, the cached entry is refused and dropped.
        assert_eq!(
            verify(&c, checks(&cache), &t, NOW + 300 + 61).err(),
            Some(Reason::InvalidToken(TokenError::Expired))
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn a_cached_entry_counts_only_as_what_it_was_opened_as() {
        let c = config();
        let cache = TokenCache::new(100);
        let t = token(&c, "live", "acct", "a@example.com", NOW, NOW + 300);
        let opened = token::open(&c.secrets, &t).expect("opens");
        let claims = crate::http::session::session_claims(&opened, NOW, 3600);
        let session = token::mint_session(c.secrets.primary(), &claims);
        let t = Credential::Token(t.into());
        assert!(verify(&c, checks(&cache), &Credential::Session(&session), NOW).is_ok());
        assert!(verify(&c, checks(&cache), &t, NOW).is_ok());
        assert_eq!(cache.len(), 2);
        // Each string, cached, offered as the other kind: refused.
        let session_as_token = Credential::Token(session.as_str().into());
        assert_eq!(
            verify(&c, checks(&cache), &session_as_token, NOW).err(),
            Some(Reason::InvalidToken(TokenError::Malformed))
        );
        let token_as_session = Credential::Session(t.as_str());
        assert_eq!(
            verify(&c, checks(&cache), &token_as_session, NOW).err(),
            Some(Reason::InvalidToken(TokenError::Malformed))
        );
        // And each still counts as itself.
        assert!(verify(&c, checks(&cache), &Credential::Session(&session), NOW).is_ok());
        assert!(verify(&c, checks(&cache), &t, NOW).is_ok());
    }

    #[test]
    fn a_cached_token_stops_counting_when_its_secret_id_gets_another_value() {
        let old = config();
        let cache = TokenCache::new(100);
        let t = token(&old, "live", "acct", "a@example.com", NOW, NOW + 300);
        let t = Credential::Token(t.into());
        // A request that started on the old config caches the token after
        // the reload already pruned the cache: the new config must still
        // refuse it, on the hit.
        let new = Config::parse(
            &config_text().replace("live-secret", "rotated-after-a-leak"),
            Path::new("test.toml"),
        )
        .expect("valid");
        assert!(verify(&old, checks(&cache), &t, NOW).is_ok());
        assert_eq!(cache.len(), 1);
        assert_eq!(
            verify(&new, checks(&cache), &t, NOW).err(),
            Some(Reason::InvalidToken(TokenError::UnknownKey))
        );
    }

    #[test]
    fn a_token_of_exactly_the_length_limit_is_opened_and_one_byte_more_is_not() {
        let c = config();
        let t = token(&c, "live", "acct", "a@example.com", NOW, NOW + 300);
        let limited = |len: usize| {
            let text = config_text().replace(
                "[verification]",
                &format!("[limits]\nmax_token_len = {len}\n[verification]"),
            );
            Config::parse(&text, Path::new("test.toml")).expect("valid")
        };
        let cache = TokenCache::new(0);
        let credential = Credential::Token(t.as_str().into());
        assert!(verify(&limited(t.len()), checks(&cache), &credential, NOW).is_ok());
        assert_eq!(
            verify(&limited(t.len() - 1), checks(&cache), &credential, NOW).err(),
            Some(Reason::InvalidToken(TokenError::TooLong))
        );
    }

    #[test]
    fn failed_tokens_never_enter_the_cache() {
        let c = config();
        let cache = TokenCache::new(100);
        let expired = token(&c, "live", "acct", "a@example.com", NOW - 900, NOW - 300);
        for t in ["garbage", "pg1.live.AAAA", expired.as_str()] {
            assert!(verify(&c, checks(&cache), &Credential::Token(t.into()), NOW).is_err());
        }
        assert!(cache.is_empty());
    }
}
