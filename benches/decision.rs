//! The whole in-process access decision, [`portal_gate::Gate::admit`],
//! without network: classify the request (method, one reading of the
//! path, host), find the credential, look up the rule, open the token
//! through the decrypt cache (hit, and with the cache disabled: a miss),
//! admit the user (by email domain, or by group and required attributes
//! under a rule that shares its pattern with a POST rule), and rewrite the
//! request for the upstream. What every
//! gated request pays before the upstream is called; the same function
//! the proxy and the tower layer run. Each iteration includes a
//! `block_on` on a current-thread runtime (tens of nanoseconds).
//!
//! Run with `cargo bench --bench decision`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use http_body_util::Empty;
use portal_gate::token::{self, AttrValue, Claims};
use portal_gate::{Admission, ConnInfo, Gate, ManualClock};

const NOW: u64 = 1_800_000_000;

fn config(cache_capacity: usize) -> String {
    format!(
        r#"
[upstream]
url = "http://127.0.0.1:9"
[verification]
account_id = "acct_bench"
cache_capacity = {cache_capacity}
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
[[pages]]
path = "/roadmap/**"
access = "verified"
allow_groups = ["staff", "beta"]
require = {{ plan = ["pro", "enterprise"], region = ["eu"] }}
[[pages]]
path = "/roadmap/**"
methods = ["POST"]
access = "verified"
allow_groups = ["staff"]
"#
    )
}

fn gate(cache_capacity: usize) -> Gate {
    let config = portal_gate::Config::parse(&config(cache_capacity), Path::new("bench.toml"))
        .expect("config");
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOW));
    Gate::new(config).expect("gate").with_clock(Arc::new(clock))
}

fn bench_admit(c: &mut Criterion) {
    let cached = gate(10_000);
    let uncached = gate(0);
    let claims = Claims {
        account_id: "acct_bench".into(),
        email: "ada@example.com".into(),
        user_id: Some("user_01HZX3Q4V9".into()),
        name: None,
        avatar_url: None,
        groups: Vec::new(),
        attributes: Default::default(),
        session_id: None,
        issued_at: NOW,
        expires_at: NOW + 3600,
    };
    let bearer = format!(
        "Bearer {}",
        token::mint(cached.config().secrets().primary(), &claims)
    );
    // A customer in a group, on a plan, in two regions.
    let mut customer = claims.clone();
    customer.groups = vec!["org:acme".into(), "beta".into()];
    customer
        .attributes
        .insert("plan".into(), AttrValue::One("pro".into()));
    customer.attributes.insert(
        "region".into(),
        AttrValue::Many(vec!["us".into(), "eu".into()]),
    );
    let customer = format!(
        "Bearer {}",
        token::mint(cached.config().secrets().primary(), &customer)
    );
    let request = |path: &'static str, bearer: Option<&str>| {
        let mut builder = Request::get(path)
            .header("host", "portal.example.com")
            .header("accept", "text/html,*/*")
            .header("user-agent", "bench/1.0");
        if let Some(bearer) = bearer {
            builder = builder.header("authorization", bearer);
        }
        builder.body(Empty::<Bytes>::new()).expect("request")
    };
    let conn = ConnInfo::new("192.0.2.7:40000".parse().expect("addr"), false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut bench = |name: &str, gate: &Gate, path: &'static str, bearer: Option<&str>| {
        c.bench_function(name, |b| {
            b.iter_batched(
                || request(path, bearer),
                |request| {
                    let admitted = runtime.block_on(gate.admit(request, &conn));
                    assert!(matches!(admitted, Admission::Forward(_)));
                },
                BatchSize::SmallInput,
            )
        });
    };
    bench("admit/public", &cached, "/changelog/2026/11/", None);
    bench(
        "admit/verified-cache-hit",
        &cached,
        "/internal/notes/2026/q4.html",
        Some(&bearer),
    );
    bench(
        "admit/verified-groups-require-cache-hit",
        &cached,
        "/roadmap/2026/q4.html",
        Some(&customer),
    );
    bench(
        "admit/verified-unnormalized-path",
        &cached,
        "/internal//notes/./2026/../2026/q4.html",
        Some(&bearer),
    );
    bench(
        "admit/verified-cache-disabled",
        &uncached,
        "/internal/notes/2026/q4.html",
        Some(&bearer),
    );
}

/// The revocation check every verified request makes, against 10,000
/// revoked users (email and user id): hash lookups in memory, no round
/// trip to any store.
fn bench_revoked(c: &mut Criterion) {
    let mut text = config(10_000);
    for i in 0..5_000 {
        text.push_str(&format!(
            "[[revocations]]\nemail = \"user{i}@example.com\"\nbefore = \"2030-01-01T00:00:00Z\"\n\
             [[revocations]]\nuser_id = \"u-{i}\"\nbefore = \"2030-01-01T00:00:00Z\"\n"
        ));
    }
    let config = portal_gate::Config::parse(&text, Path::new("bench.toml")).expect("config");
    let gate = Gate::new(config).expect("gate");
    let mut user =
        Claims::for_user("acct_bench".into(), "ada@example.com", None, NOW, 60).expect("claims");
    user.user_id = Some("u-ada".into());
    let mut revoked = user.clone();
    revoked.email = "user4321@example.com".into();
    assert!(!gate.is_revoked(&user) && gate.is_revoked(&revoked));
    c.bench_function("revoked/10000-not-revoked", |b| {
        b.iter(|| gate.is_revoked(std::hint::black_box(&user)))
    });
    c.bench_function("revoked/10000-revoked", |b| {
        b.iter(|| gate.is_revoked(std::hint::black_box(&revoked)))
    });
}

criterion_group!(benches, bench_admit, bench_revoked);
criterion_main!(benches);
