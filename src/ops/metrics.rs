//! What the gate counts, for the admin listener's `/metrics` (Prometheus /
//! OpenMetrics text, through the `prometheus-client` crate).
//!
//! Every series a request touches is a relaxed atomic; label sets are
//! small and bounded (decisions, statuses, secret ids, error kinds), never
//! paths or users. `portal_gate_verifications_total{secret_id}` is the one
//! to watch during a rotation: when the old id stops growing, no token or
//! session sealed with the old secret is in use any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    decision: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecretLabels {
    secret_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// The gate's metrics and the registry that exports them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    upstream_errors: Family<KindLabels, Counter>,
    cache_hits: Counter<u64, AtomicU64>,
    cache_misses: Counter<u64, AtomicU64>,
    cache_evictions: Counter<u64, AtomicU64>,
    cache_entries: Gauge,
    tokens_minted: Counter,
    api_failures: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    config_info: Family<VersionLabels, Gauge>,
    verifications: Family<SecretLabels, Counter>,
    tunnels_open: Gauge,
    revocations_received: Family<KindLabels, Counter>,
    revocations_live: Gauge,
    store_connected: Gauge,
    revocation_set_age: Gauge,
    tunnels_opened: Counter,
    tunnels_refused: Family<ReasonLabels, Counter>,
    tunnels_closed: Family<ReasonLabels, Counter>,
    /// The `verifications` counter of each secret id, found without
    /// building a label (an allocation) on every request; one entry per
    /// secret ever configured.
    verification_counters: RwLock<HashMap<Box<str>, Counter>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered under the `portal_gate` prefix.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portal_gate");
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            // 100 µs to about 6.5 s.
            duration: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            upstream_errors: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_entries: Gauge::default(),
            tokens_minted: Counter::default(),
            api_failures: Family::default(),
            reloads: Family::default(),
            config_info: Family::default(),
            verifications: Family::default(),
            verification_counters: RwLock::default(),
            tunnels_open: Gauge::default(),
            revocations_received: Family::default(),
            revocations_live: Gauge::default(),
            store_connected: Gauge::default(),
            revocation_set_age: Gauge::default(),
            tunnels_opened: Counter::default(),
            tunnels_refused: Family::default(),
            tunnels_closed: Family::default(),
        };
        registry.register(
            "revocations_received",
            "Revocations written or heard from the shared store, by kind",
            m.revocations_received.clone(),
        );
        registry.register(
            "revocations_live",
            "Revocations the shared store holds, as this replica knows them",
            m.revocations_live.clone(),
        );
        registry.register(
            "revocation_store_connected",
            "Whether the shared revocation store is connected (1) or not (0)",
            m.store_connected.clone(),
        );
        registry.register(
            "revocation_set_age_seconds",
            "Seconds since the revocation set was last known to be whole",
            m.revocation_set_age.clone(),
        );
        registry.register(
            "tunnels_open",
            "WebSocket tunnels open now",
            m.tunnels_open.clone(),
        );
        registry.register(
            "tunnels_opened",
            "WebSocket tunnels opened",
            m.tunnels_opened.clone(),
        );
        registry.register(
            "tunnels_refused",
            "WebSocket handshakes the gate admitted but did not tunnel, by reason",
            m.tunnels_refused.clone(),
        );
        registry.register(
            "tunnels_closed",
            "WebSocket tunnels closed, by reason",
            m.tunnels_closed.clone(),
        );
        registry.register(
            "requests",
            "Requests by decision and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            m.duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream requests by kind",
            m.upstream_errors.clone(),
        );
        registry.register("cache_hits", "Decrypt cache hits", m.cache_hits.clone());
        registry.register(
            "cache_misses",
            "Decrypt cache misses",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Decrypt cache evictions",
            m.cache_evictions.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries in the decrypt cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "tokens_minted",
            "Tokens minted by the token API",
            m.tokens_minted.clone(),
        );
        registry.register(
            "token_api_failures",
            "Token API refusals by reason",
            m.api_failures.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_info",
            "The loaded configuration's version (a hash of its text)",
            m.config_info.clone(),
        );
        registry.register(
            "verifications",
            "Successful token and session verifications by the secret that sealed them",
            m.verifications.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One request answered.
    pub(crate) fn request(&self, decision: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { decision, status })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// One failed upstream request (`unavailable`, `timeout`).
    pub(crate) fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// One token or session verified with the secret `secret_id`.
    pub(crate) fn verified(&self, secret_id: &str) {
        let counters = self
            .verification_counters
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = counters.get(secret_id) {
            counter.inc();
            return;
        }
        drop(counters);
        let counter = self
            .verifications
            .get_or_create(&SecretLabels {
                secret_id: secret_id.to_string(),
            })
            .clone();
        counter.inc();
        self.verification_counters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(secret_id.into(), counter);
    }

    /// A revocation written or heard (`email`, `user_id`, `session_id`).
    pub(crate) fn revocation(&self, kind: &'static str) {
        self.revocations_received
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// The shared store connected or went away.
    pub(crate) fn store_connected(&self, connected: bool) {
        self.store_connected.set(i64::from(connected));
    }

    /// The revocation set's size and age, read at a scrape.
    pub(crate) fn revocation_set(&self, held: usize, age: u64) {
        self.revocations_live
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.revocation_set_age
            .set(i64::try_from(age).unwrap_or(i64::MAX));
    }

    /// A tunnel opened.
    pub(crate) fn tunnel_opened(&self) {
        self.tunnels_opened.inc();
        self.tunnels_open.inc();
    }

    /// An admitted handshake not tunnelled (`limit`, `upstream`, `refused`:
    /// the upstream did not switch).
    pub(crate) fn tunnel_refused(&self, reason: &'static str) {
        self.tunnels_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A tunnel closed (`client`, `upstream`, `idle`, `expiry`, `secret`,
    /// `account`, `revocation`, `shutdown`).
    pub(crate) fn tunnel_closed(&self, reason: &'static str) {
        self.tunnels_open.dec();
        self.tunnels_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// One token minted by the API.
    pub(crate) fn minted(&self) {
        self.tokens_minted.inc();
    }

    /// One token API refusal.
    pub(crate) fn api_failure(&self, reason: &'static str) {
        self.api_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// One reload attempt.
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The config version in force (the only `config_info` series at 1).
    pub(crate) fn config_version(&self, version: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(1);
    }

    /// The metrics as OpenMetrics text, with the cache figures read now.
    pub(crate) fn render(&self, cache: &crate::access::cache::TokenCache) -> String {
        let (hits, misses, evictions) = cache.stats();
        // Counters only go up: add what happened since the last scrape.
        self.cache_hits
            .inc_by(hits.saturating_sub(self.cache_hits.get()));
        self.cache_misses
            .inc_by(misses.saturating_sub(self.cache_misses.get()));
        self.cache_evictions
            .inc_by(evictions.saturating_sub(self.cache_evictions.get()));
        self.cache_entries
            .set(i64::try_from(cache.len()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Seconds since the epoch of the last sign of life from the upstream.
#[derive(Debug, Default)]
pub(crate) struct UpstreamHealth {
    last_ok: AtomicU64,
}

impl UpstreamHealth {
    /// The upstream answered (a forwarded response, or a probe connected).
    pub(crate) fn mark(&self, now: u64) {
        self.last_ok.fetch_max(now, Ordering::Relaxed);
    }

    /// Whether the upstream answered within `window` seconds of `now`.
    pub(crate) fn recent(&self, now: u64, window: u64) -> bool {
        let last = self.last_ok.load(Ordering::Relaxed);
        last != 0 && now.saturating_sub(last) <= window
    }
}
