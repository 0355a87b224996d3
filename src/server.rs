//! The server: the listener and its connections, TLS, and the worker
//! threads.

pub mod listener;
pub mod tls;
pub mod workers;
