//! portal-gate: a reverse proxy that lets only verified users of a
//! customer's app see the restricted pages of a portal.
//!
//! # Layout
//!
//! - [`admin`]: the admin listener: health, readiness, metrics.
//! - [`config`]: the TOML file, read and validated once into a [`config::Config`].
//! - [`keys`]: the shared secrets; the only place secret bytes live.
//! - [`token`]: the encrypted token format: mint and open.
//! - [`cache`]: the LRU decrypt cache of opened tokens.
//! - [`rules`]: page rules, compiled into a lookup structure.
//! - [`path`]: request path normalization, shared by rules and upstream.
//! - [`gate`]: the decision for one request (pure apart from the cache).
//! - [`headers`]: header hygiene between client and upstream.
//! - [`embed`]: the `released-page` element's script and the denied-frame page.
//! - [`session`]: the token-to-session exchange and the session cookie.
//! - [`api`]: the token API the customer's backend calls.
//! - [`limiter`]: rate limiting of failed token API attempts.
//! - [`explain`]: `portal-gate explain`: which rule and why.
//! - [`proxy`]: forwarding to the upstream (portal host or [`files`]).
//! - [`upload`]: a request body on its way upstream, read first when small.
//! - [`metrics`]: counters for the admin listener's `/metrics`.
//! - [`reject`]: refusal reasons and their HTTP statuses.
//! - [`tls`]: certificates for the gate and trust roots for upstreams.
//! - [`reload`]: SIGHUP and `--watch` reloads.
//! - [`state`]: the shared state and how a reload replaces the config.
//! - [`handler`]: the life of one request.
//! - [`server`]: accept loop, TLS, connections, graceful shutdown.
//!
//! `ARCHITECTURE.md` in the repository draws the same map with the
//! invariants the code keeps.

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod admin;
pub mod api;
pub mod body;
pub mod cache;
pub mod config;
pub mod embed;
pub mod explain;
pub mod files;
pub mod gate;
pub mod handler;
pub mod headers;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod reject;
pub mod reload;
pub mod rules;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod token;
pub mod upload;
pub mod workers;

pub use config::Config;
pub use server::{run, serve, serve_on};
pub use state::Gate;
