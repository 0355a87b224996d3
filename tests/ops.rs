//! Operations through the real binary: the admin listener (health,
//! readiness, metrics), access logs that never leak a credential, explain,
//! and two replicas that share nothing but their config.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use support::*;

fn admin_addr(gate: &BinaryProcess) -> SocketAddr {
    let line = gate.wait_for_log("admin listening on http://");
    let rest = line
        .split("admin listening on http://")
        .nth(1)
        .expect("address");
    rest.split_whitespace()
        .next()
        .expect("address")
        .parse()
        .expect("socket address")
}

#[tokio::test]
async fn health_readiness_and_metrics_on_the_admin_port() {
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let gate = BinaryProcess::start(&path);
    let admin = admin_addr(&gate);
    let admin_url = |p: &str| format!("http://{admin}{p}");

    assert_eq!(
        get(&admin_url("/healthz")).send().await.status,
        StatusCode::OK
    );
    // The probe reaches the upstream within a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&admin_url("/readyz")).send().await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The admin endpoints are not on the public port.
    assert_eq!(
        get(&gate.url("/metrics")).send().await.status,
        StatusCode::UNAUTHORIZED
    );

    // Some traffic: a mint, a verified page twice (miss, then hit), a refusal.
    let token = mint_at(&gate.url("/auth/api/token"), "ada@example.com").await;
    for _ in 0..2 {
        assert_eq!(
            get(&gate.url("/docs/a")).bearer(&token).send().await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        request(Method::POST, &gate.url("/auth/api/token"))
            .bearer("wrong")
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&gate.url("/docs/a")).send().await.status,
        StatusCode::UNAUTHORIZED
    );

    let metrics = get(&admin_url("/metrics")).send().await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body;
    for expected in [
        "portal_gate_requests_total{decision=\"verified\",status=\"200\"} 2",
        "portal_gate_requests_total{decision=\"reject\",status=\"401\"} 2",
        "portal_gate_verifications_total{secret_id=\"k1\"} 2",
        "portal_gate_tokens_minted_total 1",
        "portal_gate_token_api_failures_total{reason=\"unauthorized\"} 1",
        "portal_gate_cache_hits_total 1",
        "portal_gate_cache_entries 1",
        "portal_gate_request_duration_seconds_count",
        "portal_gate_config_info{version=\"",
    ] {
        assert!(
            text.contains(expected),
            "metrics lack {expected:?}:\n{text}"
        );
    }
    assert!(!text.contains(&token) && !text.contains(SECRET));

    // A reload is counted and the version follows the new file.
    std::fs::write(
        &path,
        config_for(
            &upstream.url(),
            "[admin]\nlisten = \"127.0.0.1:0\"\n# changed\n",
        ),
    )
    .expect("write");
    gate.signal("HUP");
    gate.wait_for_log("configuration reloaded");
    let after = get(&admin_url("/metrics")).send().await.body;
    assert!(
        after.contains("portal_gate_config_reloads_total{result=\"ok\"} 1"),
        "{after}"
    );
    assert_eq!(
        after.matches("portal_gate_config_info{").count(),
        1,
        "{after}"
    );
}

