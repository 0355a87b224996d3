//! Where an admitted request goes: a portal host through pooled
//! connections, or a static directory; and the bodies on the way.

pub mod body;
pub mod files;
pub mod pool;
pub mod proxy;
pub mod upload;
