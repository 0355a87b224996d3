//! The HTTP side of the gate: the request's phases, the gate's own
//! endpoints (token API, embed script, logout, the session exchange),
//! header hygiene and the responses the gate gives itself.

pub mod api;
pub mod embed;
pub mod headers;
pub mod limiter;
pub mod phases;
pub mod respond;
pub mod session;
