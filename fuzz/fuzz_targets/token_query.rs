//! Finding the token (and session cookie) in a request's query and headers,
//! and removing the token from the query before forwarding.
//!
//! Input: the first line is the query string; each further line is a header
//! value, for `Authorization` if it starts with `A:`, `Cookie` if it starts
//! with `C:` (the prefix removed) and for `X-Auth-Token` otherwise. (A header value cannot hold a newline, so
//! nothing is lost by splitting on it, and seeds stay readable.)
//!
//! Invariant: whatever `headers::query_without_token` leaves must carry no
//! token by `decision::find_token`'s reading, or the upstream sees the bearer's
//! token (the gate would strip one spelling and forward another).

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use libfuzzer_sys::fuzz_target;
use portal_gate::access::decision::{self, TOKEN_HEADER};
use portal_gate::http::headers;

fuzz_target!(|input: &str| {
    let mut lines = input.split('\n');
    let query = lines.next().unwrap_or("");
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = if let Some(value) = line.strip_prefix("A:") {
            (AUTHORIZATION, value)
        } else if let Some(value) = line.strip_prefix("C:") {
            (COOKIE, value)
        } else {
            (HeaderName::from_static(TOKEN_HEADER), line)
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(name, value);
        }
    }

    let _ = decision::find_token(Some(query), &map);
    let _ = decision::find_token(None, &map);
    let _ = decision::find_credential(Some(query), &map);

    let empty = HeaderMap::new();
    if let Some(rest) = headers::query_without_token(query) {
        assert!(!rest.is_empty());
        match decision::find_token(Some(&rest), &empty) {
            Ok((None, places)) => assert!(!places.query),
            Ok((Some(token), _)) => panic!("{query:?} left token {token:?} in {rest:?}"),
            Err(reason) => panic!("{query:?} left {rest:?}, refused: {reason:?}"),
        }
    }
});
