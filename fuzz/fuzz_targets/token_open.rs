//! `token::open` and sessions on whatever a client can send, and on the plaintext of correctly sealed values.
//! The harness and its invariants live in the crate: `src/fuzzing.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portal_gate::fuzzing::token_open(data));
