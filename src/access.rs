//! The access decision, pure: one reading of the path, the page rules,
//! the credential a request carries (found and stripped in one place), the
//! decrypt cache, and the decision with its reasons. No I/O; the clock is
//! an argument.

pub mod cache;
pub mod decision;
pub mod path;
pub mod rules;
