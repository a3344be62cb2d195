//! The one integration test binary: end-to-end tests against the simulator, spec diagnostics,
//! the schema, and the CLI as a user runs it.

mod agent;
mod architecture;
mod cli;
mod common;
mod conformance;
mod connect;
mod converge;
mod destroy;
mod diff;
mod docs;
mod drift;
mod e2e;
mod economy;
mod examples;
mod faults;
mod hostile_files;
mod images;
mod inventory;
mod iso9660;
mod layers;
mod nocloud;
mod pending;
mod plans;
mod preflight;
mod profiles;
mod requests;
mod retries;
mod seed;
mod sim;
mod snippets;
mod spec;
mod tasks;
