//! Finding the token in a request's query and headers, and removing it from
//! the query before forwarding.
//!
//! Invariant: whatever `headers::query_without_token` leaves must carry no
//! token by `gate::find_token`'s reading, or the upstream sees the bearer's
//! token (the gate would strip one spelling and forward another).

#![no_main]

use arbitrary::Arbitrary;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use portal_gate::gate::{self, TOKEN_HEADER};
use portal_gate::headers;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    query: &'a str,
    authorization: Vec<&'a [u8]>,
    x_auth_token: Vec<&'a [u8]>,
}

fuzz_target!(|req: Request<'_>| {
    let mut map = HeaderMap::new();
    for value in &req.authorization {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(AUTHORIZATION, value);
        }
    }
    for value in &req.x_auth_token {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(TOKEN_HEADER, value);
        }
    }

    let _ = gate::find_token(Some(req.query), &map);
    let _ = gate::find_token(None, &map);

    let empty = HeaderMap::new();
    if let Some(rest) = headers::query_without_token(req.query) {
        assert!(!rest.is_empty());
        match gate::find_token(Some(&rest), &empty) {
            Ok((None, places)) => assert!(!places.any()),
            Ok((Some(token), _)) => {
                panic!("{:?} left token {token:?} in {rest:?}", req.query)
            }
            Err(reason) => panic!("{:?} left {rest:?}, refused: {reason:?}", req.query),
        }
    }
});
