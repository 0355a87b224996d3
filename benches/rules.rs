//! Page rules at scale: reading a config of 10, 1 000 and 10 000 rules,
//! and [`portal_gate::Gate::admit`] on public paths that hit an exact rule,
//! hit a deep pattern, or match no rule (with `default_access = "public"`),
//! so that the lookup is the part that grows with the rules. Each
//! iteration includes a `block_on` and the request rewrite, which do not
//! grow: compare the rows, not the absolute figures.
//!
//! Run: `cargo bench --bench rules`.

use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use http::Request;
use http_body_util::Empty;
use portal_gate::{Admission, Config, ConnInfo, Gate};

/// A realistic mix of `n` public rules: a few site-wide ones, then in turn
/// `/docs/<product>/<version>/**`, `/changelog/<year>/<slug>` (exact),
/// `/blog/<slug>/` (exact) and `/users/<team>/*/settings`.
fn config(n: usize) -> String {
    let mut paths: Vec<String> = ["/", "/pricing", "/internal/**", "/docs/*/*/drafts/**"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut i = 0;
    while paths.len() < n {
        paths.push(match i % 4 {
            0 => format!("/docs/product-{}/v{}/**", i / 40, (i / 4) % 10),
            1 => format!("/changelog/{}/release-notes-{i}", 2000 + i % 25),
            2 => format!("/blog/how-we-built-feature-{i}/"),
            _ => format!("/users/team-{i}/*/settings"),
        });
        i += 1;
    }
    paths.truncate(n);
    let mut text = String::from(
        "default_access = \"public\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n\
         [verification]\naccount_id = \"acct_bench\"\n\
         [[secrets]]\nid = \"k1\"\nvalue = \"a bench secret of a realistic length\"\n",
    );
    for path in paths {
        text.push_str(&format!(
            "[[pages]]\npath = \"{path}\"\naccess = \"public\"\n"
        ));
    }
    text
}

fn lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let conn = ConnInfo::new("192.0.2.7:40000".parse().expect("addr"), false);
    let mut group = c.benchmark_group("admit_by_rules");
    for n in [10, 1_000, 10_000] {
        let config = Config::parse(&config(n), Path::new("bench.toml")).expect("bench config");
        let gate = Gate::new(config).expect("gate");
        let paths = [
            ("exact", "/changelog/2001/release-notes-1"),
            ("deep_pattern", "/docs/product-0/v1/guides/install/linux/"),
            ("miss", "/assets/app/main.3f9a1c.js"),
        ];
        for (kind, path) in paths {
            group.bench_with_input(BenchmarkId::new(kind, n), path, |b, path| {
                b.iter_batched(
                    || {
                        Request::get(path)
                            .body(Empty::<Bytes>::new())
                            .expect("request")
                    },
                    |request| {
                        let admitted = runtime.block_on(gate.admit(request, &conn));
                        assert!(matches!(admitted, Admission::Forward(_)));
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let text = config(10_000);
    c.bench_function("config_parse/10000_rules", |b| {
        b.iter(|| Config::parse(&text, Path::new("bench.toml")).map(|_| ()))
    });
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
