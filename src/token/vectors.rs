//! The published token vectors (tests/vectors/tokens.json) hold both ways:
//! minting with the vector's nonce reproduces each valid token byte for byte,
//! opening it gives back its claims, and each invalid token fails with the
//! named error.

use serde_json::Value;

use crate::token::claims::Claims;
use crate::token::format::{self as token, mint_with_nonce};
use crate::token::keys::{SecretRing, SecretSpec};

const VECTORS: &str = include_str!("../../tests/vectors/tokens.json");

fn vectors(kind: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).expect("tokens.json is valid JSON");
    let list = doc[kind].as_array().expect("vector list").clone();
    assert!(!list.is_empty(), "no {kind} vectors");
    list
}

fn text<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {field} missing: {vector}"))
}

/// A ring holding the vector's one secret under the vector's key id.
fn ring_for(vector: &Value) -> SecretRing {
    SecretRing::new(vec![SecretSpec {
        id: text(vector, "key_id").to_owned(),
        value: text(vector, "secret").as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .expect("vector secret is valid")
}

fn nonce(hex: &str) -> [u8; 24] {
    assert_eq!(hex.len(), 48, "nonce_hex is 24 bytes");
    let mut nonce = [0u8; 24];
    for (i, byte) in nonce.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digit");
    }
    nonce
}

#[test]
fn valid_vectors_mint_byte_for_byte() {
    for vector in vectors("valid") {
        let ring = ring_for(&vector);
        let claims: Claims = serde_json::from_value(vector["claims"].clone()).expect("claims");
        let minted = mint_with_nonce(ring.primary(), &claims, &nonce(text(&vector, "nonce_hex")));
        assert_eq!(minted, text(&vector, "token"), "{}", vector["claims"]);
    }
}

#[test]
fn valid_vectors_open_to_their_claims() {
    for vector in vectors("valid") {
        let ring = ring_for(&vector);
        let claims: Claims = serde_json::from_value(vector["claims"].clone()).expect("claims");
        let opened = token::open(&ring, text(&vector, "token")).expect("valid vector opens");
        assert_eq!(opened.claims, claims);
        assert_eq!(&*opened.key_id, text(&vector, "key_id"));
    }
}

#[test]
fn invalid_vectors_fail_with_the_named_error() {
    for vector in vectors("invalid") {
        let ring = ring_for(&vector);
        let err = token::open(&ring, text(&vector, "token")).expect_err(text(&vector, "what"));
        assert_eq!(
            format!("{err:?}"),
            text(&vector, "error"),
            "{}",
            text(&vector, "what")
        );
    }
}

#[test]
fn vectors_cover_every_structural_error() {
    let named: Vec<String> = vectors("invalid")
        .iter()
        .map(|v| text(v, "error").to_owned())
        .collect();
    for error in [
        "TooLong",
        "Malformed",
        "UnknownKey",
        "Rejected",
        "BadClaims",
    ] {
        assert!(named.iter().any(|n| n == error), "no vector for {error}");
    }
}

#[test]
fn tokens_minted_before_groups_and_attributes_open_with_none() {
    let old: Vec<Value> = vectors("valid")
        .into_iter()
        .filter(|v| text(v, "what").starts_with("minted before grp and atr existed"))
        .collect();
    assert!(
        !old.is_empty(),
        "no vector of the format before grp and atr"
    );
    for vector in old {
        assert!(vector["claims"].get("grp").is_none() && vector["claims"].get("atr").is_none());
        let opened = token::open(&ring_for(&vector), text(&vector, "token")).expect("opens");
        assert!(opened.claims.groups.is_empty(), "{vector}");
        assert!(opened.claims.attributes.is_empty(), "{vector}");
    }
    let new = vectors("valid")
        .into_iter()
        .find(|v| v["claims"].get("atr").is_some())
        .expect("a vector with attributes");
    let opened = token::open(&ring_for(&new), text(&new, "token")).expect("opens");
    assert_eq!(opened.claims.groups, ["beta", "org:navy"]);
    let regions = opened.claims.attributes.get("regions").expect("regions");
    assert_eq!(regions.values(), ["eu", "us"]);
}
