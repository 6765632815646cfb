//! The one integration-test binary.

mod archive;
mod cli;
mod golden;
mod support;
