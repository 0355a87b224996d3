//! Taking access away without a store, through the real server:
//! `[[revocations]]` by email or user id, `sessions_not_before`, applied by
//! a reload to tokens and sessions alike, decrypt-cache hits included, and
//! to an open WebSocket tunnel.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;
use portal_gate::Clock;
use support::*;

/// `unix` as an RFC 3339 time.
fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// The tests' config with `extra` TOML and `sessions_not_before`, if any.
fn config(upstream: &str, extra: &str, not_before: Option<u64>) -> String {
    let text = config_for(upstream, extra);
    match not_before {
        None => text,
        Some(at) => text.replace(
            "cache_capacity = 100",
            &format!(
                "cache_capacity = 100\nsessions_not_before = \"{}\"",
                rfc3339(at)
            ),
        ),
    }
}

/// A session cookie for `token` (the exchange of a navigation).
async fn session_for(gate: &Running, token: &str) -> String {
    let exchange = navigate(&gate.url(&format!("/docs/?auth-token={token}")))
        .send()
        .await;
    session_cookie(&exchange)
}

async fn status(gate: &Running, credential: (&str, &str)) -> StatusCode {
    get(&gate.url("/docs/a"))
        .header(credential.0, credential.1)
        .header("accept", "application/json")
        .send()
        .await
        .status
}

#[tokio::test]
async fn a_reload_revokes_a_user_by_email_or_id_and_no_one_else() {
    let upstream = RecordingUpstream::start().await;
    let gate = Running::start(&config(&upstream.url(), "", None)).await;
    let now = gate.clock.unix_now();
    let eve = gate.token_for("eve@example.org");
    let ada = gate.token_for("ada@example.org");
    let bob = token_with_user(SECRET, "bob@example.org", "u-bob", now);
    let eve_session = session_for(&gate, &eve).await;
    let eve_bearer = format!("Bearer {eve}");
    let ada_bearer = format!("Bearer {ada}");
    let bob_bearer = format!("Bearer {bob}");
    // Warm the decrypt cache: revocations must hold on hits too.
    for credential in [
        ("authorization", eve_bearer.as_str()),
        ("cookie", eve_session.as_str()),
        ("authorization", ada_bearer.as_str()),
        ("authorization", bob_bearer.as_str()),
    ] {
        assert_eq!(status(&gate, credential).await, StatusCode::OK);
    }
    let revoked = format!(
        "[[revocations]]\nemail = \"Eve@Example.org\"\nbefore = \"{}\"\n[[revocations]]\nuser_id = \"u-bob\"\nbefore = \"{}\"\n",
        rfc3339(now + 1),
        rfc3339(now + 1)
    );
    gate.reload(&config(&upstream.url(), &revoked, None));
    for credential in [
        ("authorization", eve_bearer.as_str()),
        ("cookie", eve_session.as_str()),
        ("authorization", bob_bearer.as_str()),
    ] {
        let reply = get(&gate.url("/docs/a"))
            .header(credential.0, credential.1)
            .header("accept", "application/json")
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{credential:?}");
        assert!(reply.body.contains("revoked"), "{}", reply.body);
    }
    assert_eq!(
        status(&gate, ("authorization", &ada_bearer)).await,
        StatusCode::OK
    );
    // Credentials issued after the revocation's time pass again.
    gate.clock.advance(Duration::from_secs(5));
    let later = gate.clock.unix_now();
    let fresh = token_with(SECRET, "k1", "eve@example.org", ACCOUNT, later, later + 300);
    assert_eq!(
        status(&gate, ("authorization", &format!("Bearer {fresh}"))).await,
        StatusCode::OK
    );
    let seen = upstream.seen_under("/docs/a").len();
    assert_eq!(
        seen, 6,
        "four before, Ada and the fresh token after: no refused one"
    );
}

#[tokio::test]
async fn sessions_not_before_signs_everybody_out_without_a_new_secret() {
    let upstream = RecordingUpstream::start().await;
    let gate = Running::start(&config(&upstream.url(), "", None)).await;
    let now = gate.clock.unix_now();
    let ada = gate.token_for("ada@example.org");
    let session = session_for(&gate, &ada).await;
    assert_eq!(status(&gate, ("cookie", &session)).await, StatusCode::OK);
    gate.reload(&config(&upstream.url(), "", Some(now + 1)));
    assert_eq!(
        status(&gate, ("cookie", &session)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&gate, ("authorization", &format!("Bearer {ada}"))).await,
        StatusCode::UNAUTHORIZED
    );
    // After the time, new sign-ins work; the secret never changed.
    gate.clock.advance(Duration::from_secs(2));
    let later = gate.clock.unix_now();
    let fresh = token_with(SECRET, "k1", "ada@example.org", ACCOUNT, later, later + 300);
    let session = session_for(&gate, &fresh).await;
    assert_eq!(status(&gate, ("cookie", &session)).await, StatusCode::OK);
}

#[test]
fn revocation_entries_are_checked_and_old_ones_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let base = config_for("http://127.0.0.1:9", "");
    let cases = [
        ("[[revocations]]\nemail = \"a@b.io\"\nuser_id = \"u\"\nbefore = \"2026-01-01T00:00:00Z\"\n", "revocations[0]", "exactly one of"),
        ("[[revocations]]\nbefore = \"2026-01-01T00:00:00Z\"\n", "revocations[0]", "exactly one of"),
        ("[[revocations]]\nemail = \"not-an-email\"\nbefore = \"2026-01-01T00:00:00Z\"\n", "revocations[0].email", "not a valid email"),
        ("[[revocations]]\nuser_id = \"has space\"\nbefore = \"2026-01-01T00:00:00Z\"\n", "revocations[0].user_id", "must match"),
        ("[[revocations]]\nemail = \"a@b.io\"\nbefore = \"yesterday\"\n", "revocations[0].before", "not an RFC 3339 time"),
    ];
    for (extra, key, says) in cases {
        let path = write_config(&dir, &format!("{base}\n{extra}"));
        let out = std::process::Command::new(binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}");
        assert!(
            err.contains(&format!("key `{key}`")) && err.contains(says),
            "{extra}: {err}"
        );
    }
    // A revocation older than any credential it could refuse: a warning.
    let old = "[[revocations]]\nemail = \"a@b.io\"\nbefore = \"2020-01-01T00:00:00Z\"\n[[revocations]]\nuser_id = \"u-1\"\nbefore = \"2999-01-01T00:00:00Z\"\n";
    let path = write_config(&dir, &format!("{base}\n{old}"));
    let out = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: revocations[0] is older than the longest credential lifetime"),
        "{text}"
    );
    assert!(!text.contains("revocations[1]"), "{text}");
}
