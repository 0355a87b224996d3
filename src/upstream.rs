//! Where an admitted request goes: a portal host through pooled
//! connections, or a static directory; and the bodies on the way.

pub(crate) mod body;
pub(crate) mod files;
pub(crate) mod pool;
pub(crate) mod proxy;
pub(crate) mod tunnel;
pub(crate) mod upload;
