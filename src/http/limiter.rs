//! Rate limiting of failed token API attempts, per client address.
//!
//! A token bucket per address: each failed `Authorization: Bearer` attempt
//! takes one token; tokens come back at a fixed rate up to the burst. An
//! address with an empty bucket gets 429 with `Retry-After` before its
//! secret is even looked at. Successful calls take nothing, so a backend
//! that knows the secret is never slowed. The table of addresses is an LRU
//! of bounded size: an attacker with many addresses can only evict old
//! entries, never grow memory. IPv6 clients are keyed by their /64, the
//! block one host usually controls.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

/// Addresses remembered at once.
const MAX_TRACKED: usize = 16 * 1024;

/// One address's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Attempts left, fractional while refilling.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// Per-address token buckets for failed API attempts.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    /// Buckets of recently failing addresses; full buckets are not stored.
    buckets: Mutex<LruCache<IpAddr, Bucket>>,
    /// Attempts an address may fail in a burst.
    burst: f64,
    /// One attempt is forgiven every this long.
    refill: Duration,
}

impl FailureLimiter {
    /// A limiter allowing `burst` failures, forgiving one every `refill`.
    pub(crate) fn new(burst: u32, refill: Duration) -> FailureLimiter {
        let capacity = NonZeroUsize::new(MAX_TRACKED).unwrap_or(NonZeroUsize::MIN);
        FailureLimiter {
            buckets: Mutex::new(LruCache::new(capacity)),
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
        }
    }

    /// `Err(retry_after)` when `ip` has no failed attempt left right now.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = buckets.get_mut(&key) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(self.refill.mul_f64(missing).max(Duration::from_secs(1)))
        }
    }

    /// Take one attempt from `ip`'s bucket.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: Instant) {
        let key = bucket_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let burst = self.burst;
        let bucket = buckets.get_or_insert_mut(key, || Bucket {
            tokens: burst,
            updated: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    #[cfg(test)]
    /// Addresses currently tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated);
        let regained = elapsed.as_secs_f64() / self.refill.as_secs_f64();
        bucket.tokens = (bucket.tokens + regained).min(self.burst);
        bucket.updated = now;
    }
}

/// IPv4 addresses as they are; IPv6 addresses by their /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_burst_of_failures_is_allowed_then_refused_until_refilled() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
            limiter.record_failure(a, t0);
        }
        let retry = limiter.check(a, t0).expect_err("limited");
        assert_eq!(retry, Duration::from_secs(10));
        // Another address is not affected.
        assert!(limiter.check(ip("192.0.2.2"), t0).is_ok());
        // After one refill period one attempt is back.
        assert!(limiter.check(a, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn addresses_without_failures_are_not_tracked() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(1));
        assert!(limiter.check(ip("192.0.2.1"), Instant::now()).is_ok());
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_under_many_addresses() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 5_000) {
            limiter.record_failure(IpAddr::V4(n.into()), now);
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        limiter.record_failure(ip("2001:db8::1"), now);
        assert!(limiter.check(ip("2001:db8::ffff:1"), now).is_err());
        assert!(limiter.check(ip("2001:db8:0:1::1"), now).is_ok());
    }
}
