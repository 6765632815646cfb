//! The one integration-test binary.

mod archive;
mod cli;
mod crash;
mod engagement;
mod export;
mod golden;
mod http;
mod imap;
mod interop;
mod log;
mod property;
mod pull;
mod smtp;
mod support;
mod tlog;
