//! Header hygiene between client and upstream, both ways, and the host reading.
//! The harness and its invariants live in the crate: `src/fuzzing.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| portal_gate::fuzzing::request_headers(input));
