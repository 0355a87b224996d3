//! The `portal-gate` binary as a user runs it: `serve` on the embedded demo,
//! `check`, `token` and `secret`, and config errors that name the line.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use http::StatusCode;
use support::*;

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run portal-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_demo_serves_public_pages_and_gates_the_rest() {
    let gate = BinaryProcess::start(&example_config());
    let home = get(&gate.url("/")).send().await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("<h1>Acme portal</h1>"));
    let css = get(&gate.url("/assets/portal.css")).send().await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    assert_eq!(
        get(&gate.url("/changelog/")).send().await.status,
        StatusCode::OK
    );

    let roadmap = get(&gate.url("/roadmap/")).send().await;
    assert_eq!(roadmap.status, StatusCode::UNAUTHORIZED);

    let config = example_config();
    let config = config.to_str().expect("utf-8 path");
    let (code, token, _) = run(&["token", "--config", config, "--email", "ada@example.org"]);
    assert_eq!(code, 0);
    let token = token.trim();
    assert!(
        token.starts_with("pg1.demo."),
        "stdout is only the token: {token:?}"
    );
    // The roadmap is for paid plans, /beta/ for the beta group.
    let roadmap = get(&gate.url("/roadmap/")).bearer(token).send().await;
    assert_eq!(roadmap.status, StatusCode::FORBIDDEN);
    let (code, pro, err) = run(&[
        "token",
        "--config",
        config,
        "--email",
        "ada@example.org",
        "--attr",
        "plan=pro",
        "--group",
        "beta",
    ]);
    assert_eq!(code, 0, "{err}");
    let pro = pro.trim();
    let roadmap = get(&gate.url("/roadmap/")).bearer(pro).send().await;
    assert_eq!(roadmap.status, StatusCode::OK);
    assert!(roadmap.body.contains("<h1>Roadmap</h1>"));
    let beta = get(&gate.url("/beta/")).bearer(pro).send().await;
    assert!(beta.body.contains("<h1>Beta</h1>"), "{}", beta.body);
    assert_eq!(
        get(&gate.url("/beta/")).bearer(token).send().await.status,
        StatusCode::FORBIDDEN
    );
    // Ideas are public to read; a vote (POST) needs a verified user, and
    // then reaches the demo's static upstream, which has no vote handler.
    let ideas = get(&gate.url("/ideas/")).send().await;
    assert!(ideas.body.contains("<h1>Ideas</h1>"));
    let vote = request(http::Method::POST, &gate.url("/ideas/dark-mode/vote"))
        .send()
        .await;
    assert_eq!(vote.status, StatusCode::UNAUTHORIZED);
    let vote = request(http::Method::POST, &gate.url("/ideas/dark-mode/vote"))
        .bearer(token)
        .send()
        .await;
    assert_eq!(vote.status, StatusCode::METHOD_NOT_ALLOWED);
    let internal = get(&gate.url("/internal/")).bearer(token).send().await;
    assert_eq!(internal.status, StatusCode::FORBIDDEN);

    let (_, staff, _) = run(&[
        "token",
        "--config",
        config,
        "--email",
        "dev@example.com",
        "--user-id",
        "u_1",
    ]);
    let internal = get(&gate.url(&format!("/internal/?auth-token={}", staff.trim())))
        .send()
        .await;
    assert_eq!(internal.status, StatusCode::OK);
    assert!(internal.body.contains("<h1>Internal notes</h1>"));

    // The access log names the path and status, never the token.
    let log = gate.log_text();
    assert!(log.contains("/internal/"), "{log}");
    assert!(!log.contains(token), "token in the log");
    assert!(!log.contains(staff.trim()), "token in the log");
    assert!(!log.contains("demo-secret-do-not-use-in-production"));
}

