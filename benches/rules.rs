//! Page rule lookup (`RuleSet::find`) with 10, 1 000 and 10 000 rules, for
//! paths that hit an exact rule, hit a deep pattern, or match nothing.
//!
//! Run: `cargo bench --bench rules`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portal_gate::access::rules::{Access, RuleOptions, RuleSet, RuleSpec};

fn spec(path: String) -> RuleSpec {
    RuleSpec {
        path,
        access: Access::Verified,
        allow_emails: Vec::new(),
        allow_domains: vec!["example.com".to_owned()],
    }
}

/// A realistic mix of `n` rules: a few site-wide ones, then in turn
/// `/docs/<product>/<version>/**`, `/changelog/<year>/<slug>` (exact),
/// `/blog/<slug>/` (exact) and `/users/<team>/*/settings`.
fn rules(n: usize) -> Vec<RuleSpec> {
    let mut specs: Vec<RuleSpec> = ["/", "/pricing", "/internal/**", "/docs/*/*/drafts/**"]
        .into_iter()
        .map(|p| spec(p.to_owned()))
        .collect();
    let mut i = 0;
    while specs.len() < n {
        let path = match i % 4 {
            0 => format!("/docs/product-{}/v{}/**", i / 40, (i / 4) % 10),
            1 => format!("/changelog/{}/release-notes-{i}", 2000 + i % 25),
            2 => format!("/blog/how-we-built-feature-{i}/"),
            _ => format!("/users/team-{i}/*/settings"),
        };
        specs.push(spec(path));
        i += 1;
    }
    specs.truncate(n);
    specs
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules_find");
    for n in [10, 1_000, 10_000] {
        let set = match RuleSet::compile(rules(n), RuleOptions::default()) {
            Ok(set) => set,
            Err(e) => panic!("bench rules must compile: {e}"),
        };
        let paths = [
            ("exact", "/changelog/2001/release-notes-1".to_owned()),
            (
                "deep_pattern",
                "/docs/product-0/v1/guides/install/linux/".to_owned(),
            ),
            ("miss", "/assets/app/main.3f9a1c.js".to_owned()),
        ];
        for (kind, path) in &paths {
            assert!(
                set.find(path).is_some() == (*kind != "miss"),
                "{kind} {path} with {n} rules"
            );
            group.bench_with_input(BenchmarkId::new(*kind, n), path, |b, path| {
                b.iter(|| set.find(black_box(path)).map(|rule| rule.index()))
            });
        }
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let specs = rules(10_000);
    c.bench_function("rules_compile/10000", |b| {
        b.iter(|| {
            RuleSet::compile(black_box(specs.clone()), RuleOptions::default()).map(|s| s.len())
        })
    });
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
