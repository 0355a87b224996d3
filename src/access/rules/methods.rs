//! The `methods` of a page rule: a set of the standard methods, compared
//! exactly as HTTP does (case-sensitively: `get` is an extension method,
//! not `GET`).

use http::Method;

/// The methods a rule may name. `CONNECT` and `TRACE` never reach a rule
/// (the gate refuses them), and extension methods cannot be named: a
/// request with one falls to the rules without `methods`.
const NAMES: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A non-empty set of standard methods. `GET` brings `HEAD` with it: a HEAD
/// is answered with a GET's headers, so it must never be judged by a
/// laxer rule than the GET of the same page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Methods(u8);

impl Methods {
    /// The set named by `names`, or the first name that is not a standard
    /// method (or `""` for an empty list).
    pub(crate) fn parse(names: &[String]) -> Result<Methods, String> {
        if names.is_empty() {
            return Err(String::new());
        }
        let mut bits = 0;
        for name in names {
            let bit = bit_of(name).ok_or_else(|| name.clone())?;
            bits |= bit;
        }
        let (get, head) = (bit_of("GET").unwrap_or(0), bit_of("HEAD").unwrap_or(0));
        if bits & head != 0 && bits & get == 0 {
            // HEAD carries a GET's headers: judged apart, it could be laxer.
            return Err("HEAD".to_owned());
        }
        if bits & get != 0 {
            bits |= head;
        }
        Ok(Methods(bits))
    }

    /// Whether `method` is one a `methods` list can name.
    pub(crate) fn is_standard(method: &Method) -> bool {
        bit_of(method.as_str()).is_some()
    }

    /// Whether a request with `method` is in the set.
    pub(crate) fn contains(self, method: &Method) -> bool {
        bit_of(method.as_str()).is_some_and(|bit| self.0 & bit != 0)
    }

    /// The first method both sets hold.
    pub(crate) fn overlap(self, other: Methods) -> Option<&'static str> {
        let common = self.0 & other.0;
        NAMES
            .iter()
            .enumerate()
            .find(|(i, _)| common & (1 << i) != 0)
            .map(|(_, name)| *name)
    }

    /// `GET, HEAD`: the set, in a fixed order.
    pub(crate) fn describe(self) -> String {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn bit_of(name: &str) -> Option<u8> {
    NAMES.iter().position(|n| *n == name).map(|i| 1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Result<Methods, String> {
        Methods::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_are_exact_and_get_brings_head() {
        let get = set(&["GET"]).unwrap();
        assert_eq!(get.describe(), "GET, HEAD");
        assert!(get.contains(&Method::HEAD) && get.contains(&Method::GET));
        assert!(!get.contains(&Method::POST));
        assert!(!get.contains(&Method::from_bytes(b"get").unwrap()));
        assert!(!get.contains(&Method::from_bytes(b"PURGE").unwrap()));
        assert_eq!(set(&["HEAD"]), Err("HEAD".to_owned()));
        assert_eq!(set(&["HEAD", "GET"]).unwrap(), get);
        assert_eq!(set(&["get"]), Err("get".to_owned()));
        assert_eq!(set(&["POST", "TRACE"]), Err("TRACE".to_owned()));
        assert_eq!(set(&[]), Err(String::new()));
        let post = set(&["POST", "PATCH"]).unwrap();
        assert_eq!(post.overlap(get), None);
        assert_eq!(set(&["GET", "POST"]).unwrap().overlap(get), Some("GET"));
        assert_eq!(
            set(&["DELETE", "PATCH"]).unwrap().overlap(post),
            Some("PATCH")
        );
    }
}
