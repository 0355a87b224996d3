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
pub(crate) enum Access {
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
pub(crate) struct RuleSpec {
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
pub(crate) struct RuleOptions {
    /// Compare patterns and paths ASCII-case-insensitively, for upstreams
    /// that serve `/Docs` and `/docs` as the same page.
    pub case_insensitive: bool,
}

/// A compiled page rule.
#[derive(Debug)]
pub(crate) struct PageRule {
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
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Who may see the pages this rule governs.
    pub(crate) fn access(&self) -> Access {
        self.access
    }

    /// Position in the config's `[[pages]]` list (0-based).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the rule has no wildcard.
    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether a verified user with this (already lower-cased) email may see
    /// the page. Public: always. Verified without allow lists: always.
    /// Otherwise the email must be listed, or its domain (the part after the
    /// last `@`, compared exactly, subdomains excluded) must be.
    pub(crate) fn admits(&self, email: &str) -> bool {
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
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct RuleError {
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
pub(crate) enum RuleErrorKind {
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
            // The other rule is always one already compiled: its pattern
            // is known whenever its index is.
            (Some(i), Some(p)) => format!("pages[{i}] (path {p:?})"),
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
pub(crate) struct RuleSet {
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

/// Characters a normalized path ([`crate::access::path::normalize`]) carries raw,
/// with one reading: unreserved ones, the reserved ones legal in a path
/// but `;` (which it refuses) and `+` (raw `+` and `%2B` both reach the
/// upstream, which may read one as a space), and `/`. Anything else
/// reaches the rules percent-encoded, so a pattern naming it raw would
/// never match. `%` is out too (patterns are written decoded), and so is
/// non-ASCII (which arrives encoded).
fn pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*,=:@/".contains(c)
}

impl RuleSet {
    /// Validates and compiles the `[[pages]]` entries. The first problem
    /// found, in config order, is returned.
    pub(crate) fn compile(
        specs: Vec<RuleSpec>,
        options: RuleOptions,
    ) -> Result<RuleSet, RuleError> {
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
    pub(crate) fn find(&self, path: &str) -> Option<&PageRule> {
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

    /// The rule that was `pages[index]` in the config.
    pub(crate) fn get(&self, index: usize) -> Option<&PageRule> {
        self.rules.get(index)
    }

    /// Rules in precedence order: exact rules, then patterns by literal
    /// prefix length (longest first), each group by pattern text.
    pub(crate) fn in_precedence_order(&self) -> Vec<&PageRule> {
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
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
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
mod tests;
