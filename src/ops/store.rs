//! The shared revocation store (Valkey or Redis): how a revocation reaches
//! every replica within a second, and how each replica keeps the whole
//! set in memory so that checking a request costs a hash lookup.
//!
//! A revocation is one key, `portal-gate:<account>:rev:<kind>:<value>`,
//! whose value is the time before which that subject's credentials are
//! refused (Unix seconds), with a time-to-live of the longest credential
//! lifetime plus `clock_skew`: the store only ever holds tombstones, never
//! sessions. Writing one also publishes it on
//! `portal-gate:<account>:rev`. Every replica subscribes, loads the whole
//! set (`SCAN`) at start and after every reconnect, and applies what it
//! hears. While the store is out of reach it keeps the last set, retries
//! with backoff and logs once per outage; with `fail_mode = "closed"` it
//! refuses verified pages once the set is older than `max_staleness`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;

use crate::access::revocation::{Revocations, Subject};
use crate::config::{Config, StoreConfig};
use crate::ops::state::Gate;

/// The store's write connection, while connected (for the revoke API
/// and logout); the set itself is [`LiveSet`], in the access layer.
#[derive(Debug, Default)]
pub(crate) struct StoreLink {
    writer: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl StoreLink {
    fn writer(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_writer(&self, writer: Option<redis::aio::MultiplexedConnection>) {
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = writer;
    }
}

/// Why a revocation could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No `[revocation]` store is configured.
    #[error("no [revocation] store is configured")]
    NotConfigured,
    /// The store is out of reach now.
    #[error("the revocation store is unreachable")]
    Unreachable,
}

/// The keys' prefix and the channel of `config`'s account.
fn names(config: &Config) -> (String, String) {
    let account = &config.verification.account_id;
    (
        format!("portal-gate:{account}:rev:"),
        format!("portal-gate:{account}:rev"),
    )
}

/// How long a revocation must be kept: the longest credential lifetime
/// plus the clock skew, after which nothing it refuses is alive.
fn keep_for(config: &Config) -> u64 {
    let v = &config.verification;
    v.token_ttl
        .max(v.session_ttl)
        .saturating_add(v.clock_skew)
        .as_secs()
        .max(1)
}

/// Writes a revocation to the store and publishes it, then applies it
/// here at once. Answers once the store has it.
pub(crate) async fn revoke(gate: &Gate, subject: &Subject, before: u64) -> Result<(), StoreError> {
    let config = gate.config();
    if config.store.is_none() {
        return Err(StoreError::NotConfigured);
    }
    let mut writer = gate.store_link().writer().ok_or(StoreError::Unreachable)?;
    let write = write_record(&mut writer, &config, subject, before, keep_for(&config));
    match tokio::time::timeout(Duration::from_secs(5), write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "revocation store write failed");
            return Err(StoreError::Unreachable);
        }
        Err(_elapsed) => return Err(StoreError::Unreachable),
    }
    gate.live().add(subject, before);
    gate.metrics().revocation(subject.kind());
    Ok(())
}

