//! Finding the token in a query and headers, and removing it from the query.
//! The harness and its invariants live in the crate: `src/fuzzing.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &str| portal_gate::fuzzing::token_query(input));
