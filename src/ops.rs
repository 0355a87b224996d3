//! Running the gate: its state and reloads, the clock, the admin listener,
//! metrics, and `explain`. Public here is what `portal-gate serve` runs
//! beside the proxy, for an embedder that wants the same.

pub(crate) mod admin;
pub(crate) mod clock;
pub(crate) mod explain;
pub(crate) mod metrics;
pub(crate) mod reload;
pub(crate) mod state;
pub(crate) mod store;

pub use admin::{probe_upstream, serve as serve_admin};
pub use reload::{on_sighup, watch_files, WATCH_INTERVAL};
pub use store::follow as follow_revocations;
