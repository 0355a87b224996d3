//! portal-gate: a reverse proxy that lets only verified users of a
//! customer's app see the restricted pages of a portal.
//!
//! # Layout
//!
//! - [`access`]: the access decision, pure: the path, the page rules, the
//!   credential, the decrypt cache, the decision and its reasons.
//! - [`token`]: the shared secrets, the keys derived from them, and the
//!   sealed token and session format.
//! - [`http`]: the request's phases, the gate's own endpoints, header
//!   hygiene, and the responses the gate gives itself.
//! - [`upstream`]: forwarding to the portal host or a static directory.
//! - [`server`]: the listener, connections, TLS, worker threads.
//! - [`ops`]: the gate's state and reloads, admin listener, metrics,
//!   `explain`.
//! - [`config`]: the TOML file, read and validated once into a [`Config`].
//!
//! `ARCHITECTURE.md` in the repository draws the same map with the
//! invariants the code keeps.

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod access;
pub mod config;
pub mod http;
pub mod ops;
pub mod server;
pub mod token;
pub mod upstream;

pub use config::Config;
pub use ops::state::Gate;
pub use server::listener::{run, serve, serve_on};
