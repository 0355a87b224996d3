//! The server: the listener and its connections, TLS, and the worker
//! threads.

pub(crate) mod connection;
pub(crate) mod idle;
pub(crate) mod listener;
pub(crate) mod tls;
pub(crate) mod workers;
