//! The one integration test binary: end-to-end tests against the simulator, spec diagnostics,
//! the schema, and the CLI as a user runs it.

mod cli;
mod common;
mod diff;
mod e2e;
mod examples;
mod images;
mod requests;
mod sim;
mod spec;
