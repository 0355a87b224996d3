//! Who a verified page admits: the allow lists (emails, domains, groups;
//! any one of them admits) and the attribute requirements (every one must
//! hold). Only claims sealed in a token or session count: nothing here
//! reads a request.

use std::collections::BTreeSet;

use crate::token::claims::{is_valid_attribute_key, is_valid_group, Claims, MAX_ATTRIBUTE_CHARS};

use super::RuleErrorKind;

/// The conditions of one rule, compiled.
#[derive(Debug, Default)]
pub(crate) struct Who {
    /// Lower-cased; ordered so `describe` is stable.
    emails: BTreeSet<String>,
    /// Lower-cased; ordered so `describe` is stable.
    domains: BTreeSet<String>,
    /// Exact, case-sensitive group names.
    groups: BTreeSet<String>,
    /// Attribute key → the values that meet it, in key order.
    require: Vec<(String, BTreeSet<String>)>,
}

/// What admitted a verified user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The rule has no allow list: any verified user.
    AnyVerified,
    /// The user's email is listed.
    Email,
    /// The user's email domain is listed.
    Domain,
    /// One of the user's groups is listed.
    Group,
}

/// Which condition refused a verified user. Says what the page asks for,
/// never what the user's claims hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The rule lists emails or domains only, and this user is not on them.
    Email,
    /// The rule lists groups only, and this user is in none of them.
    Group,
    /// The rule lists people and groups, and this user is on none.
    Lists,
    /// An attribute the rule requires does not hold.
    Attribute,
}

