//! Tokens and sessions: the shared secrets and the keys derived from them,
//! and the sealed format (`docs/token-format.md`). Public for backends
//! that mint tokens offline with the shared secret:
//!
//! ```
//! use portal_gate::token::{self, Claims, SecretRing, SecretSpec};
//!
//! let ring = SecretRing::new(vec![SecretSpec {
//!     id: "2026-11".into(),
//!     value: b"the shared secret".to_vec(),
//!     primary: true,
//!     not_after: None,
//! }])?;
//! let claims = Claims::for_user("acct_demo".into(), "ada@example.com", None, 1_800_000_000, 120)?;
//! let sealed = token::mint(ring.primary(), &claims);
//! let opened = token::open(&ring, &sealed)?;
//! assert_eq!(opened.claims().email, "ada@example.com");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod claims;
pub(crate) mod format;
pub(crate) mod keys;
#[cfg(test)]
mod vectors;

pub use claims::{
    AttrValue, Attributes, ClaimError, Claims, MAX_ATTRIBUTES, MAX_ATTRIBUTE_CHARS,
    MAX_ATTRIBUTE_VALUES, MAX_GROUPS,
};
pub use format::{mint, open, Opened, TokenError, MAX_TOKEN_LEN};
pub(crate) use format::{mint_session, open_session};
pub use keys::{KeyError, SecretRing, SecretSpec, TokenKey};
