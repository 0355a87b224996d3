//! Revocations: credentials refused before their expiry because of who
//! they were issued to and when.
//!
//! A revocation names a user (by email or by user id) and a time: every
//! token and session of that user issued before it is refused with 401.
//! `[verification] sessions_not_before` does the same for every user.
//! They live in the config (`[[revocations]]`), so a reload applies them;
//! the decision checks them on every request, decrypt-cache hits included,
//! and an open WebSocket tunnel closes when its credential is revoked.

use std::collections::HashMap;

use crate::token::Claims;

/// The revocations in force, compiled for lookups that cost a hash.
#[derive(Debug, Clone, Default)]
pub(crate) struct Revocations {
    /// Lower-cased email → credentials issued before this (Unix seconds)
    /// are refused.
    by_email: HashMap<String, u64>,
    /// User id → the same.
    by_user_id: HashMap<String, u64>,
    /// Every credential issued before this is refused.
    not_before: Option<u64>,
}

/// Whom a `[[revocations]]` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A user by email (lower-cased here, as tokens carry it).
    Email(String),
    /// A user by the id the customer's app gave them.
    UserId(String),
}

impl Revocations {
    /// The revocations of `entries` (a subject twice keeps the later
    /// time: it revokes more) and the global `not_before`.
    pub(crate) fn new(entries: &[(Subject, u64)], not_before: Option<u64>) -> Revocations {
        let mut revocations = Revocations {
            not_before,
            ..Revocations::default()
        };
        for (subject, before) in entries {
            let (map, key) = match subject {
                Subject::Email(email) => (&mut revocations.by_email, email.to_ascii_lowercase()),
                Subject::UserId(id) => (&mut revocations.by_user_id, id.clone()),
            };
            let at = map.entry(key).or_insert(*before);
            *at = (*at).max(*before);
        }
        revocations
    }

    /// Whether the credential with these claims is revoked: issued before
    /// `sessions_not_before`, or before a revocation of its email or its
    /// user id.
    pub(crate) fn refuses(&self, claims: &Claims) -> bool {
        let issued = claims.issued_at;
        let before = |at: Option<&u64>| at.is_some_and(|&at| issued < at);
        self.not_before.is_some_and(|at| issued < at)
            || before(self.by_email.get(&claims.email))
            || claims
                .user_id
                .as_deref()
                .is_some_and(|id| before(self.by_user_id.get(id)))
    }

    /// Whether there are none (the common case: nothing to look up).
    pub(crate) fn is_empty(&self) -> bool {
        self.not_before.is_none() && self.by_email.is_empty() && self.by_user_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(email: &str, user_id: Option<&str>, issued_at: u64) -> Claims {
        let mut c = Claims::for_user("a".into(), email, user_id.map(Into::into), issued_at, 60)
            .expect("claims");
        c.issued_at = issued_at;
        c
    }

    #[test]
    fn a_user_is_revoked_by_email_or_id_for_credentials_issued_before() {
        let r = Revocations::new(
            &[
                (Subject::Email("Eve@Example.org".into()), 1_000),
                (Subject::UserId("u-7".into()), 2_000),
                (Subject::Email("eve@example.org".into()), 500),
            ],
            None,
        );
        assert!(r.refuses(&claims("eve@example.org", None, 999)));
        assert!(
            !r.refuses(&claims("eve@example.org", None, 1_000)),
            "issued at the time"
        );
        assert!(!r.refuses(&claims("ada@example.org", None, 0)));
        assert!(r.refuses(&claims("ada@example.org", Some("u-7"), 1_999)));
        assert!(!r.refuses(&claims("ada@example.org", Some("u-8"), 1_999)));
        assert!(!r.refuses(&claims("ada@example.org", Some("u-7"), 2_000)));
        assert!(!r.is_empty());
        assert!(Revocations::default().is_empty());
    }

    #[test]
    fn sessions_not_before_signs_everybody_out() {
        let r = Revocations::new(&[], Some(5_000));
        assert!(r.refuses(&claims("a@b.io", None, 4_999)));
        assert!(!r.refuses(&claims("a@b.io", None, 5_000)));
    }
}
