//! The access decision, pure: one reading of the path, the page rules,
//! the credential a request carries (found and stripped in one place), the
//! decrypt cache, revocations, and the decision with its reasons. No I/O; the clock is
//! an argument.

pub(crate) mod cache;
pub(crate) mod credential;
pub(crate) mod decision;
pub(crate) mod path;
pub(crate) mod reason;
pub(crate) mod revocation;
pub(crate) mod rules;