impl Who {
    /// The conditions of a `[[pages]]` entry; a public rule may have none.
    pub(crate) fn compile(spec: &super::RuleSpec) -> Result<Who, RuleErrorKind> {
        let narrows = !(spec.allow_emails.is_empty()
            && spec.allow_domains.is_empty()
            && spec.allow_groups.is_empty()
            && spec.require.is_empty());
        if spec.access == super::Access::Public && narrows {
            return Err(RuleErrorKind::NarrowsPublic);
        }
        let blank = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
        let email_ok = |e: &str| match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && !blank(domain) && !domain.contains('@') && !blank(e)
            }
            None => false,
        };
        let emails = spec.allow_emails.iter().map(|e| match email_ok(e) {
            true => Ok(e.to_lowercase()),
            false => Err(RuleErrorKind::BadEmail(e.clone())),
        });
        let domains = spec
            .allow_domains
            .iter()
            .map(|d| match blank(d) || d.contains('@') {
                false => Ok(d.to_lowercase()),
                true => Err(RuleErrorKind::BadDomain(d.clone())),
            });
        let groups = spec.allow_groups.iter().map(|g| match is_valid_group(g) {
            true => Ok(g.clone()),
            false => Err(RuleErrorKind::BadGroup(g.clone())),
        });
        let require = spec
            .require
            .iter()
            .map(|(key, values)| match is_valid_attribute_key(key) {
                true => Ok((key.clone(), values.iter().cloned().collect())),
                false => Err(RuleErrorKind::BadRequireKey(key.clone())),
            });
        Ok(Who {
            emails: emails.collect::<Result<_, _>>()?,
            domains: domains.collect::<Result<_, _>>()?,
            groups: groups.collect::<Result<_, _>>()?,
            require: require.collect::<Result<_, _>>()?,
        })
    }

    /// Whether a verified user with these claims may see the page: on one
    /// of the allow lists when there are any (the email exactly, its
    /// domain — the part after the `@`, subdomains excluded — or one of
    /// the groups), and, whatever admitted them, every required attribute
    /// holding one of its values (an attribute with a list of values
    /// holds when any item does).
    pub(crate) fn judge(&self, claims: &Claims) -> Result<Admit, Refusal> {
        let admit = self.listed(claims)?;
        let holds = |(key, allowed): &(String, BTreeSet<String>)| {
            claims
                .attributes
                .get(key)
                .is_some_and(|value| value.values().iter().any(|v| allowed.contains(v)))
        };
        match self.require.iter().all(holds) {
            true => Ok(admit),
            false => Err(Refusal::Attribute),
        }
    }

    fn listed(&self, claims: &Claims) -> Result<Admit, Refusal> {
        let people = !(self.emails.is_empty() && self.domains.is_empty());
        if !people && self.groups.is_empty() {
            return Ok(Admit::AnyVerified);
        }
        let email = claims.email.as_str();
        if self.emails.contains(email) {
            return Ok(Admit::Email);
        }
        let domain = email.rsplit_once('@').map(|(_, domain)| domain);
        if domain.is_some_and(|domain| self.domains.contains(domain)) {
            return Ok(Admit::Domain);
        }
        if claims.groups.iter().any(|g| self.groups.contains(g)) {
            return Ok(Admit::Group);
        }
        Err(match (people, self.groups.is_empty()) {
            (true, true) => Refusal::Email,
            (false, _) => Refusal::Group,
            (true, false) => Refusal::Lists,
        })
    }

    /// Whether any attribute is required.
    pub(crate) fn has_require(&self) -> bool {
        !self.require.is_empty()
    }

    /// The conditions, for `portal-gate check` and `explain`:
    /// `emails: a@x.io; groups: beta; require plan: pro, enterprise`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let join = |set: &BTreeSet<String>| {
            set.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        for (name, set) in [
            ("emails", &self.emails),
            ("domains", &self.domains),
            ("groups", &self.groups),
        ] {
            if !set.is_empty() {
                parts.push(format!("{name}: {}", join(set)));
            }
        }
        for (key, values) in &self.require {
            parts.push(format!("require {key}: {}", join(values)));
        }
        parts
    }

    /// The required keys that no token can ever meet: an empty list of
    /// values, or only values no attribute may carry (longer than
    /// 128 characters, or with a control character).
    pub(crate) fn unmeetable(&self) -> impl Iterator<Item = &str> {
        let possible = |v: &String| {
            v.chars().count() <= MAX_ATTRIBUTE_CHARS && !v.chars().any(char::is_control)
        };
        self.require
            .iter()
            .filter(move |(_, values)| !values.iter().any(possible))
            .map(|(key, _)| key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::rules::{Access, RuleSpec};
    use crate::token::claims::AttrValue;

    fn claims(email: &str, groups: &[&str], attrs: &[(&str, AttrValue)]) -> Claims {
        let mut c = Claims::for_user("acct".into(), email, None, 0, 1).unwrap();
        c.groups = groups.iter().map(|g| g.to_string()).collect();
        c.attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        c
    }

    fn who(spec: RuleSpec) -> Who {
        Who::compile(&spec).unwrap()
    }

    fn one(v: &str) -> AttrValue {
        AttrValue::One(v.into())
    }

    #[test]
    fn groups_widen_the_allow_lists() {
        let w = who(RuleSpec {
            allow_emails: vec!["boss@corp.io".into()],
            allow_groups: vec!["beta".into()],
            ..RuleSpec::default()
        });
        assert_eq!(w.judge(&claims("boss@corp.io", &[], &[])), Ok(Admit::Email));
        assert_eq!(
            w.judge(&claims("x@y.io", &["alpha", "beta"], &[])),
            Ok(Admit::Group)
        );
        assert_eq!(
            w.judge(&claims("x@y.io", &["Beta"], &[])),
            Err(Refusal::Lists)
        );
        assert_eq!(w.judge(&claims("x@y.io", &[], &[])), Err(Refusal::Lists));
        let groups_only = who(RuleSpec {
            allow_groups: vec!["beta".into()],
            ..RuleSpec::default()
        });
        assert_eq!(
            groups_only.judge(&claims("x@y.io", &[], &[])),
            Err(Refusal::Group)
        );
        let domains_only = who(RuleSpec {
            allow_domains: vec!["corp.io".into()],
            ..RuleSpec::default()
        });
        assert_eq!(
            domains_only.judge(&claims("x@corp.io", &[], &[])),
            Ok(Admit::Domain)
        );
        assert_eq!(
            domains_only.judge(&claims("x@y.io", &["corp.io"], &[])),
            Err(Refusal::Email)
        );
        assert_eq!(
            who(RuleSpec::default()).judge(&claims("x@y.io", &[], &[])),
            Ok(Admit::AnyVerified)
        );
    }

    #[test]
    fn every_requirement_must_hold_whatever_admitted() {
        let w = who(RuleSpec {
            allow_groups: vec!["beta".into()],
            require: vec![
                ("plan".into(), vec!["pro".into(), "enterprise".into()]),
                ("region".into(), vec!["eu".into()]),
            ],
            ..RuleSpec::default()
        });
        let eu = ("region", AttrValue::Many(vec!["us".into(), "eu".into()]));
        let pro = ("plan", one("pro"));
        assert_eq!(
            w.judge(&claims("a@b.io", &["beta"], &[pro.clone(), eu.clone()])),
            Ok(Admit::Group)
        );
        assert_eq!(
            w.judge(&claims("a@b.io", &["beta"], std::slice::from_ref(&pro))),
            Err(Refusal::Attribute)
        );
        assert_eq!(
            w.judge(&claims(
                "a@b.io",
                &["beta"],
                &[("plan", one("free")), eu.clone()]
            )),
            Err(Refusal::Attribute)
        );
        assert_eq!(
            w.judge(&claims(
                "a@b.io",
                &["beta"],
                &[("plan", one("Pro")), eu.clone()]
            )),
            Err(Refusal::Attribute)
        );
        // The allow list is judged first.
        assert_eq!(
            w.judge(&claims("a@b.io", &[], &[pro, eu])),
            Err(Refusal::Group)
        );
        let only_require = who(RuleSpec {
            require: vec![("plan".into(), vec!["pro".into()])],
            ..RuleSpec::default()
        });
        assert_eq!(
            only_require.judge(&claims("a@b.io", &[], &[("plan", AttrValue::Many(vec![]))])),
            Err(Refusal::Attribute)
        );
    }

    #[test]
    fn bad_conditions_are_config_errors() {
        let error = |spec: RuleSpec| Who::compile(&spec).unwrap_err();
        assert_eq!(
            error(RuleSpec {
                allow_groups: vec!["a b".into()],
                ..RuleSpec::default()
            }),
            RuleErrorKind::BadGroup("a b".into())
        );
        assert_eq!(
            error(RuleSpec {
                require: vec![("Plan".into(), vec![])],
                ..RuleSpec::default()
            }),
            RuleErrorKind::BadRequireKey("Plan".into())
        );
        for spec in [
            RuleSpec {
                allow_groups: vec!["beta".into()],
                ..RuleSpec::default()
            },
            RuleSpec {
                require: vec![("plan".into(), vec!["pro".into()])],
                ..RuleSpec::default()
            },
        ] {
            let public = RuleSpec {
                access: Access::Public,
                ..spec
            };
            assert_eq!(error(public), RuleErrorKind::NarrowsPublic);
        }
        let w = who(RuleSpec {
            require: vec![
                ("plan".into(), vec![]),
                ("tier".into(), vec!["x".repeat(129), "a\nb".into()]),
                ("region".into(), vec!["eu".into()]),
            ],
            ..RuleSpec::default()
        });
        assert_eq!(w.unmeetable().collect::<Vec<_>>(), ["plan", "tier"]);
    }
}
