//! `portal-gate explain`: which rule governs a path, why it beats the
//! other rules that match, and what the gate decides for a user: the
//! decision is [`Gate::admit`]'s own, on a request made up for the path
//! and the user.

use std::fmt::Write;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;

use crate::access::rules::{Access, PageRule, RuleOptions, RuleSet, RuleSpec};
use crate::config::Config;
use crate::http::phases::{Admission, ConnInfo, Identity};
use crate::ops::state::Gate;

/// Whether `rule` alone would match `path` (compiled on its own: this is
/// for explaining, not for the request path).
fn matches(rule: &PageRule, path: &str, options: RuleOptions) -> bool {
    let spec = RuleSpec {
        path: rule.pattern().to_string(),
        access: Access::Public,
        allow_emails: Vec::new(),
        allow_domains: Vec::new(),
    };
    RuleSet::compile(vec![spec], options).is_ok_and(|alone| alone.find(path).is_some())
}

fn literal_prefix(pattern: &str) -> usize {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| !s.contains('*'))
        .count()
}

impl Gate {
    /// How the gate treats `raw_path` for a request without a credential,
    /// or for a verified user with `email`: the normalized path, the rule
    /// that governs it and why it beats the others that match, and the
    /// decision [`Gate::admit`] makes (what `portal-gate explain` prints).
    pub async fn explain(&self, raw_path: &str, email: Option<&str>) -> String {
        let config = self.config();
        let mut out = String::new();
        let (raw_path, _query) = raw_path.split_once('?').unwrap_or((raw_path, ""));
        let path = match crate::access::path::normalize(raw_path) {
            Ok(path) => path.into_owned(),
            Err(error) => {
                let _ = writeln!(out, "path:     {raw_path}");
                let _ = writeln!(
                    out,
                    "decision: refused with 400 before any rule is looked at: {error}"
                );
                return out;
            }
        };
        if path == raw_path {
            let _ = writeln!(out, "path:     {path}");
        } else {
            let _ = writeln!(
                out,
                "path:     {path} (normalized from {raw_path}; the upstream receives {path})"
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
        describe_rule(&mut out, &config, &path);
        let decision = self.decision_for(&config, &path, email).await;
        let _ = writeln!(out, "decision: {decision}");
        out
    }

    /// The decision for a GET of `path`, with a fresh token for `email`
    /// when given, in words.
    async fn decision_for(&self, config: &Config, path: &str, email: Option<&str>) -> String {
        let email = email.map(|email| email.trim().to_ascii_lowercase());
        let mut request = Request::get(path).header("accept", "application/json");
        if let Some(host) = config.public_hosts.first() {
            request = request.header("host", host.as_str());
        }
        if let Some(email) = &email {
            if !crate::token::format::is_plausible_email(email) {
                return format!("{email:?} is not an email a token could carry");
            }
            let Ok(bearer) = self.bearer_for(config, email) else {
                return format!("{email:?} is not an email a token could carry");
            };
            request = request.header("authorization", bearer);
        }
        let Ok(request) = request.body(Empty::<Bytes>::new()) else {
            return "the path cannot be requested".to_string();
        };
        let conn = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), false);
        match (self.admit(request, &conn).await, email) {
            (Admission::Forward(forwarded), _) => match forwarded.extensions().get::<Identity>() {
                Some(user) => format!("forwarded for {0} (X-Forwarded-Email: {0})", user.email()),
                None => "forwarded without an identity (public page)".to_string(),
            },
            (Admission::Respond(answer), None) if answer.status() == StatusCode::UNAUTHORIZED => {
                "401 without a valid token or session; pass --email to see a user's decision"
                    .to_string()
            }
            (Admission::Respond(answer), Some(email))
                if answer.status() == StatusCode::FORBIDDEN =>
            {
                format!("403 for {email}: the rule's allow lists do not include this user")
            }
            (Admission::Respond(answer), _) => format!("refused with {}", answer.status()),
        }
    }

    /// `Bearer <token>` for `email`, minted as the token API would.
    fn bearer_for(
        &self,
        config: &Config,
        email: &str,
    ) -> Result<String, crate::token::IdentityError> {
        let now = self.clock().unix_now();
        let ttl = config.verification.token_ttl.as_secs();
        let account = config.verification.account_id.clone();
        let claims = crate::token::Claims::for_user(account, email, None, now, ttl)?;
        let token = crate::token::mint(config.secrets.primary(), &claims);
        Ok(format!("Bearer {token}"))
    }
}

/// The rule that governs `path` (or `default_access`), and why it beats
/// the other rules that match.
fn describe_rule(out: &mut String, config: &Config, path: &str) {
    let options = RuleOptions {
        case_insensitive: config.case_insensitive_paths,
    };
    let Some(winner) = config.rules.find(path) else {
        let shown = match config.default_access.access() {
            Access::Public => "public",
            Access::Verified => "verified users only",
        };
        let _ = writeln!(
            out,
            "rule:     none matches; default_access applies: {shown}"
        );
        return;
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
        .filter(|rule| matches(rule, path, options))
        .collect();
    if matching.len() > 1 {
        let _ = writeln!(out, "why:      the most specific of the rules that match (exact beats patterns, then the longest literal prefix):");
    } else {
        let _ = writeln!(out, "why:      the only rule that matches");
    }
    for rule in &matching {
        let kind = if rule.is_exact() {
            "exact".to_string()
        } else {
            format!(
                "pattern, literal prefix of {} segment(s)",
                literal_prefix(rule.pattern())
            )
        };
        let mark = if winner.index() == rule.index() {
            "  <- wins"
        } else {
            ""
        };
        let _ = writeln!(out, "            {:<24} {kind}{mark}", rule.pattern());
    }
}
