//! Page restriction rules: compiled once from the config, immutable, and
//! looked up for every request in time independent of the number of rules
//! (no linear scan).
//!
//! # Patterns
//!
//! A pattern starts with `/` and is split into segments on `/`. A segment is
//! a literal, `*` (exactly one non-empty segment) or `**` (zero or more
//! segments; only as the last segment). A pattern without a wildcard is an
//! *exact* rule. One trailing empty segment (a trailing slash) is
//! insignificant, in patterns and in paths alike: `/roadmap` and `/roadmap/`
//! are the same rule and both match `/roadmap` and `/roadmap/`, because an
//! upstream usually serves them as one resource and a gate must not let one
//! through while the other is restricted. The root `/` matches only `/`.
//!
//! # Precedence
//!
//! An exact rule beats every pattern; among patterns, the one with the most
//! leading literal segments wins. Config order never matters: two rules that
//! could both match a path with equal precedence are a config error.
//!
//! # Lookup
//!
//! Exact rules live in a hash map keyed by the path without its trailing
//! slash. Patterns live in a segment trie: the literal prefix of a pattern is
//! a chain of literal edges from the root; the rest (which starts with a
//! wildcard) hangs below the node where the prefix ends. A lookup walks the
//! path's segments down the literal edges as far as they go, then climbs back
//! up, trying at each node the patterns whose prefix ends there; those are
//! mutually disjoint (checked at compile), so the first match is the answer.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Who may see a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Users who proved an email address (and pass the rule's allow lists).
    Verified,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Verified => "verified",
        }
    }
}

/// One `[[pages]]` entry as the config hands it over.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// The `path` pattern, e.g. `/docs/**`.
    pub path: String,
    /// Who may see the pages it matches.
    pub access: Access,
    /// Emails admitted (with `access = "verified"` only).
    pub allow_emails: Vec<String>,
    /// Email domains admitted, exact match (with `access = "verified"` only).
    pub allow_domains: Vec<String>,
}

/// Options that change how paths compare.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleOptions {
    /// Compare patterns and paths ASCII-case-insensitively, for upstreams
    /// that serve `/Docs` and `/docs` as the same page.
    pub case_insensitive: bool,
}

/// A compiled page rule.
#[derive(Debug)]
pub struct PageRule {
    /// The pattern as written, for messages and `portal-gate check`.
    pattern: String,
    access: Access,
    /// Position in `[[pages]]`, so messages can point at the config entry.
    index: usize,
    /// Lower-cased; ordered so `describe` is stable.
    emails: BTreeSet<String>,
    /// Lower-cased; ordered so `describe` is stable.
    domains: BTreeSet<String>,
    /// Leading literal segments: the precedence key among patterns.
    literal_prefix: usize,
    exact: bool,
}

impl PageRule {
    /// The pattern as written in the config.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Who may see the pages this rule governs.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Position in the config's `[[pages]]` list (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the rule has no wildcard.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether a verified user with this (already lower-cased) email may see
    /// the page. Public: always. Verified without allow lists: always.
    /// Otherwise the email must be listed, or its domain (the part after the
    /// last `@`, compared exactly, subdomains excluded) must be.
    pub fn admits(&self, email: &str) -> bool {
        if self.access == Access::Public || (self.emails.is_empty() && self.domains.is_empty()) {
            return true;
        }
        self.emails.contains(email)
            || email
                .rsplit_once('@')
                .is_some_and(|(_, domain)| self.domains.contains(domain))
    }

