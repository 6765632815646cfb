//! The IMAP view of the archive: read-only virtual folders any IMAP client can read.
//! Every `imap_types` use stays inside this module.

pub mod fetch;
pub mod search;
