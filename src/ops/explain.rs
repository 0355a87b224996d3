//! `portal-gate explain`: which rule governs a request, why it beats the
//! other rules that match, and what the gate decides for a user: the
//! decision is [`Gate::admit`]'s own, on a request made up for the method,
//! the path and the user, and the condition named is the one
//! [`PageRule::admits`] judged.

use std::fmt::Write;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};

use crate::access::rules::{Access, Admit, PageRule, RuleOptions, RuleSet, RuleSpec};
use crate::config::Config;
use crate::http::phases::{Admission, ConnInfo, Identity};
use crate::ops::state::Gate;
use crate::token::Claims;

/// Whether `rule` alone would match `path` for `method` (compiled on its
/// own: this is for explaining, not for the request path).
fn matches(rule: &PageRule, path: &str, method: &Method, options: RuleOptions) -> bool {
    let spec = RuleSpec {
        path: rule.pattern().to_string(),
        access: Access::Public,
        ..RuleSpec::default()
    };
    let covers = rule.methods().is_none_or(|m| m.contains(method));
    covers
        && RuleSet::compile(vec![spec], options)
            .is_ok_and(|alone| alone.find(path, method).is_some())
}

fn literal_prefix(pattern: &str) -> usize {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| !s.contains('*'))
        .count()
}

impl Gate {
    /// How the gate treats a `method` request for `raw_path` without a
    /// credential, or for the verified user `user` (its email, groups and
    /// attributes; the account and times are set here, as the token API
    /// would): the normalized path, the rule that governs it and why it
    /// beats the others that match, which condition admits or refuses the
    /// user, and the decision [`Gate::admit`] makes (what
    /// `portal-gate explain` prints).
    pub async fn explain(&self, method: &Method, raw_path: &str, user: Option<&Claims>) -> String {
        let config = self.config();
        let mut out = String::new();
        let (raw_path, _query) = raw_path.split_once('?').unwrap_or((raw_path, ""));
        let path = match crate::access::path::normalize(raw_path) {
            Ok(path) => path.into_owned(),
            Err(error) => {
                let _ = writeln!(out, "request:  {method} {raw_path}");
                let _ = writeln!(
                    out,
                    "decision: refused with 400 before any rule is looked at: {error}"
                );
                return out;
            }
        };
        if path == raw_path {
            let _ = writeln!(out, "request:  {method} {path}");
        } else {
            let _ = writeln!(
                out,
                "request:  {method} {path} (normalized from {raw_path}; the upstream receives {path})"
            );
        }
        if let Some(endpoint) = config.endpoint_at(&path) {
            let what = endpoint.describe();
            let _ = writeln!(
                out,
                "decision: answered by the gate itself ({what}); no rule applies"
            );
            return out;
        }
        let winner = describe_rule(&mut out, &config, &path, method);
        if let Some(user) = user {
            let _ = writeln!(out, "user:     {}", describe_user(user));
            if let Some(rule) = winner.filter(|rule| rule.access() == Access::Verified) {
                let _ = writeln!(out, "condition: {}", condition(rule, user));
            }
        }
        let decision = self.decision_for(&config, method, &path, user).await;
        let _ = writeln!(out, "decision: {decision}");
        out
    }

    /// The decision for a `method` request of `path`, with a fresh token
    /// for `user` when given, in words.
    async fn decision_for(
        &self,
        config: &Config,
        method: &Method,
        path: &str,
        user: Option<&Claims>,
    ) -> String {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("accept", "application/json");
        if let Some(host) = config.public_hosts.first() {
            request = request.header("host", host.as_str());
        }
        if let Some(user) = user {
            let Some(bearer) = self.bearer_for(config, user) else {
                return format!("{:?} is not a user a token could carry", user.email);
            };
            request = request.header("authorization", bearer);
        }
        let Ok(request) = request.body(Empty::<Bytes>::new()) else {
            return "the path cannot be requested".to_string();
        };
        let conn = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), false);
        match self.admit(request, &conn).await {
            Admission::Forward(forwarded) => match forwarded.extensions().get::<Identity>() {
                Some(user) => format!("forwarded for {0} (X-Forwarded-Email: {0})", user.email()),
                None => "forwarded without an identity (public page)".to_string(),
            },
            Admission::Respond(answer)
                if user.is_none() && answer.status() == StatusCode::UNAUTHORIZED =>
            {
                "401 without a valid token or session; pass --email to see a user's decision"
                    .to_string()
            }
            Admission::Respond(answer) => {
                let status = answer.status();
                let body = answer.into_body().collect().await.map(|b| b.to_bytes());
                let reason = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["error"].as_str().map(str::to_owned));
                match reason {
                    Some(reason) => format!("refused with {status}: {reason}"),
                    None => format!("refused with {status}"),
                }
            }
        }
    }

    /// `Bearer <token>` for `user`, minted under the primary secret for
    /// this portal's account and the token lifetime, as the token API
    /// would; `None` when the claims could not be in a token.
    fn bearer_for(&self, config: &Config, user: &Claims) -> Option<String> {
        let now = self.clock().unix_now();
        let ttl = config.verification.token_ttl.as_secs();
        let mut claims = user.clone();
        claims
            .account_id
            .clone_from(&config.verification.account_id);
        claims.email = claims.email.trim().to_ascii_lowercase();
        claims.issued_at = now;
        claims.expires_at = now.saturating_add(ttl);
        claims.validate().ok()?;
        let token = crate::token::mint(config.secrets.primary(), &claims);
        Some(format!("Bearer {token}"))
    }
}

