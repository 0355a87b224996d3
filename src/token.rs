//! Tokens and sessions: the shared secrets and the keys derived from them
//! ([`keys`]), and the sealed format ([`format`]).

pub mod format;
pub mod keys;

pub use format::*;