/// Follow the store for as long as the gate runs: connect, subscribe,
/// load the whole set, apply what is published; on any failure keep the
/// set, log once per outage, and retry with backoff (0.1 s doubling to
/// 10 s). Returns at once without a `[revocation]` store. The proxy
/// (`run`, `serve`, `serve_on`) spawns it itself; an application gated by
/// [`crate::GateLayer`] spawns it once beside its server.
pub async fn follow(gate: Arc<Gate>) {
    let mut backoff = Duration::from_millis(100);
    let mut in_outage = false;
    loop {
        let config = gate.config();
        let Some(store) = config.store.clone() else {
            return;
        };
        if is_tls(&store) {
            // The store's TLS uses the process-wide rustls provider.
            let _ = crate::server::tls::crypto_provider().install_default();
        }
        let result = session(&gate, &config, &store, &mut in_outage).await;
        gate.live().set_connected(false);
        gate.store_link().set_writer(None);
        gate.metrics().store_connected(false);
        if let Err(error) = result {
            if !in_outage {
                tracing::warn!(store = %store.shown, %error, "revocation store unreachable; serving on the last set and retrying");
                in_outage = true;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
        if !in_outage {
            backoff = Duration::from_millis(100);
        }
    }
}

fn is_tls(store: &StoreConfig) -> bool {
    matches!(store.info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

/// One connection's life: subscribe first (so nothing published during
/// the load is missed), load the whole set, then apply messages and ping
/// every two seconds until the connection fails.
async fn session(
    gate: &Gate,
    config: &Config,
    store: &StoreConfig,
    in_outage: &mut bool,
) -> redis::RedisResult<()> {
    let client = match &store.ca_pem {
        None => redis::Client::open(store.info.clone())?,
        Some(pem) => {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            };
            redis::Client::build_with_tls(store.info.clone(), certificates)?
        }
    };
    let limit = Duration::from_secs(5);
    let timed = |e: tokio::time::error::Elapsed| {
        redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
    };
    let mut pubsub = tokio::time::timeout(limit, client.get_async_pubsub())
        .await
        .map_err(timed)??;
    let (prefix, channel) = names(config);
    pubsub.subscribe(&channel).await?;
    let mut writer = tokio::time::timeout(limit, client.get_multiplexed_async_connection())
        .await
        .map_err(timed)??;
    share_config_entries(&mut writer, config, gate.clock().unix_now()).await?;
    let set = load(&mut writer, &prefix).await?;
    let held = set.len();
    gate.live().replace(set, gate.clock().unix_now());
    gate.live().set_connected(true);
    gate.store_link().set_writer(Some(writer.clone()));
    gate.metrics().store_connected(true);
    tracing::info!(store = %store.shown, revocations = held, "revocation store connected");
    *in_outage = false;
    let mut messages = pubsub.into_on_message();
    let mut ping = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(std::io::Error::other("the subscription ended").into());
                };
                let text: String = message.get_payload()?;
                apply(gate, &text);
            }
            _ = ping.tick() => {
                let ping = redis::cmd("PING");
                let pong = ping.query_async::<String>(&mut writer);
                tokio::time::timeout(limit, pong).await.map_err(timed)??;
                gate.live().synced(gate.clock().unix_now());
            }
        }
    }
}

/// Puts this replica's `[[revocations]]` into the store (each still within
/// its life, unless the store holds a later time for it) and publishes
/// them, so that every replica refuses them, not only those whose file
/// has them.
async fn share_config_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &Config,
    now: u64,
) -> redis::RedisResult<()> {
    let (prefix, _channel) = names(config);
    let keep = keep_for(config);
    for (subject, before) in &config.revocation_entries {
        let left = before.saturating_add(keep).saturating_sub(now);
        if left == 0 {
            continue;
        }
        let key = format!("{prefix}{}:{}", subject.kind(), subject.value());
        let held: Option<u64> = conn.get(&key).await?;
        if held.is_some_and(|held| held >= *before) {
            continue;
        }
        write_record(conn, config, subject, *before, left).await?;
    }
    Ok(())
}

/// One revocation in the store, kept `ttl` seconds, and published as
/// `<kind>:<value>:<before>` ([`apply`] reads it back).
async fn write_record(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &Config,
    subject: &Subject,
    before: u64,
    ttl: u64,
) -> redis::RedisResult<()> {
    let (prefix, channel) = names(config);
    let key = format!("{prefix}{}:{}", subject.kind(), subject.value());
    let () = conn.set_ex(&key, before, ttl).await?;
    let message = format!("{}:{}:{before}", subject.kind(), subject.value());
    let _receivers: i64 = conn.publish(&channel, &message).await?;
    Ok(())
}

/// A published revocation, `<kind>:<value>:<before>`, applied here.
fn apply(gate: &Gate, message: &str) {
    let parsed = message.split_once(':').and_then(|(kind, rest)| {
        let (value, before) = rest.rsplit_once(':')?;
        Some((Subject::of(kind, value)?, before.parse::<u64>().ok()?))
    });
    match parsed {
        Some((subject, before)) => {
            gate.live().add(&subject, before);
            gate.metrics().revocation(subject.kind());
        }
        None => tracing::warn!("ignored a malformed message on the revocation channel"),
    }
}

/// Every revocation under `prefix`: `SCAN` for the keys, `MGET` their
/// times, in batches.
async fn load(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> redis::RedisResult<Revocations> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut set = Revocations::default();
    for chunk in keys.chunks(500) {
        let times: Vec<Option<u64>> = redis::cmd("MGET").arg(chunk).query_async(conn).await?;
        for (key, before) in chunk.iter().zip(times) {
            let subject = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(kind, value)| Subject::of(kind, value));
            if let (Some(subject), Some(before)) = (subject, before) {
                set.add(&subject, before);
            }
        }
    }
    Ok(set)
}
