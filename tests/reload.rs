//! Reloads against the running binary: rules, broken configs, secret
//! rotation, `--watch`, certificates, and graceful shutdown on SIGTERM.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use support::*;

/// A client hammering a public page until stopped; counts failures.
struct Looping {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Looping {
    fn start(url: String) -> Looping {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let reply = get(&url).send().await;
                if reply.status == StatusCode::OK {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Looping {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test]
async fn a_rule_change_applies_on_sighup_without_a_failed_request() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let base = config_for(&upstream.url(), "");
    let path = write_config(&dir, &base);
    let gate = BinaryProcess::start(&path);
    assert_eq!(
        get(&gate.url("/docs/x")).send().await.status,
        StatusCode::UNAUTHORIZED
    );

    let looping = Looping::start(gate.url("/public/loop"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_config(
        &dir,
        &base.replace(
            "path = \"/docs/**\"\naccess = \"verified\"",
            "path = \"/docs/**\"\naccess = \"public\"",
        ),
    );
    gate.signal("HUP");
    gate.wait_for_log("configuration reloaded");
    assert_eq!(
        get(&gate.url("/docs/x")).send().await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failed) = looping.finish().await;
    assert_eq!(failed, 0, "requests failed during the reload");
    assert!(ok > 10, "the client looped only {ok} times");
}

#[tokio::test]
async fn a_broken_config_is_refused_and_the_old_one_keeps_serving() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let base = config_for(&upstream.url(), "");
    let path = write_config(&dir, &base);
    let gate = BinaryProcess::start(&path);

    let looping = Looping::start(gate.url("/public/loop"));
    write_config(
        &dir,
        &format!("{base}\n[[pages]]\npath = \"/docs/*\"\naccess = \"public\"\n"),
    );
    gate.signal("HUP");
    let line = gate.wait_for_log("reload refused");
    assert!(
        line.contains("gate.toml:"),
        "the log names the file and line: {line}"
    );
    assert!(line.contains("ambiguous"), "{line}");
    assert_eq!(
        get(&gate.url("/docs/x")).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    let (ok, failed) = looping.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);

    // A config that cannot even be parsed: the same.
    write_config(&dir, "this is not toml [");
    gate.signal("HUP");
    while gate.count_log("reload refused") < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&gate.url("/public/x")).send().await.status,
        StatusCode::OK
    );
}

const SECOND_SECRET: &str = "second-secret-0123456789abcdef-0123456789";

#[tokio::test]
async fn secrets_rotate_with_overlap_and_removal_is_final_even_when_cached() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let one = config_for(&upstream.url(), "");
    let path = write_config(&dir, &one);
    let gate = BinaryProcess::start(&path);
    let mint = |secret: &'static str| {
        let url = gate.url("/auth/api/token");
        async move {
            let reply = request(Method::POST, &url)
                .bearer(secret)
                .body(format!(
                    r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#
                ))
                .send()
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
            json["token"].as_str().expect("token").to_string()
        }
    };
    let old = mint(SECRET).await;
    assert!(old.starts_with("pg1.k1."));
    // Used once, so it sits in the decrypt cache.
    assert_eq!(
        get(&gate.url("/docs/a")).bearer(&old).send().await.status,
        StatusCode::OK
    );

    // Step 1: the new secret becomes primary; the old one still verifies.
    let both = one.replace(
        "[[secrets]]\nid = \"k1\"",
        &format!("[[secrets]]\nid = \"k2\"\nvalue = \"{SECOND_SECRET}\"\nprimary = true\n\n[[secrets]]\nid = \"k1\""),
    );
    write_config(&dir, &both);
    gate.signal("HUP");
    gate.wait_for_log("configuration reloaded");
    assert_eq!(
        get(&gate.url("/docs/a")).bearer(&old).send().await.status,
        StatusCode::OK
    );
    let new = mint(SECOND_SECRET).await;
    assert!(
        new.starts_with("pg1.k2."),
        "new tokens carry the new key id: {new}"
    );
    // The customer's backend may still call with the old secret meanwhile.
    assert!(mint(SECRET).await.starts_with("pg1.k2."));

