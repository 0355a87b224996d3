//! The HTTP side of the gate: the request's phases, the gate's own
//! endpoints (token API, embed script, logout, user info, the session
//! exchange),
//! header hygiene and the responses the gate gives itself.

pub(crate) mod api;
pub(crate) mod embed;
pub(crate) mod headers;
pub(crate) mod host;
pub(crate) mod inject;
pub(crate) mod layer;
pub(crate) mod limiter;
pub(crate) mod me;
pub(crate) mod phases;
pub(crate) mod respond;
pub(crate) mod revoke;
pub(crate) mod session;
pub(crate) mod websocket;
