//! What a token says about its bearer, and the rules every claim obeys.
//!
//! The same checks run where claims enter (the token API, the `token`
//! command) and where they come back (opening a token or a session): a
//! token from another minter that breaks them does not open. Identity
//! values are forwarded in headers and matched by page rules, so none may
//! read as two values or fail to fit a header.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// At most this many groups.
pub const MAX_GROUPS: usize = 32;
/// At most this many attribute keys.
pub const MAX_ATTRIBUTES: usize = 16;
/// At most this many strings in a list-valued attribute.
pub const MAX_ATTRIBUTE_VALUES: usize = 16;
/// At most this many characters in one attribute value.
pub const MAX_ATTRIBUTE_CHARS: usize = 128;
/// The longest email address (RFC 5321 path limit).
const MAX_EMAIL: usize = 254;

/// What a token asserts about its bearer. Serialized with the short claim
/// names of the wire format (`acc`, `eml`, `uid`, `nam`, `avu`, `grp`,
/// `atr`, `iat`, `exp`); unknown names are ignored when parsing, for
/// forward compatibility, and tokens without `grp` or `atr` (minted before
/// they existed) open with none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The portal account the bearer belongs to.
    #[serde(rename = "acc")]
    pub account_id: String,
    /// The bearer's email, ASCII lower-cased.
    #[serde(rename = "eml")]
    pub email: String,
    /// The bearer's user id in the portal, if it has one.
    #[serde(rename = "uid", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Display name from the bearer's profile.
    #[serde(rename = "nam", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Avatar URL from the bearer's profile.
    #[serde(rename = "avu", default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// The groups the bearer is in (`allow_groups` matches them).
    #[serde(
        rename = "grp",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub groups: Vec<String>,
    /// Facts about the bearer's account (`require` matches them), by key.
    #[serde(
        rename = "atr",
        default,
        skip_serializing_if = "Attributes::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub attributes: Attributes,
    /// The session's random id: set on sessions, which a revocation can
    /// name; tokens live minutes and need none.
    #[serde(rename = "sid", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Issued-at, Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Claims {
    /// Claims for a user of `account_id`, valid for `ttl` seconds from
    /// `now`, without a profile, groups or attributes: `email` is trimmed
    /// and ASCII lower-cased, then it and `user_id` are checked. The token
    /// API and the `token` command both start here.
    pub fn for_user(
        account_id: String,
        email: &str,
        user_id: Option<String>,
        now: u64,
        ttl: u64,
    ) -> Result<Claims, ClaimError> {
        let email = email.trim().to_ascii_lowercase();
        if !is_plausible_email(&email) {
            return Err(ClaimError::Email);
        }
        if user_id.as_deref().is_some_and(|id| !is_valid_user_id(id)) {
            return Err(ClaimError::UserId);
        }
        Ok(Claims {
            account_id,
            email,
            user_id,
            name: None,
            avatar_url: None,
            groups: Vec::new(),
            attributes: Attributes::default(),
            session_id: None,
            issued_at: now,
            expires_at: now.saturating_add(ttl),
        })
    }

    /// Every rule a claim obeys, the first broken one as the error: the
    /// account id (non-empty, no control characters), the email and user
    /// id ([`ClaimError`] says how), the groups and the attributes.
    pub fn validate(&self) -> Result<(), ClaimError> {
        if self.account_id.is_empty() || self.account_id.chars().any(char::is_control) {
            return Err(ClaimError::AccountId);
        }
        if !is_plausible_email(&self.email) {
            return Err(ClaimError::Email);
        }
        if self
            .user_id
            .as_deref()
            .is_some_and(|id| !is_valid_user_id(id))
        {
            return Err(ClaimError::UserId);
        }
        if self
            .session_id
            .as_deref()
            .is_some_and(|id| !is_valid_session_id(id))
        {
            return Err(ClaimError::SessionId);
        }
        check_groups(&self.groups)?;
        check_attributes(&self.attributes)
    }
}