#[tokio::test]
async fn readyz_fails_while_the_upstream_is_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (_dir, path) = config_file(&dead, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let gate = BinaryProcess::start(&path);
    let admin = admin_addr(&gate);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = get(&format!("http://{admin}/readyz")).send().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        get(&format!("http://{admin}/healthz")).send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_port_caps_its_connections_and_closes_each_after_one_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let gate = BinaryProcess::start(&path);
    let admin = admin_addr(&gate);
    // A raw GET /healthz on a new connection: what came back before the
    // gate closed it (nothing when it was refused: a close, or a reset as
    // the request was still unread).
    let healthz = || async {
        let mut stream = tokio::net::TcpStream::connect(admin)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply));
        match read.await.expect("closed, not left open") {
            Ok(_) => reply,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
            Err(error) => panic!("read: {error}"),
        }
    };
    // One answer per connection, then the gate closes it.
    let reply = healthz().await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("ok\n"), "{reply}");

    // Every slot taken by a connection that says nothing...
    let mut idle = Vec::new();
    // 256: the admin listener's connection limit (docs/security.md).
    for _ in 0..256 {
        idle.push(
            tokio::net::TcpStream::connect(admin)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the next one is closed unanswered, and the gate says why.
    assert_eq!(healthz().await, "");
    gate.wait_for_log("admin connection limit reached");
    assert_eq!(healthz().await, "");
    assert_eq!(
        gate.count_log("admin connection limit reached"),
        1,
        "one warning for a run of refusals"
    );
    // Slots free up without the idle clients' help: the gate closes a
    // connection that sends no request head within 3 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = healthz().await;
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.wait_for_log("admin connections accepted again");
    let mut byte = [0u8; 1];
    let closed = idle[0].read(&mut byte).await;
    assert!(matches!(closed, Ok(0)), "{closed:?}");
    drop(idle);
    // The public port never shared the admin's limit.
    assert_eq!(
        get(&gate.url("/public/x")).send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn access_logs_carry_decisions_but_never_a_credential() {
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "");
    let gate = BinaryProcess::start_with(&path, &["--log-format", "json"]);

    // A full flow: mint, exchange in the URL, the session cookie, a header token.
    let token = mint_at(&gate.url("/auth/api/token"), "ada@example.com").await;
    let exchange = navigate(&gate.url(&format!("/docs/guide?auth-token={token}")))
        .send()
        .await;
    let cookie = session_cookie(&exchange);
    let session = cookie.split_once('=').expect("pair").1.to_string();
    assert_eq!(
        navigate(&gate.url("/docs/guide"))
            .header("cookie", &cookie)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&gate.url("/board/x"))
            .header("x-auth-token", &token)
            .send()
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = gate.log_text();
    for secret in [token.as_str(), session.as_str(), SECRET, "ada@example.com"] {
        assert!(!log.contains(secret), "the log leaks {secret:?}:\n{log}");
    }
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["target"] == "access")
        .collect();
    assert_eq!(events.len(), 4, "one access event per request:\n{log}");
    let verified = events
        .iter()
        .find(|e| e["decision"] == "verified")
        .expect("verified event");
    assert_eq!(verified["path"], "/docs/guide");
    assert_eq!(verified["status"], 200);
    assert_eq!(verified["rule"], "/docs/**");
    assert_eq!(verified["secret_id"], "k1");
    assert_eq!(verified["upstream_status"], 200);
    assert!(verified["latency_us"].as_u64().is_some());
    assert_eq!(verified["outcome"], "complete");
    assert_eq!(verified["bytes"], "upstream: /docs/guide".len());
    let pseudonym = verified["user"].as_str().expect("user pseudonym");
    assert_eq!(pseudonym.len(), 12);
    let refused = events
        .iter()
        .find(|e| e["status"] == 403)
        .expect("403 event");
    assert_eq!(
        refused["user"].as_str(),
        Some(pseudonym),
        "one user, one pseudonym"
    );
    assert!(events.iter().any(|e| e["decision"] == "exchange"));
}

/// An upstream that answers with a `Content-Length` of 1000 and closes
/// after `sent` bytes of the body.
async fn breaking_upstream(sent: usize) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{}",
                "x".repeat(sent)
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            // Give the gate time to pass the piece on before the close.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    addr
}

#[tokio::test]
async fn the_access_log_is_written_when_the_body_ends_and_says_how_it_ended() {
    let upstream = breaking_upstream(300).await;
    let (_dir, path) = config_file(&format!("http://{upstream}"), "");
    let gate = BinaryProcess::start_with(&path, &["--log-format", "json"]);
    // The head says 200; the body breaks off after 300 of 1000 bytes.
    let broken = raw(
        gate.addr,
        b"GET /public/big HTTP/1.1\r\nHost: portal.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&broken), 200);
    let line = gate.wait_for_log("\"path\":\"/public/big\"");
    let event: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(event["status"], 200, "the head's status");
    assert_eq!(event["outcome"], "failed", "{line}");
    assert_eq!(event["bytes"], 300);
    assert_eq!(event["upstream_status"], 200);
    assert!(
        event["latency_us"].as_u64() >= Some(150_000),
        "the whole duration: {line}"
    );
}

#[tokio::test]
async fn log_user_email_puts_the_email_in_access_logs() {
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "log_user_email = true\n");
    let gate = BinaryProcess::start_with(&path, &["--log-format", "json"]);
    let token = token_for("ada@example.com");
    assert_eq!(
        get(&gate.url("/docs/x")).bearer(&token).send().await.status,
        StatusCode::OK
    );
    let line = gate.wait_for_log("\"decision\":\"verified\"");
    assert!(line.contains("\"user\":\"ada@example.com\""), "{line}");
    assert!(!gate.log_text().contains(&token));
}