#[test]
fn check_prints_rules_in_precedence_order_and_secret_ids_only() {
    let config = example_config();
    let (code, out, err) = run(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acct_demo"));
    assert!(out.contains("demo (primary)"));
    assert!(!out.contains("demo-secret-do-not-use-in-production"));
    let exact = out.find("  / public").expect("root rule listed");
    let internal = out.find("/internal/**").expect("internal rule listed");
    assert!(exact < internal, "exact rules come first:\n{out}");
    assert!(out.contains("example.com"));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = r#"[upstream]
url = "http://127.0.0.1:9"

[verification]
account_id = "a"

[[secrets]]
id = "k"
value = "s"
"#;
    let cases = [
        (format!("{base}\n[[pages]]\npath = \"/a\"\naccess = \"public\"\ncolour = \"red\"\n"), 14, "colour"),
        (format!("{base}\n[[pages]]\npath = \"/a/*\"\naccess = \"public\"\n[[pages]]\npath = \"/a/**\"\naccess = \"verified\"\n"), 15, "pages[1].path"),
        (base.replace("account_id = \"a\"", "account_id = \"a\"\ntoken_ttl = \"soon\""), 6, "verification.token_ttl"),
        (base.replace("http://127.0.0.1:9", "ftp://x"), 2, "upstream.url"),
        (format!("{base}\n[[pages]]\npath = \"no-slash\"\naccess = \"public\"\n"), 12, "pages[0].path"),
        (format!("{base}\n[[pages]]\npath = \"/a\"\naccess = \"secret\"\n"), 13, "access"),
        // Methods: two rules for one pattern that both cover GET, HEAD
        // alone, an unknown method, and a lower-case one.
        (format!("{base}\n[[pages]]\npath = \"/i/**\"\nmethods = [\"GET\"]\naccess = \"public\"\n[[pages]]\npath = \"/i/**\"\naccess = \"verified\"\nmethods = [\"POST\", \"GET\"]\n"), 18, "pages[1].methods"),
        (format!("{base}\n[[pages]]\npath = \"/i\"\naccess = \"verified\"\nmethods = [\"VOTE\"]\n"), 14, "pages[0].methods"),
        (format!("{base}\n[[pages]]\npath = \"/i\"\naccess = \"verified\"\nmethods = [\"get\"]\n"), 14, "pages[0].methods"),
        (format!("{base}\n[[pages]]\npath = \"/i\"\naccess = \"public\"\nmethods = [\"HEAD\"]\n"), 14, "lists HEAD without GET"),
        (format!("{base}\n[[pages]]\npath = \"/i\"\naccess = \"public\"\nallow_groups = [\"beta\"]\n"), 12, "pages[0].access"),
        (format!("{base}\n[[pages]]\npath = \"/i\"\naccess = \"verified\"\nrequire = {{ Plan = [\"pro\"] }}\n"), 12, "pages[0].require"),
        (format!("{base}\n[forward]\nattributes = [\"plan\", \"Plan\"]\n"), 12, "forward.attributes"),
        // The gate's own paths are one each.
        (format!("{base}\n[embed]\nme_path = \"/auth/logout\"\n"), 12, "embed.me_path"),
        (format!("{base}\n[embed]\nscript_path = \"/auth/me\"\n"), 12, "embed.script_path"),
        (format!("{base}\n[embed]\nlogout_path = \"/auth/api/token\"\n"), 12, "embed.logout_path"),
        (format!("{base}\n[embed]\nframe_script_path = \"/auth/me\"\n"), 12, "embed.frame_script_path"),
    ];
    for (text, line, key) in cases {
        let path = write_config(&dir, &text);
        let (code, _, err) = run(&["check", "--config", path.to_str().expect("utf-8")]);
        assert_eq!(code, 1, "{text}");
        let located = format!("gate.toml:{line}");
        assert!(err.contains(&located), "expected {located} in: {err}");
        assert!(err.contains(key), "expected key {key} in: {err}");
    }
    // serve refuses a bad config before binding anything.
    let path = write_config(&dir, &format!("{base}\nbogus = 1\n"));
    let (code, _, err) = run(&["serve", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn secret_prints_32_random_bytes_base64url() {
    let (code, a, _) = run(&["secret"]);
    let (_, b, _) = run(&["secret"]);
    assert_eq!(code, 0);
    let a = a.trim();
    assert_eq!(a.len(), 43);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_ne!(a, b.trim());
}

#[test]
fn token_refuses_a_bad_email() {
    let config = example_config();
    let (code, out, err) = run(&[
        "token",
        "--config",
        config.to_str().expect("utf-8"),
        "--email",
        "nobody",
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("email"));
    // Claims within every limit but too many together for a token.
    let mut args: Vec<String> = [
        "token",
        "--config",
        config.to_str().expect("utf-8"),
        "--email",
        "a@b.io",
    ]
    .map(String::from)
    .to_vec();
    for key in 0..16 {
        for _ in 0..2 {
            args.push("--attr".into());
            args.push(format!("k{key}={}", "x".repeat(128)));
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("more than limits.max_token_len (4096)"),
        "{err}"
    );
    for (flag, value, says) in [
        ("--group", "a b", "--group (groups[0]) must match"),
        (
            "--attr",
            "Plan=pro",
            "--attr (attributes.Plan) is not a valid key",
        ),
        ("--attr", "plan", "--attr \"plan\": write it as key=value"),
    ] {
        let (code, out, err) = run(&[
            "token",
            "--config",
            config.to_str().expect("utf-8"),
            "--email",
            "ada@example.org",
            flag,
            value,
        ]);
        assert_eq!(code, 1, "{flag} {value}");
        assert!(out.is_empty());
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

#[test]
fn check_warns_about_weak_expiring_and_exposed_secrets_and_dead_rules() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3 * 24 * 3600),
    );
    let text = format!(
        r#"[upstream]
url = "http://127.0.0.1:9"

[verification]
account_id = "a"

[[secrets]]
id = "short"
value = "tooshort"

[[secrets]]
id = "old"
value = "0123456789abcdef0123456789abcdef-old"
not_after = "{soon}"

[[pages]]
path = "/embed.js"
access = "verified"

[[pages]]
path = "/files./x"
access = "verified"

[[pages]]
path = "/pro/**"
access = "verified"
require = {{ plan = [], region = ["eu"] }}

[[pages]]
path = "/docs/**"
access = "public"
"#
    );
    let path = write_config(&dir, &text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, out, err) = run(&["check", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: secret \"short\" is 8 bytes long"),
        "{out}"
    );
    assert!(out.contains("warning: secret \"old\" expires at"), "{out}");
    assert!(
        out.contains("holds an inline secret and others may read it"),
        "{out}"
    );
    assert!(
        out.contains("rule \"/embed.js\" can never match: the gate answers /embed.js itself"),
        "{out}"
    );
    assert!(out.contains("rule \"/files./x\" can never match"), "{out}");
    assert!(!out.contains("rule \"/docs/**\" can never match"), "{out}");
    assert!(
        out.contains("warning: pages[2] (path \"/pro/**\"): no token can meet require.plan"),
        "{out}"
    );
    assert!(!out.contains("require.region"), "{out}");

    // Private file, long secrets, live rules: no warning.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let clean = text
        .replace(
            "value = \"tooshort\"",
            "value = \"0123456789abcdef0123456789abcdef-new\"",
        )
        .replace(&format!("not_after = \"{soon}\"\n"), "")
        .replace("path = \"/embed.js\"", "path = \"/roadmap\"")
        .replace("path = \"/files./x\"", "path = \"/files/x\"")
        .replace("plan = []", "plan = [\"pro\"]");
    std::fs::write(&path, clean).expect("write");
    let (_, out, _) = run(&["check", "--config", path.to_str().expect("utf-8")]);
    assert!(!out.contains("warning"), "{out}");
}
