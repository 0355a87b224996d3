//! Revocation across replicas, on a real Valkey/Redis server started by
//! the tests: the revoke API, pub/sub, the set loaded after a reconnect,
//! logout, `fail_mode`, and bad input.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::*;

/// A replica's config: the tests' rules, the store at `store`, and
/// `extra` lines in `[revocation]`.
fn replica(upstream: &str, store: &str, extra: &str) -> String {
    config_for(
        upstream,
        &format!("[revocation]\nurl = \"{store}\"\n{extra}"),
    )
}

async fn revoke(gate: &Running, body: &str) -> Reply {
    request(Method::POST, &gate.url("/auth/api/revoke"))
        .bearer(SECRET)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

async fn status(gate: &Running, name: &str, value: &str) -> StatusCode {
    get(&gate.url("/docs/a"))
        .header(name, value)
        .header("accept", "application/json")
        .send()
        .await
        .status
}

/// Waits until `gate` says `want` for the credential, at most `within`.
async fn until(
    gate: &Running,
    name: &str,
    value: &str,
    want: StatusCode,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(gate, name, value).await;
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "still {got} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A replica on `store`, once it says it is connected.
async fn connected_replica(upstream: &str, store: &str, extra: &str) -> Running {
    let running = Running::start(&replica(upstream, store, extra)).await;
    connected(&running).await;
    running
}

/// The metrics say the store is connected.
async fn connected(gate: &Running) {
    for _ in 0..250 {
        if gate
            .metrics()
            .await
            .contains("portal_gate_revocation_store_connected 1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store never connected: {}", gate.metrics().await);
}

async fn session(gate: &Running, token: &str) -> String {
    let exchange = navigate(&gate.url(&format!("/docs/?auth-token={token}")))
        .send()
        .await;
    session_cookie(&exchange)
}

#[tokio::test]
async fn a_user_revoked_through_one_replica_is_refused_by_the_other_within_a_second() {
    if !store_available() {
        return;
    }
    let store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let a = connected_replica(&upstream.url(), &store.url(), "").await;
    let b = connected_replica(&upstream.url(), &store.url(), "").await;
    let eve = a.token_for("eve@example.org");
    let ada = a.token_for("ada@example.org");
    let eve_on_b = session(&b, &eve).await;
    let eve_bearer = format!("Bearer {eve}");
    let ada_bearer = format!("Bearer {ada}");
    assert_eq!(status(&b, "cookie", &eve_on_b).await, StatusCode::OK);
    assert_eq!(
        status(&b, "authorization", &eve_bearer).await,
        StatusCode::OK
    );

    let answer = revoke(
        &a,
        &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"Eve@Example.org"}}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let took = until(
        &b,
        "cookie",
        &eve_on_b,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        status(&b, "authorization", &eve_bearer).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&a, "authorization", &eve_bearer).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&b, "authorization", &ada_bearer).await,
        StatusCode::OK
    );
    eprintln!("replica B refused the revoked session {took:?} after the API answered");
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("portal_gate_revocations_received_total{kind=\"email\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portal_gate_revocations_live 1"),
        "{metrics}"
    );
    // The store holds a tombstone with a lifetime, never a session.
    let key = format!("portal-gate:{ACCOUNT}:rev:email:eve@example.org");
    let ttl = store.command(&["TTL", &key]).await.expect("ttl");
    let ttl: i64 = ttl.trim_start_matches(':').parse().expect("seconds");
    assert!(ttl > 0 && ttl <= 3 * 24 * 3600 + 60, "{ttl}");
}

#[tokio::test]
async fn each_kind_of_revocation_and_before_in_the_past() {
    if !store_available() {
        return;
    }
    let store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let a = connected_replica(&upstream.url(), &store.url(), "").await;
    let now = unix_now();
    let bob = format!(
        "Bearer {}",
        token_with_user(SECRET, "bob@example.org", "u-bob", now)
    );
    let carol = session(&a, &a.token_for("carol@example.org")).await;
    let carol_other = session(&a, &a.token_for("carol@example.org")).await;
    let dan = format!("Bearer {}", a.token_for("dan@example.org"));
    // The session id, as /auth/me tells it.
    let me = get(&a.url("/auth/me"))
        .header("cookie", &carol)
        .send()
        .await;
    let me: serde_json::Value = serde_json::from_str(&me.body).expect("json");
    let sid = me["session_id"].as_str().expect("a session id").to_string();

    for body in [
        // Bob's token comes from the system clock, the gate's clock stands
        // still: name the time rather than take the gate's "now".
        format!(
            r#"{{"account_id":"{ACCOUNT}","user_id":"u-bob","before":"{}"}}"#,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(now + 60)
            )
        ),
        format!(r#"{{"account_id":"{ACCOUNT}","session_id":"{sid}"}}"#),
        format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"dan@example.org","before":"2020-01-01T00:00:00Z"}}"#
        ),
    ] {
        let answer = revoke(&a, &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.body);
    }
    assert_eq!(
        status(&a, "authorization", &bob).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(&a, "cookie", &carol).await, StatusCode::UNAUTHORIZED);
    // One session revoked, not the user: Carol's other session lives.
    assert_eq!(status(&a, "cookie", &carol_other).await, StatusCode::OK);
    // A revocation before the credential was issued refuses nothing.
    assert_eq!(status(&a, "authorization", &dan).await, StatusCode::OK);
}

