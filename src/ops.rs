//! Running the gate: its state and reloads, the admin listener, metrics,
//! and `explain`.

pub mod admin;
pub mod explain;
pub mod metrics;
pub mod reload;
pub mod state;
