//! Token hot path: minting; opening (decode + decrypt + parse) followed by
//! the time checks; and the gate's `verify` on a decrypt-cache miss and hit,
//! so the cache's worth is a number.
//!
//! Run with `cargo bench --bench token`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portal_gate::access::cache::TokenCache;
use portal_gate::token::keys::{SecretRing, SecretSpec};
use portal_gate::token::{self, Claims};

fn ring() -> SecretRing {
    SecretRing::new(vec![
        SecretSpec {
            id: "k2024-01".to_owned(),
            value: b"a bench secret of a realistic length, 32+ bytes".to_vec(),
            primary: true,
            not_after: None,
        },
        SecretSpec {
            id: "k2023-12".to_owned(),
            value: b"the previous secret, still accepted".to_vec(),
            primary: false,
            not_after: None,
        },
    ])
    .expect("bench secrets are valid")
}

/// A token with every claim set, about the size a portal would mint.
fn claims() -> Claims {
    Claims {
        account_id: "acct_3f9a2c".to_owned(),
        email: "ada.lovelace@example.com".to_owned(),
        user_id: Some("user_01HZX3Q4V9".to_owned()),
        name: Some("Ada Lovelace".to_owned()),
        avatar_url: Some("https://cdn.example.com/avatars/01HZX3Q4V9.png".to_owned()),
        issued_at: 1_700_000_000,
        expires_at: 1_700_086_400,
    }
}

fn bench_token(c: &mut Criterion) {
    let ring = ring();
    let claims = claims();
    c.bench_function("token/mint", |b| {
        b.iter(|| token::mint(black_box(ring.primary()), black_box(&claims)))
    });

    let minted = token::mint(ring.primary(), &claims);
    c.bench_function("token/open", |b| {
        b.iter(|| {
            let opened = token::open(black_box(&ring), black_box(&minted)).expect("opens");
            opened
                .claims
                .check_time(black_box(1_700_000_100), 60)
                .expect("fresh");
            opened
        })
    });
}

/// A gate config whose secret and account match [`claims`] for the
/// `k2024-01` key.
fn gate_config() -> portal_gate::Config {
    let text = r#"
[upstream]
url = "http://127.0.0.1:9"
[verification]
account_id = "acct_3f9a2c"
[[secrets]]
id = "k2024-01"
value = "a bench secret of a realistic length, 32+ bytes"
"#;
    portal_gate::Config::parse(text, std::path::Path::new("bench.toml")).expect("bench config")
}

fn bench_cache(c: &mut Criterion) {
    let config = gate_config();
    let now = portal_gate::access::decision::unix_now();
    let claims = Claims {
        issued_at: now,
        expires_at: now + 3600,
        ..claims()
    };
    let minted = token::mint(config.secrets.primary(), &claims);
    let minted = portal_gate::access::decision::Credential::Token(minted.into());

    // Miss: a cache that holds nothing, so every call decrypts.
    let disabled = TokenCache::new(0);
    c.bench_function("verify/cache-miss", |b| {
        b.iter(|| {
            portal_gate::access::decision::verify(&config, &disabled, black_box(&minted), now)
                .expect("valid")
        })
    });

    let cache = TokenCache::new(10_000);
    portal_gate::access::decision::verify(&config, &cache, &minted, now).expect("valid");
    c.bench_function("verify/cache-hit", |b| {
        b.iter(|| {
            portal_gate::access::decision::verify(&config, &cache, black_box(&minted), now)
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench_token, bench_cache);
criterion_main!(benches);
