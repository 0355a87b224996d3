//! The gate's decision: which rule governs a path, which token the request
//! carries, whether that token opens, and whether the rule admits its user.
//!
//! Everything here is pure apart from the decrypt cache: no I/O, no clock
//! reads (the caller passes `now`). The result is a [`Decision`] value that
//! the server turns into a forwarded request or a refusal.

use std::sync::Arc;

use http::header::{self, HeaderMap};

use crate::cache::TokenCache;
use crate::config::{Config, DefaultAccess};
use crate::reject::Reason;
use crate::rules::{Access, PageRule};
use crate::token::{self, Opened, TokenError};

/// Query parameters that carry a token (both spellings are in use).
pub const TOKEN_QUERY_PARAMS: [&str; 2] = ["auth-token", "auth_token"];

/// The header that carries a token besides `Authorization: Bearer`.
pub const TOKEN_HEADER: &str = "x-auth-token";

/// What the gate does with a request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Forward it; with the verified user when the page needed one.
    Forward(Option<Arc<Opened>>),
    /// Refuse it; it never reaches the upstream.
    Reject(Reason),
}

/// Where a token was found; the forwarder removes it from each of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenPlaces {
    /// In the query string.
    pub query: bool,
    /// In `Authorization: Bearer`.
    pub bearer: bool,
    /// In `X-Auth-Token`.
    pub header: bool,
}

impl TokenPlaces {
    /// Whether a token was found anywhere.
    pub fn any(self) -> bool {
        self.query || self.bearer || self.header
    }
}

/// The token a request carries, if any.
///
/// The same token may appear in several places (an embed that sets both the
/// query and a header); different tokens in one request are refused rather
/// than guessing which one the client meant.
pub fn find_token<'a>(
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Result<(Option<std::borrow::Cow<'a, str>>, TokenPlaces), Reason> {
    let mut found: Option<std::borrow::Cow<'a, str>> = None;
    let mut places = TokenPlaces::default();
    let mut offer = |candidate: std::borrow::Cow<'a, str>| -> Result<(), Reason> {
        match &found {
            Some(existing) if *existing != candidate => Err(Reason::ConflictingTokens),
            Some(_) => Ok(()),
            None => {
                found = Some(candidate);
                Ok(())
            }
        }
    };

    if let Some(query) = query {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if TOKEN_QUERY_PARAMS.contains(&name.as_ref()) {
                places.query = true;
                offer(value)?;
            }
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        if let Some(token) = bearer_token(value.as_bytes()) {
            places.bearer = true;
            offer(std::borrow::Cow::Borrowed(token))?;
        }
    }
    for value in headers.get_all(TOKEN_HEADER) {
        let token = value
            .to_str()
            .map_err(|_| Reason::InvalidToken(TokenError::Malformed))?;
        places.header = true;
        offer(std::borrow::Cow::Borrowed(token.trim()))?;
    }
    Ok((found, places))
}

/// The credential of `Authorization: Bearer <token>`, if the header is one.
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Open `token` through the cache and check everything that can change
/// after it was minted: expiry (with clock skew), the account, and the key
/// still being configured and live.
pub fn verify(
    config: &Config,
    cache: &TokenCache,
    token: &str,
    now: u64,
) -> Result<Arc<Opened>, Reason> {
    if token.len() > token::MAX_TOKEN_LEN {
        return Err(Reason::InvalidToken(TokenError::TooLong));
    }
    if let Some(opened) = cache.get(token) {
        return match validate(config, &opened, now) {
            Ok(()) => Ok(opened),
            Err(reason) => {
                cache.remove(token);
                Err(reason)
            }
        };
    }
    let opened = Arc::new(token::open(&config.secrets, token).map_err(Reason::InvalidToken)?);
    validate(config, &opened, now)?;
    cache.insert(token, Arc::clone(&opened));
    Ok(opened)
}

/// The checks that a cache hit repeats: the key still configured and
/// live, the time window, and the account.
fn validate(config: &Config, opened: &Opened, now: u64) -> Result<(), Reason> {
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
    opened
        .check(&config.secrets, now, config.verification.clock_skew.as_secs())
        .map_err(Reason::InvalidToken)?;
    if opened.claims.account_id != config.verification.account_id {
        return Err(Reason::WrongAccount);
    }
    Ok(())
}

/// The rule's access for `path`, or the default when no rule matches.
pub fn access_for<'c>(config: &'c Config, path: &str) -> (Option<&'c PageRule>, Access) {
    match config.rules.find(path) {
        Some(rule) => (Some(rule), rule.access()),
        None => match config.default_access {
            DefaultAccess::Public => (None, Access::Public),
            DefaultAccess::Restricted => (None, Access::Verified),
        },
    }
}

/// Decide a request for the normalized `path` carrying `token`.
pub fn decide(
    config: &Config,
    cache: &TokenCache,
    path: &str,
    token: Option<&str>,
    now: u64,
) -> Decision {
    let (rule, access) = access_for(config, path);
    if access == Access::Public {
        return Decision::Forward(None);
    }
    let Some(token) = token else {
        return Decision::Reject(Reason::MissingToken);
    };
    let opened = match verify(config, cache, token, now) {
        Ok(opened) => opened,
        Err(reason) => return Decision::Reject(reason),
    };
    let admitted = rule.is_none_or(|rule| rule.admits(&opened.claims.email));
    if admitted {
        Decision::Forward(Some(opened))
    } else {
        Decision::Reject(Reason::NotAdmitted)
    }
}

/// Seconds since the Unix epoch, saturating at zero for clocks before it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