    // Step 2: the old secret is removed.
    let only_new = both.replace(
        &format!("\n\n[[secrets]]\nid = \"k1\"\nvalue = \"{SECRET}\""),
        "",
    );
    assert!(!only_new.contains(SECRET));
    write_config(&dir, &only_new);
    gate.signal("HUP");
    while gate.count_log("configuration reloaded") < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&gate.url("/docs/a")).bearer(&old).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&gate.url("/docs/a")).bearer(&new).send().await.status,
        StatusCode::OK
    );
    let refused = request(Method::POST, &gate.url("/auth/api/token"))
        .bearer(SECRET)
        .body(format!(
            r#"{{"account_id":"{ACCOUNT}","user_email":"ada@example.com"}}"#
        ))
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn watch_reloads_when_a_secret_file_changes() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("secret");
    let text = config_for(&upstream.url(), "").replace(
        &format!("value = \"{SECRET}\""),
        &format!("file = \"{}\"", secret_file.display()),
    );
    let path = write_config(&dir, &text);
    let gate = BinaryProcess::start_with(&path, &["--watch"]);
    let old = token_for("ada@example.com");
    assert_eq!(
        get(&gate.url("/docs/")).bearer(&old).send().await.status,
        StatusCode::OK
    );

    // Replace the secret under the same id: tokens of the old value die,
    // even though one is cached.
    std::fs::write(&secret_file, format!("{SECOND_SECRET}\n")).expect("secret");
    gate.wait_for_log("configuration reloaded");
    assert_eq!(
        get(&gate.url("/docs/")).bearer(&old).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    let now = unix_now();
    let fresh = token_with(
        SECOND_SECRET,
        "k1",
        "ada@example.com",
        ACCOUNT,
        now,
        now + 60,
    );
    assert_eq!(
        get(&gate.url("/docs/")).bearer(&fresh).send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn watch_sees_a_change_made_after_the_config_was_read_even_before_it_began() {
    let upstream = RecordingUpstream::start().await;
    let (_dir, path) = config_file(&upstream.url(), "");
    let config = portal_gate::Config::load(&path).expect("config");
    let first = config.version().to_string();
    // The edit lands after the config was read and before the watch takes
    // its first look: the window between loading and serving at start.
    let edited = config_for(
        &upstream.url(),
        "\n[[pages]]\npath = \"/late/**\"\naccess = \"public\"\n",
    );
    std::fs::write(&path, edited).expect("edit");
    let gate = Arc::new(portal_gate::Gate::new(config).expect("gate"));
    let watch = tokio::spawn(portal_gate::ops::watch_files(
        Arc::clone(&gate),
        Duration::from_millis(20),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gate.config().version() == first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit was never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new rule governs: a page that needed a token is public now.
    let request = http::Request::get("/late/notes")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let conn = portal_gate::ConnInfo::new("127.0.0.1:1".parse().expect("addr"), false);
    let admitted = gate.admit(request, &conn).await;
    assert!(
        matches!(admitted, portal_gate::Admission::Forward(_)),
        "{admitted:?}"
    );
    watch.abort();
}

#[tokio::test]
async fn watch_retries_a_refused_config_when_the_file_it_lacked_appears_not_every_tick() {
    let upstream = RecordingUpstream::start().await;
    let (dir, path) = config_file(&upstream.url(), "");
    let gate = BinaryProcess::start_with(&path, &["--watch"]);
    let wait_for_count = |needle: &'static str, count: usize| {
        let gate = &gate;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while gate.count_log(needle) < count {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{needle:?} not logged {count} times"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // The config names a second secret's file before the file exists (a
    // Kubernetes ConfigMap updated before its Secret): refused, once.
    let new_secret = dir.path().join("k2.secret");
    let extra = format!(
        "[[secrets]]\nid = \"k2\"\nfile = \"{}\"\n",
        new_secret.display()
    );
    std::fs::write(&path, config_for(&upstream.url(), &extra)).expect("edit");
    wait_for_count("reload refused", 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await; // two more looks
    assert_eq!(gate.count_log("reload refused"), 1, "retried every tick");

    // The file appears: the same config now loads, and k2's tokens work.
    std::fs::write(&new_secret, format!("{SECOND_SECRET}\n")).expect("secret");
    wait_for_count("configuration reloaded", 1).await;
    let now = unix_now();
    let k2 = token_with(
        SECOND_SECRET,
        "k2",
        "ada@example.com",
        ACCOUNT,
        now,
        now + 60,
    );
    assert_eq!(
        get(&gate.url("/docs/")).bearer(&k2).send().await.status,
        StatusCode::OK
    );

    // A reload by SIGHUP moves the watch's baseline with it: no second
    // reload for the same files on the next look.
    gate.signal("HUP");
    wait_for_count("configuration reloaded", 2).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(gate.count_log("configuration reloaded"), 2);
    // The refusal and the first reload came from the watch.
    assert_eq!(gate.count_log("cause=\"file change\""), 2);
}

/// A config whose public `/slow/**` pages the recording upstream answers
/// after 2 s, with an upstream timeout long enough to wait for them.
fn slow_config(upstream: &RecordingUpstream, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let text = config_for(&upstream.url(), "")
        .replace("\ntimeout = \"1s\"", "\ntimeout = \"10s\"")
        .replace("path = \"/public/**\"", "path = \"/slow/**\"");
    write_config(dir, &text)
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = slow_config(&upstream, &dir);
    let mut gate = BinaryProcess::start(&path);
    let url = gate.url("/slow/request");
    let slow = tokio::spawn(async move { get(&url).send().await });
    // Wait until the upstream has the request, then ask the gate to stop.
    while upstream.seen_under("/slow/").is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.signal("TERM");
    let reply = slow.await.expect("task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "upstream: /slow/request");
    let code = tokio::task::spawn_blocking(move || gate.wait_exit(Duration::from_secs(10)))
        .await
        .expect("join");
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn connections_spread_over_worker_threads_and_all_drain_on_sigterm() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = slow_config(&upstream, &dir);
    let mut gate = BinaryProcess::start_with(
        &path,
        &[
            "--threads",
            "3",
            "--log-level",
            "info,portal_gate::server=debug",
        ],
    );
    #[cfg(target_os = "linux")]
    {
        // Worker 0 is the main thread; the others are named (each thread
        // names itself as it starts, so give them a moment).
        let names = || -> Vec<String> {
            std::fs::read_dir(format!("/proc/{}/task", gate.pid()))
                .expect("tasks")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        };
        let named = |names: &[String]| {
            ["pg-worker-1", "pg-worker-2"]
                .iter()
                .all(|worker| names.iter().any(|n| n == worker))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !named(&names()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names = names();
        assert!(named(&names), "workers pg-worker-1 and -2 in {names:?}");
    }
    // Six connections: two on each worker (they are handed out in turn),
    // each with a request in flight when the signal comes.
    let slow: Vec<_> = (0..6)
        .map(|i| {
            let url = gate.url(&format!("/slow/{i}"));
            tokio::spawn(async move { get(&url).send().await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream.seen_under("/slow/").len() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream saw {:?}",
            upstream.seen_under("/slow/")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Handed out in turn: two connections on each worker.
    assert_eq!(gate.count_log("connection accepted"), 6);
    for worker in 0..3 {
        assert_eq!(
            gate.count_log(&format!("worker={worker}")),
            2,
            "two connections on worker {worker}: {}",
            gate.log_text()
        );
    }
    gate.signal("TERM");
    for (i, reply) in slow.into_iter().enumerate() {
        let reply = reply.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("upstream: /slow/{i}"));
    }
    let code = tokio::task::spawn_blocking(move || gate.wait_exit(Duration::from_secs(10)))
        .await
        .expect("join");
    assert_eq!(code, Some(0));
}
