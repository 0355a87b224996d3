//! Test fixtures, read as sentences: a recording upstream
//! (`upstream`), the gate in-process on an ephemeral port and its config
//! (`gate`), a small HTTP client (`client`), the real binary (`binary`),
//! tokens good and bad (`tokens`), HTTP/2 connections (`h2`), and an
//! upstream that never reads a body (`naive`).
#![allow(dead_code, unreachable_pub, unused_imports)]

mod binary;
mod client;
mod gate;
mod h2;
mod naive;
mod store;
mod tokens;
mod upstream;

pub use binary::*;
pub use client::*;
pub use gate::*;
pub use h2::*;
pub use naive::*;
pub use store::*;
pub use tokens::*;
pub use upstream::*;

pub const ACCOUNT: &str = "acct_test";
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const OTHER_SECRET: &str = "another-secret-that-the-gate-does-not-know";