/// `ada@example.com; groups: beta; attributes: plan=pro, regions=eu|us`.
fn describe_user(user: &Claims) -> String {
    let mut line = user.email.clone();
    if !user.groups.is_empty() {
        line.push_str(&format!("; groups: {}", user.groups.join(", ")));
    }
    if !user.attributes.is_empty() {
        let attributes: Vec<String> = user
            .attributes
            .iter()
            .map(|(key, value)| format!("{key}={}", value.values().join("|")))
            .collect();
        line.push_str(&format!("; attributes: {}", attributes.join(", ")));
    }
    line
}

/// Which condition of a verified `rule` admits or refuses `user`.
fn condition(rule: &PageRule, user: &Claims) -> String {
    let mut user = user.clone();
    user.email = user.email.trim().to_ascii_lowercase();
    match rule.admits(&user) {
        Ok(admit) => {
            let by = match admit {
                Admit::AnyVerified => "any verified user (the rule has no allow list)",
                Admit::Email => "the email is on allow_emails",
                Admit::Domain => "the email's domain is on allow_domains",
                Admit::Group => "a group is on allow_groups",
            };
            let required = match rule.has_require() {
                true => ", and every require holds",
                false => "",
            };
            format!("admitted: {by}{required}")
        }
        Err(refusal) => {
            let reason = crate::access::reason::Reason::NotAdmitted {
                refusal,
                method_rule: rule.methods().is_some(),
            };
            format!("refused: {}", reason.message())
        }
    }
}

/// The rule that governs `path` (or `default_access`), and why it beats
/// the other rules that match.
fn describe_rule<'c>(
    out: &mut String,
    config: &'c Config,
    path: &str,
    method: &Method,
) -> Option<&'c PageRule> {
    let options = RuleOptions {
        case_insensitive: config.case_insensitive_paths,
    };
    let Ok(found) = config.rules.lookup(path, method) else {
        let _ = writeln!(
            out,
            "rule:     none for {method}: the path's rules name methods (GET, HEAD, POST, \
             PUT, DELETE, PATCH, OPTIONS as written), and this is not one of them"
        );
        return None;
    };
    let Some(winner) = found else {
        let shown = match config.default_access.access() {
            Access::Public => "public",
            Access::Verified => "verified users only",
        };
        let _ = writeln!(
            out,
            "rule:     none matches; default_access applies: {shown}"
        );
        return None;
    };
    let _ = writeln!(
        out,
        "rule:     {} (pages[{}])",
        winner.describe(),
        winner.index()
    );
    let matching: Vec<&PageRule> = config
        .rules
        .in_precedence_order()
        .into_iter()
        .filter(|rule| matches(rule, path, method, options))
        .collect();
    if matching.len() > 1 {
        let _ = writeln!(out, "why:      the most specific of the rules that match (exact beats patterns, then the longest literal prefix; for one pattern, a rule with methods beats one without):");
    } else {
        let _ = writeln!(out, "why:      the only rule that matches");
    }
    for rule in &matching {
        let mut kind = if rule.is_exact() {
            "exact".to_string()
        } else {
            format!(
                "pattern, literal prefix of {} segment(s)",
                literal_prefix(rule.pattern())
            )
        };
        if let Some(methods) = rule.methods() {
            kind.push_str(&format!(", methods {}", methods.describe()));
        }
        let mark = if winner.index() == rule.index() {
            "  <- wins"
        } else {
            ""
        };
        let _ = writeln!(out, "            {:<24} {kind}{mark}", rule.pattern());
    }
    Some(winner)
}
