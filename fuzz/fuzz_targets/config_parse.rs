//! `Config::parse` on arbitrary text: an operator's typo (or a hostile file
//! a deployment tool writes) must be an error with a location, not a panic.
//!
//! Note: `[[secrets]] file = "..."` and `[upstream] dir = "..."` make the
//! parser touch the file system, relative to the (nonexistent) directory of
//! `fuzz.toml`, i.e. the current directory; that only reads.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portal_gate::Config;

fuzz_target!(|text: &str| {
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
