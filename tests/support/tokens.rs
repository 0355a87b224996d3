//! Tokens minted with the library or through the API, good and bad.
#![allow(unused_imports)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portal_gate::token::{self, Claims};
use portal_gate::token::{SecretRing, SecretSpec};
use portal_gate::ManualClock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

/// A token minted directly with the library, for cases the API would not
/// mint (expired, other account, unknown secret).
pub fn token_with(
    secret: &str,
    key_id: &str,
    email: &str,
    account: &str,
    issued_at: u64,
    expires_at: u64,
) -> String {
    let ring = SecretRing::new(vec![SecretSpec {
        id: key_id.to_string(),
        value: secret.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .expect("ring");
    let claims = Claims {
        account_id: account.to_string(),
        email: email.to_string(),
        user_id: None,
        name: None,
        avatar_url: None,
        groups: Vec::new(),
        attributes: Default::default(),
        session_id: None,
        issued_at,
        expires_at,
    };
    token::mint(ring.primary(), &claims)
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A valid token for `email`, minted with the test secret.
pub fn token_for(email: &str) -> String {
    let now = unix_now();
    token_with(SECRET, "k1", email, ACCOUNT, now, now + 300)
}

/// Mint a token through the gate's API.
pub async fn mint_via_api(gate: &GateProcess, email: &str) -> String {
    mint_at(&gate.url("/auth/api/token"), email).await
}

/// Mint a token for `email` through the token API at `api_url`.
pub async fn mint_at(api_url: &str, email: &str) -> String {
    let reply = request(Method::POST, api_url)
        .bearer(SECRET)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"{email}"}}"#
        ))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "mint failed: {}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    json["token"].as_str().expect("token").to_string()
}

/// Tokens for ada@example.com that the gate must refuse, one reason each.
#[derive(Debug, Clone)]
pub struct BadTokens {
    /// Expired ten minutes ago.
    pub expired: String,
    /// Minted for another account.
    pub other_account: String,
    /// Sealed with a secret the gate does not know, under its key id.
    pub other_secret: String,
    /// Sealed with the right secret under a key id the gate does not know.
    pub unknown_key: String,
}

/// The one set of bad tokens the tests share.
pub fn bad_tokens() -> BadTokens {
    let now = unix_now();
    let ada = "ada@example.com";
    BadTokens {
        expired: token_with(SECRET, "k1", ada, ACCOUNT, now - 3600, now - 600),
        other_account: token_with(SECRET, "k1", ada, "acct_other", now, now + 300),
        other_secret: token_with(OTHER_SECRET, "k1", ada, ACCOUNT, now, now + 300),
        unknown_key: token_with(SECRET, "k9", ada, ACCOUNT, now, now + 300),
    }
}

/// The `name=value` of the session cookie `reply` sets.
pub fn session_cookie(reply: &Reply) -> String {
    let set = reply.header("set-cookie").expect("Set-Cookie");
    let pair = set.split(';').next().expect("cookie pair");
    assert!(
        pair.starts_with("__Host-portal-gate-session=pgs1."),
        "{set}"
    );
    pair.to_string()
}

/// A token for `email` with the user id `user_id`, issued at `now` for
/// five minutes, sealed with `secret` under `k1`.
pub fn token_with_user(secret: &str, email: &str, user_id: &str, now: u64) -> String {
    let ring = SecretRing::new(vec![SecretSpec {
        id: "k1".to_string(),
        value: secret.as_bytes().to_vec(),
        primary: true,
        not_after: None,
    }])
    .expect("ring");
    let claims =
        Claims::for_user(ACCOUNT.into(), email, Some(user_id.into()), now, 300).expect("claims");
    token::mint(ring.primary(), &claims)
}