#[tokio::test]
async fn replicas_share_nothing_but_the_config() {
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "");
    let first = BinaryProcess::start(&path);
    let second = BinaryProcess::start(&path);
    assert_ne!(first.addr, second.addr);

    // Mint on one replica, use the token on the other.
    let token = mint_at(&first.url("/auth/api/token"), "ada@example.com").await;
    assert_eq!(
        get(&second.url("/docs/a"))
            .bearer(&token)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    // Exchange on the second, use the session cookie on the first.
    let exchange = navigate(&second.url(&format!("/docs/b?auth-token={token}")))
        .send()
        .await;
    assert_eq!(exchange.status, StatusCode::SEE_OTHER);
    let cookie = session_cookie(&exchange);
    assert_eq!(
        navigate(&first.url("/docs/b"))
            .header("cookie", &cookie)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let emails: Vec<_> = upstream
        .seen()
        .iter()
        .map(|s| s.headers["x-forwarded-email"].clone())
        .collect();
    assert_eq!(emails, vec!["ada@example.com", "ada@example.com"]);
}

#[test]
fn explain_names_the_rule_why_it_wins_and_the_decision() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let config = config.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(binary())
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let staff = run(&[
        "explain",
        "--config",
        config,
        "/internal//notes/./",
        "--email",
        "Dev@Example.com",
    ]);
    assert!(
        staff.contains("normalized from /internal//notes/./"),
        "{staff}"
    );
    assert!(
        staff.contains("/internal/** verified (domains: example.com)"),
        "{staff}"
    );
    assert!(staff.contains("forwarded for dev@example.com"), "{staff}");
    let outsider = run(&[
        "explain",
        "--config",
        config,
        "/internal/notes",
        "--email",
        "eve@example.org",
    ]);
    assert!(
        outsider
            .contains("refused with 403 Forbidden: this user is not on this page's allow lists"),
        "{outsider}"
    );
    assert!(
        outsider.contains("condition: refused: this user is not on this page's allow lists"),
        "{outsider}"
    );
    // Who the customer is: attributes and groups.
    let explain_as = |path: &str, extra: &[&str]| {
        let mut args = vec!["explain", "--config", config, path];
        args.extend_from_slice(extra);
        run(&args)
    };
    let free = explain_as(
        "/roadmap/",
        &["--email", "ada@example.org", "--attr", "plan=free"],
    );
    assert!(
        free.contains("condition: refused: this user's attributes do not meet this page's require"),
        "{free}"
    );
    assert!(free.contains("(require plan: enterprise, pro)"), "{free}");
    let pro = explain_as(
        "/roadmap/",
        &["--email", "ada@example.org", "--attr", "plan=pro"],
    );
    assert!(
        pro.contains("condition: admitted: any verified user (the rule has no allow list), and every require holds"),
        "{pro}"
    );
    assert!(pro.contains("forwarded for ada@example.org"), "{pro}");
    let beta = explain_as(
        "/beta/x",
        &["--email", "ada@example.org", "--group", "beta"],
    );
    assert!(
        beta.contains("condition: admitted: a group is on allow_groups"),
        "{beta}"
    );
    assert!(
        beta.contains("user:     ada@example.org; groups: beta"),
        "{beta}"
    );
    // Methods: the vote rule wins for POST, the public rule for GET.
    let vote = explain_as("/ideas/1/vote", &["--method", "POST"]);
    assert!(vote.contains("request:  POST /ideas/1/vote"), "{vote}");
    assert!(
        vote.contains("rule:     /ideas/** verified [POST]"),
        "{vote}"
    );
    assert!(vote.contains("methods POST  <- wins"), "{vote}");
    assert!(vote.contains("401"), "{vote}");
    let lower = explain_as("/ideas/1/vote", &["--method", "post"]);
    assert!(lower.contains("rule:     none for post"), "{lower}");
    assert!(lower.contains("refused with 405"), "{lower}");
    let read = explain_as("/ideas/1/vote", &[]);
    assert!(read.contains("rule:     /ideas/** public"), "{read}");
    assert!(read.contains("forwarded without an identity"), "{read}");
    let unmatched = run(&["explain", "--config", config, "/pricing"]);
    assert!(
        unmatched.contains("none matches; default_access applies: verified users only"),
        "{unmatched}"
    );
    assert!(unmatched.contains("401"), "{unmatched}");
    let own = run(&["explain", "--config", config, "/auth/api/token"]);
    assert!(own.contains("answered by the gate itself"), "{own}");
    let refused = run(&["explain", "--config", config, "/a%2Fb"]);
    assert!(refused.contains("refused with 400"), "{refused}");
}
