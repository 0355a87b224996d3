//! `path::normalize` on arbitrary request paths, then rule lookup.
//! The harness and its invariants live in the crate: `src/fuzzing.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|raw: &str| portal_gate::fuzzing::path_normalize(raw));
