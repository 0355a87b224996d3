//! The gate's shared state, and how a reload replaces it.
//!
//! What a request reads from the config lives in one [`Active`] value
//! behind an [`ArcSwap`]: a request takes it once when it arrives and keeps
//! it to the end, so a reload never changes the rules under a request in
//! flight. A reload validates the whole new config first (parsing, secrets,
//! rules, certificate); anything wrong and the old config keeps serving.
//! What outlives reloads (the decrypt cache, the API limiter, the embed
//! script, the certificate store) lives here beside it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::cache::TokenCache;
use crate::config::{Config, ConfigError};
use crate::http::embed::EmbedScript;
use crate::http::limiter::FailureLimiter;
use crate::ops::clock::{Clock, SystemClock};
use crate::ops::metrics::{Metrics, UpstreamHealth};
use crate::server::tls::CertStore;
use crate::upstream::proxy::Upstream;

/// The config in force and the upstream built from it.
#[derive(Debug)]
pub(crate) struct Active {
    /// The validated config.
    pub config: Arc<Config>,
    /// Where admitted requests go; kept across reloads that leave
    /// `[upstream]` unchanged, so pooled connections survive.
    pub upstream: Arc<Upstream>,
}

/// Why a reload was refused. The old config keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new config asks for something only a restart can do.
    #[error("{0}")]
    NeedsRestart(String),
    /// The new upstream could not be set up.
    #[error("upstream: {0}")]
    Upstream(std::io::Error),
}

/// Everything requests share.
#[derive(Debug)]
pub struct Gate {
    /// The config in force; swapped whole on reload.
    active: ArcSwap<Active>,
    /// Opened tokens and sessions, so each is decrypted once; entries of
    /// removed secrets are dropped on reload.
    cache: TokenCache,
    /// Failed token API attempts per client address.
    limiter: FailureLimiter,
    /// The `released-page` element's script, with its ETag.
    script: EmbedScript,
    /// The TLS certificate in use, when the gate speaks TLS.
    certs: Option<Arc<CertStore>>,
    /// Counters for `/metrics`.
    metrics: Metrics,
    /// When the upstream last answered, for `/readyz`.
    upstream_health: UpstreamHealth,
    /// Worker threads serving requests: each gets its own upstream pool.
    workers: usize,
    /// Held while a reload reads and applies the config file, so that two
    /// reloads (a SIGHUP and a file change) cannot store out of order.
    reloading: std::sync::Mutex<()>,
    /// Where every phase reads the time: the system clock, or a test's.
    clock: Arc<dyn Clock>,
    /// The WebSocket tunnels open now.
    tunnels: crate::upstream::tunnel::TunnelCount,
    /// The revocations the shared store announced.
    live: crate::access::revocation::LiveSet,
    /// The shared store's write connection.
    store_link: crate::ops::store::StoreLink,
}

impl Gate {
    /// Build the gate's state from a validated config, for requests served
    /// on one thread.
    pub fn new(config: Config) -> std::io::Result<Gate> {
        Gate::with_workers(config, 1)
    }

    /// Build the gate's state for requests served on `workers` worker
    /// threads ([`crate::Workers`]).
    pub fn with_workers(config: Config, workers: usize) -> std::io::Result<Gate> {
        let workers = workers.max(1);
        let upstream = Arc::new(Upstream::new(&config.upstream, workers)?);
        let cache = TokenCache::new(config.verification.cache_capacity);
        let limiter = FailureLimiter::new(
            config.limits.api_failure_burst,
            config.limits.api_failure_refill,
        );
        let certs = config
            .tls
            .as_ref()
            .map(|tls| Arc::new(CertStore::new(Arc::clone(&tls.certified))));
        let metrics = Metrics::new();
        metrics.config_version(&config.version);
        Ok(Gate {
            active: ArcSwap::from_pointee(Active {
                config: Arc::new(config),
                upstream,
            }),
            cache,
            limiter,
            script: EmbedScript::new(),
            certs,
            metrics,
            upstream_health: UpstreamHealth::default(),
            workers,
            reloading: std::sync::Mutex::new(()),
            clock: Arc::new(SystemClock),
            tunnels: Default::default(),
            live: Default::default(),
            store_link: Default::default(),
        })
    }