#[tokio::test]
async fn logout_through_the_store_kills_a_copied_cookie_everywhere() {
    if !store_available() {
        return;
    }
    let store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let a = connected_replica(&upstream.url(), &store.url(), "").await;
    let b = connected_replica(&upstream.url(), &store.url(), "").await;
    let cookie = session(&a, &a.token_for("ada@example.org")).await;
    assert_eq!(status(&b, "cookie", &cookie).await, StatusCode::OK);
    let logout = navigate(&a.url("/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(
        status(&a, "cookie", &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    until(
        &b,
        "cookie",
        &cookie,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test]
async fn after_a_store_restart_the_replicas_load_the_whole_set_again() {
    if !store_available() {
        return;
    }
    let mut store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let a = connected_replica(&upstream.url(), &store.url(), "").await;
    let b = connected_replica(&upstream.url(), &store.url(), "").await;
    let eve = format!("Bearer {}", a.token_for("eve@example.org"));
    store.stop();
    // fail_mode = "open" (the default): the last set keeps serving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&a, "authorization", &eve).await, StatusCode::OK);
    let answer = revoke(
        &a,
        &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"eve@example.org"}}"#),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    // While the store is down, a third replica starts with a revocation
    // in its TOML; it puts it in the store once the store is back.
    let mallory = format!("Bearer {}", a.token_for("mallory@example.org"));
    let soon = std::time::UNIX_EPOCH + Duration::from_secs(unix_now() + 1);
    let entry = format!(
        "[[revocations]]\nemail = \"mallory@example.org\"\nbefore = \"{}\"\n",
        humantime::format_rfc3339_seconds(soon)
    );
    let store_table = format!("[revocation]\nurl = \"{}\"\n", store.url());
    let c = Running::start(&config_for(
        &upstream.url(),
        &format!("{entry}{store_table}"),
    ))
    .await;
    assert_eq!(
        status(&c, "authorization", &mallory).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(&a, "authorization", &mallory).await, StatusCode::OK);
    store.restart().await;
    // And a revocation reached the store without being published at all.
    let key = format!("portal-gate:{ACCOUNT}:rev:email:eve@example.org");
    let before = (unix_now() + 1).to_string();
    let set = store.command(&["SET", &key, &before, "EX", "600"]).await;
    assert_eq!(set.as_deref(), Some("+OK"));
    let within = Duration::from_secs(15);
    for replica in [&a, &b] {
        until(
            replica,
            "authorization",
            &eve,
            StatusCode::UNAUTHORIZED,
            within,
        )
        .await;
        until(
            replica,
            "authorization",
            &mallory,
            StatusCode::UNAUTHORIZED,
            within,
        )
        .await;
    }
}

#[tokio::test]
async fn fail_mode_closed_pauses_verified_pages_once_the_set_is_stale() {
    if !store_available() {
        return;
    }
    let mut store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let extra = "fail_mode = \"closed\"\nmax_staleness = \"2s\"";
    let a = connected_replica(&upstream.url(), &store.url(), extra).await;
    let ada = format!("Bearer {}", a.token_for("ada@example.org"));
    let first = get(&a.url("/docs/a"))
        .header("authorization", &ada)
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    store.stop();
    a.clock.advance(Duration::from_secs(10));
    assert_eq!(
        status(&a, "authorization", &ada).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Public pages are always served.
    assert_eq!(get(&a.url("/public/p")).send().await.status, StatusCode::OK);
    let ready = get(&format!("http://{}/readyz", a.admin)).send().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.body.contains("revocation store unreachable"),
        "{}",
        ready.body
    );
    store.restart().await;
    until(
        &a,
        "authorization",
        &ada,
        StatusCode::OK,
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test]
async fn the_revoke_api_refuses_bad_calls_like_the_token_api() {
    if !store_available() {
        return;
    }
    let store = StoreServer::start().await;
    let upstream = RecordingUpstream::start().await;
    let a = connected_replica(&upstream.url(), &store.url(), "").await;
    let wrong_secret = request(Method::POST, &a.url("/auth/api/revoke"))
        .bearer(OTHER_SECRET)
        .body(format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.io"}}"#
        ))
        .send()
        .await;
    assert_eq!(wrong_secret.status, StatusCode::UNAUTHORIZED);
    let get_call = get(&a.url("/auth/api/revoke")).bearer(SECRET).send().await;
    assert_eq!(get_call.status, StatusCode::METHOD_NOT_ALLOWED);
    for (body, want) in [
        (
            r#"{"account_id":"other","user_email":"a@b.io"}"#.to_string(),
            StatusCode::FORBIDDEN,
        ),
        (
            format!(r#"{{"account_id":"{ACCOUNT}","user_email":"not an email"}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.io","user_id":"u"}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(r#"{{"account_id":"{ACCOUNT}","session_id":"short"}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(r#"{{"account_id":"{ACCOUNT}","user_id":"u","before":"soon"}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(
                r#"{{"account_id":"{ACCOUNT}","user_email":"{}@b.io"}}"#,
                "x".repeat(70_000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let answer = revoke(&a, &body).await;
        assert_eq!(answer.status, want, "{}", &body[..body.len().min(80)]);
    }
    assert_eq!(
        store.command(&["DBSIZE"]).await.as_deref(),
        Some(":0"),
        "nothing was revoked"
    );
    // Without a store the API says so.
    let plain = Running::start(&config_for(&upstream.url(), "")).await;
    let answer = revoke(
        &plain,
        &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"a@b.io"}}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
}

#[test]
fn a_malformed_store_url_is_a_located_config_error() {
    let dir = tempfile::tempdir().expect("dir");
    for (url, says) in [
        ("http://127.0.0.1:6379/0", "must be redis://"),
        ("redis://:hunter2@127.0.0.1:6379/0", "holds a password"),
        ("not a url", "not a URL"),
    ] {
        let text = config_for(
            "http://127.0.0.1:9",
            &format!("[revocation]\nurl = \"{url}\""),
        );
        let path = write_config(&dir, &text);
        let out = std::process::Command::new(binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert!(
            err.contains("key `revocation.url`") && err.contains(says),
            "{url}: {err}"
        );
        assert!(!err.contains("hunter2"), "the password in an error: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_answer_at_start_is_logged_once_and_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let upstream = RecordingUpstream::start().await;
    let text = replica(&upstream.url(), &format!("redis://127.0.0.1:{port}/0"), "");
    let (_dir, path) = {
        let dir = tempfile::tempdir().expect("dir");
        let path = write_config(&dir, &text);
        (dir, path)
    };
    let gate = BinaryProcess::start(&path);
    let line = gate.wait_for_log("revocation store unreachable");
    assert!(line.contains("127.0.0.1:"), "{line}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        gate.count_log("revocation store unreachable"),
        1,
        "{}",
        gate.log_text()
    );
    // The gate serves meanwhile (fail_mode = "open").
    let token = token_for("ada@example.org");
    let reply = get(&gate.url("/docs/a")).bearer(&token).send().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!gate.log_text().contains(&token));
}

/// `rediss://`: the store over TLS, its certificate from a private CA the
/// config names in `ca_file`.
#[tokio::test]
async fn a_store_over_tls_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    if !store_available() {
        return;
    }
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = KeyPair::generate().expect("leaf key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    let cert = params.signed_by(&key, &ca).expect("leaf");
    let store = StoreServer::start_tls(&cert.pem(), &key.serialize_pem()).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("store-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("ca file");
    let upstream = RecordingUpstream::start().await;
    let url = format!("rediss://127.0.0.1:{}/0", store.port);
    let extra = format!("ca_file = \"{}\"", ca_file.display());
    let a = connected_replica(&upstream.url(), &url, &extra).await;
    let eve = format!("Bearer {}", a.token_for("eve@example.org"));
    let answer = revoke(
        &a,
        &format!(r#"{{"account_id":"{ACCOUNT}","user_email":"eve@example.org"}}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        status(&a, "authorization", &eve).await,
        StatusCode::UNAUTHORIZED
    );
}
