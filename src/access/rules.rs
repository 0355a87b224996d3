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
//! # Methods
//!
//! A rule with `methods` applies only to those methods ([`Methods`]; `GET`
//! brings `HEAD`). Rules share a pattern when their method sets are
//! disjoint, and for that pattern a rule with methods beats the one
//! without. A request whose method no rule of the winning pattern covers
//! is judged by the next pattern that matches, and at last by
//! `default_access`. Two different patterns of equal precedence still must
//! not overlap, whatever their methods.
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
use std::collections::HashMap;
use std::fmt;

use http::Method;

mod methods;
mod who;

pub(crate) use methods::Methods;
use who::Who;
pub(crate) use who::{Admit, Refusal};

/// A request method that no `methods` list can name (not one of the
/// standard names as written) met a pattern whose rules name methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnlistedMethod;

/// Who may see a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Users who proved an email address (and pass the rule's conditions).
    #[default]
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
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleSpec {
    /// The `path` pattern, e.g. `/docs/**`.
    pub path: String,
    /// Who may see the pages it matches.
    pub access: Access,
    /// Emails admitted (with `access = "verified"` only).
    pub allow_emails: Vec<String>,
    /// Email domains admitted, exact match (with `access = "verified"` only).
    pub allow_domains: Vec<String>,
    /// Groups admitted (with `access = "verified"` only).
    pub allow_groups: Vec<String>,
    /// Attribute key → values, one of which it must hold (with
    /// `access = "verified"` only).
    pub require: Vec<(String, Vec<String>)>,
    /// The methods the rule applies to; `None` for all.
    pub methods: Option<Vec<String>>,
    /// `Some(false)` refuses WebSocket handshakes; allowed otherwise.
    pub websocket: Option<bool>,
    /// How long an answer on this rule may pause between two parts, in
    /// place of the per-answer idle clock (for long polls and streams).
    pub stream_idle_timeout: Option<std::time::Duration>,
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
    /// Who a verified page admits.
    who: Who,
    /// The methods it applies to; `None` for all.
    methods: Option<Methods>,
    /// WebSocket handshakes are allowed where the rule admits the user.
    websocket: bool,
    /// The rule's own pause allowance for streamed answers.
    stream_idle_timeout: Option<std::time::Duration>,
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

    /// The methods the rule applies to; `None` for all.
    pub(crate) fn methods(&self) -> Option<Methods> {
        self.methods
    }

    /// Whether a verified user with these claims may see the page, and
    /// what admitted them ([`Who::judge`]). A public rule has no
    /// conditions and admits anyone.
    pub(crate) fn admits(&self, claims: &crate::token::Claims) -> Result<Admit, Refusal> {
        self.who.judge(claims)
    }

    /// Whether WebSocket handshakes may open a tunnel here.
    pub(crate) fn allows_websocket(&self) -> bool {
        self.websocket
    }

    /// How long an answer on this rule may pause, if the rule says.
    pub(crate) fn stream_idle_timeout(&self) -> Option<std::time::Duration> {
        self.stream_idle_timeout
    }

    /// Whether the rule requires attributes.
    pub(crate) fn has_require(&self) -> bool {
        self.who.has_require()
    }

    /// The required attribute keys no token can meet, for `check`.
    pub(crate) fn unmeetable(&self) -> impl Iterator<Item = &str> {
        self.who.unmeetable()
    }

    /// One line for `portal-gate check`, e.g.
    /// `/internal/** verified [POST] (domains: example.com; groups: staff)`.
    pub(crate) fn describe(&self) -> String {
        let mut line = format!("{} {}", self.pattern, self.access.as_str());
        if let Some(methods) = self.methods {
            line.push_str(&format!(" [{}]", methods.describe()));
        }
        let conditions = self.who.describe();
        if !conditions.is_empty() {
            line.push_str(&format!(" ({})", conditions.join("; ")));
        }
        line
    }
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
    /// An `allow_groups` entry is not a group name.
    BadGroup(String),
    /// A `require` key is not an attribute key.
    BadRequireKey(String),
    /// A `methods` entry is not a standard method, or the list is empty
    /// (the string is then empty).
    BadMethod(String),
    /// Another rule has the same pattern and applies to this method too.
    MethodsOverlap(&'static str),
    /// Allow lists or `require` on a public rule would mean nothing.
    NarrowsPublic,
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
            RuleErrorKind::BadGroup(g) => write!(
                f,
                "allow_groups entry {g:?} is not a group name (^[A-Za-z0-9:._-]{{1,64}}$)"
            ),
            RuleErrorKind::BadRequireKey(k) => write!(
                f,
                "require key {k:?} is not an attribute key (^[a-z][a-z0-9_]{{0,31}}$)"
            ),
            RuleErrorKind::BadMethod(m) if m.is_empty() => write!(
                f,
                "methods is empty; name at least one method, or remove it to cover all"
            ),
            RuleErrorKind::BadMethod(m) if m == "HEAD" => write!(
                f,
                "methods lists HEAD without GET; a HEAD is answered with a GET's headers, \
                 so it is judged with GET: list GET, which covers HEAD"
            ),
            RuleErrorKind::BadMethod(m) => write!(
                f,
                "methods entry {m:?} is not one of GET, HEAD, POST, PUT, DELETE, PATCH, \
                 OPTIONS (names are case-sensitive; GET covers HEAD too)"
            ),
            RuleErrorKind::MethodsOverlap(method) => write!(
                f,
                "ambiguous with {other}: both apply to {method} on the same path; \
                 give them disjoint methods"
            ),
            RuleErrorKind::NarrowsPublic => write!(
                f,
                "allow_emails/allow_domains/allow_groups/require on a public page mean \
                 nothing; use access = \"verified\" or remove them"
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
    /// The rules of each pattern; the map and the trie hold slot indices.
    slots: Vec<Slot>,
    /// Exact rules' slots by path without trailing slash (root stays `/`).
    exact: HashMap<Box<str>, usize>,
    /// The pattern trie; node 0 is the root (empty literal prefix).
    nodes: Vec<Node>,
    /// Lower-case looked-up paths (patterns were lower-cased at compile).
    case_insensitive: bool,
}

/// The rules of one pattern: those with methods (pairwise disjoint), and
/// at most one without, which covers the methods they leave.
#[derive(Debug, Default)]
struct Slot {
    by_method: Vec<(Methods, usize)>,
    any: Option<usize>,
}

impl Slot {
    /// The rule of this pattern for `method`.
    fn pick(&self, method: &Method) -> Option<usize> {
        self.by_method
            .iter()
            .find(|(methods, _)| methods.contains(method))
            .map(|&(_, rule)| rule)
            .or(self.any)
    }

    /// Adds rule `index`, or names the rule it would share a method with.
    fn add(
        &mut self,
        index: usize,
        methods: Option<Methods>,
    ) -> Result<(), (usize, RuleErrorKind)> {
        match methods {
            None => match self.any {
                Some(other) => return Err((other, RuleErrorKind::Duplicate)),
                None => self.any = Some(index),
            },
            Some(methods) => {
                for &(theirs, other) in &self.by_method {
                    if let Some(method) = methods.overlap(theirs) {
                        return Err((other, RuleErrorKind::MethodsOverlap(method)));
                    }
                }
                self.by_method.push((methods, index));
            }
        }
        Ok(())
    }

    /// A rule of this pattern, to name in messages.
    fn first(&self) -> usize {
        self.by_method
            .first()
            .map(|&(_, rule)| rule)
            .or(self.any)
            .unwrap_or_default()
    }
}

/// A node of the pattern trie.
#[derive(Debug, Default)]
struct Node {
    /// Children by literal segment.
    literal: HashMap<Box<str>, usize>,
    /// Child for a `*` segment.
    one: Option<usize>,
    /// Slot of the pattern that ends here (only below a wildcard: exact
    /// rules live in `RuleSet::exact`).
    end: Option<usize>,
    /// Slot of the pattern that ends with `**` here.
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
            slots: Vec::new(),
            exact: HashMap::new(),
            nodes: vec![Node::default()],
            case_insensitive: options.case_insensitive,
        };
        // Canonical pattern text → slot of a wildcard pattern.
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
            let who = Who::compile(&spec).map_err(|kind| fail(kind, None, &set.rules))?;
            let methods = spec
                .methods
                .as_deref()
                .map(Methods::parse)
                .transpose()
                .map_err(|m| fail(RuleErrorKind::BadMethod(m), None, &set.rules))?;
            let (exact, literal_prefix) = (pattern.tail.is_empty(), pattern.prefix.len());
            let slot = set
                .slot_for(&pattern, &mut seen_patterns)
                .map_err(|(other, kind)| fail(kind, Some(other), &set.rules))?;
            set.slots[slot]
                .add(index, methods)
                .map_err(|(other, kind)| fail(kind, Some(other), &set.rules))?;
            set.rules.push(PageRule {
                pattern: spec.path,
                access: spec.access,
                index,
                who,
                methods,
                websocket: spec.websocket.unwrap_or(true),
                stream_idle_timeout: spec.stream_idle_timeout,
                literal_prefix,
                exact,
            });
        }
        Ok(set)
    }

    /// The slot of `pattern`: the one its canonical text already has, or
    /// a new one, placed in the exact map or the trie (which refuses a
    /// different pattern of equal precedence that overlaps it).
    fn slot_for(
        &mut self,
        pattern: &Pattern,
        seen_patterns: &mut HashMap<String, usize>,
    ) -> Result<usize, (usize, RuleErrorKind)> {
        let known = match pattern.tail.is_empty() {
            true => self.exact.get(pattern.canonical.as_str()),
            false => seen_patterns.get(&pattern.canonical),
        };
        if let Some(&slot) = known {
            return Ok(slot);
        }
        let slot = self.slots.len();
        if pattern.tail.is_empty() {
            self.exact.insert(pattern.canonical.as_str().into(), slot);
        } else {
            self.insert_pattern(slot, pattern)
                .map_err(|(other, example)| {
                    let other = self.slots[other].first();
                    (other, RuleErrorKind::Ambiguous { example })
                })?;
            seen_patterns.insert(pattern.canonical.clone(), slot);
        }
        self.slots.push(Slot::default());
        Ok(slot)
    }

    /// The rule that governs a `method` request for `path`, or `None` when
    /// no rule matches (the caller applies `default_access`). `path` must
    /// be normalized: it starts with `/`, has no `//`, `.` or `..` segments
    /// and no query. The most specific pattern with a rule for the method
    /// wins ([`Slot::pick`]).
    ///
    /// Allocates nothing, except one lower-cased copy of the path when the
    /// set is case-insensitive and the path has an ASCII upper-case letter.
    pub(crate) fn find(&self, path: &str, method: &Method) -> Option<&PageRule> {
        self.lookup(path, method).ok().flatten()
    }

    /// [`RuleSet::find`], failing closed on a method no `methods` list can
    /// name (`post`, `PURGE`): where it meets a pattern whose rules name
    /// methods, nobody can tell which of them the method was meant to
    /// fall under, so it is [`UnlistedMethod`] rather than the laxest.
    pub(crate) fn lookup(
        &self,
        path: &str,
        method: &Method,
    ) -> Result<Option<&PageRule>, UnlistedMethod> {
        if !path.starts_with('/') {
            return Ok(None);
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
        let standard = Methods::is_standard(method);
        let pick = |slot: usize| {
            let slot = &self.slots[slot];
            match standard || slot.by_method.is_empty() {
                true => Ok(slot.pick(method)),
                false => Err(UnlistedMethod),
            }
        };
        if let Some(&slot) = self.exact.get(trimmed) {
            if let Some(rule) = pick(slot)? {
                return Ok(self.rules.get(rule));
            }
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
            // The patterns below one node are disjoint: at most one matches.
            let rest = body.get(node.prefix_len..);
            if let Some(slot) = rest.and_then(|rest| self.match_tail(node, rest)) {
                if let Some(rule) = pick(slot)? {
                    return Ok(self.rules.get(rule));
                }
            }
            at = node.parent;
        }
        Ok(None)
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
    /// prefix length (longest first), each group by pattern text, and for
    /// one pattern the rules with methods first.
    pub(crate) fn in_precedence_order(&self) -> Vec<&PageRule> {
        let mut rules: Vec<&PageRule> = self.rules.iter().collect();
        // Exact rules never compete with each other, so they sort by text only.
        let rank = |r: &PageRule| (r.exact, if r.exact { 0 } else { r.literal_prefix });
        rules.sort_by(|a, b| {
            rank(b)
                .cmp(&rank(a))
                .then_with(|| a.pattern.cmp(&b.pattern))
                .then_with(|| b.methods.is_some().cmp(&a.methods.is_some()))
                .then_with(|| a.index.cmp(&b.index))
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

    /// Adds a wildcard pattern, or returns the slot it overlaps with equal
    /// precedence and a path both match.
    fn insert_pattern(&mut self, slot: usize, pattern: &Pattern) -> Result<(), (usize, String)> {
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
            Some(Segment::Rest) => self.nodes[id].rest = Some(slot),
            _ => self.nodes[id].end = Some(slot),
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

#[cfg(test)]
mod tests;
