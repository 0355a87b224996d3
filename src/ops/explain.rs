//! `portal-gate explain`: which rule governs a path, why it beats the
//! other rules that match, and what the gate decides for a user.

use std::fmt::Write;

use crate::access::rules::{Access, PageRule, RuleOptions, RuleSet, RuleSpec};
use crate::config::{Config, DefaultAccess};

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

/// The explanation of how the gate treats `raw_path` for `email` (or for
/// a request without a token when `email` is `None`).
pub fn explain(config: &Config, raw_path: &str, email: Option<&str>) -> String {
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
    let own = if crate::http::api::TOKEN_PATHS.contains(&path.as_str()) {
        Some("the token API")
    } else if path == config.embed.script_path {
        Some("the released-page script")
    } else if path == config.embed.logout_path {
        Some("the logout endpoint")
    } else {
        None
    };
    if let Some(what) = own {
        let _ = writeln!(
            out,
            "decision: answered by the gate itself ({what}); no rule applies"
        );
        return out;
    }

    let options = RuleOptions {
        case_insensitive: config.case_insensitive_paths,
    };
    let winner = config.rules.find(&path);
    let matching: Vec<&PageRule> = config
        .rules
        .in_precedence_order()
        .into_iter()
        .filter(|rule| matches(rule, &path, options))
        .collect();
    let access = match winner {
        Some(rule) => {
            let _ = writeln!(
                out,
                "rule:     {} (pages[{}])",
                rule.describe(),
                rule.index()
            );
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
                let mark = if winner.is_some_and(|w| w.index() == rule.index()) {
                    "  <- wins"
                } else {
                    ""
                };
                let _ = writeln!(out, "            {:<24} {kind}{mark}", rule.pattern());
            }
            rule.access()
        }
        None => {
            let access = match config.default_access {
                DefaultAccess::Public => Access::Public,
                DefaultAccess::Restricted => Access::Verified,
            };
            let shown = match access {
                Access::Public => "public",
                Access::Verified => "verified users only",
            };
            let _ = writeln!(
                out,
                "rule:     none matches; default_access applies: {shown}"
            );
            access
        }
    };

    let decision = match (access, email) {
        (Access::Public, _) => "forwarded without an identity (public page)".to_string(),
        (Access::Verified, None) => {
            "401 without a valid token or session; pass --email to see a user's decision"
                .to_string()
        }
        (Access::Verified, Some(email)) => {
            let email = email.trim().to_ascii_lowercase();
            if !crate::token::format::is_plausible_email(&email) {
                format!("{email:?} is not an email a token could carry")
            } else if winner.is_none_or(|rule| rule.admits(&email)) {
                format!("forwarded for {email} (X-Forwarded-Email: {email})")
            } else {
                format!("403 for {email}: the rule's allow lists do not include this user")
            }
        }
    };
    let _ = writeln!(out, "decision: {decision}");
    out
}
