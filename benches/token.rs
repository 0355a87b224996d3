//! Token hot path: minting, and opening (decode + decrypt + parse)
//! followed by the time checks, through the public `token` API a backend
//! that mints offline uses. The decrypt cache's worth is in the
//! `decision` bench (`admit/verified-cache-hit` against
//! `admit/verified-cache-disabled`).
//!
//! Run with `cargo bench --bench token`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portal_gate::token::{self, Claims, SecretRing, SecretSpec};

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
        groups: Vec::new(),
        attributes: Default::default(),
        session_id: None,
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
                .claims()
                .check_time(black_box(1_700_000_100), 60)
                .expect("fresh");
            opened
        })
    });
}

criterion_group!(benches, bench_token);
criterion_main!(benches);
