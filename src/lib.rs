//! portal-gate: a reverse proxy that lets only verified users of a
//! customer's app see the restricted pages of a portal, and a library that
//! gates a Rust portal host in-process.
//!
//! # The public API
//!
//! - [`Config`]: the TOML file, read and validated once ([`ConfigError`]
//!   names file, line and key).
//! - [`Gate`]: the running gate built from it, reloadable, and
//!   [`Gate::admit`], the access phases every request passes: it answers
//!   [`Admission::Forward`] (the request rewritten for the upstream, the
//!   verified [`Identity`] in its extensions) or [`Admission::Respond`]
//!   (the gate's own answer: a refusal, the token API, the embed script,
//!   logout, the session exchange).
//! - [`GateLayer`]: the same in front of an application's own handlers, as
//!   a tower `Layer`; with the `axum` feature, [`Identity`] is an axum
//!   extractor too.
//! - [`run`], [`serve`], [`serve_on`] and [`Workers`]: the reverse proxy
//!   itself, and [`ops`] for what `portal-gate serve` runs beside it.
//! - [`token`]: minting and opening tokens with a shared secret, for
//!   backends that mint offline.
//! - [`Clock`]: where the gate reads the time ([`ManualClock`] in tests).
//!
//! `docs/library.md` walks through each with an example; everything else
//! is the crate's own business.
//!
//! # Layout
//!
//! - `access`: the access decision, pure: the path, the page rules, the
//!   credential (found and stripped in one place), the decrypt cache, the
//!   decision and its reasons.
//! - `token`: the shared secrets, the keys derived from them, and the
//!   sealed token and session format.
//! - `http`: the request's phases, the gate's own endpoints, header
//!   hygiene, the responses the gate gives itself, and the tower layer.
//! - `upstream`: forwarding to the portal host or a static directory.
//! - `server`: the listener, connections and their idle clock, TLS,
//!   worker threads.
//! - `ops`: the gate's state and reloads, the clock, the admin listener,
//!   metrics, `explain`.
//! - `config`: the TOML file.
//!
//! `ARCHITECTURE.md` in the repository draws the same map with the life of
//! one request and the invariants the code keeps.

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]

mod access;
mod config;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
mod http;
pub mod ops;
mod server;
pub mod token;
mod upstream;

pub use config::{Config, ConfigError};
#[cfg(feature = "axum")]
pub use http::layer::NoIdentity;
pub use http::layer::{GateLayer, GateService, GatedBody};
pub use http::phases::{Admission, ConnInfo, Identity};
pub use ops::clock::{Clock, ManualClock, SystemClock};
pub use ops::state::{Gate, ReloadError};
pub use server::listener::{run, serve, serve_on};
pub use server::workers::Workers;
