//! Network plumbing shared by the listeners: TLS, and the accept loop with its limits.

pub mod listener;
pub mod stream;
pub mod tls;
