//! Every input a fuzzer once broke the crate with, replayed on each test
//! run: files under `fuzz/regressions/<target>/`.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read input"),
            )
        })
        .collect()
}

#[test]
fn path_normalize_regressions_stay_fixed() {
    let cases = inputs("path_normalize");
    assert!(!cases.is_empty(), "the regression corpus is missing");
    for (name, bytes) in cases {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(once) = portal_gate::access::path::normalize(text) {
            assert!(
                once.len() <= portal_gate::access::path::MAX_PATH_LEN,
                "{name}: output over the limit"
            );
            let twice = portal_gate::access::path::normalize(&once);
            assert_eq!(
                twice.as_deref(),
                Ok(once.as_ref()),
                "{name}: not idempotent"
            );
        }
    }
}