/// An attribute's value: one string, or a list of strings (which a
/// `require` condition meets when any item does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// `"pro"`
    One(String),
    /// `["eu", "us"]`
    Many(Vec<String>),
}

impl AttrValue {
    /// The value's strings: one, or the list's items.
    pub fn values(&self) -> &[String] {
        match self {
            AttrValue::One(value) => std::slice::from_ref(value),
            AttrValue::Many(values) => values,
        }
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = AttrValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<AttrValue, E> {
                Ok(AttrValue::One(value.to_owned()))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<AttrValue, E> {
                Ok(AttrValue::One(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<String>()? {
                    if values.len() == MAX_ATTRIBUTE_VALUES {
                        return Err(de::Error::custom(format_args!(
                            "a list holds at most {MAX_ATTRIBUTE_VALUES} strings"
                        )));
                    }
                    values.push(value);
                }
                Ok(AttrValue::Many(values))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The attributes of a user, by key: a map that refuses a key twice when
/// it is read (JSON objects may repeat names; one of two values must not
/// silently win) and holds at most [`MAX_ATTRIBUTES`] keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<String, AttrValue>);

impl Attributes {
    /// No attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.get(key)
    }

    /// Keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets `key` to `value`, replacing what it held.
    pub fn insert(&mut self, key: String, value: AttrValue) {
        self.0.insert(key, value);
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut attributes = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if attributes.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    if attributes.len() == MAX_ATTRIBUTES {
                        return Err(de::Error::custom(format_args!(
                            "at most {MAX_ATTRIBUTES} keys"
                        )));
                    }
                    let value = map.next_value::<AttrValue>()?;
                    attributes.insert(key, value);
                }
                Ok(Attributes(attributes))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

impl FromIterator<(String, AttrValue)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, AttrValue)>>(iter: I) -> Self {
        Attributes(iter.into_iter().collect())
    }
}

/// `null` reads as empty, like an absent name.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Which claim broke which rule. [`ClaimError::field`] names it as the
/// token API's request does (`user_email`, `groups[3]`,
/// `attributes.plan`); the message says the rule, never the value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The account id is empty or has a control character.
    #[error("must be non-empty, without control characters")]
    AccountId,
    /// The email is not one unambiguous identity: it must be at most 254
    /// bytes of visible ASCII, with exactly one `@`, a non-empty local part
    /// and a dotted domain, and none of `,;<>"()[]\`.
    #[error("is not a valid email address")]
    Email,
    /// The user id does not match `^[a-zA-Z0-9:_-]{1,255}$`.
    #[error("must match ^[a-zA-Z0-9:_-]{{1,255}}$")]
    UserId,
    /// The session id does not match `^[A-Za-z0-9_-]{16,64}$`.
    #[error("must match ^[A-Za-z0-9_-]{{16,64}}$")]
    SessionId,
    /// More than [`MAX_GROUPS`] groups.
    #[error("must hold at most {MAX_GROUPS} groups")]
    TooManyGroups,
    /// The group at this index does not match `^[A-Za-z0-9:._-]{1,64}$`.
    #[error("must match ^[A-Za-z0-9:._-]{{1,64}}$")]
    Group(usize),
    /// More than [`MAX_ATTRIBUTES`] keys.
    #[error("must hold at most {MAX_ATTRIBUTES} keys")]
    TooManyAttributes,
    /// This key does not match `^[a-z][a-z0-9_]{0,31}$`.
    #[error("is not a valid key: keys match ^[a-z][a-z0-9_]{{0,31}}$")]
    AttributeKey(String),
    /// The value of this key is too long, too many, or has a control
    /// character.
    #[error(
        "must be a string of at most {MAX_ATTRIBUTE_CHARS} characters without control \
         characters, or a list of at most {MAX_ATTRIBUTE_VALUES} such strings"
    )]
    AttributeValue(String),
}

impl ClaimError {
    /// The field at fault, as the token API's request names it.
    pub fn field(&self) -> String {
        match self {
            ClaimError::AccountId => "account_id".to_owned(),
            ClaimError::Email => "user_email".to_owned(),
            ClaimError::UserId => "user_id".to_owned(),
            ClaimError::SessionId => "session_id".to_owned(),
            ClaimError::TooManyGroups => "groups".to_owned(),
            ClaimError::Group(index) => format!("groups[{index}]"),
            ClaimError::TooManyAttributes => "attributes".to_owned(),
            ClaimError::AttributeKey(key) => format!("attributes.{key}"),
            ClaimError::AttributeValue(key) => format!("attributes.{key}"),
        }
    }
}

/// At most [`MAX_GROUPS`] names, each `^[A-Za-z0-9:._-]{1,64}$`: no comma
/// or space, so `X-Forwarded-Groups` reads back as the same list.
pub(crate) fn check_groups(groups: &[String]) -> Result<(), ClaimError> {
    if groups.len() > MAX_GROUPS {
        return Err(ClaimError::TooManyGroups);
    }
    match groups.iter().position(|g| !is_valid_group(g)) {
        Some(index) => Err(ClaimError::Group(index)),
        None => Ok(()),
    }
}

/// Whether `group` matches `^[A-Za-z0-9:._-]{1,64}$`.
pub(crate) fn is_valid_group(group: &str) -> bool {
    (1..=64).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

/// Whether `key` matches `^[a-z][a-z0-9_]{0,31}$`.
pub(crate) fn is_valid_attribute_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && key.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_attributes(attributes: &Attributes) -> Result<(), ClaimError> {
    if attributes.0.len() > MAX_ATTRIBUTES {
        return Err(ClaimError::TooManyAttributes);
    }
    for (key, value) in &attributes.0 {
        if !is_valid_attribute_key(key) {
            return Err(ClaimError::AttributeKey(key.clone()));
        }
        let values = value.values();
        let fits = |v: &String| {
            v.chars().count() <= MAX_ATTRIBUTE_CHARS && !v.chars().any(char::is_control)
        };
        if values.len() > MAX_ATTRIBUTE_VALUES || !values.iter().all(fits) {
            return Err(ClaimError::AttributeValue(key.clone()));
        }
    }
    Ok(())
}

/// Whether `email` can serve as one unambiguous identity: at most 254
/// bytes of visible ASCII, exactly one `@` with a non-empty local part and
/// a dotted domain, and none of the characters that separate addresses or
/// quote them in headers (`,;<>"()[]\` and spaces). Deliverability is the
/// customer's backend's business.
pub(crate) fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= MAX_EMAIL
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && email
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b",;<>\"()[]\\".contains(&b))
}