    /// One line for `portal-gate check`, e.g.
    /// `/internal/** verified (domains: example.com)`.
    pub fn describe(&self) -> String {
        let mut line = format!("{} {}", self.pattern, self.access.as_str());
        let mut lists = Vec::new();
        if !self.emails.is_empty() {
            lists.push(format!("emails: {}", join(&self.emails)));
        }
        if !self.domains.is_empty() {
            lists.push(format!("domains: {}", join(&self.domains)));
        }
        if !lists.is_empty() {
            line.push_str(&format!(" ({})", lists.join("; ")));
        }
        line
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a `[[pages]]` entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Which spec (0-based position in `[[pages]]`).
    pub index: usize,
    /// The pattern of that spec, as written.
    pub pattern: String,
    /// The earlier spec it conflicts with, for `Duplicate` and `Ambiguous`.
    pub other: Option<usize>,
    /// The pattern of `other`, as written.
    pub other_pattern: Option<String>,
    /// What is wrong.
    pub kind: RuleErrorKind,
}

/// What is wrong with a `[[pages]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The `path` is not a valid pattern; the string says why.
    BadPattern(String),
    /// Another rule has the same pattern (a trailing slash does not count).
    Duplicate,
    /// Another rule matches `example` too, with equal precedence.
    Ambiguous {
        /// A path both rules match.
        example: String,
    },
    /// An `allow_emails` entry is not an email address.
    BadEmail(String),
    /// An `allow_domains` entry is not a domain.
    BadDomain(String),
    /// Allow lists on a public rule would mean nothing.
    AllowListOnPublic,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pages[{}] (path {:?}): ", self.index, self.pattern)?;
        let other = match (self.other, &self.other_pattern) {
            (Some(i), Some(p)) => format!("pages[{i}] (path {p:?})"),
            (Some(i), None) => format!("pages[{i}]"),
            _ => "another rule".to_owned(),
        };
        match &self.kind {
            RuleErrorKind::BadPattern(why) => write!(f, "bad pattern: {why}"),
            RuleErrorKind::Duplicate => write!(
                f,
                "duplicates {other} (a trailing slash does not make a different page)"
            ),
            RuleErrorKind::Ambiguous { example } => write!(
                f,
                "ambiguous with {other}: both match {example:?} with equal precedence; \
                 make one of them more specific"
            ),
            RuleErrorKind::BadEmail(e) => write!(f, "allow_emails entry {e:?} is not an email"),
            RuleErrorKind::BadDomain(d) => write!(f, "allow_domains entry {d:?} is not a domain"),
            RuleErrorKind::AllowListOnPublic => write!(
                f,
                "allow_emails/allow_domains on a public page mean nothing; \
                 use access = \"verified\" or remove them"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// All page rules, compiled.
#[derive(Debug)]
pub struct RuleSet {
    /// In config order: a rule's index is its position here.
    rules: Vec<PageRule>,
    /// Exact rules by path without trailing slash (root stays `/`).
    exact: HashMap<Box<str>, usize>,
    /// The pattern trie; node 0 is the root (empty literal prefix).
    nodes: Vec<Node>,
    /// Lower-case looked-up paths (patterns were lower-cased at compile).
    case_insensitive: bool,
}

/// A node of the pattern trie.
#[derive(Debug, Default)]
struct Node {
    /// Children by literal segment.
    literal: HashMap<Box<str>, usize>,
    /// Child for a `*` segment.
    one: Option<usize>,
    /// Rule whose pattern ends here (only below a wildcard: exact rules live
    /// in `RuleSet::exact`).
    end: Option<usize>,
    /// Rule whose pattern ends with `**` here.
    rest: Option<usize>,
    /// Literal-prefix nodes only: the parent, to climb back without a stack.
    parent: Option<usize>,
    /// Literal-prefix nodes only: byte length of the prefix (`/docs/api` is
    /// 9), so the rest of the path is a slice instead of a segment buffer.
    prefix_len: usize,
}

/// A parsed pattern: literal prefix, then a tail that starts with a wildcard
/// (empty for exact rules).
#[derive(Debug, Default)]
struct Pattern {
    prefix: Vec<String>,
    tail: Vec<Segment>,
    /// What two rules are duplicates by: no trailing slash, folded case.
    canonical: String,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    /// `*`
    One,
    /// `**`, always last.
    Rest,
}

impl Pattern {
    fn parse(text: &str, case_insensitive: bool) -> Result<Pattern, String> {
        if !text.starts_with('/') {
            return Err("must start with '/'".to_owned());
        }
        if let Some(c) = text.chars().find(|&c| !pattern_char(c)) {
            return Err(match c {
                '?' | '#' => format!("contains {c:?}: queries and fragments never reach rules"),
                '%' => "contains '%': write the path decoded".to_owned(),
                c if !c.is_ascii() => format!("contains {c:?}: non-ASCII may arrive encoded"),
                c => format!("contains {c:?}, which cannot appear in a request path"),
            });
        }
        if text.contains("//") {
            return Err("contains an empty segment ('//')".to_owned());
        }
        // A trailing slash is insignificant; the root is the only "/"-ending canonical form.
        let trimmed = text
            .strip_suffix('/')
            .filter(|t| !t.is_empty())
            .unwrap_or(text);
        let canonical = match case_insensitive {
            true => trimmed.to_ascii_lowercase(),
            false => trimmed.to_owned(),
        };
        let mut pattern = Pattern::default();
        let segments: Vec<&str> = canonical
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        for (i, seg) in segments.iter().enumerate() {
            let seg = match *seg {
                "." | ".." => return Err(format!("contains a {seg:?} segment")),
                "*" => Segment::One,
                "**" if i + 1 == segments.len() => Segment::Rest,
                "**" => return Err("'**' is only allowed as the last segment".to_owned()),
                s if s.contains('*') => {
                    return Err(format!("segment {s:?} mixes '*' with text"));
                }
                s => Segment::Literal(s.to_owned()),
            };
            match seg {
                Segment::Literal(s) if pattern.tail.is_empty() => pattern.prefix.push(s),
                seg => pattern.tail.push(seg),
            }
        }
        pattern.canonical = canonical;
        Ok(pattern)
    }
}

/// Characters a request path can carry verbatim (per the `http` crate),
/// minus `%` (patterns are written decoded) and non-ASCII (which may arrive
/// percent-encoded, so a literal could be bypassed).
fn pattern_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '?' | '#' | '%' | '<' | '>' | '`')
}

impl RuleSet {
    /// Validates and compiles the `[[pages]]` entries. The first problem
    /// found, in config order, is returned.
    pub fn compile(specs: Vec<RuleSpec>, options: RuleOptions) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet {
            rules: Vec::with_capacity(specs.len()),
            exact: HashMap::new(),
            nodes: vec![Node::default()],
            case_insensitive: options.case_insensitive,
        };
        // Canonical pattern text → rule, to tell duplicates from overlaps.
        let mut seen_patterns: HashMap<String, usize> = HashMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let fail = |kind, other: Option<usize>, rules: &[PageRule]| RuleError {
                index,
                pattern: spec.path.clone(),
                other,
                other_pattern: other.and_then(|o| rules.get(o)).map(|r| r.pattern.clone()),
                kind,
            };
            let pattern = Pattern::parse(&spec.path, options.case_insensitive)
                .map_err(|why| fail(RuleErrorKind::BadPattern(why), None, &set.rules))?;
            let lists = check_lists(&spec).map_err(|kind| fail(kind, None, &set.rules))?;
            let canonical = pattern.canonical.clone();
            let exact = pattern.tail.is_empty();
            if exact {
                if let Some(&other) = set.exact.get(canonical.as_str()) {
                    return Err(fail(RuleErrorKind::Duplicate, Some(other), &set.rules));
                }
                set.exact.insert(canonical.into(), index);
            } else {
                if let Some(&other) = seen_patterns.get(&canonical) {
                    return Err(fail(RuleErrorKind::Duplicate, Some(other), &set.rules));
                }
                if let Err((other, example)) = set.insert_pattern(index, &pattern) {
                    return Err(fail(
                        RuleErrorKind::Ambiguous { example },
                        Some(other),
                        &set.rules,
                    ));
                }
                seen_patterns.insert(canonical, index);
            }
            set.rules.push(PageRule {
                pattern: spec.path,
                access: spec.access,
                index,
                emails: lists.0,
                domains: lists.1,
                literal_prefix: pattern.prefix.len(),
                exact,
            });
        }
        Ok(set)
    }

    /// The rule that governs `path`, or `None` when no rule matches (the
    /// caller applies `default_access`). `path` must be normalized: it starts
    /// with `/`, has no `//`, `.` or `..` segments and no query.
    ///
    /// Allocates nothing, except one lower-cased copy of the path when the
    /// set is case-insensitive and the path has an ASCII upper-case letter.
    pub fn find(&self, path: &str) -> Option<&PageRule> {
        if !path.starts_with('/') {
            return None;
        }
        let path: Cow<'_, str> =
            if self.case_insensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(path.to_ascii_lowercase())
            } else {
                Cow::Borrowed(path)
            };
        let trimmed = match path.strip_suffix('/') {
            Some(t) if !t.is_empty() => t,
            _ => &path,
        };
        if let Some(&i) = self.exact.get(trimmed) {
            return self.rules.get(i);
        }
        // From here on "" is the root, so every segment follows a '/'.
        let body = if trimmed == "/" { "" } else { trimmed };
        let mut node = 0;
        for seg in body.split('/').skip(1) {
            match self.nodes[node].literal.get(seg) {
                Some(&child) => node = child,
                None => break,
            }
        }
        // Deepest literal prefix first: it has the highest precedence.
        let mut at = Some(node);
        while let Some(id) = at {
            let node = &self.nodes[id];
            if let Some(rest) = body.get(node.prefix_len..) {
                if let Some(rule) = self.match_tail(node, rest) {
                    return self.rules.get(rule);
                }
            }
            at = node.parent;
        }
        None
    }

    /// Matches the patterns whose literal prefix ends at `node` against the
    /// rest of the path (`""` or `/seg/...`).
    fn match_tail(&self, node: &Node, rest: &str) -> Option<usize> {
        let mut segs = rest.split('/').skip(1);
        match segs.next() {
            Some(seg) if !seg.is_empty() => node
                .one
                .and_then(|one| self.match_below(one, segs))
                .or(node.rest),
            _ => node.rest,
        }
    }

    /// Matches below a wildcard. Recursion depth is bounded by the pattern
    /// length, not by the path.
    fn match_below<'p>(
        &self,
        id: usize,
        mut segs: impl Iterator<Item = &'p str> + Clone,
    ) -> Option<usize> {
        let node = &self.nodes[id];
        let Some(seg) = segs.next() else {
            return node.end.or(node.rest);
        };
        node.literal
            .get(seg)
            .and_then(|&child| self.match_below(child, segs.clone()))
            .or_else(|| {
                node.one
                    .filter(|_| !seg.is_empty())
                    .and_then(|one| self.match_below(one, segs))
            })
            .or(node.rest)
    }

    /// Rules in precedence order: exact rules, then patterns by literal
    /// prefix length (longest first), each group by pattern text.
    pub fn in_precedence_order(&self) -> Vec<&PageRule> {
        let mut rules: Vec<&PageRule> = self.rules.iter().collect();
        // Exact rules never compete with each other, so they sort by text only.
        let rank = |r: &PageRule| (r.exact, if r.exact { 0 } else { r.literal_prefix });
        rules.sort_by(|a, b| {
            rank(b)
                .cmp(&rank(a))
                .then_with(|| a.pattern.cmp(&b.pattern))
        });
        rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The child of `id` along a literal edge (`Some`) or the `*` edge
    /// (`None`), created as `new` if missing.
    fn child(&mut self, id: usize, edge: Option<&str>, new: Node) -> usize {
        let node = &mut self.nodes[id];
        let existing = match edge {
            Some(lit) => node.literal.get(lit).copied(),
            None => node.one,
        };
        if let Some(child) = existing {
            return child;
        }
        let child = self.nodes.len();
        let node = &mut self.nodes[id];
        match edge {
            Some(lit) => drop(node.literal.insert(lit.into(), child)),
            None => node.one = Some(child),
        }
        self.nodes.push(new);
        child
    }

    /// Adds a wildcard pattern, or returns the rule it overlaps with equal
    /// precedence and a path both match.
    fn insert_pattern(&mut self, rule: usize, pattern: &Pattern) -> Result<(), (usize, String)> {
        let mut id = 0;
        let mut prefix_len = 0;
        for lit in &pattern.prefix {
            prefix_len += 1 + lit.len();
            let parent = Some(id);
            id = self.child(
                id,
                Some(lit),
                Node {
                    parent,
                    prefix_len,
                    ..Node::default()
                },
            );
        }
        let mut example = Vec::new();
        if let Some(other) = self.overlap(id, &pattern.tail, true, &mut example) {
            let segs: Vec<&str> = pattern
                .prefix
                .iter()
                .map(String::as_str)
                .chain(example)
                .collect();
            return Err((other, format!("/{}", segs.join("/"))));
        }
        for seg in &pattern.tail {
            id = match seg {
                Segment::Rest => break,
                Segment::Literal(lit) => self.child(id, Some(lit), Node::default()),
                Segment::One => self.child(id, None, Node::default()),
            };
        }
        match pattern.tail.last() {
            Some(Segment::Rest) => self.nodes[id].rest = Some(rule),
            _ => self.nodes[id].end = Some(rule),
        }
        Ok(())
    }

    /// The first rule in the trie below `id` whose pattern rest intersects
    /// `tail`, pushing the segments of a path both match onto `example`. At
    /// the `top` (a literal-prefix node) literal children are other groups
    /// (longer prefixes) and are skipped. Compile time only, so clarity and
    /// deterministic messages beat speed here.
    fn overlap<'a>(
        &'a self,
        id: usize,
        tail: &'a [Segment],
        top: bool,
        example: &mut Vec<&'a str>,
    ) -> Option<usize> {
        let node = &self.nodes[id];
        if let Some(rule) = node.rest {
            example.extend(tail.iter().filter_map(|seg| match seg {
                Segment::Literal(s) => Some(s.as_str()),
                Segment::One => Some("x"),
                Segment::Rest => None,
            }));
            return Some(rule);
        }
        let Some((first, more)) = tail.split_first() else {
            return node.end;
        };
        // Candidate (segment, child) steps that `first` can take.
        let mut steps: Vec<(&str, usize)> = Vec::new();
        match first {
            Segment::Rest => return self.any_rule(id, top, example),
            Segment::Literal(s) => {
                if !top {
                    steps.extend(node.literal.get(s.as_str()).map(|&c| (s.as_str(), c)));
                }
                steps.extend(node.one.map(|c| (s.as_str(), c)));
            }
            Segment::One => {
                if !top {
                    steps.extend(sorted(&node.literal));
                }
                steps.extend(node.one.map(|c| ("x", c)));
            }
        }
        for (seg, child) in steps {
            example.push(seg);
            if let Some(rule) = self.overlap(child, more, false, example) {
                return Some(rule);
            }
            example.pop();
        }
        None
    }

    /// Any rule below `id` (every node below has one), with its path.
    fn any_rule<'a>(&'a self, id: usize, top: bool, example: &mut Vec<&'a str>) -> Option<usize> {
        let node = &self.nodes[id];
        if let Some(rule) = node.end.or(node.rest) {
            return Some(rule);
        }
        let step = match node.one {
            Some(child) => Some(("x", child)),
            None if !top => sorted(&node.literal).into_iter().next(),
            None => None,
        }?;
        example.push(step.0);
        self.any_rule(step.1, false, example)
    }
}

