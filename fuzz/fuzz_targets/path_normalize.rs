//! `path::normalize` on arbitrary request paths, checking the invariants its
//! module documentation promises, then `RuleSet::find` on the result.
//!
//! The rules and the upstream must see one reading of the path (see
//! `src/path.rs`), so an output that is not normal, or that normalizes to
//! something else a second time, is a bypass waiting to happen.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portal_gate::access::path;
use portal_gate::access::rules::{Access, RuleOptions, RuleSet, RuleSpec};

/// Patterns of every kind `rules` knows: root, exact, `*`, `**`, nested
/// prefixes; once case-sensitive and once case-insensitive.
const PATTERNS: [(&str, Access); 7] = [
    ("/", Access::Public),
    ("/docs/**", Access::Public),
    ("/docs/internal/**", Access::Verified),
    ("/docs/internal/public.html", Access::Public),
    ("/team/*/notes", Access::Verified),
    ("/assets/*", Access::Public),
    ("/a!b/**", Access::Verified),
];

fn rule_sets() -> &'static [RuleSet; 2] {
    static SETS: OnceLock<[RuleSet; 2]> = OnceLock::new();
    SETS.get_or_init(|| {
        let compile = |case_insensitive| {
            let specs = PATTERNS
                .iter()
                .map(|&(path, access)| RuleSpec {
                    path: path.into(),
                    access,
                    allow_emails: Vec::new(),
                    allow_domains: Vec::new(),
                })
                .collect();
            RuleSet::compile(specs, RuleOptions { case_insensitive })
                .expect("the fixed fuzz rules compile")
        };
        [compile(false), compile(true)]
    })
}

fuzz_target!(|raw: &str| {
    let Ok(normal) = path::normalize(raw) else {
        return;
    };
    let normal: &str = &normal;
    assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
    assert!(normal.is_ascii(), "{raw:?} -> {normal:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(
            !normal.contains(bad),
            "{raw:?} -> {normal:?} contains {bad:?}"
        );
    }
    assert!(
        !normal.ends_with("/.") && !normal.ends_with("/.."),
        "{raw:?} -> {normal:?}"
    );
    assert_eq!(
        path::normalize(normal).as_deref(),
        Ok(normal),
        "not idempotent for {raw:?}"
    );

    let folded = path::fold_case(normal);
    assert_eq!(
        path::normalize(&folded).as_deref(),
        Ok(&*folded),
        "fold_case broke normality for {raw:?}"
    );

    for rules in rule_sets() {
        if let Some(rule) = rules.find(normal) {
            assert!(rule.index() < PATTERNS.len());
        }
    }
});
