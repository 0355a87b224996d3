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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::token::Claims;

/// The revocations in force, compiled for lookups that cost a hash.
#[derive(Debug, Clone, Default)]
pub(crate) struct Revocations {
    /// Lower-cased email → credentials issued before this (Unix seconds)
    /// are refused.
    by_email: HashMap<String, u64>,
    /// User id → the same.
    by_user_id: HashMap<String, u64>,
    /// Session id → the same (a session id names one session).
    by_session_id: HashMap<String, u64>,
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
    /// One session, by the id the gate sealed in it.
    SessionId(String),
}

impl Subject {
    /// The kind, as the store and the metrics name it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Subject::Email(_) => "email",
            Subject::UserId(_) => "user_id",
            Subject::SessionId(_) => "session_id",
        }
    }

    /// The value it names.
    pub(crate) fn value(&self) -> &str {
        match self {
            Subject::Email(v) | Subject::UserId(v) | Subject::SessionId(v) => v,
        }
    }

    /// The subject of `kind` and `value`, as [`Subject::kind`] names it.
    pub(crate) fn of(kind: &str, value: &str) -> Option<Subject> {
        match kind {
            "email" => Some(Subject::Email(value.to_ascii_lowercase())),
            "user_id" => Some(Subject::UserId(value.to_owned())),
            "session_id" => Some(Subject::SessionId(value.to_owned())),
            _ => None,
        }
    }
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
            revocations.add(subject, *before);
        }
        revocations
    }

    /// Adds a revocation (a subject twice keeps the later time).
    pub(crate) fn add(&mut self, subject: &Subject, before: u64) {
        let (map, key) = match subject {
            Subject::Email(email) => (&mut self.by_email, email.to_ascii_lowercase()),
            Subject::UserId(id) => (&mut self.by_user_id, id.clone()),
            Subject::SessionId(id) => (&mut self.by_session_id, id.clone()),
        };
        let at = map.entry(key).or_insert(before);
        *at = (*at).max(before);
    }

    /// How many subjects are revoked.
    pub(crate) fn len(&self) -> usize {
        self.by_email.len() + self.by_user_id.len() + self.by_session_id.len()
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
            || claims
                .session_id
                .as_deref()
                .is_some_and(|id| before(self.by_session_id.get(id)))
    }

    /// Whether there are none (the common case: nothing to look up).
    pub(crate) fn is_empty(&self) -> bool {
        self.not_before.is_none() && self.len() == 0
    }
}

/// The revocations a shared store announced, and how fresh they are: held
/// in memory by every replica, so that checking a request costs a hash
/// lookup and no round trip ([`crate::ops::store`] keeps it current).
#[derive(Debug, Default)]
pub(crate) struct LiveSet {
    set: ArcSwap<Revocations>,
    /// When the set was last known to be whole (Unix seconds).
    synced_at: AtomicU64,
    connected: AtomicBool,
}

impl LiveSet {
    /// Whether the store revoked the credential with these claims.
    pub(crate) fn refuses(&self, claims: &Claims) -> bool {
        let set = self.set.load();
        !set.is_empty() && set.refuses(claims)
    }

    /// Whether verified pages must wait: the store is set to fail closed
    /// and the set is older than `max_staleness`.
    pub(crate) fn too_stale(&self, fail_closed: bool, max_staleness: u64, now: u64) -> bool {
        fail_closed && self.age(now) > max_staleness
    }

    /// Seconds since the set was last known to be whole.
    pub(crate) fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.synced_at.load(Ordering::Relaxed))
    }

    /// Applies one revocation (the replica that wrote it, or one that
    /// heard it).
    pub(crate) fn add(&self, subject: &Subject, before: u64) {
        self.set.rcu(|set| {
            let mut set = Revocations::clone(set);
            set.add(subject, before);
            set
        });
    }

    /// Replaces the whole set, loaded at `now`.
    pub(crate) fn replace(&self, set: Revocations, now: u64) {
        self.set.store(std::sync::Arc::new(set));
        self.synced(now);
    }

    /// The set is still whole at `now` (the subscription is alive).
    pub(crate) fn synced(&self, now: u64) {
        self.synced_at.store(now, Ordering::Relaxed);
    }

    /// Whether the store is connected now.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The store connected or went away.
    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Revocations held.
    pub(crate) fn len(&self) -> usize {
        self.set.load().len()
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
