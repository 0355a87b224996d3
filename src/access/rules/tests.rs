//! Tests of page rules: semantics, precedence, errors, and a proptest
//! against a brute-force reference.
use super::*;
use proptest::prelude::*;

fn spec(path: &str) -> RuleSpec {
    RuleSpec {
        path: path.to_owned(),
        access: Access::Verified,
        ..RuleSpec::default()
    }
}

/// A verified user with `email` and nothing else.
fn user(email: &str) -> crate::token::Claims {
    crate::token::Claims {
        account_id: "acct".into(),
        email: email.into(),
        user_id: None,
        name: None,
        avatar_url: None,
        groups: Vec::new(),
        attributes: Default::default(),
        session_id: None,
        issued_at: 0,
        expires_at: 1,
    }
}

fn compile(paths: &[&str]) -> Result<RuleSet, RuleError> {
    RuleSet::compile(
        paths.iter().map(|p| spec(p)).collect(),
        RuleOptions::default(),
    )
}

fn set(paths: &[&str]) -> RuleSet {
    match compile(paths) {
        Ok(set) => set,
        Err(e) => panic!("{paths:?} should compile: {e}"),
    }
}

/// The pattern of the rule governing `path`, if any.
fn winner<'a>(set: &'a RuleSet, path: &str) -> Option<&'a str> {
    set.find(path, &Method::GET).map(PageRule::pattern)
}

