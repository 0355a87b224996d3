//! The whole in-process request decision, without network: find the
//! credential, normalize the path, look up the rule, open the token through
//! the cache, admit the user. What every gated request pays before the
//! upstream is called.
//!
//! Run with `cargo bench --bench decision`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Request};
use portal_gate::access::cache::TokenCache;
use portal_gate::access::decision::{self, Decision};
use portal_gate::token::{self, Claims};

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[verification]
account_id = "acct_bench"
[[secrets]]
id = "k1"
value = "a bench secret of a realistic length, 32+ bytes"
[[pages]]
path = "/"
access = "public"
[[pages]]
path = "/changelog/**"
access = "public"
[[pages]]
path = "/docs/**"
access = "verified"
[[pages]]
path = "/internal/**"
access = "verified"
allow_domains = ["example.com"]
"#;

fn decide(
    config: &portal_gate::Config,
    cache: &TokenCache,
    request: &Request<()>,
    now: u64,
) -> bool {
    let path = portal_gate::access::path::normalize(request.uri().path()).expect("normal path");
    let (credential, _places) = decision::find_credential(request.uri().query(), request.headers())
        .expect("one credential");
    matches!(
        decision::decide(config, cache, &path, credential.as_ref(), now),
        Decision::Forward(_)
    )
}

fn bench_decision(c: &mut Criterion) {
    let config = portal_gate::Config::parse(CONFIG, Path::new("bench.toml")).expect("config");
    let now = decision::unix_now();
    let claims = Claims {
        account_id: "acct_bench".into(),
        email: "ada@example.com".into(),
        user_id: Some("user_01HZX3Q4V9".into()),
        name: None,
        avatar_url: None,
        issued_at: now,
        expires_at: now + 3600,
    };
    let minted = token::mint(config.secrets.primary(), &claims);
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {minted}")).expect("header"),
    );
    headers.insert("accept", HeaderValue::from_static("text/html,*/*"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    let mut verified = Request::get("/internal/notes/2026/q4.html")
        .body(())
        .expect("request");
    *verified.headers_mut() = headers.clone();
    let public = Request::get("/changelog/2026/11/")
        .body(())
        .expect("request");
    let messy = Request::get("/internal//notes/./2026/../2026/q4.html")
        .body(())
        .expect("request");
    let mut messy = messy;
    *messy.headers_mut() = headers;

    let cache = TokenCache::new(10_000);
    let none = TokenCache::new(0);
    c.bench_function("decision/public", |b| {
        b.iter(|| decide(&config, &cache, black_box(&public), now))
    });
    c.bench_function("decision/verified-cache-hit", |b| {
        b.iter(|| decide(&config, &cache, black_box(&verified), now))
    });
    c.bench_function("decision/verified-unnormalized-path", |b| {
        b.iter(|| decide(&config, &cache, black_box(&messy), now))
    });
    c.bench_function("decision/verified-cache-disabled", |b| {
        b.iter(|| decide(&config, &none, black_box(&verified), now))
    });
}

criterion_group!(benches, bench_decision);
criterion_main!(benches);