/// Whether `id` matches `^[A-Za-z0-9_-]{16,64}$`: a session id, as the
/// gate makes them (22 base64url characters of 16 random bytes).
pub(crate) fn is_valid_session_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Whether `id` matches `^[a-zA-Z0-9:_-]{1,255}$`.
pub(crate) fn is_valid_user_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Result<Claims, String> {
        serde_json::from_str::<Claims>(json).map_err(|e| e.to_string())
    }

    const BASE: &str = r#""acc":"a","eml":"ada@example.com","iat":1,"exp":2"#;

    #[test]
    fn groups_and_attributes_read_and_validate() {
        let c = claims(&format!(
            r#"{{{BASE},"grp":["beta","org:acme"],"atr":{{"plan":"pro","regions":["eu","us"]}}}}"#
        ))
        .unwrap();
        assert_eq!(c.groups, ["beta", "org:acme"]);
        assert_eq!(c.attributes.get("plan").unwrap().values(), ["pro"]);
        assert_eq!(c.attributes.get("regions").unwrap().values(), ["eu", "us"]);
        assert_eq!(c.validate(), Ok(()));
        let old = claims(&format!("{{{BASE}}}")).unwrap();
        assert!(old.groups.is_empty() && old.attributes.is_empty());
        let nulls = claims(&format!(r#"{{{BASE},"grp":null,"atr":null}}"#)).unwrap();
        assert_eq!(nulls, old);
    }

    #[test]
    fn malformed_attributes_do_not_read() {
        for (atr, why) in [
            (r#"{"plan":"a","plan":"b"}"#, "duplicate key \"plan\""),
            (r#"{"plan":5}"#, "expected a string or a list of strings"),
            (
                r#"{"plan":{"x":"y"}}"#,
                "expected a string or a list of strings",
            ),
            (r#"{"plan":[["x"]]}"#, "expected a string"),
            (r#"{"plan":[1]}"#, "expected a string"),
            (r#"["plan"]"#, "expected an object of attributes"),
        ] {
            let err = claims(&format!(r#"{{{BASE},"atr":{atr}}}"#)).unwrap_err();
            assert!(err.contains(why), "{atr}: {err}");
        }
        let many = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(r#""k{i}":"v""#))
            .collect::<Vec<_>>()
            .join(",");
        let err = claims(&format!(r#"{{{BASE},"atr":{{{many}}}}}"#)).unwrap_err();
        assert!(err.contains("at most 16 keys"), "{err}");
        let long_list = format!("[{}]", vec![r#""x""#; MAX_ATTRIBUTE_VALUES + 1].join(","));
        let err = claims(&format!(r#"{{{BASE},"atr":{{"k":{long_list}}}}}"#)).unwrap_err();
        assert!(err.contains("at most 16 strings"), "{err}");
    }

    #[test]
    fn validation_names_the_field_and_the_rule() {
        let ok = claims(&format!("{{{BASE}}}")).unwrap();
        let with = |f: &dyn Fn(&mut Claims)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().map_err(|e| format!("{} {e}", e.field()))
        };
        let too_many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert_eq!(
            with(&|c| c.groups = too_many.clone()),
            Err("groups must hold at most 32 groups".into())
        );
        assert_eq!(with(&|c| c.groups = vec!["g".repeat(64)]), Ok(()));
        for bad in ["", "a b", "a,b", "é", &"g".repeat(65)] {
            let err = with(&|c| c.groups = vec!["ok".into(), bad.into()]).unwrap_err();
            assert!(err.starts_with("groups[1] must match"), "{bad:?}: {err}");
        }
        for bad in ["Plan", "1plan", "_plan", "pl-an", "", &"k".repeat(33)] {
            let err = with(&|c| {
                c.attributes.insert(bad.into(), AttrValue::One("x".into()));
            })
            .unwrap_err();
            assert!(err.contains("is not a valid key"), "{bad:?}: {err}");
        }
        assert_eq!(
            with(&|c| c
                .attributes
                .insert("k".repeat(32), AttrValue::One("é".repeat(128)))),
            Ok(())
        );
        for bad in [
            AttrValue::One("x".repeat(129)),
            AttrValue::One("a\nb".into()),
            AttrValue::Many(vec!["ok".into(), "x".repeat(129)]),
            AttrValue::Many(vec!["v".into(); 17]),
        ] {
            assert_eq!(
                with(&|c| c.attributes.insert("plan".into(), bad.clone())),
                Err(format!(
                    "attributes.plan {}",
                    ClaimError::AttributeValue(String::new())
                )),
            );
        }
        let many: Attributes = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), AttrValue::One("v".into())))
            .collect();
        assert_eq!(
            with(&|c| c.attributes = many.clone()),
            Err("attributes must hold at most 16 keys".into())
        );
        assert_eq!(
            with(&|c| c.account_id = "a\u{7f}".into()),
            Err("account_id must be non-empty, without control characters".into())
        );
    }
}
