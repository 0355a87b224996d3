//! The decrypt cache: opened tokens, so a token is decrypted once and then
//! looked up.
//!
//! Keyed by the whole token string (never a short hash: a collision would
//! hand one user another's claims). Only tokens that opened and validated
//! enter it, so garbage cannot evict good entries. A hit still re-checks
//! everything that can change after the token was opened (expiry, the key
//! still being configured and live, the account): a cached decision always
//! equals a fresh one.
//!
//! The `lru` crate's `get` reorders and takes `&mut self`, so each shard is a
//! `Mutex`; shards picked from the token's random tail keep tasks on different
//! cores from queuing on one lock. Decryption happens outside any lock, and
//! no lock is held across an `.await` (there is none in here).

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use crate::token::format::Opened;

/// Shard count (a power of two). Enough to spread two to a few dozen cores.
const SHARDS: usize = 16;

/// One shard: opened tokens by the whole token string.
type Shard = Mutex<LruCache<Box<str>, Arc<Opened>>>;

/// A bounded, sharded LRU of opened tokens.
#[derive(Debug)]
pub(crate) struct TokenCache {
    /// Each shard holds about `capacity / SHARDS` entries.
    shards: Box<[Shard]>,
    /// Mixed into the shard choice, so nobody can aim at one shard.
    seed: u64,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    /// Counters for the metrics endpoint.
    stats: Stats,
}

/// Cache counters; relaxed atomics, read only for metrics.
#[derive(Debug, Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl TokenCache {
    /// A cache of about `capacity` entries in total; 0 disables caching.
    pub(crate) fn new(capacity: usize) -> TokenCache {
        let shard_count = if capacity == 0 {
            0
        } else {
            SHARDS.min(capacity.next_power_of_two())
        };
        let per_shard = if shard_count == 0 {
            0
        } else {
            capacity.div_ceil(shard_count)
        };
        let shards = (0..shard_count)
            .filter_map(|_| NonZeroUsize::new(per_shard))
            .map(|cap| Mutex::new(LruCache::new(cap)))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let mask = shards.len().saturating_sub(1);
        TokenCache {
            shards,
            seed: RandomState::new().hash_one(0u64),
            mask,
            stats: Stats::default(),
        }
    }

    #[cfg(test)]
    /// Whether the cache holds anything at all (capacity above zero).
    pub(crate) fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, token: &str) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        // Only tokens that opened enter the cache, and their last bytes are
        // the AEAD tag: uniformly random, and nobody without the secret can
        // choose them. Mixing those bytes with a random seed picks the shard
        // without hashing the whole token a second time (the LRU hashes it).
        let bytes = token.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(8)..];
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        let mixed = (u64::from_le_bytes(word) ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Fibonacci hashing: the top bits depend on every input bit.
        let bits = self.mask.count_ones();
        let index = if bits == 0 {
            0
        } else {
            (mixed >> (64 - bits)) as usize & self.mask
        };
        self.shards.get(index)
    }

    /// The cached opening of `token`, if any. The caller re-validates it.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Opened>> {
        let found = self.shard(token).and_then(|shard| {
            // A poisoned shard only means another task panicked while
            // holding it; the LRU itself is still consistent, so keep serving.
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            guard.get(token).cloned()
        });
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remember a token that opened and validated.
    pub(crate) fn insert(&self, token: &str, opened: Arc<Opened>) {
        if let Some(shard) = self.shard(token) {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((evicted, _)) = guard.push(token.into(), opened) {
                if &*evicted != token {
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Hits, misses and evictions since start.
    pub(crate) fn stats(&self) -> (u64, u64, u64) {
        (
            self.stats.hits.load(Ordering::Relaxed),
            self.stats.misses.load(Ordering::Relaxed),
            self.stats.evictions.load(Ordering::Relaxed),
        )
    }

    /// Forget a token (it expired, or its key is gone).
    pub(crate) fn remove(&self, token: &str) {
        if let Some(shard) = self.shard(token) {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            guard.pop(token);
        }
    }

    /// Drop every entry for which `keep` is false (used when secrets change).
    pub(crate) fn retain(&self, keep: impl Fn(&Opened) -> bool) {
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let doomed: Vec<Box<str>> = guard
                .iter()
                .filter(|(_, opened)| !keep(opened))
                .map(|(token, _)| token.clone())
                .collect();
            for token in doomed {
                guard.pop(&token);
            }
        }
    }

    /// Entries currently held.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    #[cfg(test)]
    /// Whether no entry is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::Claims;

    fn opened(n: u64) -> Arc<Opened> {
        Arc::new(Opened {
            claims: Claims {
                account_id: "a".into(),
                email: format!("u{n}@example.com"),
                user_id: None,
                name: None,
                avatar_url: None,
                groups: Vec::new(),
                attributes: Default::default(),
                session_id: None,
                issued_at: 0,
                expires_at: n,
            },
            key_id: if n % 2 == 0 {
                "even".into()
            } else {
                "odd".into()
            },
            purpose: crate::token::keys::Purpose::Token,
            key_fingerprint: [0; 16],
        })
    }

    #[test]
    fn capacity_bounds_the_number_of_entries() {
        let cache = TokenCache::new(64);
        for n in 0..1_000 {
            cache.insert(&format!("token-{n}"), opened(n));
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(cache.len() >= 32, "shards should fill: {}", cache.len());
        // The most recent entry is still there.
        assert_eq!(
            cache.get("token-999").map(|o| o.claims.expires_at),
            Some(999)
        );
        let (hits, misses, evictions) = cache.stats();
        assert_eq!((hits, misses), (1, 0));
        assert_eq!(evictions as usize, 1_000 - cache.len());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = TokenCache::new(0);
        cache.insert("t", opened(1));
        assert!(!cache.is_enabled());
        assert!(cache.get("t").is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn tiny_capacities_still_hold_entries() {
        let cache = TokenCache::new(1);
        cache.insert("t", opened(1));
        assert!(cache.get("t").is_some());
    }

    #[test]
    fn entries_are_keyed_by_the_whole_token() {
        let cache = TokenCache::new(16);
        cache.insert("pg1.k.AAAA", opened(1));
        assert!(cache.get("pg1.k.AAAB").is_none());
        assert!(cache.get("pg1.k.AAA").is_none());
    }

    #[test]
    fn retain_and_remove_drop_entries() {
        let cache = TokenCache::new(100);
        for n in 0..10 {
            cache.insert(&format!("t{n}"), opened(n));
        }
        cache.retain(|o| &*o.key_id == "even");
        assert_eq!(cache.len(), 5);
        assert!(cache.get("t1").is_none());
        cache.remove("t2");
        assert!(cache.get("t2").is_none());
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn concurrent_use_from_many_threads_is_consistent() {
        let cache = Arc::new(TokenCache::new(1_000));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for n in 0..2_000u64 {
                        let key = format!("t{}", n % 500);
                        cache.insert(&key, opened(n % 500));
                        if let Some(o) = cache.get(&key) {
                            assert_eq!(o.claims.expires_at, n % 500, "thread {t}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(cache.len() <= 1_000);
    }
}