    /// The same gate, reading the time from `clock` (for tests of expiry
    /// and sessions, which move a [`crate::ManualClock`] rather than sleep).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Gate {
        self.clock = clock;
        self
    }

    /// The gate's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The config and upstream in force now.
    pub(crate) fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.active.load().config)
    }

    /// The decrypt cache.
    pub(crate) fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The token API's failure limiter.
    pub(crate) fn limiter(&self) -> &FailureLimiter {
        &self.limiter
    }

    /// The embed script.
    pub(crate) fn script(&self) -> &EmbedScript {
        &self.script
    }

    /// The gate's counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The WebSocket tunnels open now.
    pub(crate) fn tunnels(&self) -> &crate::upstream::tunnel::TunnelCount {
        &self.tunnels
    }

    /// Whether a credential with these claims is refused as revoked: by
    /// the config's `[[revocations]]` and `sessions_not_before`, or by the
    /// shared store's set. The in-memory lookups every verified request
    /// makes (no round trip to the store).
    pub fn is_revoked(&self, claims: &crate::token::Claims) -> bool {
        let config = self.config();
        (!config.revocations.is_empty() && config.revocations.refuses(claims))
            || self.live.refuses(claims)
    }

    /// What credentials are checked against: the cache and the store's
    /// revocations.
    pub(crate) fn checks(&self) -> crate::access::decision::Checks<'_> {
        crate::access::decision::Checks {
            cache: &self.cache,
            live: &self.live,
        }
    }

    /// The revocations the shared store announced.
    pub(crate) fn live(&self) -> &crate::access::revocation::LiveSet {
        &self.live
    }

    /// The shared store's write connection.
    pub(crate) fn store_link(&self) -> &crate::ops::store::StoreLink {
        &self.store_link
    }

    /// When the upstream last answered.
    pub(crate) fn upstream_health(&self) -> &UpstreamHealth {
        &self.upstream_health
    }

    /// Ready to take traffic: a config is loaded (always, once built) and
    /// the upstream answered within the last `window` seconds; a directory
    /// upstream is always there.
    pub(crate) fn is_ready(&self, now: u64, window: u64) -> bool {
        match &*self.active().upstream {
            Upstream::Dir(_) => true,
            Upstream::None => false,
            Upstream::Http(_) => self.upstream_health.recent(now, window),
        }
    }

    /// The certificate store, when the gate speaks TLS.
    pub(crate) fn certs(&self) -> Option<&Arc<CertStore>> {
        self.certs.as_ref()
    }

    /// Read the config file again and put it in force. Reloads run one at
    /// a time: the last file read is the one left in force. Blocks on file
    /// reads: call it off the worker threads.
    pub fn reload_from_source(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let source = self.config().source.clone();
        let result = Config::load(&source)
            .map_err(ReloadError::from)
            .and_then(|config| self.reload(config));
        self.metrics.reload(result.is_ok());
        if result.is_ok() {
            self.metrics.config_version(&self.config().version);
        }
        result
    }

    /// Put a validated config in force. New requests use it at once;
    /// requests in flight finish on the one they started with.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let old = self.active();
        if config.tls.is_some() != self.certs.is_some() {
            return Err(ReloadError::NeedsRestart(
                "turning [tls] on or off needs a restart; the old config keeps serving".into(),
            ));
        }
        for note in restart_notes(&old.config, &config) {
            tracing::warn!("{note}");
        }
        let upstream = if config.upstream == old.config.upstream {
            Arc::clone(&old.upstream)
        } else {
            Arc::new(Upstream::new(&config.upstream, self.workers).map_err(ReloadError::Upstream)?)
        };
        if let (Some(store), Some(tls)) = (&self.certs, &config.tls) {
            store.replace(Arc::clone(&tls.certified));
        }
        self.active.store(Arc::new(Active {
            config: Arc::new(config),
            upstream,
        }));
        // Keep only entries whose secret is still configured with the same
        // value: a removed secret's tokens would be refused on a hit anyway,
        // but one whose value changed under the same id must not be honoured.
        let new = self.config();
        self.cache.retain(|opened| {
            new.secrets
                .same_secret_as(&old.config.secrets, &opened.key_id)
        });
        Ok(())
    }
}

/// Settings that a running gate cannot change, each as a log line.
fn restart_notes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if old.listen != new.listen {
        notes.push(format!(
            "listen changed to {} but the gate keeps listening on {}: restart to move",
            new.listen, old.listen
        ));
    }
    if old.limits.max_connections != new.limits.max_connections {
        notes.push("limits.max_connections changes on restart only".into());
    }
    if old.limits.api_failure_burst != new.limits.api_failure_burst
        || old.limits.api_failure_refill != new.limits.api_failure_refill
    {
        notes.push("limits.api_failure_burst and api_failure_refill change on restart only".into());
    }
    if old.verification.cache_capacity != new.verification.cache_capacity {
        notes.push("verification.cache_capacity changes on restart only".into());
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credential::Credential;
    use crate::access::decision;
    use crate::token::{self, Claims};
    use std::path::Path;

    fn config(first_value: &str) -> Config {
        let text = format!(
            r#"
[upstream]
url = "http://127.0.0.1:9"
[verification]
account_id = "acct"
[[secrets]]
id = "first"
value = "{first_value}"
[[secrets]]
id = "second"
value = "second-secret-value"
"#
        );
        Config::parse(&text, Path::new("t.toml")).expect("valid")
    }

    /// Open a fresh token under `key` through the gate's cache.
    fn cache_a_token(gate: &Gate, key: &str) {
        let config = gate.config();
        let now = gate.clock().unix_now();
        let claims =
            Claims::for_user("acct".into(), "ada@example.com", None, now, 300).expect("claims");
        let sealed = token::mint(config.secrets.get(key).expect("key"), &claims);
        decision::verify(
            &config,
            gate.checks(),
            &Credential::Token(sealed.into()),
            now,
        )
        .expect("opens");
    }

    #[test]
    fn a_reload_drops_cached_credentials_of_a_secret_whose_value_changed() {
        let gate = Gate::new(config("first-secret-value")).expect("gate");
        cache_a_token(&gate, "first");
        cache_a_token(&gate, "second");
        assert_eq!(gate.cache().len(), 2);
        // The same secrets: every entry stays.
        gate.reload(config("first-secret-value")).expect("reload");
        assert_eq!(gate.cache().len(), 2);
        // `first` holds another value now: its entry goes, `second`'s stays.
        // (A hit would refuse it anyway, by the key's fingerprint:
        // decision::tests pins that layer.)
        gate.reload(config("rotated-after-a-leak")).expect("reload");
        assert_eq!(gate.cache().len(), 1);
    }
}
