//! mailjournal: an on-premises mail journaling gateway.
//!
//! Every way in (SMTP, IMAP pull, files) goes through the one [`ingest`] pipeline; every way
//! out reads the one [`archive`].

pub mod access;
pub mod address;
pub mod admin;
pub mod archive;
pub mod auth;
pub mod classify;
pub mod clock;
pub mod config;
pub mod crlf;
pub mod directory;
pub mod engagement;
pub mod export;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod imap;
pub mod ingest;
pub mod metrics;
pub mod mutf7;
pub mod net;
pub mod pull;
pub mod runtime;
pub mod server;
pub mod smtp;
pub mod sources;
pub mod tlog;