fn error(paths: &[&str]) -> RuleError {
    match compile(paths) {
        Ok(_) => panic!("{paths:?} should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn exact_rule_matches_with_and_without_trailing_slash() {
    for pattern in ["/roadmap", "/roadmap/"] {
        let s = set(&[pattern]);
        assert_eq!(winner(&s, "/roadmap"), Some(pattern));
        assert_eq!(winner(&s, "/roadmap/"), Some(pattern));
        assert_eq!(winner(&s, "/roadmap/x"), None);
        assert_eq!(winner(&s, "/roadma"), None);
        assert_eq!(winner(&s, "/"), None);
    }
}

#[test]
fn root_matches_only_root() {
    let s = set(&["/"]);
    assert_eq!(winner(&s, "/"), Some("/"));
    assert_eq!(winner(&s, "/a"), None);
    assert_eq!(winner(&s, "/a/"), None);
}

#[test]
fn double_star_matches_zero_or_more_segments() {
    let s = set(&["/docs/**"]);
    for path in ["/docs", "/docs/", "/docs/x", "/docs/x/y/", "/docs/x/y/z"] {
        assert_eq!(winner(&s, path), Some("/docs/**"), "{path}");
    }
    for path in ["/", "/doc", "/docsx", "/other/docs"] {
        assert_eq!(winner(&s, path), None, "{path}");
    }
    let root = set(&["/**"]);
    for path in ["/", "/a", "/a/b/"] {
        assert_eq!(winner(&root, path), Some("/**"), "{path}");
    }
}

#[test]
fn star_matches_exactly_one_non_empty_segment() {
    let s = set(&["/a/*"]);
    assert_eq!(winner(&s, "/a/x"), Some("/a/*"));
    assert_eq!(winner(&s, "/a/x/"), Some("/a/*"));
    for path in ["/a", "/a/", "/a/x/y", "/b/x"] {
        assert_eq!(winner(&s, path), None, "{path}");
    }
    let mid = set(&["/u/*/settings"]);
    assert_eq!(winner(&mid, "/u/bob/settings/"), Some("/u/*/settings"));
    assert_eq!(winner(&mid, "/u/bob/other"), None);
    assert_eq!(winner(&mid, "/u/bob"), None);
    // Not even when handed a path with an empty segment (normalized paths
    // have none; this is the guard behind that).
    assert_eq!(winner(&mid, "/u//settings"), None);
    let top = set(&["/*"]);
    assert_eq!(winner(&top, "/"), None);
    assert_eq!(winner(&top, "/x"), Some("/*"));
}

#[test]
fn pattern_trailing_slash_is_insignificant() {
    let s = set(&["/a/*/"]);
    assert_eq!(winner(&s, "/a/x"), Some("/a/*/"));
    assert_eq!(winner(&s, "/a/x/"), Some("/a/*/"));
    assert_eq!(error(&["/a/*", "/a/*/"]).kind, RuleErrorKind::Duplicate);
}

#[test]
fn exact_beats_pattern() {
    let s = set(&["/docs/**", "/docs/public", "/*"]);
    assert_eq!(winner(&s, "/docs/public"), Some("/docs/public"));
    assert_eq!(winner(&s, "/docs/public/"), Some("/docs/public"));
    assert_eq!(winner(&s, "/docs/private"), Some("/docs/**"));
    assert_eq!(winner(&s, "/docs"), Some("/docs/**"));
    assert_eq!(winner(&s, "/blog"), Some("/*"));
}

#[test]
fn longest_literal_prefix_wins() {
    let s = set(&["/**", "/docs/**", "/docs/api/**", "/docs/api/internal/*"]);
    assert_eq!(winner(&s, "/x"), Some("/**"));
    assert_eq!(winner(&s, "/docs/x"), Some("/docs/**"));
    assert_eq!(winner(&s, "/docs/api/v1"), Some("/docs/api/**"));
    assert_eq!(
        winner(&s, "/docs/api/internal/x"),
        Some("/docs/api/internal/*")
    );
    assert_eq!(winner(&s, "/docs/api/x/public"), Some("/docs/api/**"));

    let s = set(&["/**", "/docs/*/v1", "/docs/api/**"]);
    assert_eq!(winner(&s, "/docs/apix/v1"), Some("/docs/*/v1"));
    assert_eq!(winner(&s, "/docs/api/v1"), Some("/docs/api/**"));
    assert_eq!(winner(&s, "/docs/apix/v2"), Some("/**"));
}

#[test]
fn lookup_climbs_back_when_the_deepest_prefix_has_no_match() {
    let s = set(&["/docs/**", "/docs/api/v1/*", "/docs/api/v1/x/y/z"]);
    assert_eq!(winner(&s, "/docs/api/v1"), Some("/docs/**"));
    assert_eq!(winner(&s, "/docs/api/v1/x/y"), Some("/docs/**"));
    assert_eq!(winner(&s, "/docs/api/v1/x"), Some("/docs/api/v1/*"));
}

#[test]
fn a_pattern_ending_in_double_star_and_one_with_more_segments_conflict() {
    // Precedence is the literal prefix only: `/internal/*/keys` does not
    // beat `/internal/**`; the config must say which one governs.
    let e = error(&["/internal/**", "/internal/*/keys"]);
    assert_eq!(
        e.kind,
        RuleErrorKind::Ambiguous {
            example: "/internal/x/keys".to_owned()
        }
    );
    assert!(compile(&["/internal/**", "/internal/keys/*"]).is_ok());
}

#[test]
fn disjoint_patterns_with_equal_prefix_coexist() {
    let s = set(&["/docs/*/a", "/docs/*/b", "/docs/x/**", "/docs/*/*/c"]);
    assert_eq!(winner(&s, "/docs/q/a"), Some("/docs/*/a"));
    assert_eq!(winner(&s, "/docs/q/b"), Some("/docs/*/b"));
    assert_eq!(winner(&s, "/docs/q/r/c"), Some("/docs/*/*/c"));
    assert_eq!(winner(&s, "/docs/q/c"), None);
    assert_eq!(winner(&s, "/docs/x/a"), Some("/docs/x/**"));
}

#[test]
fn precedence_does_not_depend_on_config_order() {
    let rules = [
        "/**",
        "/docs/*",
        "/docs/api",
        "/docs/*/v1",
        "/docs/api/**",
        "/blog/*",
        "/",
        "/blog/*/draft/**",
    ];
    let paths = [
        "/",
        "/x",
        "/docs",
        "/docs/api",
        "/docs/api/",
        "/docs/api/v1",
        "/docs/guide/v1",
        "/docs/guide",
        "/blog/post",
        "/blog/post/draft",
        "/blog/post/draft/2",
        "/blog/post/final",
    ];
    let reference: Vec<_> = {
        let s = set(&rules);
        paths
            .iter()
            .map(|p| winner(&s, p).map(str::to_owned))
            .collect()
    };
    let mut order: Vec<&str> = rules.to_vec();
    // All 40 320 permutations would be slow; rotations and their
    // reversals put each rule in each position.
    for reverse in [false, true] {
        for _ in 0..order.len() {
            order.rotate_left(1);
            let list: Vec<&str> = if reverse {
                order.iter().rev().copied().collect()
            } else {
                order.clone()
            };
            let s = set(&list);
            let got: Vec<_> = paths
                .iter()
                .map(|p| winner(&s, p).map(str::to_owned))
                .collect();
            assert_eq!(got, reference, "order {list:?}");
        }
    }
    assert_eq!(reference[3].as_deref(), Some("/docs/api"));
    assert_eq!(reference[5].as_deref(), Some("/docs/api/**"));
    assert_eq!(reference[6].as_deref(), Some("/docs/*/v1"));
    assert_eq!(reference[7].as_deref(), Some("/docs/*"));
    assert_eq!(reference[2].as_deref(), Some("/**"));
}

#[test]
fn star_and_double_star_with_same_prefix_are_ambiguous() {
    let e = error(&["/a", "/docs/*", "/docs/**"]);
    assert_eq!((e.index, e.other), (2, Some(1)));
    assert_eq!(
        e.kind,
        RuleErrorKind::Ambiguous {
            example: "/docs/x".to_owned()
        }
    );
    assert_eq!(e.other_pattern.as_deref(), Some("/docs/*"));
    let msg = e.to_string();
    assert!(
        msg.contains("/docs/*") && msg.contains("/docs/**") && msg.contains("pages[1]"),
        "{msg}"
    );

    let e = error(&["/docs/**", "/docs/*"]);
    assert_eq!((e.index, e.other), (1, Some(0)));
    assert_eq!(
        e.kind,
        RuleErrorKind::Ambiguous {
            example: "/docs/x".to_owned()
        }
    );
}

#[test]
fn overlapping_patterns_report_a_path_both_match() {
    for (rules, example) in [
        (["/a/*/c", "/a/b/*"], "/a/b/c"),
        (["/a/*/c", "/a/*/**"], "/a/x/c"),
        (["/*/x/**", "/*/*/y"], "/x/x/y"),
        (["/**", "/*"], "/x"),
        (["/a/*/**", "/a/*"], "/a/x"),
        // Literal segments after a wildcard count too (a mutant that
        // skipped them went unnoticed by the proptest).
        (["/a/*/c/**", "/a/*/c/x"], "/a/x/c/x"),
        (["/a/*/c/x", "/a/*/c/**"], "/a/x/c/x"),
    ] {
        // `/a/b/*` has a longer prefix than `/a/*/c`, so it is not ambiguous.
        let result = compile(&rules);
        if rules == ["/a/*/c", "/a/b/*"] {
            assert!(result.is_ok());
            continue;
        }
        match result {
            Err(RuleError {
                kind: RuleErrorKind::Ambiguous { example: got },
                index: 1,
                other: Some(0),
                ..
            }) => {
                assert_eq!(got, example, "{rules:?}")
            }
            other => panic!("{rules:?}: {other:?}"),
        }
    }
}

#[test]
fn duplicate_exact_rules_are_rejected_including_trailing_slash() {
    for rules in [["/a", "/a"], ["/a", "/a/"], ["/a/", "/a"], ["/", "/"]] {
        let e = error(&rules);
        assert_eq!(
            (e.index, e.other, &e.kind),
            (1, Some(0), &RuleErrorKind::Duplicate),
            "{rules:?}"
        );
    }
    let e = error(&["/x", "/docs/**", "/y", "/docs/**"]);
    assert_eq!(
        (e.index, e.other, e.kind),
        (3, Some(1), RuleErrorKind::Duplicate)
    );
}

#[test]
fn bad_patterns_are_rejected() {
    for bad in [
        "", "docs", "docs/**", "//", "/a//b", "/a//", "/./a", "/a/..", "/a/.", "/a*", "/a/**b",
        "/a/***", "/a/b*c", "/**/a", "/a/**/b", "/*/**/x", "/a?b", "/a#b", "/a%20b", "/a b",
        "/a\tb", "/a\u{7f}", "/a\u{0}", "/café", "/a<b>",
        // The normalizer refuses `;` and encodes these, so no path would
        // ever match them raw.
        "/a;b", "/a{b}", "/a\"b", "/a[1]", "/a^b", "/a|b", "/a\\b", "/a+b",
    ] {
        match compile(&["/ok", bad]) {
            Err(RuleError {
                index: 1,
                kind: RuleErrorKind::BadPattern(why),
                ..
            }) => assert!(!why.is_empty()),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Each says why, in the operator's terms.
    for (bad, why) in [
        ("/café", "non-ASCII may arrive encoded"),
        ("/a<b>", "cannot appear in a request path"),
        ("/a%20b", "write the path decoded"),
        ("/a?b", "queries and fragments never reach rules"),
    ] {
        let message = compile(&[bad]).expect_err(bad).to_string();
        assert!(message.contains(why), "{bad}: {message}");
    }
    for good in [
        "/",
        "/a",
        "/a/",
        "/**",
        "/*",
        "/a/**/",
        "/a:b@c",
        "/~user/it's(1),=$!&",
        "/a.b/..c",
    ] {
        assert!(compile(&[good]).is_ok(), "{good:?}");
    }
}

#[test]
fn case_insensitive_option_folds_patterns_and_paths() {
    let specs = vec![spec("/Docs/**"), spec("/About"), spec("/u/*/Settings")];
    let s = match RuleSet::compile(
        specs.clone(),
        RuleOptions {
            case_insensitive: true,
        },
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(winner(&s, "/docs/x"), Some("/Docs/**"));
    assert_eq!(winner(&s, "/DOCS/X"), Some("/Docs/**"));
    assert_eq!(winner(&s, "/about/"), Some("/About"));
    assert_eq!(winner(&s, "/ABOUT"), Some("/About"));
    assert_eq!(winner(&s, "/U/Bob/SETTINGS"), Some("/u/*/Settings"));

    let strict = match RuleSet::compile(specs, RuleOptions::default()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(winner(&strict, "/docs/x"), None);
    assert_eq!(winner(&strict, "/Docs/x"), Some("/Docs/**"));
    assert_eq!(winner(&strict, "/about"), None);

    let dup = RuleSet::compile(
        vec![spec("/A"), spec("/a/")],
        RuleOptions {
            case_insensitive: true,
        },
    );
    assert!(matches!(
        dup,
        Err(RuleError {
            kind: RuleErrorKind::Duplicate,
            ..
        })
    ));
    assert!(RuleSet::compile(vec![spec("/A"), spec("/a/")], RuleOptions::default()).is_ok());
}

fn rule(access: Access, emails: &[&str], domains: &[&str]) -> Result<RuleSet, RuleError> {
    let spec = RuleSpec {
        path: "/p".to_owned(),
        access,
        allow_emails: emails.iter().map(|e| e.to_string()).collect(),
        allow_domains: domains.iter().map(|d| d.to_string()).collect(),
        ..RuleSpec::default()
    };
    RuleSet::compile(vec![spec], RuleOptions::default())
}

fn admits(emails: &[&str], domains: &[&str], who: &str) -> bool {
    match rule(Access::Verified, emails, domains) {
        Ok(s) => s
            .find("/p", &Method::GET)
            .is_some_and(|r| r.admits(&user(who)).is_ok()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn admits_listed_emails_and_exact_domains_only() {
    assert!(admits(&[], &[], "anyone@anywhere.org"));
    assert!(admits(&["Boss@Corp.io"], &[], "boss@corp.io"));
    assert!(!admits(&["boss@corp.io"], &[], "intern@corp.io"));
    assert!(admits(&[], &["Example.com"], "x@example.com"));
    assert!(!admits(&[], &["example.com"], "x@sub.example.com"));
    assert!(!admits(&[], &["example.com"], "a@example.com.evil.io"));
    assert!(!admits(&[], &["example.com"], "example.com"));
    assert!(!admits(&[], &["example.com"], "a@evilexample.com"));
    // The domain is after the last '@'.
    assert!(!admits(&[], &["example.com"], "example.com@evil.io"));
    assert!(admits(&["boss@corp.io"], &["example.com"], "boss@corp.io"));
    assert!(admits(&["boss@corp.io"], &["example.com"], "y@example.com"));
    match RuleSet::compile(
        vec![RuleSpec {
            access: Access::Public,
            ..spec("/p")
        }],
        RuleOptions::default(),
    ) {
        Ok(s) => assert!(s
            .find("/p", &Method::GET)
            .is_some_and(|r| r.admits(&user("anyone@x.y")).is_ok())),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_allow_lists_are_rejected() {
    for email in ["", "a", "@b", "a@", "a@b@c", "a b@c", " a@b"] {
        assert_eq!(
            rule(Access::Verified, &[email], &[]).map(|_| ()),
            Err(error_of(RuleErrorKind::BadEmail(email.into()))),
            "{email:?}"
        );
    }
    for domain in ["", "a@b", "@b", "a b"] {
        assert_eq!(
            rule(Access::Verified, &[], &[domain]).map(|_| ()),
            Err(error_of(RuleErrorKind::BadDomain(domain.into()))),
            "{domain:?}"
        );
    }
    for (emails, domains) in [(&["a@b"][..], &[][..]), (&[], &["b"])] {
        let e = rule(Access::Public, emails, domains).map(|_| ());
        assert_eq!(e, Err(error_of(RuleErrorKind::NarrowsPublic)));
    }
}

fn error_of(kind: RuleErrorKind) -> RuleError {
    RuleError {
        index: 0,
        pattern: "/p".into(),
        other: None,
        other_pattern: None,
        kind,
    }
}

#[test]
fn describe_and_precedence_order_are_stable() {
    let specs = vec![
        spec("/**"),
        RuleSpec {
            allow_domains: vec!["example.com".into()],
            ..spec("/internal/**")
        },
        RuleSpec {
            allow_emails: vec!["b@x.io".into(), "a@x.io".into()],
            allow_domains: vec!["y.io".into()],
            ..spec("/x/*")
        },
        RuleSpec {
            access: Access::Public,
            ..spec("/about")
        },
        spec("/internal/keys/*"),
        spec("/"),
    ];
    let s = match RuleSet::compile(specs, RuleOptions::default()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(s.len(), 6);
    let order: Vec<String> = s
        .in_precedence_order()
        .iter()
        .map(|r| r.describe())
        .collect();
    assert_eq!(
        order,
        [
            "/ verified",
            "/about public",
            "/internal/keys/* verified",
            "/internal/** verified (domains: example.com)",
            "/x/* verified (emails: a@x.io, b@x.io; domains: y.io)",
            "/** verified",
        ]
    );
    let about = s.find("/about", &Method::GET);
    assert_eq!(
        about.map(|r| (r.index(), r.is_exact(), r.access())),
        Some((3, true, Access::Public))
    );
    assert_eq!(
        s.find("/internal/a", &Method::GET)
            .map(|r| (r.index(), r.is_exact())),
        Some((1, false))
    );
}

#[test]
fn paths_outside_the_normalized_form_do_not_panic() {
    let s = set(&["/**", "/a/*", "/b/*/c", "/"]);
    for path in ["", "a", "//", "/a//", "/a//b", "/b//c", "/b/x//", "/é/ü"] {
        let _ = s.find(path, &Method::GET);
    }
    assert!(s.find("", &Method::GET).is_none() && s.find("a/b", &Method::GET).is_none());
}

// --- Reference model: a linear scan over rules, written independently. ---

fn segments(text: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = text.split('/').skip(1).collect();
    if segs.last() == Some(&"") {
        segs.pop();
    }
    segs
}

fn glob(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((&"**", _)), _) => true,
        (Some((&"*", p)), Some((s, rest))) => !s.is_empty() && glob(p, rest),
        (Some((lit, p)), Some((s, rest))) => lit == s && glob(p, rest),
        _ => false,
    }
}

/// (exact, literal prefix) of `pattern` if it matches `path`.
fn reference_rank(pattern: &str, path: &str) -> Option<(bool, usize)> {
    let p = segments(pattern);
    glob(&p, &segments(path)).then(|| {
        let exact = !p.iter().any(|s| s.contains('*'));
        (exact, p.iter().take_while(|s| !s.contains('*')).count())
    })
}

fn rule_text() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "B", "*"]);
    (
        prop::collection::vec(seg, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, rest, slash)| {
            let mut text = format!("/{}", segs.join("/"));
            if rest {
                text = format!("{}/**", text.trim_end_matches('/'));
            }
            if slash && text != "/" {
                text.push('/');
            }
            text
        })
}

fn path_text() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "A", "b", "B", "c"]);
    (prop::collection::vec(seg, 0..5), any::<bool>()).prop_map(|(segs, slash)| {
        let text = format!("/{}", segs.join("/"));
        if slash && text != "/" {
            text + "/"
        } else {
            text
        }
    })
}

/// Compiles `rules`; when that succeeds, `find` must agree with a linear
/// scan for every path (and the scan must find no ties); when it fails,
/// the conflict it reports must be real.
fn agrees_with_reference(
    rules: &[String],
    paths: &[String],
    case_insensitive: bool,
) -> Result<(), TestCaseError> {
    let specs = rules.iter().map(|r| spec(r)).collect();
    let compiled = RuleSet::compile(specs, RuleOptions { case_insensitive });
    let fold = |s: &String| match case_insensitive {
        true => s.to_ascii_lowercase(),
        false => s.clone(),
    };
    let rules: Vec<String> = rules.iter().map(fold).collect();
    let e = match compiled {
        Ok(set) => {
            for asked in paths {
                let path = &fold(asked);
                let ranked: Vec<((bool, usize), usize)> = (rules.iter().enumerate())
                    .filter_map(|(i, r)| Some((reference_rank(r, path)?, i)))
                    .collect();
                let best = ranked.iter().map(|(rank, _)| *rank).max();
                let winners: Vec<usize> = (ranked.iter())
                    .filter(|(rank, _)| Some(*rank) == best)
                    .map(|(_, i)| *i)
                    .collect();
                prop_assert!(winners.len() <= 1, "{path} has tied rules {winners:?}");
                let found = set.find(asked, &Method::GET).map(PageRule::index);
                prop_assert_eq!(found, winners.first().copied(), "path {}", asked);
            }
            return Ok(());
        }
        Err(e) => e,
    };
    let this = &rules[e.index];
    let other = e.other.and_then(|o| rules.get(o));
    prop_assert!(other.is_some(), "{}", e);
    let other = other.map_or("", String::as_str);
    match &e.kind {
        RuleErrorKind::Ambiguous { example } => {
            let ranks = (
                reference_rank(this, example),
                reference_rank(other, example),
            );
            prop_assert!(
                ranks.0.is_some() && ranks.0 == ranks.1,
                "{}: {:?}",
                e,
                ranks
            );
        }
        RuleErrorKind::Duplicate => prop_assert_eq!(segments(this), segments(other)),
        _ => prop_assert!(false, "unexpected {}", e),
    }
    Ok(())
}

proptest! {
    #[test]
    fn find_agrees_with_a_linear_scan(
        rules in prop::collection::vec(rule_text(), 1..7),
        paths in prop::collection::vec(path_text(), 1..20),
        case_insensitive in any::<bool>(),
    ) {
        agrees_with_reference(&rules, &paths, case_insensitive)?;
    }
}

/// A rule for `path` that applies to `methods` only (all when empty), with
/// `access`.
fn method_spec(path: &str, methods: &[&str], access: Access) -> RuleSpec {
    RuleSpec {
        path: path.to_owned(),
        access,
        methods: (!methods.is_empty()).then(|| methods.iter().map(|m| m.to_string()).collect()),
        ..RuleSpec::default()
    }
}

fn method_set(specs: Vec<RuleSpec>) -> Result<RuleSet, RuleError> {
    RuleSet::compile(specs, RuleOptions::default())
}

/// The index of the rule for a `method` request of `path`.
fn rule_for(set: &RuleSet, method: &str, path: &str) -> Option<usize> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    set.find(path, &method).map(PageRule::index)
}

#[test]
fn a_rule_with_methods_beats_one_without_for_the_same_pattern() {
    let s = method_set(vec![
        method_spec("/ideas/**", &[], Access::Public),
        method_spec("/ideas/**", &["POST", "PUT"], Access::Verified),
        method_spec("/ideas/**", &["DELETE"], Access::Verified),
        method_spec("/ideas/top", &["GET"], Access::Verified),
    ])
    .unwrap();
    assert_eq!(rule_for(&s, "GET", "/ideas/1"), Some(0));
    assert_eq!(rule_for(&s, "POST", "/ideas/1"), Some(1));
    assert_eq!(rule_for(&s, "PUT", "/ideas/"), Some(1));
    assert_eq!(rule_for(&s, "DELETE", "/ideas/1/x"), Some(2));
    // Extension methods and other spellings are not the standard ones:
    // where a pattern's rules name methods, nobody can say which rule they
    // fall under, so the lookup fails closed.
    for method in ["post", "Post", "VOTE", "PROPPATCH"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(s.lookup("/ideas/1", &method).err(), Some(UnlistedMethod));
    }
    let plain = method_set(vec![method_spec("/wiki/**", &[], Access::Public)]).unwrap();
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    assert_eq!(
        plain
            .lookup("/wiki/a", &propfind)
            .map(|r| r.map(PageRule::index)),
        Ok(Some(0))
    );
    // The exact rule has GET (and so HEAD) only: a POST falls to the pattern.
    assert_eq!(rule_for(&s, "GET", "/ideas/top"), Some(3));
    assert_eq!(rule_for(&s, "HEAD", "/ideas/top"), Some(3));
    assert_eq!(rule_for(&s, "POST", "/ideas/top"), Some(1));
    assert_eq!(rule_for(&s, "PATCH", "/ideas/top"), Some(0));
}

#[test]
fn a_method_no_rule_of_a_pattern_covers_falls_to_the_next_pattern_then_the_default() {
    let s = method_set(vec![
        method_spec("/ideas/votes/*", &["POST"], Access::Verified),
        method_spec("/ideas/**", &["GET"], Access::Public),
    ])
    .unwrap();
    assert_eq!(rule_for(&s, "POST", "/ideas/votes/7"), Some(0));
    assert_eq!(rule_for(&s, "GET", "/ideas/votes/7"), Some(1));
    assert_eq!(rule_for(&s, "HEAD", "/ideas/votes/7"), Some(1));
    assert_eq!(rule_for(&s, "DELETE", "/ideas/votes/7"), None);
    assert_eq!(rule_for(&s, "POST", "/ideas/7"), None);
}

#[test]
fn overlapping_methods_and_unknown_methods_are_located_errors() {
    let e = method_set(vec![
        method_spec("/a/**", &["GET"], Access::Public),
        method_spec("/a/**", &["POST"], Access::Verified),
        method_spec("/a/**/", &["PUT", "GET"], Access::Verified),
    ])
    .unwrap_err();
    assert_eq!(
        (e.index, e.other, e.kind.clone()),
        (2, Some(0), RuleErrorKind::MethodsOverlap("GET"))
    );
    assert!(
        e.to_string().starts_with(
            "pages[2] (path \"/a/**/\"): ambiguous with pages[0] (path \"/a/**\"): both apply to GET"
        ),
        "{e}"
    );
    let e = method_set(vec![
        method_spec("/a", &[], Access::Public),
        method_spec("/a/", &[], Access::Verified),
    ])
    .unwrap_err();
    assert_eq!(
        (e.index, e.other, e.kind),
        (1, Some(0), RuleErrorKind::Duplicate)
    );
    for (bad, named) in [
        (&["GET", "get"][..], "get"),
        (&["TRACE"], "TRACE"),
        (&["VOTE"], "VOTE"),
    ] {
        let e = method_set(vec![method_spec("/a", bad, Access::Verified)]).unwrap_err();
        assert_eq!(e.kind, RuleErrorKind::BadMethod(named.into()));
        assert!(e.to_string().contains("is not one of GET, HEAD"), "{e}");
    }
    let e = method_set(vec![method_spec("/a", &["HEAD"], Access::Public)]).unwrap_err();
    assert!(e.to_string().contains("lists HEAD without GET"), "{e}");
    let empty = RuleSpec {
        methods: Some(vec![]),
        ..spec("/a")
    };
    let e = method_set(vec![empty]).unwrap_err();
    assert!(e.to_string().contains("methods is empty"), "{e}");
    // Different patterns of equal precedence must not overlap, whatever
    // their methods: the lookup relies on it.
    let e = method_set(vec![
        method_spec("/a/*", &["GET"], Access::Public),
        method_spec("/a/**", &["POST"], Access::Verified),
    ])
    .unwrap_err();
    assert!(matches!(e.kind, RuleErrorKind::Ambiguous { .. }), "{e}");
}

#[test]
fn describe_shows_methods_and_conditions() {
    let s = method_set(vec![RuleSpec {
        allow_groups: vec!["beta".into()],
        require: vec![("plan".into(), vec!["pro".into(), "enterprise".into()])],
        ..method_spec("/beta/**", &["GET"], Access::Verified)
    }])
    .unwrap();
    assert_eq!(
        s.get(0).unwrap().describe(),
        "/beta/** verified [GET, HEAD] (groups: beta; require plan: enterprise, pro)"
    );
}