fn sorted(children: &HashMap<Box<str>, usize>) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = children.iter().map(|(k, &c)| (&**k, c)).collect();
    v.sort_unstable();
    v
}

type AllowLists = (BTreeSet<String>, BTreeSet<String>);

fn check_lists(spec: &RuleSpec) -> Result<AllowLists, RuleErrorKind> {
    let (emails, domains) = (&spec.allow_emails, &spec.allow_domains);
    if spec.access == Access::Public && !(emails.is_empty() && domains.is_empty()) {
        return Err(RuleErrorKind::AllowListOnPublic);
    }
    let blank = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
    let email_ok = |e: &str| match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !blank(domain) && !domain.contains('@') && !blank(e)
        }
        None => false,
    };
    let emails = emails.iter().map(|e| match email_ok(e) {
        true => Ok(e.to_lowercase()),
        false => Err(RuleErrorKind::BadEmail(e.clone())),
    });
    let domains = domains.iter().map(|d| match blank(d) || d.contains('@') {
        false => Ok(d.to_lowercase()),
        true => Err(RuleErrorKind::BadDomain(d.clone())),
    });
    Ok((
        emails.collect::<Result<_, _>>()?,
        domains.collect::<Result<_, _>>()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(path: &str) -> RuleSpec {
        RuleSpec {
            path: path.to_owned(),
            access: Access::Verified,
            allow_emails: vec![],
            allow_domains: vec![],
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
        set.find(path).map(PageRule::pattern)
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
        for good in [
            "/",
            "/a",
            "/a/",
            "/**",
            "/*",
            "/a/**/",
            "/a:b@c",
            "/~user/it's(1)+,;=$!&",
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
        };
        RuleSet::compile(vec![spec], RuleOptions::default())
    }

    fn admits(emails: &[&str], domains: &[&str], who: &str) -> bool {
        match rule(Access::Verified, emails, domains) {
            Ok(s) => s.find("/p").is_some_and(|r| r.admits(who)),
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
            Ok(s) => assert!(s.find("/p").is_some_and(|r| r.admits("anyone@x.y"))),
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
            assert_eq!(e, Err(error_of(RuleErrorKind::AllowListOnPublic)));
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
        assert_eq!((s.len(), s.is_empty()), (6, false));
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
        let about = s.find("/about");
        assert_eq!(
            about.map(|r| (r.index(), r.is_exact(), r.access())),
            Some((3, true, Access::Public))
        );
        assert_eq!(
            s.find("/internal/a").map(|r| (r.index(), r.is_exact())),
            Some((1, false))
        );
    }

    #[test]
    fn paths_outside_the_normalized_form_do_not_panic() {
        let s = set(&["/**", "/a/*", "/b/*/c", "/"]);
        for path in ["", "a", "//", "/a//", "/a//b", "/b//c", "/b/x//", "/é/ü"] {
            let _ = s.find(path);
        }
        assert!(s.find("").is_none() && s.find("a/b").is_none());
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
                    let found = set.find(asked).map(PageRule::index);
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
}
